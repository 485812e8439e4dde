//! Per-chunk cost of relaying a stream (issue 12): every output token of every streaming
//! answer goes through the SSE parser (the provider's bytes cut into events) and the
//! client-facing `SseRelay` (deadlines, keep-alives, first-token and data accounting).
//! Figures are per chunk; `../shared/bench/run.sh` measures the whole gateway.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deliberate::body::relay::{EventStream, RelaySource, SseRelay, StreamChunk, StreamTiming};
use deliberate::classify::Tier;
use deliberate::metrics::Metrics;
use deliberate::record::{CallLabels, CallRecorder};
use deliberate::sse::SseParser;
use futures_util::stream;
use http_body_util::BodyExt;
use tokio::time::Instant;

/// One typical streamed token, as OpenAI-compatible servers send it.
const CHUNK: &[u8] = b"data: {\"id\":\"chatcmpl-8x9Yq\",\"object\":\"chat.completion.chunk\",\
\"created\":1733580000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\
\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

const CHUNKS_PER_STREAM: u64 = 100;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_parser");
    group.throughput(Throughput::Elements(1));
    let mut parser = SseParser::new(1 << 20);
    group.bench_function("one_chunk_event", |b| {
        b.iter(|| {
            parser.push(black_box(CHUNK));
            black_box(parser.next_event().ok().flatten())
        })
    });
    group.finish();
}

fn recorder() -> Arc<CallRecorder> {
    let labels = CallLabels {
        tenant: Arc::from("bench"),
        tier: Tier::Fast,
        model: Arc::from("mock-fast"),
        provider: Arc::from("mock"),
    };
    Arc::new(CallRecorder::new(Metrics::new(), labels, Instant::now()))
}

fn relay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let chunk = Bytes::from_static(CHUNK);
    let mut group = c.benchmark_group("sse_relay");
    group.throughput(Throughput::Elements(CHUNKS_PER_STREAM));
    group.bench_function("stream_of_100_chunks", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let one = chunk.clone();
                let chunks =
                    (0..CHUNKS_PER_STREAM).map(move |_| Ok(StreamChunk::data(one.clone())));
                let events: EventStream = Box::pin(stream::iter(chunks));
                let now = Instant::now();
                let timing = StreamTiming {
                    first_token_deadline: now + Duration::from_secs(30),
                    total_deadline: now + Duration::from_secs(120),
                    idle_timeout: Duration::from_secs(30),
                    keepalive_interval: Duration::from_secs(10),
                };
                let mut body = SseRelay::new(RelaySource::Streaming(events), timing, recorder());
                let mut relayed = 0usize;
                while let Some(frame) = body.frame().await {
                    relayed += frame
                        .map(|f| f.into_data().map_or(0, |d| d.len()))
                        .unwrap_or(0);
                }
                black_box(relayed)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, parse, relay);
criterion_main!(benches);
