//! Plain-HTTP provider connections driven by the request's own task: a small keep-alive
//! pool of hyper `client::conn::http1` connections, and the `Driver` a response body carries
//! to keep its connection moving.
//!
//! Why not hyper-util's pooled client for `http://` providers (a vLLM or llama.cpp beside
//! the gateway, a sidecar): it runs each connection in a task of its own and hands every
//! body chunk across a channel, so each streamed event costs two task wake-ups, and the
//! client-facing connection sees one frame per wake-up and writes one packet per event.
//! Here the task that relays the body also polls the connection: the events that one read
//! brought in leave in one write, and no other task is involved. (TLS providers keep the
//! pooled client: HTTP/2 and ALPN are its job.)
//!
//! A connection goes back to the pool only when its response was read to the end, and is
//! checked (polled once) before reuse; a pooled connection that turns out to be closed
//! before the request was written gives the request back, and the next one is tried.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{header::HOST, HeaderValue, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Error, Kind};

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;
type Sender = http1::SendRequest<Full<Bytes>>;

/// Below the providers' usual keep-alive, so a connection they just closed is not reused
/// (the `https://` pooled client uses the same two limits).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per provider host (more are closed when they come back).
pub(super) const MAX_IDLE_PER_HOST: usize = 256;
/// Pooled connections found closed before one is used or a new one is opened.
const MAX_STALE_TRIES: usize = 4;

/// One HTTP/1.1 connection: the handle requests go in by, and the connection itself, which
/// only moves when the task that holds it polls it.
struct Live {
    sender: Sender,
    /// `None` once it has ended: dropping it fails a request still queued on it.
    connection: Option<Connection>,
}

impl Live {
    /// Polls the connection once: `false` if it has ended (closed by the peer, or failed).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        drive(&mut self.connection, cx)
    }

    /// Open and ready for a request now, without waiting.
    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

struct Idle {
    live: Live,
    since: Instant,
}

/// The keep-alive pool of one client (one per thread and tier, like the pooled client).
#[derive(Clone)]
pub(super) struct Pool {
    idle: Arc<Mutex<HashMap<Authority, Vec<Idle>>>>,
    connect_timeout: Duration,
}

/// Keeps a response's connection moving while its body is read, and gives it back to the
/// pool once the body has ended. Dropped early, it closes the connection.
pub(super) struct Driver {
    live: Live,
    pool: Pool,
    key: Authority,
}

impl Driver {
    /// Polls the connection once; `false` if it has ended (the body then ends on its own:
    /// the connection dropped its sending half).
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.live.drive(cx)
    }

    /// The body has ended: the connection goes back to the pool if it is ready for another
    /// request now.
    pub(super) fn release(mut self, cx: &mut Context<'_>) {
        if self.live.ready_now(cx) {
            self.pool.put(self.key, self.live);
        }
    }
}

impl Pool {
    pub(super) fn new(connect_timeout: Duration) -> Pool {
        Pool {
            idle: Arc::default(),
            connect_timeout,
        }
    }

    /// Sends `request` (absolute URI) on a pooled connection or a new one.
    pub(super) async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Driver), Error> {
        let key = origin_form(&mut request)?;
        let mut stale = 0;
        loop {
            let (mut live, pooled) = match self.checkout(&key, &mut stale).await {
                Some(live) => (live, true),
                // Boxed: connecting is the cold path, and inline its future would make
                // every request's future (moved and copied whole) kilobytes larger.
                None => (Box::pin(self.connect(&key)).await?, false),
            };
            match send_on(&mut live, request).await {
                Ok(response) => {
                    let driver = Driver {
                        live,
                        pool: self.clone(),
                        key,
                    };
                    return Ok((response, driver));
                }
                Err(mut failed) => match failed.take_message() {
                    // Never written: a pooled connection closed under us; try the next
                    // (counted with the stale ones, so the tries stay bounded).
                    Some(unsent) if pooled => {
                        request = unsent;
                        stale += 1;
                    }
                    _ => return Err(Error::new(Kind::Request, failed.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `key` that is still open, if any.
    async fn checkout(&self, key: &Authority, stale: &mut usize) -> Option<Live> {
        while *stale < MAX_STALE_TRIES {
            let mut live = self.take(key)?;
            if std::future::poll_fn(|cx| Poll::Ready(live.ready_now(cx))).await {
                return Some(live);
            }
            *stale += 1;
        }
        None
    }

    fn take(&self, key: &Authority) -> Option<Live> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        close_expired(list);
        list.pop().map(|entry| entry.live)
    }

    fn put(&self, key: Authority, live: Live) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        // Also here: connections left over from a burst close once traffic goes on.
        close_expired(list);
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                live,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, key: &Authority) -> Result<Live, Error> {
        // `[::1]` in a URL is `::1` to the resolver.
        let host = key.host().trim_start_matches('[').trim_end_matches(']');
        let port = key.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|elapsed| Error::new(Kind::ConnectTimeout, elapsed))?
            .map_err(|e| Error::new(Kind::Connect, e))?;
        // Events are small and must leave at once.
        stream
            .set_nodelay(true)
            .map_err(|e| Error::new(Kind::Connect, e))?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::new(Kind::Connect, e))?;
        Ok(Live {
            sender,
            connection: Some(connection),
        })
    }
}

/// Closes (drops) the connections idle past `IDLE_TIMEOUT`: the oldest are first.
fn close_expired(list: &mut Vec<Idle>) {
    let expired = list
        .iter()
        .take_while(|entry| entry.since.elapsed() >= IDLE_TIMEOUT)
        .count();
    list.drain(..expired);
}

/// Rewrites the request's URI to origin form (`/path?query`), as HTTP/1.1 sends it, and
/// sets `Host`; returns the authority (the pool's key).
fn origin_form(request: &mut Request<Full<Bytes>>) -> Result<Authority, Error> {
    let uri = request.uri();
    let key = uri
        .authority()
        .cloned()
        .ok_or_else(|| Error::new(Kind::Build, "the URL has no host"))?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(key.as_str()).map_err(|e| Error::new(Kind::Build, e))?;
        request.headers_mut().insert(HOST, host);
    }
    Ok(key)
}

/// Writes the request and waits for the response head, polling the connection meanwhile.
async fn send_on(
    live: &mut Live,
    request: Request<Full<Bytes>>,
) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>> {
    let Live { sender, connection } = live;
    let mut response = std::pin::pin!(sender.try_send_request(request));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = response.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        // Once the connection has ended (and is dropped) the request fails, with the
        // request given back if it was never written.
        drive(connection, cx);
        response.as_mut().poll(cx)
    })
    .await
}

/// Polls `connection` once; drops it when it has ended. `false` if it is gone.
fn drive(connection: &mut Option<Connection>, cx: &mut Context<'_>) -> bool {
    let Some(open) = connection.as_mut() else {
        return false;
    };
    if Pin::new(open).poll(cx).is_pending() {
        return true;
    }
    *connection = None;
    false
}
