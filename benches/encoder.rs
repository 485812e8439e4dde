//! The second stage's cost: one `Encoder::embed` call on a full 512-token window, on the
//! default 128-token window and on a typical 60-token prompt, for both models.
//! Per-call p50/p99 over `CALLS` single calls first (criterion reports batch means, not
//! tails), then criterion's estimate. Needs `scripts/fetch-encoder.sh all`. Pin it to one
//! core:
//!
//!     taskset -c 1 cargo bench --bench encoder

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use deliberate::classify::encoder::Encoder;
use tokio::time::Instant;

const CALLS: usize = 100;

/// A typical question, about 60 tokens.
const TYPICAL: &str = "I have a list of 2 million integers and want the k largest. Is a heap \
    better than sorting here? Explain the time and memory complexity of both, and show \
    a short Python version of the faster one. Assume k is about 100.";

/// A long pasted-data prompt: more than 512 tokens, so the window is full.
fn long_prompt() -> String {
    let mut s = String::from("Here is our monthly sales table; find the month where growth ");
    s.push_str("turned negative and explain why the moving average lags it.\n");
    for m in 0..200 {
        s.push_str(&format!(
            "| 2024-{:02} | {} | {} |\n",
            m % 12 + 1,
            1000 + m * 37,
            m % 7
        ));
    }
    s
}

fn percentiles(encoder: &Encoder, text: &str) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..CALLS)
        .map(|_| {
            let t = Instant::now();
            black_box(encoder.embed(black_box(text)).expect("embeds"));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

fn encoder(c: &mut Criterion) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let long = long_prompt();
    let mut group = c.benchmark_group("encoder");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (model, dir) in [("e5", "encoder-e5"), ("minilm", "encoder")] {
        for (name, window, text) in [
            ("embed_512_token_window", 512, long.as_str()),
            ("embed_128_token_window", 128, long.as_str()),
            ("embed_60_token_prompt", 256, TYPICAL),
        ] {
            let e = Encoder::load_with_window(&models.join(dir), window)
                .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-encoder.sh all first"));
            let tokens = e.window_ids(text).len();
            let (p50, p99) = percentiles(&e, text);
            println!(
                "encoder/{model}/{name}: {tokens} tokens, p50 {p50:.2} ms, p99 {p99:.2} ms per call ({CALLS} calls)"
            );
            group.bench_function(format!("{model}/{name}"), |b| {
                b.iter(|| e.embed(black_box(text)).expect("embeds"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
