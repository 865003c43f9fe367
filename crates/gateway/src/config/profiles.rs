//! Error profiles: `[server] profile` (the listener's), `[profiles] files` (the operator's
//! own profiles) and `[[profiles.hosts]]` (a profile per host); a route's own `profile` is
//! read with the route. Every profile named anywhere is checked against the catalog here:
//! a code with no row and no fallback, or a placeholder no error supplies, is a config
//! problem at the place that names the profile.

use super::reader::{Problems, TableReader};
use crate::stages::respond::Profiles;
use candor_catalog::{Catalog, Profile};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

const PROFILES: &[&str] = &["files", "hosts"];
const HOST: &[&str] = &["host", "profile"];

/// Reads `[profiles]` and `[server] profile`.
pub(super) fn read(
    top: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
    catalog: &Catalog,
) -> Profiles {
    let mut all: Vec<Arc<Profile>> = Profile::builtins()
        .iter()
        .map(|b| Arc::new(b.clone()))
        .collect();
    let section = top.table(p, "profiles", PROFILES);
    if let Some(s) = &section {
        for (file, span) in s.strings(p, "files").unwrap_or_default() {
            let path = dir.join(&file);
            let text = match p.read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    p.at(
                        span,
                        "profiles.files",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    continue;
                }
            };
            match Profile::load(&path.display().to_string(), &text) {
                Ok(profile) => {
                    if all.iter().any(|o| o.name == profile.name) {
                        p.at(
                            span,
                            "profiles.files",
                            format!(
                                "{} defines profile `{}`, which is already defined (built-in or by an earlier file)",
                                path.display(),
                                profile.name
                            ),
                        );
                        continue;
                    }
                    all.push(Arc::new(profile));
                }
                Err(problems) => {
                    for e in problems {
                        p.at(
                            span.clone(),
                            "profiles.files",
                            format!("{}: {e}", path.display()),
                        );
                    }
                }
            }
        }
    }
    let mut set = Profiles::new(all);
    if let Some(server) = top.table(p, "server", super::server::SERVER)
        && let Some((name, span)) = server.string(p, "profile")
    {
        set.listener = resolve(&set, p, catalog, &name, span, "server.profile");
    }
    if let Some(s) = &section {
        for h in s.tables(p, "hosts", HOST) {
            let host = h.string(p, "host");
            let profile = h.string(p, "profile");
            match (host, profile) {
                (Some((host, _)), Some((name, span))) => {
                    let key = h.key_path("profile");
                    if let Some(profile) = resolve(&set, p, catalog, &name, span, &key) {
                        set.hosts.push((host.to_ascii_lowercase(), profile));
                    }
                }
                _ => {
                    p.at(
                        h.span.clone(),
                        &h.key_path(""),
                        "a host's profile names both `host` and `profile`".into(),
                    );
                }
            }
            h.finish(p);
        }
    }
    if let Some(s) = section {
        s.finish(p);
    }
    set
}

/// The profile `name`, checked against `catalog`; `None` (with the problems recorded)
/// when there is no such profile or it does not cover the catalog.
pub(super) fn resolve(
    set: &Profiles,
    p: &mut Problems<'_>,
    catalog: &Catalog,
    name: &str,
    span: Range<usize>,
    key: &str,
) -> Option<Arc<Profile>> {
    let Some(profile) = set.get(name) else {
        let names = set.names();
        let problem = p.at(span, key, format!("`{name}` is not a profile"));
        problem.suggestion = super::did_you_mean(name, &names);
        problem.expected = Some(format!(
            "a built-in profile or one of [profiles] files: {}",
            names.join(", ")
        ));
        return None;
    };
    // Any catalog code can reach a client through any route (the gateway's own refusals
    // come before routing), so the profile answers every one of them.
    let problems = profile.check(catalog, catalog.entries().iter().map(|e| e.code.as_str()));
    if problems.is_empty() {
        return Some(profile);
    }
    for e in problems {
        p.at(span.clone(), key, e.to_string());
    }
    None
}
