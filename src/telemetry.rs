//! Logs and traces for `deliberate serve`: the subscriber (text or JSON lines on stderr), the
//! optional OpenTelemetry export (OTLP over HTTP, protobuf), and W3C trace context in and out.
//!
//! Tracing costs nearly nothing when it is off: the spans of the request path below the
//! request span are at debug level, so with the default `info` log filter and no exporter
//! their callsites are disabled and never allocate. With an exporter, a per-layer filter
//! sends this crate's spans (debug and up) to OpenTelemetry whatever the log level, and
//! nothing from other crates (the exporter's own HTTP client would otherwise trace itself).
//!
//! Trace context: a client's valid `traceparent` (and `tracestate`) become the parent of the
//! request span when tracing is on; upstream calls carry the context of their attempt span
//! then, or the client's own context unchanged when tracing is off (`upstream_headers`).

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Where and how spans are exported; `None` endpoint: from the standard `OTEL_EXPORTER_OTLP_*`
/// environment variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The full OTLP/HTTP traces URL (`.../v1/traces`).
    pub endpoint: Option<String>,
    pub service_name: String,
    /// Share of new traces kept; a client's sampled flag is followed (parent-based).
    pub sample_ratio: f64,
}

/// The standard variables that turn the export on without a `[tracing]` section.
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans go to an OpenTelemetry exporter in this process.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Keeps the exporter; `shutdown` sends the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("deliberate: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber: logs filtered by `DELIBERATE_LOG`, else `RUST_LOG`, else
/// `info`; and, with `traces`, the OpenTelemetry layer.
pub fn init(format: LogFormat, traces: Option<&TraceExport>) -> Result<Telemetry, String> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("DELIBERATE_LOG")
            .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    // Colours only for a person at a terminal, never in log files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let provider = traces.map(provider).transpose()?;
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("deliberate"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("deliberate", tracing::Level::DEBUG)
                    // Log lines only, written outside any span.
                    .with_target(crate::layers::access_log::TARGET, LevelFilter::OFF),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| e.to_string())?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

fn provider(export: &TraceExport) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    // The exporter's HTTP client uses rustls like the provider clients.
    crate::install_crypto_provider();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(endpoint) = &export.endpoint {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(export.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            export.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Request extension (request span layer): the W3C trace context the client sent, if valid.
#[derive(Debug, Clone)]
pub struct ClientTrace(pub SpanContext);

impl ClientTrace {
    /// The client's `traceparent`/`tracestate`, if it sent a valid one (an invalid one is
    /// ignored, as the W3C spec asks).
    pub fn from_headers(headers: &HeaderMap) -> Option<ClientTrace> {
        if !headers.contains_key(TRACEPARENT) {
            return None;
        }
        let cx = TraceContextPropagator::new().extract(&Headers(headers));
        let span = cx.span().span_context().clone();
        span.is_valid().then_some(ClientTrace(span))
    }
}

const TRACEPARENT: &str = "traceparent";

/// The trace id of the current request: its span's when exporting, else the client's.
pub fn trace_id(span: &tracing::Span, client: Option<&ClientTrace>) -> Option<TraceId> {
    if exporting() && !span.is_disabled() {
        let id = span.context().span().span_context().trace_id();
        if id != TraceId::INVALID {
            return Some(id);
        }
    }
    client.map(|c| c.0.trace_id())
}

/// Makes `client` the parent of `span` (only when exporting; otherwise there is no span to
/// parent).
pub fn adopt(span: &tracing::Span, client: Option<&ClientTrace>) {
    if let (true, Some(client)) = (exporting(), client) {
        let cx = Context::new().with_remote_span_context(client.0.clone());
        let _ = span.set_parent(cx);
    }
}

/// `traceparent`/`tracestate` for an upstream call made in the current span: the attempt's
/// own context when exporting, else the client's context passed on unchanged.
pub fn upstream_headers(client: Option<&ClientTrace>) -> Vec<(HeaderName, HeaderValue)> {
    let cx = if exporting() {
        tracing::Span::current().context()
    } else if let Some(client) = client {
        Context::new().with_remote_span_context(client.0.clone())
    } else {
        return Vec::new();
    };
    let mut out = Vec::new();
    TraceContextPropagator::new().inject_context(&cx, &mut Out(&mut out));
    out
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Out<'a>(&'a mut Vec<(HeaderName, HeaderValue)>);

impl Injector for Out<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is not sent.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.push((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_and_its_tracestate_pass_through_unchanged_when_not_exporting() {
        let client = ClientTrace::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "vendor=abc"),
        ]))
        .expect("valid");
        let out = upstream_headers(Some(&client));
        let get = |n: &str| out.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("traceparent").unwrap(), PARENT);
        assert_eq!(get("tracestate").unwrap(), "vendor=abc");
    }

    #[test]
    fn malformed_or_zero_traceparents_are_ignored() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "garbage",
        ] {
            assert!(
                ClientTrace::from_headers(&headers(&[("traceparent", bad)])).is_none(),
                "{bad}"
            );
        }
        assert!(ClientTrace::from_headers(&HeaderMap::new()).is_none());
        assert!(upstream_headers(None).is_empty());
    }
}
