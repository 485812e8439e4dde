//! The streaming half of the `/v1/messages` answer: a body wrapper that reads the chat SSE
//! body and writes Anthropic's events ([`EventTranslator`]) frame by frame, never holding
//! content back. The gateway's keep-alive comments become Anthropic `ping` events; a body
//! error or a stream cut before `[DONE]` becomes one final `error` event, after which the
//! chat body is let go.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};

use super::stream::EventTranslator;
use crate::body::{Body, BoxError, SSE_KEEPALIVE};
use crate::sse::SseParser;

/// Largest single chat chunk accepted (the relay's own bound on upstream events).
const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The body wrapper: the chat SSE body in, Anthropic events out.
pub struct MessagesEvents {
    inner: Option<Body>,
    parser: SseParser,
    translator: EventTranslator,
}

impl MessagesEvents {
    /// `model`: the model `message_start` names.
    pub fn new(inner: Body, model: String) -> Self {
        MessagesEvents {
            inner: Some(inner),
            parser: SseParser::new(MAX_CHUNK_BYTES),
            translator: EventTranslator::for_model(model),
        }
    }

    /// Translates the events parsed so far.
    fn drain(&mut self, out: &mut Vec<u8>) {
        loop {
            match self.parser.next_event() {
                Ok(Some(event)) => self.translator.on_data(&event.data, out),
                Ok(None) => return,
                Err(e) => return self.translator.fail_with(out, &e.to_string()),
            }
        }
    }
}

impl HttpBody for MessagesEvents {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let mut out = Vec::new();
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.as_ref() == SSE_KEEPALIVE {
                        this.translator.ping(&mut out);
                    } else {
                        this.parser.push(&data);
                        this.drain(&mut out);
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.drain(&mut out);
                    this.translator.fail_with(&mut out, &e.to_string());
                }
                Poll::Ready(None) => {
                    this.drain(&mut out);
                    this.translator.on_end(&mut out);
                }
            }
            if this.translator.finished() {
                // Nothing follows the final event: the chat stream is let go.
                this.inner = None;
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn chat_body(pieces: Vec<Result<&'static [u8], &'static str>>) -> Body {
        let frames = pieces.into_iter().map(|p| {
            p.map(|b| Frame::data(Bytes::from_static(b)))
                .map_err(|e| -> BoxError { e.into() })
        });
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    async fn collect(body: Body) -> String {
        let bytes = MessagesEvents::new(body, "m".into())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn names(sse: &str) -> Vec<&str> {
        sse.lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect()
    }

    #[tokio::test]
    async fn keep_alives_become_pings_and_frames_are_translated_as_they_come() {
        let out = collect(chat_body(vec![
            Ok(SSE_KEEPALIVE),
            Ok(b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n"),
            Ok(b"\ndata: [DONE]\n\n"),
        ]))
        .await;
        assert_eq!(
            names(&out),
            [
                "ping",
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[tokio::test]
    async fn a_body_error_is_one_final_error_event() {
        let out = collect(chat_body(vec![
            Ok(b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"),
            Err("connection reset"),
            Ok(b"data: [DONE]\n\n"),
        ]))
        .await;
        let names = names(&out);
        assert_eq!(names.last(), Some(&"error"));
        assert_eq!(names.iter().filter(|n| **n == "error").count(), 1);
        assert!(out.contains("connection reset"), "{out}");
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_ends_with_an_error_event() {
        let out = collect(chat_body(vec![Ok(
            b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        )]))
        .await;
        assert_eq!(names(&out).last(), Some(&"error"));
    }
}
