//! Configuration: one TOML file, parsed completely before anything is used. Every problem
//! is reported at once, each with line, column, what was expected and a did-you-mean.
//!
//! One file per section of the TOML file; a new section is a new file whose `read` returns
//! that section's config type (a stage's own type where a stage owns it):
//!
//! | section | file | read into |
//! | --- | --- | --- |
//! | `[server]`, `[server.tls]` | `server.rs` | `ServerConfig`, and the operator's catalog |
//! | `[limits]` | `limits.rs` | the transport stage's `Limits` |
//! | `[timeouts]` | `timeouts.rs` | `Timeouts`: every wait on a client |
//! | `[log]` | `log.rs` | `LogConfig` |
//! | `[events]` | `events.rs` | `EventsConfig`: the API event log |
//! | `[[events.subscriptions]]` | `subscriptions.rs` | `SubscriptionConfig`: filters and sinks |
//! | `[alerts]` | `alerts.rs` | `AlertsConfig`: alert rules and where alerts go |
//! | `[debug]` | `debug.rs` | `DebugConfig` |
//! | `[auth]`, `[[auth.issuers]]` | `auth.rs` | `AuthSettings`, external issuers |
//! | `[access]` | `access.rs` | the policy stage's `AccessPolicy` |
//! | `[config_modes]` | `modes.rs` | the configuration-mode stage's `ModeSettings` (a route's `feature`, `config_modes`) |
//! | `[[routes]]` | `routes.rs` | the route stage's `RouteConfig` (with the authenticate and policy stages' parts) |
//! | `[routes.validate]` | `contract.rs` | the validate stage's `Contract` |
//! | `[server] profile`, `[profiles]` | `profiles.rs` | the renderer's `Profiles`: which error profile answers where |
//! | `[demo_api]` | `demo_api.rs` | where `candor serve` serves the built-in demo API |
//! | `[[openapi]]` | `openapi.rs` | routes derived from an OpenAPI document (then read as `[[routes]]` are) |
//!
//! `reader.rs` walks TOML tables recording problems with their spans; `report.rs` is what
//! `candor check` prints.

mod access;
mod alerts;
mod auth;
mod contract;
mod debug;
mod demo_api;
mod events;
mod limits;
mod log;
mod modes;
pub(crate) mod openapi;
mod profiles;
mod rate_limits;
mod reader;
mod report;
mod routes;
mod server;
mod subscriptions;
mod timeouts;
mod traces;
mod upstreams;

pub use alerts::{AlertRules, AlertsConfig, EmailConfig, ErrorRateRule};
pub(crate) use auth::AuthSettings;
pub(crate) use debug::DebugConfig;
pub use events::EventsConfig;
pub(crate) use limits::Limits;
pub(crate) use log::LogConfig;
pub(crate) use rate_limits::RouteLimits;
pub use reader::did_you_mean;
pub(crate) use reader::{NamedFile, fingerprint, read_file, read_file_to_string};
pub use report::{ConfigProblem, ConfigReport};
#[cfg(test)]
pub(crate) use routes::parse_upstream_list;
pub(crate) use routes::{ERRORS_PREFIX, RouteConfig, RouteMode, Upstream};
pub(crate) use server::{ServerConfig, TlsFiles};
pub use subscriptions::{
    EventFilterConfig, Mode, Secret, SinkConfig, SubscriptionConfig, SyslogConfig, SyslogTransport,
    WebhookConfig,
};
pub(crate) use timeouts::Timeouts;
pub use traces::{OtlpConfig, TracesConfig};

use candor_catalog::Catalog;
use reader::{Problems, TableReader};
use std::path::Path;
use std::sync::Arc;
use toml::de::DeTable;

