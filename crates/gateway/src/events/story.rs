//! The story of one request, from the event log: when, from where, each stage's decision
//! with its facts, every upstream try, the answer sent, and for an error the catalog entry's
//! explanation and checklist. `candor explain` prints it; the admin API's `/requests/{id}`
//! answers it as JSON.

use super::EventReader;
use candor_catalog::Catalog;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Looks request `id` up: its story, or a one-line answer saying it is not there and how
/// far back the log goes.
pub fn find(
    reader: &EventReader,
    id: &str,
    catalog: &Catalog,
    base_url: &str,
) -> Result<Value, String> {
    let events = reader.by_request(id)?;
    if events.is_empty() {
        return Err(match reader.oldest() {
            Some(ms) => format!(
                "no request {id} in the event log, which goes back to {} (older files are deleted after events.keep_for)",
                crate::time::rfc3339_millis(ms)
            ),
            None => format!("no request {id} in the event log, which is empty"),
        });
    }
    Ok(tell(id, events, catalog, base_url))
}

/// The story of request `id` from its events.
///
/// A client may choose its request ids (`X-Request-Id`) and send one with several requests:
/// the newest is told, and the others are listed (`other_requests`), so that none hides
/// behind another.
pub fn tell(id: &str, events: Vec<Value>, catalog: &Catalog, base_url: &str) -> Value {
    let is_request = |e: &&Value| {
        matches!(
            e["type"].as_str(),
            Some("request.completed" | "request.rejected")
        )
    };
    let requests: Vec<&Value> = events.iter().filter(is_request).collect();
    let main = requests.last().map_or(Value::Null, |e| (*e).clone());
    let other_requests: Vec<Value> = requests[..requests.len().saturating_sub(1)]
        .iter()
        .map(|e| {
            json!({
                "time": e["time"],
                "method": e["facts"]["method"],
                "path": e["facts"]["path"],
                "status": e["facts"]["status"],
                "code": e["code"],
            })
        })
        .collect();
    let facts = &main["facts"];
    let trail = facts["trail"].as_array().cloned().unwrap_or_default();
    let tries: Vec<Value> = trail
        .iter()
        .filter(|s| s["stage"] == "forward")
        .cloned()
        .collect();
    let code = main["code"].as_str().filter(|c| !c.is_empty());
    let error = code.and_then(|c| {
        let e = catalog.get(c)?;
        Some(json!({
            "code": e.code,
            "status": e.status,
            "title": e.title,
            "explanation": e.explanation,
            "checklist": e.checklist,
            "retry": e.retry.as_str(),
            "docs": facts["docs"].as_str().map_or_else(
                || format!("{}/errors/{}", base_url.trim_end_matches('/'), e.code),
                str::to_owned,
            ),
        }))
    });
    json!({
        "request_id": id,
        "time": main["time"],
        "type": main["type"],
        "method": facts["method"],
        "path": facts["path"],
        "client": facts["client"],
        "route": main["route"],
        "trace_id": main["trace_id"],
        "status": facts["status"],
        "code": code,
        "source": facts["source"],
        "ended_by": facts["ended_by"],
        "duration_us": facts["duration_us"],
        "upstream_us": facts["upstream_us"],
        "config_generation": facts["config_generation"],
        "other_requests": other_requests,
        "stages": trail,
        "upstream_tries": tries,
        "error": error,
        "events": events,
    })
}

/// The story as text for a terminal.
pub fn text(story: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let _ = writeln!(
        out,
        "request {}  at {}",
        s(&story["request_id"]),
        s(&story["time"])
    );
    let _ = writeln!(
        out,
        "  {} {} from {}{}",
        s(&story["method"]),
        s(&story["path"]),
        s(&story["client"]),
        story["route"]
            .as_str()
            .map_or(String::new(), |r| format!(", route {r}"))
    );
    let answer = match story["code"].as_str() {
        Some(c) => format!("{} {c}", s(&story["status"])),
        None => s(&story["status"]),
    };
    let took = story["duration_us"].as_u64().map_or(String::new(), |us| {
        let upstream = story["upstream_us"].as_u64().map_or(String::new(), |u| {
            format!(", {:.1} ms of it on the upstream", u as f64 / 1000.0)
        });
        format!(" after {:.1} ms{upstream}", us as f64 / 1000.0)
    });
    let blamed = story["source"].as_str().map_or(String::new(), |b| {
        let who = match b {
            "downstream" => "the client's request",
            "upstream" => "the upstream",
            "internal" => "the gateway",
            other => other,
        };
        format!(" (caused by {who})")
    });
    let _ = writeln!(out, "  answered {answer}{took}{blamed}");
    if let Some(g) = story["config_generation"].as_u64() {
        let _ = writeln!(out, "  configuration generation {g}");
    }
    if let Some(t) = story["trace_id"].as_str() {
        let _ = writeln!(out, "  trace {t}");
    }
    if let Some(others) = story["other_requests"].as_array().filter(|o| !o.is_empty()) {
        let _ = writeln!(
            out,
            "\nnote: {} other request(s) carried this id (a client may choose its X-Request-Id); this is the newest. The others:",
            others.len()
        );
        for o in others.iter().take(20) {
            let _ = writeln!(
                out,
                "  {} {} {} {} {}",
                s(&o["time"]),
                s(&o["method"]),
                s(&o["path"]),
                s(&o["status"]),
                o["code"].as_str().unwrap_or("")
            );
        }
        if others.len() > 20 {
            let _ = writeln!(
                out,
                "  … and {} more (--json lists them all)",
                others.len() - 20
            );
        }
    }
    let _ = writeln!(out, "\nstages:");
    for st in story["stages"].as_array().into_iter().flatten() {
        let facts = st["facts"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", s(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<12} {:<8} {:<24} {facts}",
            s(&st["stage"]),
            s(&st["outcome"]),
            st["code"].as_str().unwrap_or("")
        );
    }
    let tries = story["upstream_tries"].as_array().map_or(0, Vec::len);
    if tries > 0 {
        let _ = writeln!(out, "\nupstream tries: {tries} (the forward lines above)");
    }
    if let Some(e) = story["error"].as_object() {
        let _ = writeln!(out, "\n{} — {}", s(&e["code"]), s(&e["title"]));
        let _ = writeln!(out, "  {}", s(&e["explanation"]));
        let _ = writeln!(out, "  retry: {}", s(&e["retry"]));
        if let Some(items) = e["checklist"].as_array().filter(|c| !c.is_empty()) {
            let _ = writeln!(out, "  checklist:");
            for item in items {
                let _ = writeln!(out, "    - {}", s(item));
            }
        }
        let _ = writeln!(out, "  docs: {}", s(&e["docs"]));
    }
    let others: Vec<&Value> = story["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            !matches!(
                e["type"].as_str(),
                Some("request.completed" | "request.rejected")
            )
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nother events of this request:");
        for e in others {
            let _ = writeln!(
                out,
                "  {} {} {} {}",
                s(&e["time"]),
                s(&e["type"]),
                e["code"].as_str().unwrap_or(""),
                e["facts"]
            );
        }
    }
    out
}
