//! `[alerts]`: the built-in alert rules, how often a standing alert is told again, and where
//! alerts go (`[alerts.webhook]`, `[alerts.email]`). With no `[alerts]` section no alert is
//! raised.

use super::reader::{Problems, TableReader};
use super::subscriptions::{Secret, WEBHOOK, WebhookConfig, read_secret, read_webhook};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeValue;

const ALERTS: &[&str] = &["repeat_every", "rules", "webhook", "email"];
const RULES: &[&str] = &[
    "api_restarted",
    "config_rejected",
    "upstream_unhealthy",
    "shared_state_unreachable",
    "error_rate",
    "certificate_expiry",
];
const ERROR_RATE: &[&str] = &["threshold", "window", "min_requests"];
const CERTIFICATE: &[&str] = &["within"];
const EMAIL: &[&str] = &[
    "smtp",
    "from",
    "to",
    "starttls",
    "username",
    "password_env",
    "password_file",
    "ca_file",
    "timeout",
];

/// `[alerts]`
#[derive(Clone, Debug, PartialEq)]
pub struct AlertsConfig {
    /// A standing alert (the same rule about the same thing) is told at most this often;
    /// the occurrences between are counted and told with the next one (default 1 h).
    pub repeat_every: Duration,
    /// The rules on, with their settings.
    pub rules: AlertRules,
    /// Where alerts are POSTed, signed as subscriptions' batches are.
    pub webhook: Option<WebhookConfig>,
    /// Where alerts are mailed.
    pub email: Option<EmailConfig>,
}

/// The built-in rules: each `None` or `false` is off.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRules {
    /// "API has restarted due to an error" (System, Warning), on `api.restarted`.
    pub api_restarted: bool,
    /// "Configuration change rejected" (Config, Warning), on `config.rejected`.
    pub config_rejected: bool,
    /// "Upstream has no healthy target" (Upstream, Critical), on an `upstream.down` whose
    /// `healthy_targets` is 0.
    pub upstream_unhealthy: bool,
    /// "Shared state (Redis) unreachable" (System; Critical when `on_failure = "closed"`),
    /// on `shared_state.down`.
    pub shared_state_unreachable: bool,
    /// A route's error rate over a window above a threshold (Upstream, Warning).
    pub error_rate: Option<ErrorRateRule>,
    /// The TLS certificate expires within this (System, Warning; Critical within a day).
    pub certificate_expiry: Option<Duration>,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            api_restarted: true,
            config_rejected: true,
            upstream_unhealthy: true,
            shared_state_unreachable: true,
            error_rate: Some(ErrorRateRule::default()),
            certificate_expiry: Some(Duration::from_secs(14 * 86_400)),
        }
    }
}

/// `error_rate = { threshold, window, min_requests }`: a route's requests answered with an
/// error (status 500 or more: events of severity `error` or worse) over those answered,
/// in the last `window`, once at least `min_requests` were answered in it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorRateRule {
    /// The fraction (0 to 1) above which the alert is raised.
    pub threshold: f64,
    /// The window.
    pub window: Duration,
    /// The fewest requests in the window for the rate to count.
    pub min_requests: u64,
}

impl Default for ErrorRateRule {
    fn default() -> Self {
        ErrorRateRule {
            threshold: 0.5,
            window: Duration::from_secs(60),
            min_requests: 20,
        }
    }
}

/// `[alerts.email]`: an SMTP server and who is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailConfig {
    /// `smtp://host:port` (plain, or upgraded with STARTTLS when `starttls`) or
    /// `smtps://host:port` (TLS from the start).
    pub host: String,
    /// The port (default 25, or 465 for smtps).
    pub port: u16,
    /// TLS from the start.
    pub implicit_tls: bool,
    /// STARTTLS required (on an smtp:// server).
    pub starttls: bool,
    /// The sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The SMTP user, when the server wants one.
    pub username: Option<String>,
    /// Its password (from `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// PEM CA certificates to trust (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// How long one delivery may take (default 10 s).
    pub timeout: Duration,
}

