//! `[traces.otlp]`: OTLP export, one span per request (in a gateway built with the `otlp`
//! cargo feature; the default build refuses the section and says how to get it).

use super::reader::{Problems, TableReader};
use super::subscriptions::WebhookConfig;
use std::path::Path;

const TRACES: &[&str] = &["otlp"];
const OTLP: &[&str] = &[
    "url",
    "secret_env",
    "secret_file",
    "service_name",
    "ca_file",
    "batch",
    "flush_every",
    "timeout",
    "max_retries",
    "retry_backoff",
    "max_backoff",
    "queue",
];

/// `[traces]`
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TracesConfig {
    /// `[traces.otlp]`, when spans are exported.
    pub otlp: Option<OtlpConfig>,
}

/// `[traces.otlp]`: where spans are posted (OTLP/HTTP with JSON bodies, e.g. an
/// OpenTelemetry collector's `http://127.0.0.1:4318/v1/traces`) and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector: URL, TLS trust, batch size, flush interval, timeout and retries.
    pub endpoint: WebhookConfig,
    /// The `service.name` resource attribute (default `candor`).
    pub service_name: String,
    /// Spans waiting for export, at most; past it a span is dropped and counted.
    pub queue: usize,
}

/// Reads `[traces]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>, dir: &Path) -> TracesConfig {
    let mut traces = TracesConfig::default();
    let Some(t) = top.table(p, "traces", TRACES) else {
        return traces;
    };
    if let Some(o) = t.table(p, "otlp", OTLP) {
        if !cfg!(feature = "otlp") {
            p.at(
                o.span.clone(),
                "traces.otlp",
                "this candor was built without OTLP export".into(),
            )
            .expected = Some(
                "a build with the `otlp` feature: cargo build --release --features otlp".into(),
            );
        }
        let service_name = o
            .string(p, "service_name")
            .map_or_else(|| "candor".to_owned(), |(s, _)| s);
        let queue = o.integer(p, "queue", 1, 1 << 20).unwrap_or(4096) as usize;
        if let Some(endpoint) = super::subscriptions::read_webhook(&o, p, dir, true) {
            traces.otlp = Some(OtlpConfig {
                endpoint,
                service_name,
                queue,
            });
        }
        o.finish(p);
    }
    t.finish(p);
    traces
}
