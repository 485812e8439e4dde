//! The HTTP client for provider calls, with the small request/response surface the provider
//! modules use: `https://` providers through hyper-util's pooled client over rustls (TLS
//! verified by the platform's roots, ALPN `h2` or `http/1.1`); `http://` providers over
//! HTTP/1.1 connections that the request's own task drives (`in_task`, which says why).
//!
//! Why not reqwest: per call it parsed the URL twice more (its redirect policy and its
//! response URL), ran a redirect and a retry layer the gateway never wants (a provider
//! redirect is not followed; retries are the gateway's own, per deployment), and boxed the
//! request through each of them: about a fifth of the gateway's own instructions per
//! request (callgrind, BENCHMARKS.md). The request body is always one buffer (`Full`), the
//! response body hyper's `Incoming`, read as a stream of chunks.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::header::{HeaderName, HeaderValue, ACCEPT};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

mod in_task;

type Inner = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One client (per thread and tier: the connect timeout is per client). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    /// `https://` providers.
    inner: Inner,
    /// `http://` providers.
    plain: in_task::Pool,
}

/// What a provider call failed at, for the retry decision and the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The request could not be built (a header value, the URL).
    Build,
    /// TCP or TLS connect failed (refused, unreachable, certificate).
    Connect,
    /// The connect timeout passed.
    ConnectTimeout,
    /// Sent, but no response head came back (connection closed or reset).
    Request,
    /// The response body failed while it was read.
    Body,
}

/// A failed provider call; its `Display` never includes the URL or a header.
pub struct Error {
    kind: Kind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    fn new(kind: Kind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Error {
        Error {
            kind,
            source: Some(source.into()),
        }
    }

    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::ConnectTimeout
    }

    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::ConnectTimeout)
    }

    pub fn is_body(&self) -> bool {
        self.kind == Kind::Body
    }

    /// Classifies hyper-util's error: connect failures (and their timeout) apart from
    /// failures after the request was sent.
    fn from_send(e: hyper_util::client::legacy::Error) -> Error {
        if !e.is_connect() {
            return Error::new(Kind::Request, e);
        }
        let timed_out = {
            let mut source = StdError::source(&e);
            let mut found = false;
            while let Some(s) = source {
                if s.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                {
                    found = true;
                    break;
                }
                source = s.source();
            }
            found
        };
        Error::new(
            if timed_out {
                Kind::ConnectTimeout
            } else {
                Kind::Connect
            },
            e,
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Build => "invalid request",
            Kind::Connect => "connect failed",
            Kind::ConnectTimeout => "connect timed out",
            Kind::Request => "no response",
            Kind::Body => "body failed",
        })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source chain, never the request: it may carry a key.
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

impl Client {
    /// Plain HTTP and HTTPS; `connect_timeout` bounds TCP connect (TLS is bounded by the
    /// caller's deadlines). `tls` is built once (`tls_config`) and shared by every client.
    pub fn new(connect_timeout: Duration, tls: &Arc<rustls::ClientConfig>) -> Client {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls::ClientConfig::clone(tls))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            // The same keep-alive limits as the `http://` pool.
            .pool_idle_timeout(in_task::IDLE_TIMEOUT)
            .pool_max_idle_per_host(in_task::MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Client {
            inner,
            plain: in_task::Pool::new(connect_timeout),
        }
    }

    /// A POST to `url` (a provider endpoint, parsed at config load), sent with
    /// `RequestBuilder::send(client)`. The builder holds no client: it used to hold a clone,
    /// which cloned and dropped the pooled client's connector (its TLS config and resolver
    /// handles) on every request.
    pub fn post(&self, url: &reqwest::Url) -> RequestBuilder {
        let uri = url
            .as_str()
            .parse::<Uri>()
            .map_err(|e| Error::new(Kind::Build, e));
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        RequestBuilder {
            uri,
            headers,
            body: Bytes::new(),
        }
    }
}

/// The TLS setup reqwest used for us before: the process's crypto provider (ring, installed
/// at startup) and the platform's certificate verifier. Built at startup and on reload
/// (`Upstream::new`), not per client: the verifier reads the system's roots.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .expect("the platform certificate verifier loads")
        .with_no_client_auth()
        .into()
}