/// The whole, validated configuration, with the files it names already loaded.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listeners and process-wide settings.
    pub server: ServerConfig,
    /// Request size limits.
    pub limits: Limits,
    /// `[limits.shared]`: the Redis store rate limits are shared through, if any.
    pub shared_limits: Option<crate::limits::shared::SharedConfig>,
    /// How long the gateway waits for clients.
    pub timeouts: Timeouts,
    /// Logging.
    pub log: LogConfig,
    /// The API event log.
    pub events: EventsConfig,
    /// Span export (`[traces.otlp]`).
    pub traces: TracesConfig,
    /// Alert rules and where alerts go (`None`: no alerts).
    pub alerts: Option<AlertsConfig>,
    /// Fault injection for operators.
    pub debug: DebugConfig,
    /// Token issuing and checking.
    pub auth: AuthSettings,
    /// The transport policy every route starts from.
    pub access: crate::stages::policy::AccessPolicy,
    /// Configuration modes: levels, where requests name theirs, declared overrides.
    pub config_modes: Arc<crate::stages::config_mode::ModeSettings>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// The catalog: built-in entries plus the operator's file, if named.
    pub catalog: Arc<Catalog>,
    /// Where `candor serve` serves the built-in demo API (`[demo_api] listen`), if anywhere.
    pub demo_api: Option<std::net::SocketAddr>,
    /// The error profiles: built-in and the operator's, and which answers where.
    pub profiles: Arc<crate::stages::respond::Profiles>,
    /// What loaded but should be known: parts of OpenAPI documents the gateway does not
    /// check, when an `[[openapi]]` entry says `unsupported = "warn"`. `candor check`
    /// prints them; the server logs them when it loads the file.
    pub notices: Vec<ConfigProblem>,
    /// The other files it names that loading it read: a change to one of them reloads the
    /// configuration, as a change to the file itself does.
    pub(crate) files: Vec<NamedFile>,
}

const TOP: &[&str] = &[
    "server",
    "limits",
    "timeouts",
    "log",
    "events",
    "alerts",
    "debug",
    "auth",
    "access",
    "config_modes",
    "routes",
    "openapi",
    "profiles",
    "demo_api",
    "traces",
];

impl Config {
    /// The error profiles answers are rendered in somewhere: the listener's (problem
    /// details when none is set), the hosts' and the routes', each once, in that order.
    /// The troubleshooting pages show an example answer in each.
    pub fn profiles_in_use(&self) -> Vec<Arc<candor_catalog::Profile>> {
        let mut out: Vec<Arc<candor_catalog::Profile>> = Vec::new();
        let listener = self.profiles.listener().cloned().or_else(|| {
            candor_catalog::Profile::builtin(candor_catalog::profile::DEFAULT)
                .map(|p| Arc::new(p.clone()))
        });
        let hosts = self.profiles.hosts.iter().map(|(_, p)| p.clone());
        let routes = self.routes.iter().filter_map(|r| r.profile.clone());
        for p in listener.into_iter().chain(hosts).chain(routes) {
            if !out.iter().any(|o| o.name == p.name) {
                out.push(p);
            }
        }
        out
    }

