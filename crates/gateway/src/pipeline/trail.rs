//! The request trail: each stage records its decision (stage, outcome, catalog code and the
//! facts behind it, never a secret). It is logged as one structured record per request and
//! is the material of the request's event and of `candor explain`.

use serde::Serialize;

/// One stage's decision.
#[derive(Debug, Serialize)]
pub(crate) struct TrailEvent {
    /// Pipeline stage: transport, parse, route, forward, respond...
    pub stage: &'static str,
    /// What it decided: pass, reject, served, ...
    pub outcome: &'static str,
    /// The catalog code, when the decision was an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The facts behind the decision (a JSON object: each name once, the last value).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "as_object")]
    pub facts: Vec<(&'static str, String)>,
}

fn as_object<S: serde::Serializer>(
    facts: &[(&'static str, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(facts.len()))?;
    for (i, (k, v)) in facts.iter().enumerate() {
        // A name given twice keeps its last value (a JSON object's names are unique).
        if facts[i + 1..].iter().all(|(later, _)| later != k) {
            m.serialize_entry(k, v)?;
        }
    }
    m.end()
}

/// The decisions taken for one request, in order.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(crate) struct Trail {
    events: Vec<TrailEvent>,
}

impl Default for Trail {
    /// An empty trail with room for a proxied request's usual events (one allocation).
    fn default() -> Self {
        Trail {
            events: Vec::with_capacity(8),
        }
    }
}

impl Trail {
    /// Records that `stage` let the request through.
    pub(crate) fn pass(&mut self, stage: &'static str) {
        self.record(stage, "pass", None, Vec::new());
    }

    /// Records a decision.
    pub(crate) fn record(
        &mut self,
        stage: &'static str,
        outcome: &'static str,
        code: Option<&'static str>,
        facts: Vec<(&'static str, String)>,
    ) {
        self.events.push(TrailEvent {
            stage,
            outcome,
            code,
            facts,
        });
    }

    /// The events so far.
    pub(crate) fn events(&self) -> &[TrailEvent] {
        &self.events
    }

    /// The trail as JSON text.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.events).unwrap_or_else(|_| "[]".into())
    }
}