/// A request being put together; errors surface at `send`.
pub struct RequestBuilder {
    uri: Result<Uri, Error>,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestBuilder {
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        match (name.try_into(), value.try_into()) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            (Err(e), _) => self.uri = Err(Error::new(Kind::Build, e.into())),
            (_, Err(e)) => self.uri = Err(Error::new(Kind::Build, e.into())),
        }
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends on `client`'s pools (the one that built it, or any other of the same tier).
    pub async fn send(self, client: &Client) -> Result<Response, Error> {
        let mut request = Request::new(Full::new(self.body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri?;
        *request.headers_mut() = self.headers;
        if request.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
            let (response, driver) = client.plain.send(request).await?;
            return Ok(Response {
                inner: response,
                driver: Some(driver),
            });
        }
        let response = client
            .inner
            .request(request)
            .await
            .map_err(Error::from_send)?;
        Ok(Response {
            inner: response,
            driver: None,
        })
    }
}

/// A provider's response head, its body not read yet.
pub struct Response {
    inner: http::Response<Incoming>,
    /// The connection, when this task drives it (`http://` providers).
    driver: Option<in_task::Driver>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body's data chunks (trailers skipped), as they arrive.
    pub fn bytes_stream(self) -> BodyStream {
        BodyStream {
            body: self.inner.into_body(),
            driver: self.driver,
            after_joined: None,
        }
    }
}

/// Frames a body stream may still read, from bytes already received, when it is dropped
/// before its end (after `[DONE]`, the chunked terminator is usually already there).
const MAX_FRAMES_READ_ON_DROP: usize = 4;

/// Most bytes one `poll_chunk` joins from frames that are already there: a provider that
/// sends each SSE event as its own HTTP chunk would otherwise cost one relay pass, one
/// client chunk and a share of one write per event.
const MAX_JOINED_BYTES: usize = 32 * 1024;

/// A response body as a stream of data chunks.
pub struct BodyStream {
    body: Incoming,
    driver: Option<in_task::Driver>,
    /// The body's end or error, seen while joining frames, for the next poll.
    after_joined: Option<Option<Error>>,
}

impl BodyStream {
    /// The next data: every frame already received, joined (up to `MAX_JOINED_BYTES`), so
    /// the events of one read leave in one chunk. Never waits for more than the first.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        self.poll_joined(cx, MAX_JOINED_BYTES)
    }

    /// `poll_chunk` with a join limit (1 byte: one frame at a time).
    fn poll_joined(
        &mut self,
        cx: &mut Context<'_>,
        max_bytes: usize,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        if let Some(end) = self.after_joined.take() {
            return Poll::Ready(end.map(Err));
        }
        let mut joined: Option<BytesMut> = None;
        // The connection is moved at most once per frame taken: progress, never a spin.
        let mut driven = false;
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    driven = false;
                    match &mut joined {
                        None if data.len() >= max_bytes => return Poll::Ready(Some(Ok(data))),
                        // Copied, not kept: `data` is a slice of hyper's read buffer, and
                        // hyper reuses that buffer for its next read (the poll below) only
                        // if no slice of it is alive; otherwise it allocates a fresh 8 KiB
                        // one. Holding the slice cost an 8 KiB allocation per event read
                        // and ~8 KB per open stream (heaptrack, BENCHMARKS.md); a copy of
                        // one event is a few hundred bytes.
                        None => joined = Some(BytesMut::from(&data[..])),
                        Some(buf) => buf.extend_from_slice(&data),
                    }
                    if joined.as_ref().map_or(0, BytesMut::len) >= max_bytes {
                        break;
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    if let Some(driver) = self.driver.take() {
                        driver.release(cx);
                    }
                    self.after_joined = Some(None);
                    break;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.driver = None;
                    self.after_joined = Some(Some(Error::new(Kind::Body, e)));
                    break;
                }
                Poll::Pending => {}
            }
            // Nothing buffered: move the connection once (it reads and decodes what has
            // arrived, which wakes nobody else), then look again.
            match self.driver.as_mut() {
                Some(driver) if !driven => {
                    driven = true;
                    if !driver.drive(cx) {
                        self.driver = None;
                    }
                }
                _ => break,
            }
        }
        match joined {
            Some(buf) => Poll::Ready(Some(Ok(buf.freeze()))),
            None => match self.after_joined.take() {
                Some(end) => Poll::Ready(end.map(Err)),
                None => Poll::Pending,
            },
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_chunk(cx)
    }
}

impl Drop for BodyStream {
    /// A body dropped before its end would close its connection. If the rest has already
    /// arrived (a few frames at most, never a wait), read it so the connection is reused.
    fn drop(&mut self) {
        if self.driver.is_none() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..MAX_FRAMES_READ_ON_DROP {
            // One frame per step: the bound counts frames, not joins of up to 32 KiB.
            match self.poll_joined(&mut cx, 1) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) | Poll::Pending => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_header_value_fails_at_send_without_echoing_it() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = Client::new(Duration::from_secs(1), &tls_config());
            let url = reqwest::Url::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
            let err = client
                .post(&url)
                .header("authorization", "Bearer sk-secret\nx")
                .send(&client)
                .await
                .err()
                .expect("an invalid header value is refused");
            assert!(!err.is_connect());
            assert!(!format!("{err} {err:?}").contains("sk-secret"));
        });
    }
}
