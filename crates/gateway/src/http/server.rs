//! Accept: listeners, TLS, HTTP/1.1 and HTTP/2 (h2 by ALPN over TLS, h2c by prior
//! knowledge), configuration reload, and graceful shutdown.

use crate::admin;
use crate::config::{Config, ConfigReport, fingerprint};
use crate::error::GatewayError;
use crate::http::body::{ClientBody, GatewayBody};
use crate::http::connections::{self, Builders, Connections};
use crate::http::guard::{self, HeadGuard};
use crate::pipeline::{Pipeline, Services};
use crate::stages::forward::Forwarder;
use arc_swap::ArcSwap;
use candor_catalog::codes;
use http::{HeaderValue, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Overrides from the command line, which win over the file on every reload.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`
    pub admin_listen: Option<SocketAddr>,
}

impl Overrides {
    /// The addresses the public and the admin listener of `config` bind with these
    /// overrides.
    pub fn listen_addrs(&self, config: &Config) -> (SocketAddr, Option<SocketAddr>) {
        (
            self.listen.unwrap_or(config.server.listen),
            self.admin_listen.or(config.server.admin_listen),
        )
    }

    fn apply(&self, config: &mut Config) {
        if let Some(l) = self.listen {
            let default_base = format!(
                "{}://{}",
                if config.server.tls.is_some() {
                    "https"
                } else {
                    "http"
                },
                config.server.listen
            );
            if config.server.public_base_url == default_base {
                config.server.public_base_url = format!(
                    "{}://{l}",
                    if config.server.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    }
                );
            }
            config.server.listen = l;
        }
        if let Some(a) = self.admin_listen {
            config.server.admin_listen = Some(a);
        }
    }
}

/// What every connection shares: the current pipeline (swapped atomically on reload), the
/// TLS config and the upstream pool.
pub(crate) struct State {
    current: ArcSwap<Pipeline>,
    services: Arc<Services>,
    tls: ArcSwap<Option<Arc<rustls::ServerConfig>>>,
    forwarder: Forwarder,
    generation: AtomicU64,
    config_path: Option<PathBuf>,
    overrides: Overrides,
    drain_timeout: ArcSwap<Duration>,
    /// The configuration's listeners as first bound; a reload cannot move them.
    listen: SocketAddr,
    admin_listen: Option<SocketAddr>,
    /// The open connections of the gateway listener and of the admin listener.
    main_conns: Arc<Connections>,
    admin_conns: Arc<Connections>,
    admin_token: String,
    /// Where the admin token is kept.
    pub admin_token_file: PathBuf,
    /// The settings a reload cannot apply, as the file said them at start.
    started_with: Vec<(&'static str, String)>,
    /// Whether --listen / --admin-listen were given (they win over the file).
    flags: (bool, bool),
    /// Where the built-in demo API serves, when a route's upstream is `builtin:demo`.
    builtin_demo: Option<SocketAddr>,
    /// The other files the configuration names (schemas, profiles, the catalog, the TLS
    /// certificate and key, ...), watched with the file itself: those the running
    /// configuration read, and those a rejected change named (so that fixing one reloads).
    named_files: std::sync::Mutex<Vec<crate::config::NamedFile>>,
    /// Held through a reload: a reload from SIGHUP and one from a file's change are applied
    /// one after the other, never mixed.
    reloading: std::sync::Mutex<()>,
}

impl State {
    /// The pipeline new requests get.
    pub(crate) fn current(&self) -> Arc<Pipeline> {
        self.current.load_full()
    }

    /// The upstream client (its targets' health, for `/upstreams`).
    pub(crate) fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Per listener, the connections open now and those refused at its cap (for `/stats`).
    pub(crate) fn connections(&self) -> [(&'static str, usize, u64); 2] {
        let of = |c: &Connections| (c.listener(), c.open(), c.refused());
        [of(&self.main_conns), of(&self.admin_conns)]
    }

    /// Re-reads the configuration file. A valid file replaces the running configuration for
    /// new requests; an invalid one is refused with the full report and changes nothing.
    pub(crate) fn reload(&self) -> Result<u64, ConfigReport> {
        let Some(path) = &self.config_path else {
            return Ok(self.generation.load(Ordering::Relaxed));
        };
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut config = Config::load(path).inspect_err(|report| {
            tracing::error!(target: "candor::config", report = %report, "configuration rejected; the running configuration stays");
            self.config_rejected(report);
            self.watch_also(&report.files);
        })?;
        config.log_notices(path);
        // Each setting a reload cannot apply and the file now says otherwise: named, with
        // what stays in force.
        for ((key, was), (_, now)) in self.started_with.iter().zip(config.restart_only()) {
            if *was == now {
                continue;
            }
            let running = match *key {
                "server.listen" => self.listen.to_string(),
                "server.admin_listen" => {
                    self.admin_listen.map_or("(none)".into(), |a| a.to_string())
                }
                _ => was.clone(),
            };
            let flag = match *key {
                "server.listen" if self.flags.0 => " (--listen sets it on the command line)",
                "server.admin_listen" if self.flags.1 => {
                    " (--admin-listen sets it on the command line)"
                }
                _ => "",
            };
            tracing::warn!(
                target: "candor::config",
                setting = key,
                file = %now,
                running = %running,
                "{key} changed in the file from {was} to {now}: restart to apply; {running} stays in force until then{flag}"
            );
        }
        self.overrides.apply(&mut config);
        if config.uses_builtin_demo() {
            match self.builtin_demo {
                Some(addr) => config.point_builtin_demo(addr),
                None => {
                    self.watch_also(&config.files);
                    let report = ConfigReport {
                        file: path.display().to_string(),
                        files: config.files,
                        problems: vec![crate::config::ConfigProblem {
                            line: 0,
                            column: 0,
                            key: "routes.upstream".into(),
                            message: "a route now uses the built-in demo API (builtin:demo), which starts with the gateway: restart to apply".into(),
                            expected: None,
                            suggestion: None,
                        }],
                    };
                    self.config_rejected(&report);
                    return Err(report);
                }
            }
        }
        let tls = match &config.server.tls {
            Some(files) => Some(
                crate::http::tls::server_config(files)
                    .map_err(|e| ConfigReport {
                        file: path.display().to_string(),
                        files: config.files.clone(),
                        problems: vec![crate::config::ConfigProblem {
                            line: 0,
                            column: 0,
                            key: "server.tls".into(),
                            message: e,
                            expected: None,
                            suggestion: None,
                        }],
                    })
                    .inspect_err(|report| {
                        self.config_rejected(report);
                        self.watch_also(&report.files);
                    })?,
            ),
            None => None,
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self
            .named_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = config.files.clone();
        self.tls.store(Arc::new(tls));
        self.drain_timeout
            .store(Arc::new(config.server.drain_timeout));
        self.current.store(Arc::new(Pipeline::new(
            &config,
            generation,
            self.services.clone(),
        )));
        crate::events::subscriptions::apply(&self.services.events, &config);
        #[cfg(feature = "otlp")]
        self.services.traces.apply(config.traces.otlp.as_ref());
        tracing::info!(target: "candor::config", generation, routes = config.routes.len(), "configuration reloaded");
        self.config_applied(generation, config.routes.len(), "reload");
        Ok(generation)
    }

    /// The API event log.
    pub(crate) fn events(&self) -> &Arc<crate::events::EventLog> {
        &self.services.events
    }

    /// The OTLP span export.
    #[cfg(feature = "otlp")]
    pub(crate) fn traces(&self) -> &crate::traces::Traces {
        &self.services.traces
    }

    fn config_applied(&self, generation: u64, routes: usize, how: &str) {
        use crate::events::{Event, Severity, kinds};
        self.services.events.emit(
            Event::new(kinds::CONFIG_APPLIED, Severity::Info)
                .fact("generation", generation)
                .fact("routes", routes)
                .fact("how", how)
                .fact(
                    "file",
                    self.config_path.as_ref().map(|p| p.display().to_string()),
                ),
        );
    }

    fn config_rejected(&self, report: &ConfigReport) {
        use crate::events::{Event, Severity, kinds};
        self.services.events.emit(
            Event::new(kinds::CONFIG_REJECTED, Severity::Warning)
                .fact("file", report.file.as_str())
                .fact(
                    "running_generation",
                    self.generation.load(Ordering::Relaxed),
                )
                .fact(
                    "problems",
                    serde_json::to_value(&report.problems).unwrap_or_default(),
                )
                .fact("report", report.to_string()),
        );
    }
}

/// A bound gateway, ready to serve.
pub struct Server {
    state: Arc<State>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    /// Why the supervisor restarted this worker (see [`crate::RestartCause`]); `None` on a
    /// first start and without the supervisor.
    restart: Option<crate::RestartCause>,
    /// Set up before the listeners are announced: a SIGHUP or an edit of the file right
    /// after start is a reload, never the signal's default (the process ending) or missed.
    reloads: Reloads,
}

/// The reload triggers, armed when the server is bound.
struct Reloads {
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
    /// The configuration file's fingerprint when it was loaded.
    file: Option<(SystemTime, u64)>,
}

/// Binds `addr`, or says which listener could not, why, and what to change.
async fn listen(
    addr: SocketAddr,
    key: &str,
    flag: &str,
    which: &str,
) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| listen_error(e, addr, key, flag, which))
}

/// Says which listener could not bind `addr`, why, and what to change.
fn listen_error(
    e: std::io::Error,
    addr: SocketAddr,
    key: &str,
    flag: &str,
    which: &str,
) -> std::io::Error {
    use std::io::ErrorKind;
    let fix = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "another process holds that port: stop it, or set {key} (or {flag}) to a free one"
        ),
        ErrorKind::PermissionDenied => format!(
            "ports below 1024 need privileges: use a port from 1024 up in {key} (or {flag})"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "no interface of this machine has that address: set {key} (or {flag}) to one of its own, such as 127.0.0.1"
        ),
        _ => format!("check {key} (or {flag})"),
    };
    std::io::Error::new(
        e.kind(),
        format!("cannot listen on {addr} ({key}, the {which} listener): {e}; {fix}"),
    )
}

/// Checks that the public and admin listeners could bind `listen` and `admin` now, with
/// the same message [`Server::bind`] gives, before anything is written for them (the
/// demo checks this before it creates its files).
pub fn probe_listeners(listen: SocketAddr, admin: Option<SocketAddr>) -> std::io::Result<()> {
    let probe = |addr: SocketAddr, key: &str, flag: &str, which: &str| {
        std::net::TcpListener::bind(addr)
            .map(drop)
            .map_err(|e| listen_error(e, addr, key, flag, which))
    };
    probe(listen, "server.listen", "--listen", "public")?;
    if let Some(a) = admin {
        probe(a, "server.admin_listen", "--admin-listen", "admin")?;
    }
    Ok(())
}

/// Listening sockets bound before the gateway starts — by `candor serve`'s supervisor, which
/// keeps them open across worker restarts, or by systemd (socket activation) — for
/// [`Server::bind_with`].
#[derive(Debug, Default)]
pub struct Listeners {
    /// The public listener (`server.listen`).
    pub public: Option<std::net::TcpListener>,
    /// The admin listener (`server.admin_listen`).
    pub admin: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds the public listener on `public` and the admin listener on `admin`, with the
    /// messages [`Server::bind`] gives when one cannot bind ([`Overrides::listen_addrs`]
    /// says which addresses a configuration binds).
    pub async fn bind(public: SocketAddr, admin: Option<SocketAddr>) -> std::io::Result<Listeners> {
        let public = listen(public, "server.listen", "--listen", "public")
            .await?
            .into_std()?;
        let admin = match admin {
            Some(a) => Some(
                listen(a, "server.admin_listen", "--admin-listen", "admin")
                    .await?
                    .into_std()?,
            ),
            None => None,
        };
        Ok(Listeners {
            public: Some(public),
            admin,
        })
    }
}

/// A listener bound by someone else, made a tokio listener.
fn adopt(listener: std::net::TcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

impl Server {
    /// Binds the listeners of `config` (after `overrides`). `config_path` is re-read on
    /// reload.
    pub async fn bind(
        config: Config,
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> std::io::Result<Server> {
        Self::bind_with(config, config_path, overrides, Listeners::default()).await
    }

    /// Like [`Server::bind`], serving on the listeners in `bound` that are there (already
    /// bound: passed by the supervisor or by systemd) and binding the others from the
    /// configuration. A listener passed wins over the configuration's address: an admin
    /// listener passed is served even where the file names none.
    pub async fn bind_with(
        mut config: Config,
        config_path: Option<PathBuf>,
        mut overrides: Overrides,
        bound: Listeners,
    ) -> std::io::Result<Server> {
        let started_with = config.restart_only();
        let flags = (overrides.listen.is_some(), overrides.admin_listen.is_some());
        overrides.apply(&mut config);
        let listener = match bound.public {
            Some(l) => adopt(l)?,
            None => listen(config.server.listen, "server.listen", "--listen", "public").await?,
        };
        let admin = match (bound.admin, config.server.admin_listen) {
            (Some(l), _) => Some(adopt(l)?),
            (None, Some(a)) => {
                Some(listen(a, "server.admin_listen", "--admin-listen", "admin").await?)
            }
            (None, None) => None,
        };
        // Port 0 asks the system for a free port: from now on the bound addresses are the
        // configuration's, on this start and on every reload.
        overrides.listen = Some(listener.local_addr()?);
        if let Some(a) = &admin {
            overrides.admin_listen = Some(a.local_addr()?);
        }
        overrides.apply(&mut config);
        let tls = match &config.server.tls {
            Some(files) => {
                Some(crate::http::tls::server_config(files).map_err(std::io::Error::other)?)
            }
            None => None,
        };
        let identity =
            crate::identity::store::Identity::open(&config.server.data_dir).map_err(|e| {
                std::io::Error::other(format!(
                    "cannot open the data directory {}: {e}",
                    config.server.data_dir.display()
                ))
            })?;
        // The built-in demo API, for routes whose upstream is `builtin:demo`: on a loopback
        // port of its own, its data in the data directory.
        let builtin_demo = if config.uses_builtin_demo() {
            let renderer = crate::stages::respond::Renderer::new(
                config.catalog.clone(),
                &config.server.public_base_url,
            );
            let addr = crate::demo::start(
                &config.server.data_dir,
                renderer,
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await?;
            config.point_builtin_demo(addr);
            tracing::info!(target: "candor::config", %addr, "built-in demo API serving the builtin:demo routes");
            Some(addr)
        } else {
            None
        };
        let quotas = crate::limits::quota::Quotas::load(&identity)
            .map_err(|e| std::io::Error::other(format!("cannot read quota usage: {e}")))?;
        let rate_limits = Arc::new(crate::limits::rate::Registry::default());
        let events = crate::events::EventLog::open(&config.events, &config.server.data_dir)
            .map_err(std::io::Error::other)?;
        crate::events::set_process_log(&events);
        crate::events::subscriptions::apply(&events, &config);
        let services = Arc::new(Services {
            events,
            identity: Arc::new(identity),
            replay: crate::limits::attempts::ReplayCache::default(),
            external: Arc::new(crate::identity::issuers::ExternalKeys::default()),
            quotas: Arc::new(quotas),
            failures: crate::limits::attempts::FailedAttempts::new(
                config.auth.max_failed_attempts,
                config.auth.max_failed_attempts_per_address,
                config.auth.failed_attempts_window,
                &rate_limits,
            ),
            rate_limits,
            #[cfg(feature = "otlp")]
            traces: Default::default(),
        });
        #[cfg(feature = "otlp")]
        services.traces.apply(config.traces.otlp.as_ref());
        let admin_token_file = config
            .server
            .admin_token_file
            .clone()
            .unwrap_or_else(|| config.server.data_dir.join("admin.token"));
        let admin_token = crate::admin::load_or_create_token(&admin_token_file)?;
        let forwarder = Forwarder::new();
        forwarder.targets.set_events(services.events.clone());
        let state = Arc::new(State {
            admin_token,
            admin_token_file,
            current: ArcSwap::from_pointee(Pipeline::new(&config, 1, services.clone())),
            services,
            tls: ArcSwap::from_pointee(tls),
            forwarder,
            generation: AtomicU64::new(1),
            config_path,
            overrides,
            drain_timeout: ArcSwap::from_pointee(config.server.drain_timeout),
            listen: config.server.listen,
            admin_listen: config.server.admin_listen,
            main_conns: Connections::new("main"),
            admin_conns: Connections::new("admin"),
            started_with,
            flags,
            builtin_demo,
            named_files: std::sync::Mutex::new(config.files.clone()),
            reloading: std::sync::Mutex::new(()),
        });
        let reloads = Reloads {
            #[cfg(unix)]
            hup: state.config_path.as_ref().and_then(|_| {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
            }),
            file: state.config_path.as_deref().and_then(fingerprint),
        };
        Ok(Server {
            state,
            listener,
            admin,
            restart: None,
            reloads,
        })
    }

    /// Records why the supervisor restarted this worker (read with
    /// [`crate::RestartCause::from_env`]), for the event log.
    pub fn restarted(&mut self, cause: crate::RestartCause) {
        self.restart = Some(cause);
    }

    /// Why the supervisor restarted this worker, when it did.
    pub fn restart_cause(&self) -> Option<&crate::RestartCause> {
        self.restart.as_ref()
    }

    /// The gateway listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The base of the `type` URLs in error bodies.
    pub fn public_base_url(&self) -> String {
        self.state.current().renderer().base_url().to_owned()
    }

    /// Where the admin API's token is kept.
    pub fn admin_token_file(&self) -> &std::path::Path {
        &self.state.admin_token_file
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests
    /// for up to the configured drain timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            state,
            listener,
            admin,
            restart,
            reloads,
        } = self;
        let (main_conns, admin_conns) = (state.main_conns.clone(), state.admin_conns.clone());
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(1 << 20)
            .max_headers(crate::upstream::pool::MAX_RESPONSE_HEADERS);
        // HTTP/2: streams reset before the gateway accepted them are bounded by the h2
        // library (then GOAWAY ENHANCE_YOUR_CALM); after, by the reset budget (see
        // `connections`). The header list may be larger than limits.max_header_bytes so that
        // a list over the limit reaches the transport stage and its catalog answer.
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(1 << 20)
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(256));
        let builders = Builders { h1, h2 };
        tokio::spawn(crate::identity::store::keep_fresh(
            state.services.identity.clone(),
        ));
        let quota_state = state.clone();
        tokio::spawn(crate::limits::quota::keep_saved(
            state.services.quotas.clone(),
            state.services.identity.clone(),
            move || quota_state.current().limits.quota_save_interval,
        ));
        let checked = state.clone();
        tokio::spawn(crate::upstream::health::keep_checking(
            state.forwarder.pool().clone(),
            state.forwarder.targets.clone(),
            move || {
                checked
                    .current()
                    .upstreams()
                    .filter(|(_, u)| u.health_check.is_some())
                    .map(|(_, u)| u.clone())
                    .collect()
            },
        ));
        tokio::spawn(crate::limits::rate::keep_evicting(
            state.services.rate_limits.clone(),
        ));
        let issuers_state = state.clone();
        tokio::spawn(crate::identity::issuers::keep_fresh(
            state.services.external.clone(),
            move || issuers_state.current().external_issuers().to_vec(),
        ));
        if state.config_path.is_some() {
            tokio::spawn(watch_config(state.clone(), reloads.file));
            #[cfg(unix)]
            if let Some(hup) = reloads.hup {
                tokio::spawn(reload_on_sighup(state.clone(), hup));
            }
        }
        {
            use crate::events::{Event, Severity, kinds};
            let pipeline = state.current();
            state.services.events.emit(
                Event::new(kinds::API_STARTED, Severity::Info)
                    .fact("listen", listener.local_addr().ok().map(|a| a.to_string()))
                    .fact(
                        "admin_listen",
                        admin
                            .as_ref()
                            .and_then(|a| a.local_addr().ok())
                            .map(|a| a.to_string()),
                    )
                    .fact("tls", state.tls.load().is_some())
                    .fact("config_generation", pipeline.generation)
                    .fact("version", env!("CARGO_PKG_VERSION"))
                    .fact("pid", std::process::id()),
            );
            state.config_applied(pipeline.generation, pipeline.upstreams().count(), "start");
            // After a crash: the supervisor's cause, for the "API has restarted due to an
            // error" alert.
            if let Some(cause) = restart {
                let ended_by = cause.ended_by();
                state.services.events.emit(
                    Event::new(kinds::API_RESTARTED, Severity::Warning)
                        .fact("ended_by", ended_by)
                        .fact("signal", cause.signal)
                        .fact("signal_name", cause.signal_name)
                        .fact("exit_status", cause.exit_status)
                        .fact("restarts", cause.restarts)
                        .fact("previous_pid", cause.previous_pid)
                        .fact("ended_at", cause.at)
                        .fact("pid", std::process::id()),
                );
            }
        }
        tokio::pin!(shutdown);
        loop {
            let admin_accept = async {
                match &admin {
                    Some(a) => a.accept().await,
                    None => std::future::pending().await,
                }
            };
            let (stream, peer, is_admin) = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, p)) => (s, p, false),
                    Err(e) => { accept_error(e).await; continue; }
                },
                r = admin_accept => match r {
                    Ok((s, p)) => (s, p, true),
                    Err(e) => { accept_error(e).await; continue; }
                },
                () = &mut shutdown => break,
            };
            let (conns, cap) = if is_admin {
                (&admin_conns, ADMIN_MAX_CONNECTIONS)
            } else {
                (&main_conns, state.current().limits.max_connections)
            };
            let Some(ticket) = conns.admit(cap) else {
                refuse_connection(&state, stream, is_admin, cap);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let mut builders = builders.clone();
            builders
                .h2
                .max_concurrent_streams(state.current().limits.max_h2_streams);
            let drain = conns.drain_signal();
            let state = state.clone();
            tokio::spawn(async move {
                serve_connection(state, &builders, stream, peer, is_admin, drain).await;
                drop(ticket);
            });
        }
        drop(listener);
        drop(admin);
        crate::limits::quota::persist(&state.services.quotas, &state.services.identity).await;
        let deadline = **state.drain_timeout.load();
        tracing::info!(target: "candor::server", in_flight_connections = main_conns.open() + admin_conns.open(), refused_connections = main_conns.refused() + admin_conns.refused(), deadline_s = deadline.as_secs(), "shutting down: draining");
        let drained = async {
            tokio::join!(main_conns.drain(), admin_conns.drain());
        };
        let drained = tokio::select! {
            () = drained => {
                tracing::info!(target: "candor::server", "drained; exiting");
                true
            }
            () = tokio::time::sleep(deadline) => {
                tracing::warn!(target: "candor::server", "drain deadline reached; closing remaining connections");
                false
            }
        };
        crate::limits::quota::persist(&state.services.quotas, &state.services.identity).await;
        use crate::events::{Event, Severity, kinds};
        let events = &state.services.events;
        events.emit(
            Event::new(kinds::API_STOPPED, Severity::Warning)
                .fact(
                    "reason",
                    "asked to stop: SIGTERM or SIGINT, or the supervisor is gone",
                )
                .fact("drained", drained)
                .fact("left_open", main_conns.open() + admin_conns.open()),
        );
        events.close(Duration::from_secs(5)).await;
        crate::events::subscriptions::flush(events, Duration::from_secs(5)).await;
    }
}

async fn accept_error(e: std::io::Error) {
    // Out of file descriptors and similar: log, pause briefly, keep serving.
    tracing::warn!(target: "candor::server", error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The most connections the admin listener holds open at once.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The most connections being refused (answered and closed) at once; past it, a refused
/// connection is closed without an answer.
const MAX_REFUSING: usize = 256;

/// A connection over its listener's cap: on a plain listener it gets `server_overloaded`
/// (503, Retry-After) without its request being read; on a TLS listener, which could only
/// answer after a handshake, it is closed. Either way it was counted and logged by `admit`.
fn refuse_connection(state: &Arc<State>, stream: TcpStream, is_admin: bool, cap: usize) {
    static REFUSING: AtomicUsize = AtomicUsize::new(0);
    let tls = !is_admin && state.tls.load().is_some();
    if let Ok(peer) = stream.peer_addr() {
        use crate::events::{Event, Severity, kinds};
        state.services.events.emit(
            Event::new(kinds::CONNECTION_FAILED, Severity::Warning)
                .fact("client", peer.ip().to_string())
                .fact("listener", if is_admin { "admin" } else { "main" })
                .fact(
                    "reason",
                    format!("refused: the listener has limits.max_connections ({cap}) open"),
                ),
        );
    }
    if tls || REFUSING.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        if !tls {
            REFUSING.fetch_sub(1, Ordering::AcqRel);
        }
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let err = GatewayError::new(codes::SERVER_OVERLOADED)
            .param("limit", cap.to_string())
            .param("retry_after", "1")
            .header(http::header::RETRY_AFTER, "1")
            .extension("limit", cap.into())
            .extension("retry_after", 1.into());
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            answer_and_close(&state, stream, &err, "/"),
        )
        .await;
        REFUSING.fetch_sub(1, Ordering::AcqRel);
    });
}

async fn serve_connection(
    state: Arc<State>,
    builders: &Builders,
    stream: TcpStream,
    peer: SocketAddr,
    is_admin: bool,
    drain: tokio::sync::watch::Receiver<bool>,
) {
    let tls_config = if is_admin {
        None
    } else {
        state.tls.load_full().as_ref().clone()
    };
    let tls = tls_config.is_some();
    let conn = Arc::new(guard::Shared::default());
    let accepted = std::time::Instant::now();
    let events = state.services.events.clone();
    let svc_state = state.clone();
    let svc_conn = conn.clone();
    let svc = service_fn(move |req| {
        let state = svc_state.clone();
        // Until its response has been sent, the connection is busy, not idle.
        let in_flight = svc_conn.begin();
        // A request head the guard refused: its stand-in is answered with the error.
        let refused = svc_conn.next_request().map(|r| refusal(&state, r, peer));
        // Boxed: hyper keeps room for one in-flight future per connection, and an idle
        // keep-alive connection should not hold a request's worth of state. Made in its
        // box, not on the stack and copied there whole (9 KB a request).
        Box::into_pin(Box::write(Box::new_uninit(), async move {
            let resp = match refused {
                Some(resp) => resp,
                None => {
                    let pipeline = state.current();
                    if is_admin {
                        admin::handle(&state, &pipeline, req).await
                    } else {
                        pipeline.handle(&state.forwarder, req, peer, tls).await
                    }
                }
            };
            Ok::<_, Infallible>(resp.map(|b| ClientBody::new(b, in_flight)))
        }))
    });
    let (limits, timeouts) = {
        let p = state.current();
        (p.limits, p.timeouts)
    };
    let waits = guard::Waits {
        head: timeouts.request_head,
        keepalive: timeouts.keepalive,
    };
    let driving = connections::Driving {
        builders,
        service: svc,
        shared: conn.clone(),
        drain,
        timeouts,
        peer,
    };
    let result = match tls_config {
        // Boxed: a TLS connection's state is larger, and plain connections need not carry
        // room for it.
        Some(cfg) => Box::pin({
            let (conn, events) = (conn.clone(), events.clone());
            async move {
            // The handshake, and the peek before it, end within tls_handshake of accept.
            let handshake_deadline = tokio::time::Instant::now() + timeouts.tls_handshake;
            let stream = refuse_plain_http(&state, stream, handshake_deadline).await?;
            let stream = connections::Counted::new(stream, conn.clone());
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let why = match tokio::time::timeout_at(handshake_deadline, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls_stream)) => {
                    let io = HeadGuard::new(tls_stream, conn.clone(), limits, waits);
                    return Some(connections::serve(io, driving).await);
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "candor::server", peer = %peer, error = %e, "TLS handshake failed");
                    format!("TLS handshake failed: {e}")
                }
                Err(_) => {
                    tracing::debug!(target: "candor::server", peer = %peer, "TLS handshake timed out");
                    format!(
                        "TLS handshake not done within timeouts.tls_handshake ({})",
                        crate::time::human_duration(timeouts.tls_handshake)
                    )
                }
            };
            crate::stats::bump(&crate::stats::STATS.tls_handshakes_failed);
            use crate::events::{Event, Severity, kinds};
            events.emit(
                Event::new(kinds::CONNECTION_FAILED, Severity::Notice)
                    .fact("client", peer.ip().to_string())
                    .fact("listener", "main")
                    .fact("reason", why)
                    .fact("duration_ms", accepted.elapsed().as_millis() as u64),
            );
            None
        }})
        .await,
        None => {
            let stream = connections::Counted::new(stream, conn.clone());
            let io = HeadGuard::new(stream, conn.clone(), limits, waits);
            Some(connections::serve(io, driving).await)
        }
    };
    let error = match &result {
        Some(Err(e)) => {
            tracing::debug!(target: "candor::server", peer = %peer, error = %e, "connection ended with an error");
            Some(e.to_string())
        }
        _ => None,
    };
    if result.is_some() && events.on() {
        connection_closed(&events, &conn, peer, is_admin, tls, accepted, error).await;
    }
}

/// The `connection.closed` event: bytes, duration, requests, whether after a response, and
/// who closed it.
async fn connection_closed(
    events: &crate::events::EventLog,
    conn: &guard::Shared,
    peer: SocketAddr,
    is_admin: bool,
    tls: bool,
    accepted: std::time::Instant,
    error: Option<String>,
) {
    use crate::events::{Event, Severity, kinds};
    let (_, requests) = conn.resets();
    let after_response = requests > 0 && conn.idle().is_some();
    let closed_by = match (connections::Close::marked(conn), &error) {
        (Some(why), _) => format!("gateway ({why})"),
        (None, Some(_)) => "error".to_owned(),
        (None, None) => "client".to_owned(),
    };
    let mut ev = Event::new(kinds::CONNECTION_CLOSED, Severity::Info)
        .fact("client", peer.ip().to_string())
        .fact("listener", if is_admin { "admin" } else { "main" })
        .fact("tls", tls)
        .fact("requests", requests)
        .fact("bytes_in", conn.bytes_in.load(Ordering::Relaxed))
        .fact("bytes_out", conn.bytes_out.load(Ordering::Relaxed))
        .fact("duration_ms", accepted.elapsed().as_millis() as u64)
        .fact("after_response", after_response)
        .fact("closed_by", closed_by);
    if let Some(e) = error {
        ev = ev.fact("error", e);
    }
    events.send(ev).await;
}

/// The answer to a request head the guard refused (see [`guard`]): the catalog error, with
/// a new request id, closing the connection.
fn refusal(state: &State, r: &guard::Rejection, peer: SocketAddr) -> Response<GatewayBody> {
    let request_id = crate::http::request_id::new_ulid();
    let pipeline = state.current();
    // Before a request is parsed only the listener's profile is known.
    let mut resp = pipeline.renderer().render_in(
        &r.error,
        pipeline.listener_profile(),
        &r.target,
        &request_id,
        None,
    );
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    log_refusal(
        state,
        &request_id,
        resp.status().as_u16(),
        &r.error,
        peer,
        &r.target,
    );
    resp
}

/// The request log line and `request.rejected` event of a request refused before it was
/// parsed; counted in `/stats`.
fn log_refusal(
    state: &State,
    request_id: &str,
    status: u16,
    err: &GatewayError,
    peer: SocketAddr,
    target: &str,
) {
    let ended_by = err.ended_by();
    crate::stats::STATS.error(err.code, ended_by);
    tracing::info!(target: "candor::request", request_id = %request_id, status, code = err.code, source = err.source.as_str(), ended_by = ended_by.as_str(), trail = "[{\"stage\":\"accept\",\"outcome\":\"reject\"}]", "request");
    let events = &state.services.events;
    if !events.on() {
        return;
    }
    use crate::events::{Event, Facts, RequestFacts, Severity, kinds};
    let mut trail = crate::pipeline::trail::Trail::default();
    trail.record(
        "accept",
        "reject",
        Some(err.code),
        err.params
            .iter()
            .map(|(k, v)| (*k, crate::events::kept_path(v).into_owned()))
            .collect(),
    );
    let mut ev = Event::new(
        kinds::REQUEST_REJECTED,
        if status >= 500 {
            Severity::Error
        } else {
            Severity::Notice
        },
    )
    .request(request_id)
    .code(err.code);
    let facts = RequestFacts {
        method: None,
        path: crate::events::kept_path(target.split('?').next().unwrap_or("")),
        client: peer.ip(),
        status,
        source: err.source.as_str(),
        ended_by: ended_by.as_str(),
        duration_us: 0,
        upstream_us: None,
        config_generation: state.generation.load(Ordering::Relaxed),
        docs: Some(format!(
            "{}/errors/{}",
            state.current().renderer().base_url(),
            err.code
        )),
        trail,
    };
    ev.facts = Facts::Request(&facts);
    events.emit(ev);
}

/// Plain HTTP sent to a TLS listener: answered in plain HTTP with `https_required` (a TLS
/// connection starts with a handshake record, byte 0x16). Anything else that is not TLS is
/// closed. Returns the stream when it starts like TLS.
async fn refuse_plain_http(
    state: &State,
    stream: TcpStream,
    deadline: tokio::time::Instant,
) -> Option<TcpStream> {
    let mut buf = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(Ok(_)) | Err(_) => return None,
            Ok(Err(_)) => return Some(stream),
        };
        if buf[0] == 0x16 {
            return Some(stream);
        }
        if let Some(path) = crate::http::grammar::plain_http_path(&buf[..n]) {
            let err = GatewayError::new(codes::HTTPS_REQUIRED).param("path", path.clone());
            answer_and_close(state, stream, &err, &path).await;
            return None;
        }
        // A request line still arriving (`G`, then `ET /x ...`): look again shortly, until
        // the handshake deadline. Anything else is no HTTP and no TLS: closed.
        let method = buf[..n].split(|&b| b == b' ').next().unwrap_or_default();
        let arriving = n < buf.len()
            && !buf[..n].contains(&b'\n')
            && method.iter().all(|&b| b.is_ascii_alphabetic());
        if !arriving || tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Answers `err` outside the HTTP parser, then closes the connection.
async fn answer_and_close(state: &State, mut stream: TcpStream, err: &GatewayError, target: &str) {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let request_id = crate::http::request_id::new_ulid();
    let pipeline = state.current();
    let profile = pipeline.listener_profile();
    let (status, body, content_type) =
        pipeline
            .renderer()
            .body_in(err, profile, target, &request_id, None);
    let rid_name = crate::stages::respond::request_id_header(profile);
    log_refusal(state, &request_id, status.as_u16(), err, peer, target);
    let mut extra = String::new();
    for (name, value) in &err.headers {
        if let Ok(v) = value.to_str() {
            extra.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncache-control: no-store\r\n{rid_name}: {request_id}\r\n{extra}connection: close\r\ncontent-length: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        content_type,
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Read what the client already sent so that closing does not reset the connection
    // before it has read the answer.
    let mut sink = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The identity store and admin credential, for the admin listener.
impl State {
    /// Accounts, clients and keys, shared.
    pub(crate) fn identity_arc(&self) -> Arc<crate::identity::store::Identity> {
        self.services.identity.clone()
    }

    /// The admin API's bearer token.
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

impl State {
    /// Adds `files` to those watched (a rejected change's, kept with the running ones).
    fn watch_also(&self, files: &[crate::config::NamedFile]) {
        let mut named = self
            .named_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for f in files {
            if !named.iter().any(|n| n.path == f.path) {
                named.push(f.clone());
            }
        }
    }

    /// The other files the configuration names, each with its fingerprint from before it
    /// was read.
    fn named_files(&self) -> Vec<crate::config::NamedFile> {
        self.named_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reloads when the modification time or size of the file, or of a file it names (a
/// profile, a schema, a TLS certificate, ...), changes; checked twice a second. The file's
/// own change is compared from `loaded`, its fingerprint when the server was bound; a named
/// file's from its fingerprint before the load that named it read it. A file that is
/// missing for a moment (an editor replacing it) is not a change: it is compared again
/// once it is back. A change is applied once the files have been still for one check, so
/// that a certificate and its key written one after the other are loaded together.
async fn watch_config(state: Arc<State>, loaded: Option<(SystemTime, u64)>) {
    let Some(path) = state.config_path.clone() else {
        return;
    };
    let mut last: std::collections::HashMap<PathBuf, Option<(SystemTime, u64)>> =
        std::collections::HashMap::from([(path.clone(), loaded)]);
    let mut pending: Option<PathBuf> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let named = state.named_files();
        // Files no longer named are forgotten (named again later, they start afresh).
        last.retain(|p, _| *p == path || named.iter().any(|n| n.path == *p));
        let mut changed = None;
        let files = std::iter::once((&path, loaded)).chain(named.iter().map(|n| (&n.path, n.seen)));
        for (f, seen_when_read) in files {
            let now = fingerprint(f);
            let before = last.entry(f.clone()).or_insert(seen_when_read);
            if now.is_some() && *before != now {
                *before = now;
                changed.get_or_insert_with(|| f.clone());
            }
        }
        match (changed, pending.take()) {
            // Still changing: wait until it is still.
            (Some(f), _) => pending = Some(f),
            (None, Some(f)) => {
                tracing::info!(target: "candor::config", file = %f.display(), "changed: reloading configuration");
                let _ = state.reload();
            }
            (None, None) => {}
        }
    }
}

#[cfg(unix)]
async fn reload_on_sighup(state: Arc<State>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        tracing::info!(target: "candor::config", "SIGHUP: reloading configuration");
        let _ = state.reload();
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: call it before announcing the listeners, so that a SIGTERM
/// right after start drains instead of ending the process at once.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let (Ok(mut term), Ok(mut int)) = (term, int) else {
                tracing::error!(target: "candor::server", "cannot install the SIGTERM and SIGINT handlers; stopping needs SIGKILL");
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!(target: "candor::server", "SIGTERM received"),
                _ = int.recv() => tracing::info!(target: "candor::server", "SIGINT received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
