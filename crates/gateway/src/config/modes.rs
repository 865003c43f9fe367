//! `[config_modes]`: the configuration levels an API's features are set at (cluster, group,
//! machine), where a request names its mode, and the overrides the configuration declares;
//! and a route's `feature` and `config_modes`.

use super::did_you_mean;
use super::reader::{Problems, TableReader};
pub(crate) use crate::stages::config_mode::{ModeSettings, RouteModes};
use std::sync::Arc;

const SECTION: &[&str] = &[
    "levels",
    "query",
    "header",
    "default",
    "overrides",
    "how_to_enable",
];
const OVERRIDE: &[&str] = &["feature", "modes"];

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads `[config_modes]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Arc<ModeSettings> {
    let mut s = ModeSettings::default();
    let Some(t) = top.table(p, "config_modes", SECTION) else {
        return Arc::new(s);
    };
    if let Some(list) = t.strings(p, "levels") {
        let mut levels = Vec::new();
        for (l, span) in list {
            if !is_word(&l) || levels.contains(&l) {
                p.at(
                    span,
                    "config_modes.levels",
                    format!("`{l}` is not a mode name, or is listed twice"),
                )
                .expected =
                    Some("distinct words such as \"cluster\", \"group\", \"machine\"".into());
            } else {
                levels.push(l);
            }
        }
        if levels.is_empty() {
            p.at(t.span.clone(), "config_modes.levels", "is empty".into())
                .expected =
                Some("the levels, broadest first, e.g. [\"cluster\", \"machine\"]".into());
        } else {
            s.default = levels[0].clone();
            s.levels = levels;
        }
    }
    let query = t.string(p, "query").map(|(q, _)| q);
    let header = t.string(p, "header").map(|(h, _)| h);
    if let Some(h) = &header
        && http::HeaderName::from_bytes(h.as_bytes()).is_err()
    {
        p.at(
            t.get("header").map_or(t.span.clone(), |v| v.span()),
            "config_modes.header",
            format!("`{h}` is not a header name"),
        );
    }
    if query.is_some() || header.is_some() {
        s.query = query;
        s.header = header;
    }
    if let Some((d, span)) = t.string(p, "default") {
        if s.levels.contains(&d) {
            s.default = d;
        } else {
            let levels: Vec<&str> = s.levels.iter().map(String::as_str).collect();
            let problem = p.at(
                span,
                "config_modes.default",
                format!("`{d}` is not one of the levels"),
            );
            problem.suggestion = did_you_mean(&d, &levels);
            problem.expected = Some(format!("one of {}", levels.join(", ")));
        }
    }
    if let Some((h, span)) = t.string(p, "how_to_enable") {
        if h.trim().is_empty() {
            p.at(span, "config_modes.how_to_enable", "is empty".into())
                .expected = Some("a sentence such as \"Override settings from the UI for {feature} to configure through APIs.\"".into());
        } else {
            s.how_to_enable = h;
        }
    }
    for o in t.tables(p, "overrides", OVERRIDE) {
        let feature = o.string(p, "feature");
        if feature.is_none() && o.get("feature").is_none() {
            p.at(o.span.clone(), &o.key_path("feature"), "missing".into());
        }
        for (m, span) in o.strings(p, "modes").unwrap_or_default() {
            if !s.levels.contains(&m) {
                let levels: Vec<&str> = s.levels.iter().map(String::as_str).collect();
                let problem = p.at(
                    span,
                    &o.key_path("modes"),
                    format!("`{m}` is not one of the levels"),
                );
                problem.suggestion = did_you_mean(&m, &levels);
                problem.expected = Some(format!("some of {}", levels.join(", ")));
            } else if let Some((f, _)) = &feature {
                s.overrides.insert((f.clone(), m));
            }
        }
        o.finish(p);
    }
    t.finish(p);
    Arc::new(s)
}

/// A route's `feature` and `config_modes`, with the gateway's settings.
pub(super) fn read_route(
    r: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    settings: &Arc<ModeSettings>,
) -> Option<RouteModes> {
    let feature = r.string(p, "feature");
    let modes = r.strings(p, "config_modes");
    let Some((feature, span)) = feature else {
        if let Some(list) = modes {
            let at = list.first().map_or(r.span.clone(), |(_, s)| s.clone());
            p.at(
                at,
                &r.key_path("config_modes"),
                "is set but the route names no `feature`".into(),
            )
            .expected =
                Some("feature = \"sender_groups\" (the feature the route configures)".into());
        }
        return None;
    };
    if !is_word(&feature) {
        p.at(
            span,
            &r.key_path("feature"),
            format!("`{feature}` is not a feature name"),
        )
        .expected = Some("letters, digits, '_' or '-'".into());
    }
    let levels: Vec<&str> = settings.levels.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for (m, span) in modes.unwrap_or_default() {
        if levels.contains(&m.as_str()) {
            out.push(m);
        } else {
            let problem = p.at(
                span,
                &r.key_path("config_modes"),
                format!("`{m}` is not one of config_modes.levels"),
            );
            problem.suggestion = did_you_mean(&m, &levels);
            problem.expected = Some(format!("some of {}", levels.join(", ")));
        }
    }
    if out.is_empty() {
        out = settings.levels.clone();
    }
    Some(RouteModes {
        feature,
        modes: out,
        settings: settings.clone(),
    })
}
