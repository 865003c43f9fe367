//! Configuration-mode stage: an API that configures features at several levels (AsyncOS:
//! cluster, group, machine) takes a request for a feature at a level below the first only
//! once the feature's settings are overridden there; otherwise `unsupported_for_mode`,
//! naming the feature and how to enable it.
//!
//! The request names its mode in a query parameter or a header (`[config_modes]`); a route
//! names the feature it configures and the modes it supports. Overrides come from the
//! configuration and from the admin API (`/modes`, kept in the identity store).

use crate::error::GatewayError;
use crate::identity::store::Identity;
use crate::pipeline::context::{Flow, RequestCtx};
use candor_catalog::{FieldError, codes};
use std::collections::BTreeSet;

/// `[config_modes]`: the levels, where requests name theirs, and the overrides the
/// configuration declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeSettings {
    /// The levels, broadest first; the first needs no override.
    pub levels: Vec<String>,
    /// The query parameter naming the mode, if requests name it there.
    pub query: Option<String>,
    /// The header naming the mode, if requests name it there.
    pub header: Option<String>,
    /// The mode of a request that names none.
    pub default: String,
    /// `(feature, mode)` overrides the configuration declares.
    pub overrides: BTreeSet<(String, String)>,
    /// How to enable a feature in a mode, in the API's words: `{feature}` and `{mode}` are
    /// replaced.
    pub how_to_enable: String,
}

impl Default for ModeSettings {
    fn default() -> Self {
        ModeSettings {
            levels: vec!["cluster".into(), "group".into(), "machine".into()],
            query: Some("mode".into()),
            header: None,
            default: "cluster".into(),
            overrides: BTreeSet::new(),
            how_to_enable: DEFAULT_HOW_TO_ENABLE.into(),
        }
    }
}

/// The default `how_to_enable`.
pub(crate) const DEFAULT_HOW_TO_ENABLE: &str =
    "Override the settings of {feature} for {mode} mode to configure it through the API.";

impl ModeSettings {
    /// The level that needs no override.
    pub(crate) fn base(&self) -> &str {
        self.levels.first().map_or("", String::as_str)
    }

    /// Where requests name their mode, in words.
    pub(crate) fn source_text(&self) -> String {
        match (&self.query, &self.header) {
            (Some(q), Some(h)) => format!("the {q} query parameter or the {h} header"),
            (Some(q), None) => format!("the {q} query parameter"),
            (None, Some(h)) => format!("the {h} header"),
            (None, None) => "nowhere".into(),
        }
    }

    /// Whether `feature` takes requests in `mode`: the base level always, another level
    /// once the configuration or the admin API overrides the feature there.
    pub(crate) fn enabled(
        &self,
        feature: &str,
        mode: &str,
        stored: &BTreeSet<(String, String)>,
    ) -> bool {
        let key = (feature.to_owned(), mode.to_owned());
        mode == self.base() || self.overrides.contains(&key) || stored.contains(&key)
    }
}

/// A route's part: the feature it configures and the modes it supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteModes {
    /// The feature, e.g. `sender_groups`.
    pub feature: String,
    /// The modes the route supports (every level when the route does not say).
    pub modes: Vec<String>,
    /// The gateway's `[config_modes]`.
    pub settings: std::sync::Arc<ModeSettings>,
}

fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

/// Where a request named its mode: `query` or `header`, and the parameter's name.
type NamedIn<'r> = Option<(&'static str, &'r str)>;

/// The mode a request names (or the default), and where it named it.
fn requested<'r>(
    rule: &'r RouteModes,
    ctx: &'r RequestCtx<'_>,
) -> Result<(String, NamedIn<'r>), GatewayError> {
    let s = &rule.settings;
    if let Some(h) = &s.header
        && let Some(v) = ctx.parts.headers.get(h.as_str())
    {
        return match v.to_str() {
            Ok(v) => Ok((v.trim().to_owned(), Some(("header", h.as_str())))),
            Err(_) => Err(bad_mode(s, "header", h, "is not visible ASCII".into())),
        };
    }
    if let Some(q) = &s.query
        && let Some(v) = query_value(ctx.parts.uri.query(), q)
    {
        let decoded = crate::stages::validate::decode(v);
        return Ok((decoded, Some(("query", q.as_str()))));
    }
    Ok((s.default.clone(), None))
}

fn bad_mode(s: &ModeSettings, location: &str, name: &str, detail: String) -> GatewayError {
    GatewayError::new(codes::VALIDATION_FAILED)
        .param("count", "1")
        .param("summary", format!("{name} {detail}"))
        .field(FieldError {
            location: location.into(),
            pointer: name.into(),
            name: name.into(),
            reason: "enum".into(),
            detail,
        })
        .extension("modes", s.levels.clone().into())
}

/// Checks the request's mode against the route and the overrides.
pub(crate) fn check(
    rule: &RouteModes,
    stored: &BTreeSet<(String, String)>,
    ctx: &RequestCtx<'_>,
) -> Result<String, GatewayError> {
    let s = &rule.settings;
    let (mode, from) = requested(rule, ctx)?;
    if !s.levels.contains(&mode) {
        let (location, name) = from.unwrap_or(("query", ""));
        let shown: String = mode.chars().take(40).collect();
        return Err(bad_mode(
            s,
            location,
            name,
            format!(
                "is `{}`; the modes are {}",
                shown.escape_default(),
                s.levels.join(", ")
            ),
        ));
    }
    let unsupported = |remedy: String| {
        GatewayError::new(codes::UNSUPPORTED_FOR_MODE)
            .param("mode", mode.clone())
            .param("feature", rule.feature.clone())
            .param("remedy", remedy)
            .extension("mode", mode.clone().into())
            .extension("feature", rule.feature.clone().into())
            .extension("supported_modes", rule.modes.clone().into())
            .extension("mode_from", s.source_text().into())
    };
    if !rule.modes.contains(&mode) {
        return Err(unsupported(format!(
            "This operation on {} supports {} mode only.",
            rule.feature,
            rule.modes.join(", ")
        )));
    }
    if !s.enabled(&rule.feature, &mode, stored) {
        let remedy = s
            .how_to_enable
            .replace("{feature}", &rule.feature)
            .replace("{mode}", &mode);
        return Err(unsupported(remedy));
    }
    Ok(mode)
}

/// The stage: refuses a request whose mode the route's feature does not take.
pub(crate) fn run(
    rule: &RouteModes,
    identity: &Identity,
    ctx: &mut RequestCtx<'_>,
) -> Result<Flow, GatewayError> {
    let snapshot = ctx.snapshot(identity);
    match check(rule, &snapshot.mode_overrides, ctx) {
        Ok(mode) => {
            ctx.trail.record(
                "config_mode",
                "pass",
                None,
                vec![("feature", rule.feature.clone()), ("mode", mode)],
            );
            Ok(Flow::Continue)
        }
        Err(e) => {
            ctx.trail.record(
                "config_mode",
                "reject",
                Some(e.code),
                vec![("feature", rule.feature.clone())],
            );
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_level_needs_no_override() {
        let mut s = ModeSettings::default();
        let none = BTreeSet::new();
        assert!(s.enabled("sender_groups", "cluster", &none));
        assert!(!s.enabled("sender_groups", "machine", &none));
        s.overrides
            .insert(("sender_groups".into(), "machine".into()));
        assert!(s.enabled("sender_groups", "machine", &none));
        assert!(!s.enabled("sender_groups", "group", &none));
        let stored = BTreeSet::from([("sender_groups".to_owned(), "group".to_owned())]);
        assert!(s.enabled("sender_groups", "group", &stored));
    }
}
