//! Calling Anthropic's Messages API: the HTTP side of the translation in `request.rs`
//! and `response.rs`.
//!
//! The OpenAI-shaped request is translated before sending; the answer (whole or streamed)
//! is translated back, so clients only ever see Chat Completions. Fields Anthropic has no
//! place for are reported through `ProviderAdjustments` into `x-deliberate-adjusted`.

use crate::upstream::client;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use super::request::{
    from_anthropic_error, from_anthropic_response, to_anthropic_request, StreamTranslator,
    TranslateError,
};
use crate::api::ChatRequest;
use crate::body::relay::{PendingStream, StreamChunk};
use crate::body::{sse_data, SSE_DONE};
use crate::config::ProviderKind;
use crate::error::{FailureKind, GatewayError, TimeoutKind};
use crate::sse::SseParser;
use crate::upstream::{
    auth, error_chain, expect_event_stream, read_body, redact, send_error, status_error, unix_now,
    url, CallContext, Events, MAX_UPSTREAM_EVENT_BYTES,
};

/// Anthropic requires `max_tokens`; this is used when the client set none.
const DEFAULT_MAX_TOKENS: u32 = 8192;

/// Request fields a provider translation had to drop, for `x-deliberate-adjusted`.
#[derive(Debug, Clone, Default)]
pub struct ProviderAdjustments(pub Vec<String>);

fn translate_error(ctx: &CallContext, e: TranslateError) -> GatewayError {
    if e.is_upstream() {
        let secrets = redact::provider_secrets(&ctx.deployment.provider);
        GatewayError::UpstreamInvalid {
            provider: ctx.provider(),
            message: redact::redact(&e.to_string(), &secrets),
        }
    } else {
        GatewayError::invalid(e.to_string(), e.param().map(str::to_string))
    }
}

fn build(
    client: &client::Client,
    ctx: &CallContext,
    request: &ChatRequest,
) -> Result<(client::RequestBuilder, Vec<String>), GatewayError> {
    let translated = to_anthropic_request(
        &request.body,
        &ctx.deployment.upstream_model,
        DEFAULT_MAX_TOKENS,
    )
    .map_err(|e| translate_error(ctx, e))?;
    let version = match &ctx.deployment.provider.kind {
        ProviderKind::Anthropic { version } => version.as_str(),
        _ => "2023-06-01",
    };
    let body = serde_json::to_vec(&translated.body).expect("a JSON value serializes");
    let mut builder = client
        .post(url(&ctx.deployment.provider)?)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", version)
        .body(body);
    if ctx.deployment.provider.send_trace_context {
        for (name, value) in crate::telemetry::upstream_headers(ctx.trace.as_ref()) {
            builder = builder.header(name, value);
        }
    }
    if let Some((name, value)) = auth(&ctx.deployment.provider)? {
        builder = builder.header(name, value);
    }
    let dropped = translated
        .dropped
        .into_iter()
        .map(|f| format!("dropped {f}"))
        .collect();
    Ok((builder, dropped))
}

pub(in crate::upstream) async fn complete(
    client: &client::Client,
    ctx: &CallContext,
    request: &ChatRequest,
) -> Result<(Bytes, ProviderAdjustments), GatewayError> {
    let result = async {
        let (builder, dropped) = build(client, ctx, request)?;
        let response = tokio::time::timeout_at(ctx.total_deadline(), builder.send(client))
            .await
            .map_err(|_| ctx.timeout(TimeoutKind::Total, ctx.timeouts.total))?
            .map_err(|e| send_error(ctx, e))?;
        if !response.status().is_success() {
            return Err(Box::pin(status_error(ctx, response, from_anthropic_error)).await);
        }
        let bytes = read_body(ctx, response).await?;
        let message: Value =
            serde_json::from_slice(&bytes).map_err(|e| GatewayError::UpstreamInvalid {
                provider: ctx.provider(),
                message: format!("response is not JSON: {e}"),
            })?;
        let completion =
            from_anthropic_response(&message, &ctx.deployment.upstream_model, unix_now())
                .map_err(|e| translate_error(ctx, e))?;
        if let Some(usage) = completion.get("usage") {
            ctx.recorder.usage(usage);
        }
        let json = serde_json::to_vec(&completion).expect("a JSON value serializes");
        Ok((Bytes::from(json), ProviderAdjustments(dropped)))
    }
    .await;
    // Not recorded as the outcome here: the retry loop decides whether this error is final.
    result
}