/// Reads `[alerts]`; `None` when there is none.
pub(super) fn read(
    top: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
    dir: &Path,
) -> Option<AlertsConfig> {
    let t = top.table(p, "alerts", ALERTS)?;
    let mut c = AlertsConfig {
        repeat_every: Duration::from_secs(3600),
        rules: AlertRules::default(),
        webhook: None,
        email: None,
    };
    if let Some(d) = t.duration_in(
        p,
        "repeat_every",
        Duration::from_secs(1),
        Duration::from_secs(30 * 86_400),
    ) {
        c.repeat_every = d;
    }
    if let Some(r) = t.table(p, "rules", RULES) {
        read_rules(&r, p, &mut c.rules);
        r.finish(p);
    }
    if let Some(w) = t.table(p, "webhook", WEBHOOK) {
        c.webhook = read_webhook(&w, p, dir, false);
        w.finish(p);
    }
    if let Some(e) = t.table(p, "email", EMAIL) {
        c.email = read_email(&e, p, dir);
        e.finish(p);
    }
    t.finish(p);
    Some(c)
}

fn read_rules(r: &TableReader<'_, '_>, p: &mut Problems<'_>, rules: &mut AlertRules) {
    for (key, on) in [
        ("api_restarted", &mut rules.api_restarted),
        ("config_rejected", &mut rules.config_rejected),
        ("upstream_unhealthy", &mut rules.upstream_unhealthy),
        (
            "shared_state_unreachable",
            &mut rules.shared_state_unreachable,
        ),
    ] {
        if let Some(b) = r.boolean(p, key) {
            *on = b;
        }
    }
    match r.get("error_rate").map(|v| v.get_ref()) {
        None => {}
        Some(DeValue::Boolean(b)) => {
            rules.error_rate = b.then(ErrorRateRule::default);
        }
        Some(_) => {
            if let Some(t) = r.table(p, "error_rate", ERROR_RATE) {
                let mut rule = ErrorRateRule::default();
                if let Some(v) = t.get("threshold") {
                    let n = match v.get_ref() {
                        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                        DeValue::Integer(i) => i.as_str().parse::<f64>().ok(),
                        _ => None,
                    };
                    match n {
                        Some(n) if (0.0..1.0).contains(&n) => rule.threshold = n,
                        _ => {
                            p.at(
                                v.span(),
                                &t.key_path("threshold"),
                                "the threshold is the fraction of requests answered with an error, above which the alert is raised".into(),
                            )
                            .expected = Some("a number from 0 to below 1, such as 0.5".into());
                        }
                    }
                }
                if let Some(d) = t.duration_in(
                    p,
                    "window",
                    Duration::from_secs(10),
                    Duration::from_secs(86_400),
                ) {
                    rule.window = d;
                }
                if let Some(n) = t.integer(p, "min_requests", 1, 1 << 32) {
                    rule.min_requests = n as u64;
                }
                t.finish(p);
                rules.error_rate = Some(rule);
            }
        }
    }
    match r.get("certificate_expiry").map(|v| v.get_ref()) {
        None => {}
        Some(DeValue::Boolean(false)) => rules.certificate_expiry = None,
        Some(DeValue::Boolean(true)) => {}
        Some(_) => {
            if let Some(t) = r.table(p, "certificate_expiry", CERTIFICATE) {
                if let Some(d) = t.duration_in(
                    p,
                    "within",
                    Duration::from_secs(3600),
                    Duration::from_secs(365 * 86_400),
                ) {
                    rules.certificate_expiry = Some(d);
                }
                t.finish(p);
            }
        }
    }
}

