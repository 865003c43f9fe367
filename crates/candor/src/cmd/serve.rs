//! `candor serve`: the gateway, or with no configuration the embedded demo and its tour.

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

pub(crate) fn serve(
    config_path: Option<PathBuf>,
    overrides: Overrides,
    data_dir: PathBuf,
) -> ExitCode {
    init_logging();
    let demo_mode = config_path.is_none();
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
        let (config, path, demo_client) = match loaded {
            Some(c) => (c, config_path, None),
            None => match start_demo(&data_dir, &overrides).await {
                Ok((c, p, creds)) => (c, p, Some(creds)),
                Err(e) => {
                    eprintln!("candor: cannot start the demo: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let server = match Server::bind(config, path.clone(), overrides).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("candor: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr().expect("bound");
        let scheme = if server.public_base_url().starts_with("https") {
            "https"
        } else {
            "http"
        };
        println!("candor listening on {scheme}://{addr}");
        if let Some(a) = server.admin_addr() {
            println!("candor admin listening on http://{a} (/health, /catalog, /errors/{{code}}, and, with the admin token, /stats and the admin API)");
            println!("admin API token: in {}", server.admin_token_file().display());
        }
        if let (true, Some(creds)) = (demo_mode, demo_client) {
            let admin = server
                .admin_addr()
                .map(|a| (a, server.admin_token_file().to_owned()));
            print_demo_tour(addr, &data_dir, path.as_deref(), &creds, admin);
        }
        server.run(candor_gateway::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

pub(crate) async fn start_demo(
    data_dir: &Path,
    overrides: &Overrides,
) -> std::io::Result<(Config, Option<PathBuf>, (String, String))> {
    let renderer = candor_gateway::Renderer::new(
        std::sync::Arc::new(Catalog::builtin().clone()),
        &format!(
            "http://{}",
            overrides
                .listen
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid"))
        ),
    );
    let api = demo::start(data_dir, renderer).await?;
    let listen = overrides
        .listen
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid"));
    let admin = overrides
        .admin_listen
        .unwrap_or_else(|| "127.0.0.1:9090".parse().expect("valid"));
    let path = data_dir.join("candor.toml");
    std::fs::write(data_dir.join(demo::OPENAPI_FILE), demo::OPENAPI_DOCUMENT)?;
    std::fs::write(&path, demo::config_text(listen, admin, api))?;
    let config = Config::load(&path).map_err(|r| std::io::Error::other(r.to_string()))?;
    let creds = demo::demo_credentials(data_dir).map_err(std::io::Error::other)?;
    Ok((config, Some(path), creds))
}

pub(crate) fn print_demo_tour(
    addr: SocketAddr,
    data_dir: &Path,
    config: Option<&Path>,
    (client_id, secret): &(String, String),
    admin: Option<(SocketAddr, std::path::PathBuf)>,
) {
    let base = format!("http://{addr}");
    let json = "-H 'Content-Type: application/json'";
    let auth = "-H \"Authorization: Bearer $TOKEN\"";
    println!(
        "\ncandor demo: the gateway in front of a small devices API (SQLite in {data}/).\n\
config: {config} (edit it while candor runs: valid changes apply at once)\n\
demo client of account acme (scopes devices:read devices:write):\n\
  client_id:     {client_id}\n\
  client_secret: {secret}\n\n\
Try:\n\
  # get a token (client credentials), then create a device (201) and list them\n\
  TOKEN=$(curl -s -u {client_id}:{secret} -d grant_type=client_credentials {base}/oauth/token | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n\
  curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\":\"Hall sensor\",\"serial\":\"SN-0001\"}}'\n\
  curl -i {base}/v1/customers/acme/devices {auth}\n\
  # no token, and another customer's account: 401 credentials_missing, 403 account_mismatch\n\
  curl -i {base}/v1/customers/acme/devices\n\
  curl -i {base}/v1/customers/globex/devices {auth}\n\
  # a typo in the path: 404 route_not_found that names the route you meant\n\
  curl -i {base}/v1/customers/acme/device\n\
  # a body that is not JSON, and a format the API cannot answer in: 415 and 406, from the gateway\n\
  curl -i -X POST {base}/v1/customers/acme/devices {auth} -H 'Content-Type: application/xml' -d '<device/>'\n\
  curl -i {base}/v1/customers/acme/devices {auth} -H 'Accept: application/xml'\n\
  # JSON that does not parse, and a form body sent as JSON: 400 malformed_body with what was found, line and column\n\
  curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\": \"Hall sensor\", \"serial\" = 1}}'\n\
  curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d 'name=Hall+sensor&serial=SN-0002'\n\
  # every field problem at once: 400 validation_failed, from the API's OpenAPI document ({openapi})\n\
  curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\":\"\",\"serial\":\"x y\",\"kind\":\"toaster\"}}'\n\
  # 100 quick requests: the burst of 30 passes, then 429 rate_limited with Retry-After; every answer carries RateLimit-Policy and RateLimit\n\
  for i in $(seq 100); do curl -s -o /dev/null -w '%{{http_code}}\\n' {base}/v1/customers/acme/devices {auth}; done | sort | uniq -c\n\
  curl -i {base}/v1/customers/acme/devices {auth}\n\
  # an API under maintenance: 503 with Retry-After\n\
  curl -i {base}/v1/reports\n\
  # what any error code means, and what to check\n\
  curl -s {base}/errors/route_not_found\n\
  # a request head that never ends: 408 request_timeout after timeouts.request_head (10 s)\n\
  (printf 'GET /v1/reports HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: '; sleep 12) | curl -s telnet://{addr}\n\
  # an unknown query parameter, and a device id that is not a number: 400 validation_failed naming the operation\n\
  curl -i '{base}/v1/customers/acme/devices?limt=5' {auth}\n\
  curl -i {base}/v1/customers/acme/devices/abc {auth}\n\
  # each route's plan: the stages its requests pass, in order\n\
  candor check --config {config}\n\
  # the OpenAPI document with every error each operation can get, and the catalog as OpenAPI components\n\
  candor openapi --config {config} --spec {openapi}\n\
  candor openapi\n",
        data = data_dir.display(),
        config = config.map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
        openapi = data_dir.join(demo::OPENAPI_FILE).display(),
    );
    if let Some((admin, token_file)) = admin {
        println!(
            "  # what the edge refused, cut off and closed, and who ended each failed exchange\n\
  curl -s -H \"Authorization: Bearer $(cat {token})\" http://{admin}/stats\n\
  # each route's upstream targets: healthy or ejected, and their recent failures\n\
  curl -s -H \"Authorization: Bearer $(cat {token})\" http://{admin}/upstreams\n",
            token = token_file.display()
        );
    }
}

/// Logs as JSON lines; `CANDOR_LOG` sets the filter.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
