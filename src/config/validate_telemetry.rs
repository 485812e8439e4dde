//! `[logging]` and `[tracing]` -> `TelemetrySettings` (startup only: a reload does not change
//! how the running process logs or exports).

use toml::Spanned;

use super::problem::FileProblems;
use super::raw::{RawLogging, RawTracing};
use super::TelemetrySettings;
use crate::telemetry::LogFormat;

pub(super) fn telemetry_settings(
    logging: &RawLogging,
    tracing: &RawTracing,
    p: &mut FileProblems,
) -> TelemetrySettings {
    let log_format = logging.format.as_ref().and_then(|f| {
        let parsed = LogFormat::parse(f.get_ref());
        if parsed.is_none() {
            p.at(f.span(), "format must be \"text\" or \"json\"");
        }
        parsed
    });
    let otlp_endpoint = tracing
        .otlp_endpoint
        .as_ref()
        .and_then(|e| traces_url(e, p));
    let service_name = match &tracing.service_name {
        Some(n) if n.get_ref().trim().is_empty() => {
            p.at(n.span(), "service_name must not be empty");
            None
        }
        Some(n) => Some(n.get_ref().clone()),
        None => None,
    };
    let sample_ratio = match &tracing.sample_ratio {
        Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
            p.at(r.span(), "sample_ratio must be between 0 and 1");
            1.0
        }
        Some(r) => *r.get_ref(),
        None => 1.0,
    };
    TelemetrySettings {
        log_format,
        otlp_endpoint,
        service_name: service_name.unwrap_or_else(|| "deliberate".into()),
        sample_ratio,
    }
}

/// The traces URL of a base endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read: `/v1/traces`
/// appended to its path.
fn traces_url(endpoint: &Spanned<String>, p: &mut FileProblems) -> Option<String> {
    let text = endpoint.get_ref();
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(format!("{}/v1/traces", text.trim_end_matches('/')))
        }
        _ => {
            p.at(
                endpoint.span(),
                "otlp_endpoint must be an http(s) URL like \"http://127.0.0.1:4318\"",
            );
            None
        }
    }
}
