//! `candor`: the API gateway whose errors are the product.
//!
//! Run `candor --help` for the commands; `candor serve` with no configuration starts the
//! embedded demo.

use candor_catalog::{Catalog, Entry, codes};
use candor_gateway::{
    Account, AccountStatus, Identity, NewAccount, NewClient, StoreError, did_you_mean,
};
use candor_gateway::{Config, Overrides, Server, demo};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc: a request allocates and frees dozens of small buffers (header maps, URIs, body
/// chunks); mimalloc serves them in fewer cycles than the system allocator (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// candor — an API gateway whose every error says what happened, with the values involved,
/// every field at fault, a request id, whether to retry, and a troubleshooting page.
#[derive(Parser)]
#[command(name = "candor", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config it runs the embedded demo: the gateway on
    /// 127.0.0.1:8080 in front of a small devices API kept in ./candor-data/.
    Serve {
        /// Configuration file (TOML). Reloaded on SIGHUP and whenever the file changes.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on, overriding the file's server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the admin listener (health, catalog, error pages).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Data directory of the demo mode.
        #[arg(long, default_value = "candor-data")]
        data_dir: PathBuf,
    },
    /// Check a configuration file and report every problem at once, with line and column.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage accounts (SQLite in the data directory; a running gateway picks changes up).
    Accounts {
        #[command(subcommand)]
        command: AccountCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage OAuth clients of accounts. A client's secret is printed once, at creation.
    Clients {
        #[command(subcommand)]
        command: ClientCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage API keys of accounts. A key is printed once, at creation.
    Keys {
        #[command(subcommand)]
        command: ApiKeyCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Manage the gateway's token signing keys.
    SigningKeys {
        #[command(subcommand)]
        command: KeyCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read the error catalog.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
        /// Include the operator catalog named by this configuration.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

/// Where the identity store is.
#[derive(clap::Args)]
struct StoreArgs {
    /// Use the data directory named by this configuration (server.data_dir).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The data directory (default: candor-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Id (default: generated). Letters, digits, '-' and '_'.
        #[arg(long)]
        id: Option<String>,
        /// Requests per day.
        #[arg(long)]
        quota_per_day: Option<i64>,
    },
    /// List accounts.
    List,
    /// Show one account and its clients.
    Show {
        /// Account id.
        id: String,
    },
    /// Suspend an account: its tokens stop working at once.
    Suspend {
        /// Account id.
        id: String,
    },
    /// Reactivate a suspended account.
    Activate {
        /// Account id.
        id: String,
    },
    /// Delete an account (its id is kept so it is never reused).
    Delete {
        /// Account id.
        id: String,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client; prints its id and secret (the secret only now).
    Add {
        /// Owning account.
        #[arg(long)]
        account: String,
        /// Scopes it may be granted, space- or comma-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Token lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        lifetime: i64,
        /// Require a TOTP second factor at the token endpoint.
        #[arg(long)]
        second_factor: bool,
    },
    /// List clients.
    List,
    /// Show one client (never its secret).
    Show {
        /// client_id
        id: String,
    },
    /// Register the public keys (a JWK set file) the client signs JWT-bearer assertions with.
    SetKeys {
        /// client_id
        id: String,
        /// A JWK set: {"keys": [...]} with Ed25519 (OKP), P-256 (EC) or RSA public keys.
        #[arg(long)]
        jwks: PathBuf,
    },
    /// Give a client a new secret; prints it once. The old one stops working.
    Rotate {
        /// client_id
        id: String,
    },
    /// Delete a client.
    Delete {
        /// client_id
        id: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; prints it once.
    Add {
        /// Owning account.
        #[arg(long)]
        account: String,
        /// Scopes it grants, space- or comma-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Expiry, as a duration from now ("30d", "12h", "90m", "3600s").
        #[arg(long)]
        expires_in: Option<String>,
        /// A client network the key may be used from (repeatable).
        #[arg(long = "allow-ip")]
        allow_ip: Vec<String>,
        /// A Referer pattern the key may be used with, `*` matching any text (repeatable).
        #[arg(long = "allow-referer")]
        allow_referer: Vec<String>,
    },
    /// List API keys (never their secrets).
    List,
    /// Show one API key.
    Show {
        /// The key id (the part after ck_).
        id: String,
    },
    /// Give an API key a new secret; prints it once. The old key stops working at once;
    /// account, scopes, expiry and restrictions stay.
    Rotate {
        /// The key id.
        id: String,
    },
    /// Delete an API key: it stops working at once.
    Delete {
        /// The key id.
        id: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// List signing keys.
    List,
    /// Create a new signing key; the old one keeps verifying tokens it signed.
    Rotate,
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// List every error code with its status and title.
    List,
    /// Show one entry: what it means, its checklist, its retry class.
    Show {
        /// The code, e.g. route_not_found.
        code: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
            data_dir,
        } => serve(
            config,
            Overrides {
                listen,
                admin_listen,
            },
            data_dir,
        ),
        Command::Check { config } => check(&config),
        Command::Catalog { command, config } => catalog(command, config.as_deref()),
        Command::Accounts { command, store } => with_identity(&store, |id| accounts(id, command)),
        Command::Clients { command, store } => with_identity(&store, |id| clients(id, command)),
        Command::Keys { command, store } => with_identity(&store, |id| api_keys(id, command)),
        Command::SigningKeys { command, store } => with_identity(&store, |id| keys(id, command)),
    }
}

fn init_logging() {
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

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
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

fn serve(config_path: Option<PathBuf>, overrides: Overrides, data_dir: PathBuf) -> ExitCode {
    init_logging();
    let demo_mode = config_path.is_none();
    let loaded = match &config_path {
        Some(p) => match Config::load(p) {
            Ok(c) => Some(c),
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
                eprintln!("candor: cannot listen: {e}");
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
            println!("candor admin listening on http://{a} (/health, /catalog, /errors/{{code}}, and the admin API)");
            println!("admin API token: in {}", server.admin_token_file().display());
        }
        if let (true, Some(creds)) = (demo_mode, demo_client) {
            print_demo_tour(addr, &data_dir, path.as_deref(), &creds);
        }
        server.run(candor_gateway::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

async fn start_demo(
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
    std::fs::write(&path, demo::config_text(listen, admin, api))?;
    let config = Config::load(&path).map_err(|r| std::io::Error::other(r.to_string()))?;
    let creds = demo::demo_credentials(data_dir).map_err(std::io::Error::other)?;
    Ok((config, Some(path), creds))
}

fn print_demo_tour(
    addr: SocketAddr,
    data_dir: &Path,
    config: Option<&Path>,
    (client_id, secret): &(String, String),
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
  # every field problem at once: 400 validation_failed\n\
  curl -i -X POST {base}/v1/customers/acme/devices {auth} {json} -d '{{\"name\":\"\",\"serial\":\"x y\",\"kind\":\"toaster\"}}'\n\
  # an API under maintenance: 503 with Retry-After\n\
  curl -i {base}/v1/reports\n\
  # what any error code means, and what to check\n\
  curl -s {base}/errors/route_not_found\n",
        data = data_dir.display(),
        config = config.map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
    );
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            println!(
                "{}: OK — {} route{}, listening on {}{}",
                path.display(),
                c.routes.len(),
                if c.routes.len() == 1 { "" } else { "s" },
                c.server.listen,
                c.server
                    .admin_listen
                    .map_or(String::new(), |a| format!(", admin on {a}")),
            );
            // Each route's plan: what its requests pass, in order.
            for plan in c.route_plans() {
                let methods = if plan.methods.is_empty() {
                    "any".to_owned()
                } else {
                    plan.methods.join(",")
                };
                let host = plan.host.map_or(String::new(), |h| format!("{h} "));
                println!(
                    "  {:<24} {:<10} {host}{}  {}",
                    plan.name,
                    methods,
                    plan.path,
                    plan.stages.join(" → ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(report) => {
            print!("{report}");
            ExitCode::FAILURE
        }
    }
}

fn catalog(command: CatalogCommand, config: Option<&Path>) -> ExitCode {
    let catalog = match config {
        Some(p) => match Config::load(p) {
            Ok(c) => c.catalog,
            Err(report) => {
                print!("{report}");
                return ExitCode::FAILURE;
            }
        },
        None => std::sync::Arc::new(Catalog::builtin().clone()),
    };
    match command {
        CatalogCommand::List => {
            let width = catalog
                .entries()
                .iter()
                .map(|e| e.code.len())
                .max()
                .unwrap_or(4);
            println!("{:width$}  STATUS  RETRY         TITLE", "CODE");
            for e in catalog.entries() {
                println!(
                    "{:width$}  {:<6}  {:<12}  {}",
                    e.code,
                    e.status,
                    e.retry.as_str(),
                    e.title
                );
            }
            ExitCode::SUCCESS
        }
        CatalogCommand::Show { code } => match catalog.get(&code) {
            Some(e) => {
                print_entry(e);
                ExitCode::SUCCESS
            }
            None => {
                let all: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
                let suggestion = did_you_mean(&code, &all);
                let entry = catalog
                    .get(codes::RESOURCE_NOT_FOUND)
                    .expect("built-in code");
                let hint = suggestion
                    .map_or(" `candor catalog list` shows every code.".to_owned(), |s| {
                        format!(" Did you mean {s}?")
                    });
                let detail = entry.message.render(&[
                    ("resource", "Error code"),
                    ("id", &code),
                    ("scope", " in the catalog"),
                    ("hint", &hint),
                ]);
                eprintln!("error[{}]: {detail}", entry.code);
                ExitCode::FAILURE
            }
        },
    }
}

fn print_entry(e: &Entry) {
    println!("{} — {}", e.code, e.title);
    println!(
        "status: {}   type: {}   retry: {}",
        e.status,
        e.kind,
        e.retry.as_str()
    );
    println!("message: {}", e.message.source());
    println!("\n{}\n", e.explanation);
    println!("What to check:");
    for (i, step) in e.checklist.iter().enumerate() {
        println!("  {}. {step}", i + 1);
    }
    if !e.related.is_empty() {
        println!("\nRelated: {}", e.related.join(", "));
    }
}

/// Prints a store failure as its catalog error and turns it into an exit code.
fn store_failure(e: &StoreError) -> ExitCode {
    let err = e.to_gateway_error();
    let entry = Catalog::builtin().get(err.code).expect("built-in code");
    let params: Vec<(&str, &str)> = err.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    eprintln!("error[{}]: {}", entry.code, entry.message.render(&params));
    ExitCode::FAILURE
}

fn with_identity(
    args: &StoreArgs,
    f: impl FnOnce(&Identity) -> Result<(), StoreError>,
) -> ExitCode {
    let dir = match (&args.data_dir, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => match Config::load(c) {
            Ok(config) => config.server.data_dir,
            Err(report) => {
                eprint!("{report}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => PathBuf::from("candor-data"),
    };
    match Identity::open(&dir).and_then(|id| f(&id)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => store_failure(&e),
    }
}

fn print_account(a: &Account) {
    println!(
        "{:<24} {:<10} {:<28} {}",
        a.id,
        a.status.as_str(),
        a.name,
        a.quota_per_day
            .map_or("no quota".to_owned(), |q| format!("{q} requests/day"))
    );
}

fn accounts(identity: &Identity, command: AccountCommand) -> Result<(), StoreError> {
    let status = |id: &str, s: AccountStatus| {
        identity
            .set_account_status(id, s)
            .map(|a| print_account(&a))
    };
    match command {
        AccountCommand::Add {
            name,
            id,
            quota_per_day,
        } => {
            let a = identity.add_account(NewAccount {
                id,
                name,
                quota_per_day,
            })?;
            print_account(&a);
            Ok(())
        }
        AccountCommand::List => {
            let snap = identity.snapshot();
            let mut all: Vec<&Account> = snap.accounts.values().collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            println!("{:<24} {:<10} {:<28} QUOTA", "ID", "STATUS", "NAME");
            all.into_iter().for_each(print_account);
            Ok(())
        }
        AccountCommand::Show { id } => {
            let snap = identity.snapshot();
            let a = snap.accounts.get(&id).ok_or(StoreError::NotFound {
                resource: "Account",
                id: id.clone(),
            })?;
            print_account(a);
            println!("created: {}", a.created_at);
            let mut clients: Vec<&String> = snap
                .clients
                .values()
                .filter(|c| c.account_id == id)
                .map(|c| &c.client_id)
                .collect();
            clients.sort();
            println!(
                "clients: {}",
                if clients.is_empty() {
                    "none".to_owned()
                } else {
                    clients
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            Ok(())
        }
        AccountCommand::Suspend { id } => status(&id, AccountStatus::Suspended),
        AccountCommand::Activate { id } => status(&id, AccountStatus::Active),
        AccountCommand::Delete { id } => status(&id, AccountStatus::Deleted),
    }
}

fn print_client(c: &candor_gateway::Client) {
    println!(
        "{:<22} account {:<16} lifetime {:>5} s  second factor {:<3}  scopes: {}",
        c.client_id,
        c.account_id,
        c.token_lifetime,
        if c.totp_secret.is_some() { "yes" } else { "no" },
        if c.scopes.is_empty() {
            "(none)".to_owned()
        } else {
            c.scopes.join(" ")
        }
    );
}

fn clients(identity: &Identity, command: ClientCommand) -> Result<(), StoreError> {
    match command {
        ClientCommand::Add {
            account,
            scopes,
            lifetime,
            second_factor,
        } => {
            let scopes = scopes
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let (client, secret) = identity.add_client(NewClient {
                account_id: account,
                scopes,
                token_lifetime: lifetime,
                second_factor,
            })?;
            print_client(&client);
            println!("client_id:     {}", client.client_id);
            println!("client_secret: {secret}");
            if let Some(totp) = &client.totp_secret {
                println!("totp_secret:   {totp}   (base32, for an authenticator app)");
            }
            println!(
                "The secret is shown only now; store it. `candor clients rotate` makes a new one."
            );
            Ok(())
        }
        ClientCommand::List => {
            let snap = identity.snapshot();
            let mut all: Vec<_> = snap.clients.values().collect();
            all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            all.into_iter().for_each(print_client);
            Ok(())
        }
        ClientCommand::Show { id } => {
            let snap = identity.snapshot();
            let c = snap.clients.get(&id).ok_or(StoreError::NotFound {
                resource: "Client",
                id: id.clone(),
            })?;
            print_client(c);
            println!("created: {}", c.created_at);
            Ok(())
        }
        ClientCommand::SetKeys { id, jwks } => {
            let text = std::fs::read_to_string(&jwks).map_err(|e| StoreError::Invalid {
                field: "jwks",
                reason: format!("cannot read {}: {e}", jwks.display()),
            })?;
            let n = identity.set_client_keys(&id, &text)?;
            println!(
                "client {id}: {n} assertion key{} registered; it may use the jwt-bearer grant",
                if n == 1 { "" } else { "s" }
            );
            Ok(())
        }
        ClientCommand::Rotate { id } => {
            let secret = identity.rotate_client_secret(&id)?;
            println!("client_id:     {id}");
            println!("client_secret: {secret}");
            println!("The old secret no longer works. The new one is shown only now.");
            Ok(())
        }
        ClientCommand::Delete { id } => {
            identity.delete_client(&id)?;
            println!("deleted client {id}");
            Ok(())
        }
    }
}

fn keys(identity: &Identity, command: KeyCommand) -> Result<(), StoreError> {
    if let KeyCommand::Rotate = command {
        let kid = identity.rotate_signing_key()?;
        println!("new signing key {kid}; earlier keys keep verifying the tokens they signed");
    }
    let snap = identity.snapshot();
    println!("{:<16} {:<6} {:<22} STATE", "KID", "ALG", "CREATED");
    for k in &snap.signing_keys {
        let state = k
            .retired_at
            .as_ref()
            .map_or("signing".to_owned(), |r| format!("retired {r}"));
        println!("{:<16} {:<6} {:<22} {state}", k.kid, k.alg, k.created_at);
    }
    Ok(())
}

fn parse_lifetime(s: &str) -> Result<i64, StoreError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| StoreError::Invalid {
        field: "expires_in",
        reason: format!("`{s}` is not a duration such as 30d, 12h, 90m or 3600s"),
    })?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(StoreError::Invalid {
                field: "expires_in",
                reason: format!("unit `{unit}` is not s, m, h or d"),
            });
        }
    };
    Ok(n * factor)
}

fn print_api_key(k: &candor_gateway::ApiKey) {
    let expiry = k
        .expires_at
        .map_or("never".to_owned(), candor_gateway::rfc3339);
    println!(
        "ck_{:<12} account {:<16} expires {:<22} scopes: {}",
        k.id,
        k.account_id,
        expiry,
        if k.scopes.is_empty() {
            "(none)".to_owned()
        } else {
            k.scopes.join(" ")
        }
    );
    if !k.allowed_ips.is_empty() {
        println!("    allowed addresses: {}", k.allowed_ips.join(" "));
    }
    if !k.allowed_referers.is_empty() {
        println!("    allowed referers:  {}", k.allowed_referers.join(" "));
    }
}

fn api_keys(identity: &Identity, command: ApiKeyCommand) -> Result<(), StoreError> {
    match command {
        ApiKeyCommand::Add {
            account,
            scopes,
            expires_in,
            allow_ip,
            allow_referer,
        } => {
            let new = candor_gateway::NewApiKey {
                account_id: account,
                scopes: scopes
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                expires_in: expires_in.as_deref().map(parse_lifetime).transpose()?,
                allowed_ips: allow_ip,
                allowed_referers: allow_referer,
            };
            let (key, full) = identity.add_api_key(new)?;
            print_api_key(&key);
            println!("api_key: {full}");
            println!("The key is shown only now; store it. Only a hash of it is kept.");
            Ok(())
        }
        ApiKeyCommand::List => {
            let snap = identity.snapshot();
            let mut all: Vec<_> = snap.api_keys.values().collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            all.into_iter().for_each(print_api_key);
            Ok(())
        }
        ApiKeyCommand::Show { id } => {
            let id = id.trim_start_matches("ck_").to_owned();
            let snap = identity.snapshot();
            let k = snap.api_keys.get(&id).ok_or(StoreError::NotFound {
                resource: "API key",
                id: id.clone(),
            })?;
            print_api_key(k);
            println!("created: {}", k.created_at);
            Ok(())
        }
        ApiKeyCommand::Rotate { id } => {
            let id = id.trim_start_matches("ck_").to_owned();
            let full = identity.rotate_api_key(&id)?;
            println!("api_key: {full}");
            println!("The key is shown only now; the previous one no longer works.");
            Ok(())
        }
        ApiKeyCommand::Delete { id } => {
            let id = id.trim_start_matches("ck_").to_owned();
            identity.delete_api_key(&id)?;
            println!("deleted API key ck_{id}");
            Ok(())
        }
    }
}
