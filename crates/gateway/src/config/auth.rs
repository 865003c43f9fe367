//! `[auth]` and `[[auth.issuers]]`: how candor issues and checks tokens, and the external
//! issuers routes may accept.

use super::reader::{Problems, TableReader};
use std::path::Path;
use std::time::Duration;

const AUTH: &[&str] = &[
    "issuer",
    "audience",
    "leeway",
    "max_failed_attempts",
    "max_failed_attempts_per_address",
    "failed_attempts_window",
    "issuers",
    "validity_param",
    "validity_format",
];
/// The shortest `failed_attempts_window`: shorter, failures would come back within seconds
/// and the limit would hardly slow down guessing.
const MIN_WINDOW: Duration = Duration::from_secs(60);
/// The longest `failed_attempts_window`: longer, one client's typos would keep it out for
/// days.
const MAX_WINDOW: Duration = Duration::from_secs(86_400);
/// The shortest refresh period of an external issuer's JWK set.
const MIN_REFRESH: Duration = Duration::from_secs(1);

const ISSUER: &[&str] = &[
    "issuer",
    "audience",
    "jwks_file",
    "jwks_url",
    "ca_file",
    "account_claim",
    "refresh",
];

/// `[auth]`: how candor issues and checks tokens.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `iss` of issued tokens and required of presented ones (default: the public base URL).
    pub issuer: Option<String>,
    /// `aud` of issued tokens and required of presented ones.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Failed client authentications allowed per window and client id.
    pub max_failed_attempts: u32,
    /// Failed client authentications allowed per window and source address, whatever the
    /// client ids (default: 10 × `max_failed_attempts`).
    pub max_failed_attempts_per_address: u32,
    /// The window for counting failed attempts: 1 minute to 1 day (default 5 minutes).
    pub failed_attempts_window: Duration,
    /// External issuers whose tokens routes may accept.
    pub issuers: Vec<crate::identity::issuers::ExternalIssuer>,
    /// The token endpoint's parameter asking for a shorter token lifetime (default
    /// `validity`), and how it is written.
    pub validity: crate::identity::token_endpoint::ValidityParam,
    /// The `issuer` of each `[[auth.issuers]]` entry that has problems of its own: routes
    /// naming it are not told it is unknown as well.
    pub(crate) unloaded_issuers: Vec<String>,
}

/// Reads `[auth]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>, dir: &Path) -> AuthSettings {
    let mut auth = AuthSettings {
        issuer: None,
        audience: "candor".into(),
        leeway: Duration::from_secs(30),
        max_failed_attempts: 5,
        max_failed_attempts_per_address: 50,
        failed_attempts_window: Duration::from_secs(300),
        issuers: Vec::new(),
        unloaded_issuers: Vec::new(),
        validity: Default::default(),
    };
    if let Some(a) = top.table(p, "auth", AUTH) {
        if let Some((v, _)) = a.string(p, "issuer") {
            auth.issuer = Some(v);
        }
        if let Some((v, _)) = a.string(p, "audience") {
            auth.audience = v;
        }
        if let Some(d) = a.duration(p, "leeway") {
            if d > Duration::from_secs(300) {
                p.at(
                    a.get("leeway").map_or(a.span.clone(), |v| v.span()),
                    "auth.leeway",
                    "is more than 5 minutes; a leeway that large lets expired tokens through"
                        .into(),
                );
            }
            auth.leeway = d;
        }
        if let Some(n) = a.integer(p, "max_failed_attempts", 1, 1000) {
            auth.max_failed_attempts = n as u32;
        }
        auth.max_failed_attempts_per_address = auth.max_failed_attempts * 10;
        if let Some(n) = a.integer(p, "max_failed_attempts_per_address", 1, 100_000) {
            if n < i64::from(auth.max_failed_attempts) {
                p.at(
                    a.get("max_failed_attempts_per_address")
                        .map_or(a.span.clone(), |v| v.span()),
                    "auth.max_failed_attempts_per_address",
                    format!(
                        "{n} is below auth.max_failed_attempts ({}): one client's typos would block its whole address, every other client there included",
                        auth.max_failed_attempts
                    ),
                )
                .expected = Some(format!(
                    "an integer from {} (max_failed_attempts) to 100000; the default is 10 × max_failed_attempts",
                    auth.max_failed_attempts
                ));
            }
            auth.max_failed_attempts_per_address = n as u32;
        }
        if let Some(d) = a.duration_in(p, "failed_attempts_window", MIN_WINDOW, MAX_WINDOW) {
            auth.failed_attempts_window = d;
        }
        if let Some((name, span)) = a.string(p, "validity_param") {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if ok {
                auth.validity.name = name;
            } else {
                p.at(
                    span,
                    "auth.validity_param",
                    format!("`{name}` is not a parameter name"),
                )
                .expected = Some(
                    "letters, digits, '_', '-' or '.', such as \"validityForAccessTokenInMinutes\""
                        .into(),
                );
            }
        }
        if let Some((format, span)) = a.string(p, "validity_format") {
            use crate::identity::token_endpoint::ValidityFormat;
            match format.as_str() {
                "duration" => auth.validity.format = ValidityFormat::Duration,
                "int32_minutes" => auth.validity.format = ValidityFormat::Int32Minutes,
                other => {
                    let problem = p.at(
                        span,
                        "auth.validity_format",
                        format!("unknown format `{other}`"),
                    );
                    problem.suggestion = super::did_you_mean(other, &["duration", "int32_minutes"]);
                    problem.expected = Some("\"duration\" (such as 5m; a bare number is minutes) or \"int32_minutes\" (a 32-bit integer of minutes)".into());
                }
            }
        }
        for t in a.tables(p, "issuers", ISSUER) {
            if let Some(i) = read_issuer(&t, p, dir) {
                if auth.issuers.iter().any(|o| o.issuer == i.issuer)
                    || i.issuer == crate::stages::authenticate::SELF_ISSUER
                {
                    p.at(
                        t.span.clone(),
                        &t.key_path("issuer"),
                        format!(
                            "issuer `{}` is listed twice (or is the reserved word self)",
                            i.issuer
                        ),
                    );
                }
                auth.issuers.push(i);
            } else if let Some(toml::de::DeValue::String(name)) =
                t.get("issuer").map(|v| v.get_ref())
            {
                auth.unloaded_issuers.push(name.to_string());
            }
            t.finish(p);
        }
        a.finish(p);
    }
    auth
}

