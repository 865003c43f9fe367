//! `candor serve`: the gateway, or with no configuration the embedded demo and its tour.

use super::logging::{LogFormat, init_logging_as};
use candor_catalog::Catalog;
use candor_gateway::{Config, Overrides, Server, demo};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub(crate) fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// How `candor serve` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A supervisor holding the listening sockets, and the gateway in a worker process it
    /// restarts when it dies (the default on Unix; see `supervisor`).
    Supervisor,
    /// One process (`--no-supervisor`, for systemd and the like), on the sockets systemd
    /// passes when it passes any (socket activation).
    Alone,
    /// A worker started by the supervisor (the hidden `--supervised-worker`).
    Worker,
}

/// The demo's addresses: `--listen` and `--admin-listen`, or 127.0.0.1:8080 and :9090.
pub(crate) fn demo_addresses(overrides: &Overrides) -> (SocketAddr, SocketAddr) {
    (
        overrides
            .listen
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid")),
        overrides
            .admin_listen
            .unwrap_or_else(|| "127.0.0.1:9090".parse().expect("valid")),
    )
}

pub(crate) fn serve(
    config_path: Option<PathBuf>,
    overrides: Overrides,
    data_dir: PathBuf,
    reset_demo: bool,
    log_format: LogFormat,
    role: Role,
) -> ExitCode {
    init_logging_as(log_format);
    let demo_mode = config_path.is_none();
    if reset_demo && !demo_mode {
        eprintln!(
            "candor: --reset-demo resets the demo's files in its data directory; it takes no --config (a configured gateway's files are yours to manage)"
        );
        return ExitCode::from(2);
    }
    #[cfg(unix)]
    if role == Role::Supervisor {
        return super::supervisor::supervise(
            config_path.as_deref(),
            &overrides,
            &data_dir,
            reset_demo,
        );
    }
    // A restarted worker: the previous one ended abnormally; the supervisor says how.
    let restart = match role {
        Role::Worker => candor_gateway::RestartCause::from_env(),
        _ => None,
    };
    #[cfg(unix)]
    let link = match role {
        Role::Worker => match super::supervisor::SupervisorLink::from_stdin() {
            Ok(link) => Some(link),
            Err(e) => {
                eprintln!("candor: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    #[cfg(unix)]
    let passed = match super::supervisor::passed_listeners() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("candor: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(not(unix))]
    let passed = candor_gateway::Listeners::default();
    // A restarted worker keeps what the first one started with (its tour too).
    if reset_demo
        && restart.is_none()
        && let Err(e) = reset_demo_files(&data_dir)
    {
        eprintln!("candor: cannot reset the demo: {e}");
        return ExitCode::FAILURE;
    }
    let loaded = match &config_path {
        Some(p) => match Config::load(p) {
            Ok(c) => {
                c.log_notices(p);
                Some(c)
            }
            Err(report) => {
                eprint!("{report}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let workers = loaded.as_ref().map_or(2, |c| c.server.workers);
    let rt = match runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("candor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let bound = passed.public.is_some();
        let (config, path, demo) = match loaded {
            Some(c) => {
                // The built-in demo API an example configuration forwards to.
                if let Some(at) = c.demo_api {
                    let renderer = candor_gateway::Renderer::new(
                        c.catalog.clone(),
                        &c.server.public_base_url,
                    );
                    if let Err(e) = demo::start(&c.server.data_dir, renderer, at).await {
                        eprintln!(
                            "candor: cannot serve the demo API on {at} ([demo_api] listen): {e}"
                        );
                        return ExitCode::FAILURE;
                    }
                }
                (c, config_path, None)
            }
            None => match start_demo(&data_dir, &overrides, bound).await {
                Ok(d) => (d.config, Some(d.path), Some((d.client, d.kept))),
                Err(DemoStart::Config(report, path)) => {
                    eprint!("{report}");
                    eprintln!(
                        "candor: the demo keeps your configuration {} as it is: fix what is listed above (the running demo would reload it), or start over with `candor serve --reset-demo`, which says what it deletes",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
                Err(DemoStart::Io(e)) => {
                    eprintln!("candor: cannot start the demo: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let mut server = match Server::bind_with(config, path.clone(), overrides, passed).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("candor: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Before the listeners are announced: a SIGTERM from then on drains.
        let shutdown = candor_gateway::shutdown_signal();
        if let Some(cause) = restart {
            tracing::warn!(target: "candor::supervisor", signal = cause.signal, signal_name = cause.signal_name, exit_status = cause.exit_status, restarts = cause.restarts, previous_pid = cause.previous_pid, at = %cause.at, "restarted by the supervisor: the previous worker (pid {}) ended by {} at {} (restart {} in a row)", cause.previous_pid, cause.ended_by(), cause.at, cause.restarts);
            server.restarted(cause);
        }
        if server.restart_cause().is_none() {
            announce(&server, demo, &data_dir, path.as_deref());
        }
        // Ready: the supervisor counts this worker as serving from now on; the worker drains
        // and exits when the supervisor is gone.
        #[cfg(unix)]
        let supervisor_gone = match link {
            Some(link) => Some(link.ready().await),
            None => None,
        };
        #[cfg(not(unix))]
        let supervisor_gone: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        let stop = async move {
            let gone = async move {
                match supervisor_gone {
                    Some(gone) => gone.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown => {}
                () = gone => {}
            }
        };
        server.run(stop).await;
        ExitCode::SUCCESS
    })
}

/// The listening lines (the tests and the tour read them), and the demo's tour.
fn announce(
    server: &Server,
    demo: Option<(demo::DemoClient, bool)>,
    data_dir: &Path,
    config: Option<&Path>,
) {
    let Ok(addr) = server.local_addr() else {
        return;
    };
    let scheme = if server.public_base_url().starts_with("https") {
        "https"
    } else {
        "http"
    };
    println!("candor listening on {scheme}://{addr}");
    if let Some(a) = server.admin_addr() {
        println!(
            "candor admin listening on http://{a} (/health, /catalog, /errors/{{code}}, and, with the admin token, /stats, /metrics, /events, /requests/{{id}} and the admin API)"
        );
        println!(
            "admin API token: in {}",
            server.admin_token_file().display()
        );
    }
    if let Some((client, kept)) = demo {
        let admin = server
            .admin_addr()
            .map(|a| (a, server.admin_token_file().to_owned()));
        print_demo_tour(addr, data_dir, config, &client, kept, admin);
    }
}

/// Deletes the demo's files, saying which and what each held.
fn reset_demo_files(data_dir: &Path) -> std::io::Result<()> {
    let deleted = demo::reset(data_dir)?;
    if deleted.is_empty() {
        println!(
            "candor: --reset-demo: {} holds none of the demo's files; the demo starts fresh",
            data_dir.display()
        );
        return Ok(());
    }
    println!(
        "candor: --reset-demo: deleting the demo's files in {} (other files there stay):",
        data_dir.display()
    );
    for (path, what) in deleted {
        println!("  {}  ({what})", path.display());
    }
    Ok(())
}

/// A demo ready to serve.
pub(crate) struct Demo {
    pub(crate) config: Config,
    pub(crate) path: PathBuf,
    pub(crate) client: demo::DemoClient,
    /// The data directory was there already: its files were kept, not written.
    pub(crate) kept: bool,
}

/// Why the demo did not start.
pub(crate) enum DemoStart {
    /// The kept configuration does not load (the report, and the file).
    Config(candor_gateway::ConfigReport, PathBuf),
    /// A file or a port.
    Io(std::io::Error),
}

impl From<std::io::Error> for DemoStart {
    fn from(e: std::io::Error) -> Self {
        DemoStart::Io(e)
    }
}

/// Starts the demo API and loads the demo configuration. On the first start (no
/// configuration in `data_dir`) the configuration, the OpenAPI document, the accounts and
/// the demo client are written; on later starts all of them are kept as they are, edits
/// included, and the demo API is served where the configuration points.
///
/// `bound`: the gateway's listeners were bound before (by the supervisor or systemd), so
/// they are not probed.
pub(crate) async fn start_demo(
    data_dir: &Path,
    overrides: &Overrides,
    bound: bool,
) -> Result<Demo, DemoStart> {
    let (listen, admin) = demo_addresses(overrides);
    let renderer = |base: &str| {
        candor_gateway::Renderer::new(std::sync::Arc::new(Catalog::builtin().clone()), base)
    };
    let path = data_dir.join(demo::CONFIG_FILE);
    let kept_addr = if path.exists() {
        match demo::kept_api_addr(data_dir) {
            Some(at) => Some(at),
            None => {
                set_aside(data_dir)?;
                None
            }
        }
    } else {
        None
    };
    let kept = kept_addr.is_some();
    let config = if let Some(at) = kept_addr {
        let config = Config::load(&path).map_err(|r| DemoStart::Config(r, path.clone()))?;
        // The demo API's error pages are the gateway's, where the kept configuration has it.
        let base = match overrides.listen {
            Some(l) if l.port() != 0 => format!("http://{l}"),
            _ => config.server.public_base_url.clone(),
        };
        demo::start(data_dir, renderer(&base), at).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot serve the demo API on {at}, where {} sends the devices API's requests (kept in {}): {e}; if another candor serves this demo already, use that one; otherwise stop what holds the port",
                    path.display(),
                    data_dir.join(demo::API_ADDR_FILE).display()
                ),
            )
        })?;
        config
    } else {
        // Nothing is written before the gateway's own ports are known to be free.
        if !bound {
            candor_gateway::probe_listeners(listen, Some(admin))?;
        }
        let loopback = "127.0.0.1:0".parse().expect("valid");
        let api = demo::start(data_dir, renderer(&format!("http://{listen}")), loopback).await?;
        demo::write_files(data_dir, listen, admin, api)?;
        Config::load(&path).map_err(|r| DemoStart::Config(r, path.clone()))?
    };
    let client = demo::demo_client(data_dir).map_err(std::io::Error::other)?;
    Ok(Demo {
        config,
        path,
        client,
        kept,
    })
}

/// A kept configuration whose demo API address is missing, unreadable or not a loopback
/// address (an earlier candor wrote none, or the file was changed): the configuration's
/// upstream cannot be trusted to point at the demo API, so it and the OpenAPI document are
/// set aside, never deleted, and new ones are written.
fn set_aside(data_dir: &Path) -> std::io::Result<()> {
    let stamp = candor_gateway::unix_now();
    let mut kept = Vec::new();
    for name in [demo::CONFIG_FILE, demo::OPENAPI_FILE] {
        let from = data_dir.join(name);
        if from.exists() {
            let to = data_dir.join(format!("{name}.{stamp}.bak"));
            std::fs::rename(&from, &to)?;
            kept.push(format!("{} as {}", from.display(), to.display()));
        }
    }
    println!(
        "candor: {} is missing, unreadable or not a loopback address, so where the demo API runs is unknown; new demo files are written, and yours are kept: {}",
        data_dir.join(demo::API_ADDR_FILE).display(),
        kept.join(", ")
    );
    Ok(())
}

pub(crate) fn print_demo_tour(
    addr: SocketAddr,
    data_dir: &Path,
    config: Option<&Path>,
    client: &demo::DemoClient,
    kept: bool,
    admin: Option<(SocketAddr, std::path::PathBuf)>,
) {
    let base = format!("http://{addr}");
    let json = "-H 'Content-Type: application/json'";
    let auth = "-H \"Authorization: Bearer $TOKEN\"";
    let client_id = &client.client_id;
    let secret_file = client.secret_file.display();
    let rotate = format!(
        "candor clients rotate {client_id} --data-dir {}",
        data_dir.display()
    );
    let secret_line = match (&client.new_secret, client.secret_file_current) {
        (Some(secret), _) => format!(
            "{secret}\n  (shown once; kept for the tour in {secret_file}; a new one: {rotate})"
        ),
        (None, true) => format!("in {secret_file} (a new one: {rotate})"),
        (None, false) => format!(
            "{secret_file} no longer holds it (rotated?): `{rotate}` prints a new one; put it in that file for the tour"
        ),
    };
    let start = if kept {
        format!(
            "candor demo: reusing {data}/: the configuration, the devices, the accounts and the demo client are kept as they were (`candor serve --reset-demo` starts over, saying what it deletes)\n",
            data = data_dir.display()
        )
    } else {
        String::new()
    };
    println!(
        "\n{start}candor demo: the gateway in front of a small devices API (SQLite in {data}/).\n\
config: {config} (edit it while candor runs: valid changes apply at once; a restart keeps it)\n\
demo client of account acme (scopes devices:read devices:write):\n\
\x20 client_id:     {client_id}\n\
\x20 client_secret: {secret_line}\n\n\
Try:\n\
\x20 # get a token (client credentials), then create a device (201) and list them\n\
\x20 TOKEN=$(curl -s -u {client_id}:$(cat {secret_file}) -d grant_type=client_credentials {base}/oauth/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n\
\x20 curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\":\"Hall sensor\",\"serial\":\"SN-0001\"}}'\n\
\x20 curl -i {base}/v1/customers/acme/devices {auth}\n\
\x20 # no token, and another customer's account: 401 credentials_missing, 403 account_mismatch\n\
\x20 curl -i {base}/v1/customers/acme/devices\n\
\x20 curl -i {base}/v1/customers/globex/devices {auth}\n\
\x20 # a typo in the path: 404 route_not_found that names the route you meant\n\
\x20 curl -i {base}/v1/customers/acme/device\n\
\x20 # a body that is not JSON, and a format the API cannot answer in: 415 and 406, from the gateway\n\
\x20 curl -i -X POST {base}/v1/customers/acme/devices {auth} -H 'Content-Type: application/xml' -d '<device/>'\n\
\x20 curl -i {base}/v1/customers/acme/devices {auth} -H 'Accept: application/xml'\n\
\x20 # JSON that does not parse, and a form body sent as JSON: 400 malformed_body with what was found, line and column\n\
\x20 curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\": \"Hall sensor\", \"serial\" = 1}}'\n\
\x20 curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d 'name=Hall+sensor&serial=SN-0002'\n\
\x20 # every field problem at once: 400 validation_failed, from the API's OpenAPI document ({openapi})\n\
\x20 curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\":\"\",\"serial\":\"x y\",\"kind\":\"toaster\"}}'\n\
\x20 # 100 quick requests: the burst of 30 passes, then 429 rate_limited with Retry-After; every answer carries RateLimit-Policy and RateLimit\n\
\x20 for i in $(seq 100); do curl -s -o /dev/null -w '%{{http_code}}\\n' {base}/v1/customers/acme/devices {auth}; done | sort | uniq -c\n\
\x20 curl -i {base}/v1/customers/acme/devices {auth}\n\
\x20 # an API under maintenance: 503 with Retry-After\n\
\x20 curl -i {base}/v1/reports\n\
\x20 # what any error code means, and what to check\n\
\x20 curl -s {base}/errors/route_not_found\n\
\x20 # the story of one request by its id (X-Request-Id, or request_id in an error body), from the event log: each stage's decision, what to check\n\
\x20 candor explain $(curl -s {base}/v1/customers/acme/device | sed -E 's/.*\"request_id\":\"([^\"]+)\".*/\\1/') --data-dir {data}\n\
\x20 # a request head that never ends: 408 request_timeout after timeouts.request_head (10 s)\n\
\x20 (printf 'GET /v1/reports HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: '; sleep 12) | curl -s telnet://{addr}\n\
\x20 # an unknown query parameter, and a device id that is not a number: 400 validation_failed naming the operation\n\
\x20 curl -i '{base}/v1/customers/acme/devices?limt=5' {auth}\n\
\x20 curl -i {base}/v1/customers/acme/devices/abc {auth}\n\
\x20 # each route's plan: the stages its requests pass, in order\n\
\x20 candor check --config {config}\n\
\x20 # the OpenAPI document with every error each operation can get, and the catalog as OpenAPI components\n\
\x20 candor openapi --config {config} --spec {openapi}\n\
\x20 candor openapi\n",
        data = data_dir.display(),
        config = config.map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
        openapi = data_dir.join(demo::OPENAPI_FILE).display(),
    );
    if let Some((admin, token_file)) = admin {
        println!(
            "  # what the edge refused, cut off and closed, and who ended each failed exchange\n\
\x20 curl -s -H \"Authorization: Bearer $(cat {token})\" http://{admin}/stats\n\
\x20 # each route's upstream targets: healthy or ejected, and their recent failures\n\
\x20 curl -s -H \"Authorization: Bearer $(cat {token})\" http://{admin}/upstreams\n\
\x20 curl -s -H \"Authorization: Bearer $(cat {token})\" http://{admin}/metrics  # Prometheus metrics (docs/metrics.md)\n\
\x20 # the API event log: the newest warnings and worse (filters: type=request.*, route, code, request_id, limit)\n\
\x20 curl -s -H \"Authorization: Bearer $(cat {token})\" 'http://{admin}/events?severity=warning'\n",
            token = token_file.display()
        );
    }
}