    /// Reads and validates the file at `path`; files it names are resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigReport> {
        let name = path.display().to_string();
        match read_file_to_string(path) {
            Ok(text) => Config::parse(&name, &text, path.parent().unwrap_or(Path::new("."))),
            Err(e) => Err(ConfigReport {
                file: name,
                problems: vec![ConfigProblem {
                    line: 0,
                    column: 0,
                    key: String::new(),
                    message: format!("cannot read the file: {e}"),
                    expected: None,
                    suggestion: None,
                }],
                files: Vec::new(),
            }),
        }
    }

    /// Validates configuration `text` named `file`; relative paths resolve against `dir`.
    pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Config, ConfigReport> {
        let mut p = Problems::new(text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        for e in &syntax {
            let span = e.span().unwrap_or(0..0);
            p.at(span, "", format!("TOML syntax: {}", e.message().trim()));
        }
        let config = if syntax.is_empty() {
            let top = TableReader::new(root.get_ref(), root.span(), "", TOP);
            let config = read_config(&top, &mut p, dir);
            top.finish(&mut p);
            Some(config)
        } else {
            None
        };
        let mut problems = p.list;
        problems.sort_by_key(|x| (x.line, x.column));
        match config {
            Some(Some(mut c)) if problems.is_empty() => {
                c.notices = p.notices;
                c.files = p.files;
                Ok(c)
            }
            _ => Err(ConfigReport {
                file: file.to_owned(),
                problems,
                files: p.files,
            }),
        }
    }

    /// Logs each notice (a warning of `candor::config`), as loading `file` found them.
    pub fn log_notices(&self, file: &Path) {
        let file = file.display().to_string();
        for n in &self.notices {
            tracing::warn!(target: "candor::config", notice = %n.located(&file), "loaded, but not checked by the gateway");
        }
    }

    /// The settings only a restart applies, each as (key, value as this file says it,
    /// before command-line overrides). A reload warns about each that changed; `candor
    /// check --running` lists them against the running configuration.
    pub fn restart_only(&self) -> Vec<(&'static str, String)> {
        let s = &self.server;
        vec![
            ("server.listen", s.listen.to_string()),
            (
                "server.admin_listen",
                s.admin_listen.map_or("(none)".into(), |a| a.to_string()),
            ),
            ("server.workers", s.workers.to_string()),
            ("server.data_dir", s.data_dir.display().to_string()),
            (
                "demo_api.listen",
                self.demo_api.map_or("(none)".into(), |a| a.to_string()),
            ),
            ("events.enabled", self.events.enabled.to_string()),
            (
                "events.dir",
                self.events
                    .dir
                    .as_ref()
                    .map_or("(events in server.data_dir)".into(), |d| {
                        d.display().to_string()
                    }),
            ),
            (
                "server.admin_token_file",
                s.admin_token_file
                    .as_ref()
                    .map_or("(default)".into(), |f| f.display().to_string()),
            ),
        ]
    }

    /// Whether a route's upstream is the built-in demo API (`upstream = "builtin:demo"`).
    pub fn uses_builtin_demo(&self) -> bool {
        self.routes.iter().any(|r| r.builtin_upstream)
    }

    /// Points the `builtin:demo` routes at the demo API serving on `addr`.
    pub fn point_builtin_demo(&mut self, addr: std::net::SocketAddr) {
        routes::point_builtin(&mut self.routes, addr);
    }

    /// A configuration with no routes: every default.
    pub fn empty() -> Config {
        Config::parse("<defaults>", "", Path::new(".")).expect("defaults are valid")
    }
}