pub(in crate::upstream) fn stream(
    client: client::Client,
    ctx: &CallContext,
    request: &ChatRequest,
) -> Result<(PendingStream, ProviderAdjustments), GatewayError> {
    let (builder, dropped) = build(&client, ctx, request)?;
    let include_usage = request.include_usage();
    let ctx = ctx.clone();
    let pending: PendingStream = Box::pin(async move {
        let response = builder
            .send(&client)
            .await
            .map_err(|e| send_error(&ctx, e))?;
        if !response.status().is_success() {
            return Err(Box::pin(status_error(&ctx, response, from_anthropic_error)).await);
        }
        expect_event_stream(&ctx, &response)?;
        let translator =
            StreamTranslator::new(&ctx.deployment.upstream_model, unix_now(), include_usage);
        let events: Events = Box::pin(TranslatedStream {
            inner: Box::pin(response.bytes_stream()),
            parser: SseParser::new(MAX_UPSTREAM_EVENT_BYTES),
            translator,
            ended: false,
            failed_after: None,
            ctx,
        });
        Ok(events)
    });
    Ok((pending, ProviderAdjustments(dropped)))
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, client::Error>> + Send>>;

/// Anthropic SSE in, OpenAI `chat.completion.chunk` SSE out, one upstream read at a time.
struct TranslatedStream {
    inner: ByteStream,
    parser: SseParser,
    translator: StreamTranslator,
    ended: bool,
    /// A failure that came after good events in the same read: they go out first.
    failed_after: Option<GatewayError>,
    ctx: CallContext,
}

impl TranslatedStream {
    /// `message` may quote the provider (an `error` event): it is redacted.
    fn upstream_error(&self, message: String) -> GatewayError {
        let secrets = redact::provider_secrets(&self.ctx.deployment.provider);
        GatewayError::UpstreamUnavailable {
            provider: self.ctx.provider(),
            kind: FailureKind::Stream,
            message: redact::redact(&message, &secrets),
        }
    }

    /// Translates every complete event buffered so far into client bytes; also returns how
    /// many OpenAI events they are. A failure after good events is kept for the next poll.
    fn drain(&mut self) -> Result<(Vec<u8>, u64), GatewayError> {
        let mut out = Vec::new();
        let mut events = 0u64;
        loop {
            let translated = match self.parser.next_event() {
                Ok(Some(event)) => self.translator.on_event(&event).map_err(|e| match e {
                    TranslateError::UpstreamStreamError(m) => self.upstream_error(m),
                    other => translate_error(&self.ctx, other),
                }),
                Ok(None) => break,
                Err(e) => Err(self.upstream_error(format!("bad event stream: {e}"))),
            };
            let chunks = match translated {
                Ok(chunks) => chunks,
                Err(error) if out.is_empty() => return Err(error),
                Err(error) => {
                    self.failed_after = Some(error);
                    break;
                }
            };
            for chunk in chunks {
                out.extend_from_slice(&sse_data(
                    &serde_json::to_vec(&chunk).expect("a JSON value serializes"),
                ));
                events = events.saturating_add(1);
            }
            if self.translator.finished() {
                if let Some(usage) = self.translator.usage() {
                    self.ctx.recorder.usage(&usage);
                }
                out.extend_from_slice(SSE_DONE);
                events = events.saturating_add(1);
                self.ended = true;
                break;
            }
        }
        Ok((out, events))
    }
}

impl Stream for TranslatedStream {
    type Item = Result<StreamChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(error) = this.failed_after.take() {
                this.ended = true;
                return Poll::Ready(Some(Err(error)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.parser.push(&bytes);
                    match this.drain() {
                        Ok((out, _)) if out.is_empty() => continue,
                        Ok((out, events)) => {
                            return Poll::Ready(Some(Ok(StreamChunk::events(
                                Bytes::from(out),
                                events,
                            ))))
                        }
                        Err(e) => {
                            this.ended = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    let message = format!("stream broke: {}", error_chain(&e));
                    return Poll::Ready(Some(Err(this.upstream_error(message))));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    let message = "stream ended before `message_stop`".to_string();
                    return Poll::Ready(Some(Err(this.upstream_error(message))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
