//! OTLP export (the `otlp` cargo feature): one span per request — the gateway's own span,
//! child of the client's when its `traceparent` was continued, parent of what the upstream
//! records — batched and posted as OTLP/HTTP JSON to `[traces.otlp] url`.
//!
//! A request never waits on the collector: its span goes into a bounded queue
//! (`[traces.otlp] queue`) or is dropped and counted when the queue is full; a batch the
//! collector does not take after its retries is dropped and counted too (`/stats`
//! `traces`), and said in the log at most once a minute.

use crate::config::OtlpConfig;
use crate::events::sinks::{Webhook, backoff};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// One request's span.
#[derive(Debug)]
pub(crate) struct Span {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// The client's span, when its trace was continued.
    pub(crate) parent: Option<[u8; 8]>,
    /// `GET route` (`GET` and `unrouted` for a request no route took).
    pub(crate) name: String,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) status: u16,
    /// `http.request.method`, `url.path`, `candor.route`, `candor.code`,
    /// `candor.request_id`, `client.address`.
    pub(crate) attributes: Vec<(&'static str, String)>,
}

/// Counters of the export.
#[derive(Debug, Default)]
pub(crate) struct TraceStats {
    /// Spans the collector took.
    pub(crate) exported: AtomicU64,
    /// Spans dropped: the queue was full, or the collector did not take their batch.
    pub(crate) dropped: AtomicU64,
}

struct Exporter {
    config: OtlpConfig,
    tx: mpsc::Sender<Span>,
}

/// The running export, replaced when a reload changes `[traces.otlp]`.
#[derive(Default)]
pub(crate) struct Traces {
    current: arc_swap::ArcSwapOption<Exporter>,
    pub(crate) stats: Arc<TraceStats>,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Traces {
    /// Starts, changes or stops the export as `config` says (on the runtime of the caller).
    pub(crate) fn apply(&self, config: Option<&OtlpConfig>) {
        let running = self.current.load();
        if running.as_ref().map(|e| &e.config) == config {
            return;
        }
        let Some(config) = config else {
            // The exporter's task ends with its last sender, after sending what it holds.
            self.current.store(None);
            return;
        };
        let (tx, rx) = mpsc::channel(config.queue);
        tokio::spawn(export(rx, config.clone(), self.stats.clone()));
        self.current.store(Some(Arc::new(Exporter {
            config: config.clone(),
            tx,
        })));
    }

    /// Whether spans are exported.
    pub(crate) fn on(&self) -> bool {
        self.current.load().is_some()
    }

    /// Queues `span` for export, or counts it dropped when the queue is full.
    pub(crate) fn record(&self, span: Span) {
        if let Some(e) = self.current.load().as_ref()
            && e.tx.try_send(span).is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn export(mut rx: mpsc::Receiver<Span>, config: OtlpConfig, stats: Arc<TraceStats>) {
    let webhook = Webhook::new(&config.endpoint);
    let (max, every) = (config.endpoint.batch, config.endpoint.flush_every);
    let mut last_warning: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + every;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                _ => break,
            }
        }
        let body = bytes::Bytes::from(encode(&batch, &config.service_name));
        let mut attempt = 0;
        let result = loop {
            match webhook.post(body.clone()).await {
                Ok(()) => break Ok(()),
                Err(e) if attempt >= config.endpoint.max_retries => break Err(e),
                Err(_) => {
                    tokio::time::sleep(backoff(
                        attempt,
                        config.endpoint.retry_backoff,
                        config.endpoint.max_backoff,
                    ))
                    .await;
                    attempt += 1;
                }
            }
        };
        let n = batch.len() as u64;
        match result {
            Ok(()) => stats.exported.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(target: "candor::traces", error = %e, spans = n, "the OTLP collector did not take a batch of spans; they are dropped (counted in /stats traces.dropped)");
                }
                stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    crate::http::trace::hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// The OTLP/HTTP JSON body of `spans` (ids in hex, times as strings of nanoseconds, as
/// the protocol's JSON mapping says).
fn encode(spans: &[Span], service: &str) -> Vec<u8> {
    use serde_json::json;
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|s| {
            let mut attributes: Vec<serde_json::Value> = s
                .attributes
                .iter()
                .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
                .collect();
            attributes.push(json!({
                "key": "http.response.status_code",
                "value": {"intValue": s.status.to_string()},
            }));
            let mut span = json!({
                "traceId": hex(&s.trace_id),
                "spanId": hex(&s.span_id),
                "name": s.name,
                // SPAN_KIND_SERVER
                "kind": 2,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": attributes,
                // STATUS_CODE_ERROR for a 5xx (the server's own failure), else unset.
                "status": if s.status >= 500 { json!({"code": 2}) } else { json!({}) },
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = hex(&p).into();
            }
            span
        })
        .collect();
    serde_json::to_vec(&json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "candor", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_encoded_as_otlp_json() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_795_860_005_000_000_001);
        let span = Span {
            trace_id: [0x4b; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent: Some([9; 8]),
            name: "GET devices".into(),
            start,
            end: start + Duration::from_millis(3),
            status: 502,
            attributes: vec![("candor.route", "devices".into())],
        };
        let v: serde_json::Value = serde_json::from_slice(&encode(&[span], "edge")).unwrap();
        let r = &v["resourceSpans"][0];
        assert_eq!(
            r["resource"]["attributes"][0]["value"]["stringValue"],
            "edge"
        );
        let s = &r["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4b".repeat(16));
        assert_eq!(s["spanId"], "0102030405060708");
        assert_eq!(s["parentSpanId"], "0909090909090909");
        assert_eq!(s["startTimeUnixNano"], "1795860005000000001");
        assert_eq!(s["endTimeUnixNano"], "1795860005003000001");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["attributes"][1]["value"]["intValue"], "502");
    }
}