fn read_email(e: &TableReader<'_, '_>, p: &mut Problems<'_>, dir: &Path) -> Option<EmailConfig> {
    let before = p.list.len();
    let expected = "smtp://host:port or smtps://host:port, such as \"smtp://127.0.0.1:25\"";
    let (host, port, implicit_tls) = match e.string(p, "smtp") {
        None => {
            p.at(
                e.span.clone(),
                &e.key_path("smtp"),
                "e-mail alerts need the SMTP server".into(),
            )
            .expected = Some(expected.into());
            (String::new(), 0, false)
        }
        Some((url, span)) => {
            let parsed = match url.split_once("://") {
                Some(("smtp", rest)) => Some((rest, false)),
                Some(("smtps", rest)) => Some((rest, true)),
                _ => None,
            }
            .and_then(|(rest, tls)| {
                let a = rest
                    .trim_end_matches('/')
                    .parse::<http::uri::Authority>()
                    .ok()?;
                (!a.host().is_empty() && !a.as_str().contains('@')).then(|| {
                    (
                        a.host().trim_matches(['[', ']']).to_owned(),
                        a.port_u16().unwrap_or(if tls { 465 } else { 25 }),
                        tls,
                    )
                })
            });
            match parsed {
                Some(x) => x,
                None => {
                    p.at(
                        span,
                        &e.key_path("smtp"),
                        format!("`{url}` is not an SMTP server's URL"),
                    )
                    .expected = Some(format!(
                        "{expected}; the user goes in username, the password in password_env or password_file"
                    ));
                    (String::new(), 0, false)
                }
            }
        }
    };
    let mailbox = |p: &mut Problems<'_>, key: &str, value: &str, span| {
        if value.parse::<lettre::message::Mailbox>().is_err() {
            p.at(
                span,
                &e.key_path(key),
                format!("`{value}` is not an e-mail address"),
            )
            .expected =
                Some("an address such as \"ops@example.com\" or \"Ops <ops@example.com>\"".into());
        }
    };
    let from = match e.string(p, "from") {
        Some((f, span)) => {
            mailbox(p, "from", &f, span);
            f
        }
        None => {
            p.at(
                e.span.clone(),
                &e.key_path("from"),
                "e-mail alerts need a sender".into(),
            )
            .expected = Some("from = \"candor@example.com\"".into());
            String::new()
        }
    };
    let to: Vec<String> = e
        .strings(p, "to")
        .unwrap_or_default()
        .into_iter()
        .map(|(t, span)| {
            mailbox(p, "to", &t, span);
            t
        })
        .collect();
    if to.is_empty() {
        p.at(
            e.span.clone(),
            &e.key_path("to"),
            "e-mail alerts need at least one recipient".into(),
        )
        .expected = Some("to = [\"ops@example.com\"]".into());
    }
    let starttls = e.boolean(p, "starttls").unwrap_or(false);
    if starttls
        && implicit_tls
        && let Some(v) = e.get("starttls")
    {
        let problem = p.at(
            v.span(),
            &e.key_path("starttls"),
            "an smtps:// server speaks TLS from the start; STARTTLS is for smtp:// servers".into(),
        );
        problem.expected = Some("starttls = false with smtps://, or an smtp:// URL".into());
        problem.suggestion = Some("starttls = false".into());
    }
    let username = e.string(p, "username").map(|(u, _)| u);
    let password = read_secret(e, p, dir, "password_env", "password_file", "SMTP password");
    if username.is_some() != password.is_some() {
        p.at(
            e.span.clone(),
            &e.key_path(if username.is_some() {
                "password_env"
            } else {
                "username"
            }),
            "username and a password (password_env or password_file) go together".into(),
        );
    }
    let ca_file = e.string(p, "ca_file").map(|(f, _)| dir.join(f));
    let timeout = e
        .duration_in(
            p,
            "timeout",
            Duration::from_secs(1),
            Duration::from_secs(300),
        )
        .unwrap_or(Duration::from_secs(10));
    (p.list.len() == before).then_some(EmailConfig {
        host,
        port,
        implicit_tls,
        starttls,
        from,
        to,
        username,
        password,
        ca_file,
        timeout,
    })
}