fn read_issuer(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
) -> Option<crate::identity::issuers::ExternalIssuer> {
    use crate::identity::issuers::{ExternalIssuer, JwksSource};
    let before = p.list.len();
    let issuer = t.string(p, "issuer").map(|(s, _)| s);
    let audience = t.string(p, "audience").map(|(s, _)| s);
    for (key, v) in [("issuer", &issuer), ("audience", &audience)] {
        if v.is_none() && t.get(key).is_none() {
            p.at(t.span.clone(), &t.key_path(key), "missing".into());
        }
    }
    let file = t.string(p, "jwks_file");
    let url = t.string(p, "jwks_url");
    let jwks = match (file, url) {
        (Some((f, _)), None) => Some(JwksSource::File(dir.join(f))),
        (None, Some((u, span))) => match u.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Some(JwksSource::Url(uri))
            }
            _ => {
                p.at(
                    span,
                    &t.key_path("jwks_url"),
                    format!("`{u}` is not an http(s) URL"),
                )
                .expected =
                    Some("a URL such as \"https://idp.example.com/.well-known/jwks.json\"".into());
                None
            }
        },
        (Some(_), Some((_, span))) => {
            p.at(
                span,
                &t.key_path("jwks_url"),
                "an issuer's keys come from jwks_file or jwks_url, not both".into(),
            );
            None
        }
        (None, None) => {
            p.at(
                t.span.clone(),
                &t.key_path("jwks_url"),
                "missing: an issuer needs jwks_file or jwks_url".into(),
            );
            None
        }
    };
    let ca_file = t.string(p, "ca_file").map(|(f, _)| dir.join(f));
    let account_claim = t
        .string(p, "account_claim")
        .map_or_else(|| "account".to_owned(), |(s, _)| s);
    let mut refresh = t.duration(p, "refresh").unwrap_or(Duration::from_secs(600));
    if refresh < MIN_REFRESH {
        // Too short a period would fetch the JWK set on every request with an unknown kid.
        p.at(
            t.get("refresh").map_or(t.span.clone(), |v| v.span()),
            &t.key_path("refresh"),
            format!(
                "{refresh:?} is shorter than {}s: the JWK set would be fetched again and again",
                MIN_REFRESH.as_secs()
            ),
        )
        .expected = Some("a duration of at least \"1s\", e.g. \"10m\"".into());
        refresh = MIN_REFRESH;
    }
    if p.list.len() > before {
        return None;
    }
    Some(ExternalIssuer {
        issuer: issuer?,
        audience: audience?,
        jwks: jwks?,
        ca_file,
        account_claim,
        refresh,
    })
}