fn read_config(top: &TableReader<'_, '_>, p: &mut Problems<'_>, dir: &Path) -> Option<Config> {
    let before = p.list.len();
    let (server, catalog) = server::read(top, p, dir);
    let auth = auth::read(top, p, dir);
    let (limits, shared_limits) = limits::read(top, p);
    let timeouts = timeouts::read(top, p);
    let log = log::read(top, p);
    let events = events::read(top, p, dir, &catalog);
    let alerts = alerts::read(top, p, dir);
    let traces = traces::read(top, p, dir);
    let debug = debug::read(top, p);
    let access = access::read_section(top, p);
    let config_modes = modes::read(top, p);
    let profiles = profiles::read(top, p, dir, &catalog);
    let demo_api = demo_api::read(top, p);
    let routes = routes::read(
        top,
        p,
        &access,
        &auth,
        &config_modes,
        dir,
        limits.max_body_bytes,
        (&profiles, &catalog),
    );
    subscriptions::check_routes(p, &events.subscriptions, &routes);
    if p.list.len() > before {
        return None;
    }
    Some(Config {
        server,
        limits,
        shared_limits,
        timeouts,
        log,
        events,
        traces,
        alerts,
        debug,
        auth,
        access,
        config_modes,
        routes,
        catalog,
        profiles: Arc::new(profiles),
        demo_api,
        notices: Vec::new(),
        files: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(text: &str) -> Result<Config, ConfigReport> {
        Config::parse("t.toml", text, Path::new("."))
    }

    #[test]
    fn a_full_config_parses() {
        let c = check(
            r#"
[server]
listen = "127.0.0.1:9999"
workers = 1
trusted_proxies = ["10.0.0.0/8"]
drain_timeout = "5s"

[limits]
max_uri_bytes = 1024

[[routes]]
name = "devices"
path = "/v1/customers/{customer}/devices"
methods = ["GET", "POST"]
upstream = "http://127.0.0.1:9000/api/"
timeout = "2s"

[[routes]]
name = "reports"
path = "/v1/reports"
mode = "maintenance"
retry_after = 120
"#,
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.server.public_base_url, "http://127.0.0.1:9999");
        assert_eq!(c.routes[0].upstream.as_ref().unwrap().base_path, "/api");
        assert_eq!(c.routes[0].timeout, Duration::from_secs(2));
        assert_eq!(c.limits.max_uri_bytes, 1024);
        assert!(matches!(
            c.routes[1].mode,
            RouteMode::Maintenance {
                retry_after: 120,
                ..
            }
        ));
    }

    #[test]
    fn every_problem_is_reported_with_position_and_suggestion() {
        let report = check(
            r#"[server]
listen = "nowhere"
wrokers = 2

[[routes]]
path = "/v1/{id"
methdos = ["GET"]
upstream = "ftp://x"

[[routes]]
path = "/ok"
methods = ["GTE"]
timeout = "soon"
mode = "maintainance"
"#,
        )
        .unwrap_err();
        let text = report.to_string();
        assert!(text.starts_with("t.toml: 8 problems"), "{text}");
        assert!(
            text.contains("t.toml:2:10: server.listen: `nowhere` is not an address"),
            "{text}"
        );
        assert!(
            text.contains(
                "t.toml:3:1: server.wrokers: unknown key `wrokers`; did you mean `workers`?"
            ),
            "{text}"
        );
        assert!(text.contains("t.toml:6:8: routes[0].path:"), "{text}");
        assert!(
            text.contains("routes[0].methdos: unknown key `methdos`; did you mean `methods`?"),
            "{text}"
        );
        assert!(
            text.contains("`ftp` is not a scheme an upstream can have"),
            "{text}"
        );
        assert!(
            text.contains("`GTE` is not an HTTP method; did you mean `GET`?"),
            "{text}"
        );
        assert!(text.contains("\"soon\" is not a duration"), "{text}");
        assert!(
            text.contains("unknown mode `maintainance`; did you mean `maintenance`?"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let report = check("[server]\nlisten = \n").unwrap_err();
        assert_eq!(report.problems[0].line, 2);
        assert!(report.problems[0].message.starts_with("TOML syntax"));
    }

    #[test]
    fn overlapping_routes_are_refused() {
        let report = check(
            "[[routes]]\npath = \"/a/{x}\"\nupstream = \"http://127.0.0.1:1\"\n[[routes]]\npath = \"/a/{y}\"\nupstream = \"http://127.0.0.1:1\"\n",
        )
        .unwrap_err();
        assert!(report.to_string().contains("overlaps route"), "{report}");
    }

    #[test]
    fn durations_take_the_one_grammar() {
        let c = check(
            "[[routes]]\nname = \"m\"\npath = \"/m\"\nmode = \"maintenance\"\nretry_after = \"5m\"\ntimeout = \"2 s\"\n",
        )
        .unwrap();
        assert!(matches!(
            c.routes[0].mode,
            RouteMode::Maintenance {
                retry_after: 300,
                ..
            }
        ));
        let report = check(
            "[server]\ndrain_timeout = -5\n[timeouts]\nkeepalive = \"1.5m\"\n[[routes]]\nname = \"m\"\npath = \"/m\"\nmode = \"maintenance\"\nretry_after = \"8d\"\n",
        )
        .unwrap_err();
        let text = report.to_string();
        for needle in [
            "server.drain_timeout: -5 is not a duration: durations cannot be negative",
            "timeouts.keepalive: \"1.5m\" is not a duration: the number must be whole (write 90s, not 1.5m)",
            "routes[0].retry_after: \"8d\" (8d) is too long",
            "a duration from 0s to 7d such as \"5m\" (a bare number is seconds; README: Durations)",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn proxy_route_needs_an_upstream() {
        let report = check("[[routes]]\nname = \"x\"\npath = \"/a\"\n").unwrap_err();
        assert!(
            report
                .to_string()
                .contains("route `x` forwards requests but has no upstream")
        );
    }
}
