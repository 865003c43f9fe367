//! `candor`: the API gateway whose errors are the product.
//!
//! Run `candor --help` for the commands; `candor serve` with no configuration starts the
//! embedded demo.

use candor_gateway::Overrides;
use clap::{Parser, Subcommand};

mod cmd;
use cmd::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc: a request allocates and frees dozens of small buffers (header maps, URIs, body
/// chunks), served in fewer cycles than by the system allocator; and memory a burst took is
/// given back within about a second (its options are in `.cargo/config.toml`; the
/// measurements in bench/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// Configuration file (TOML). Reloaded on SIGHUP and whenever it, or a file it names
        /// (profiles, schemas, the TLS certificate, ...), changes.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on, overriding the file's server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the admin listener (health, catalog, error pages).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Data directory of the demo mode. The demo's files there are written on its
        /// first start and kept after that, edits included.
        #[arg(long, default_value = "candor-data")]
        data_dir: PathBuf,
        /// Delete the demo's files in the data directory first (its configuration, devices,
        /// accounts, clients and admin token; each is named as it goes), and start afresh.
        #[arg(long)]
        reset_demo: bool,
        /// How the log on stderr is written: readable lines on a terminal and JSON
        /// otherwise (auto), or always one or the other.
        #[arg(long, value_enum, default_value = "auto")]
        log_format: LogFormat,
        /// Run in one process, without the supervisor that restarts the gateway when it
        /// dies: for running under systemd or another service manager that restarts it
        /// (see examples/systemd/). Also set by CANDOR_NO_SUPERVISOR=1. Sockets passed by
        /// systemd (socket activation: LISTEN_FDS, named `public` and `admin`) are served.
        #[arg(long)]
        no_supervisor: bool,
        /// Internal: this process is a worker started by the supervisor.
        #[arg(long, hide = true)]
        supervised_worker: bool,
    },
    /// Check a configuration file and report every problem at once, with line and column.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The configuration the running gateway was started with (a copy of the file
        /// from before your edits): each setting that differs and that only a restart
        /// applies is listed, as a reload would warn about it.
        #[arg(long, value_name = "FILE")]
        running: Option<PathBuf>,
    },
    /// Print OpenAPI 3.1: the catalog's errors as components (a problem-details schema, an
    /// example and a response per code); with --spec, that OpenAPI document (YAML or JSON)
    /// with, on each operation, the error responses the gateway gives on its route.
    Openapi {
        /// The configuration whose routes answer the operations (and whose catalog and
        /// public_base_url are used); without it, the document's own routes.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// An OpenAPI 3.0 or 3.1 document to print with the gateway's error responses.
        #[arg(long)]
        spec: Option<PathBuf>,
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
    /// List and lift the token endpoint's failed-attempt blocks (client ids and addresses
    /// refused after too many failed client authentications), on the running gateway's
    /// admin API.
    Blocks {
        #[command(subcommand)]
        command: BlockCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Read the error catalog.
    /// Tells the story of one request from the event log: when, from where, each stage's
    /// decision with its facts, every upstream try, the answer, and for an error what it
    /// means and what to check.
    Explain {
        /// The request id (the `X-Request-Id` header, or `request_id` in an error body).
        request_id: String,
        #[command(flatten)]
        log: LogArgs,
        /// Print the story as JSON.
        #[arg(long)]
        json: bool,
    },
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
        /// Include the operator catalog named by this configuration.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Documentation generated from the catalog: `docs build OUT` writes the
    /// troubleshooting site (the pages the gateway serves under /errors/) as files; `docs
    /// page --profile NAME` prints the troubleshooting page of an error profile.
    Docs {
        #[command(subcommand)]
        command: DocsCommand,
        /// Use the catalog, the profiles and server.public_base_url of this configuration.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

/// Whether `candor serve` supervises a worker, is one, or runs alone.
fn serve_role(no_supervisor: bool, supervised_worker: bool) -> Role {
    let env_alone = std::env::var("CANDOR_NO_SUPERVISOR")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
    if supervised_worker {
        Role::Worker
    } else if no_supervisor || env_alone || cfg!(not(unix)) {
        Role::Alone
    } else {
        Role::Supervisor
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
            data_dir,
            reset_demo,
            log_format,
            no_supervisor,
            supervised_worker,
        } => serve(
            config,
            Overrides {
                listen,
                admin_listen,
            },
            data_dir,
            reset_demo,
            log_format,
            serve_role(no_supervisor, supervised_worker),
        ),
        Command::Check { config, running } => check(&config, running.as_deref()),
        Command::Openapi { config, spec } => openapi(config.as_deref(), spec.as_deref()),
        Command::Catalog { command, config } => catalog(command, config.as_deref()),
        Command::Docs { command, config } => docs(command, config.as_deref()),
        Command::Blocks { command, admin } => blocks(command, &admin),
        Command::Explain {
            request_id,
            log,
            json,
        } => explain(&request_id, &log, json),
        Command::Accounts { command, store } => {
            let read_only = matches!(command, AccountCommand::List | AccountCommand::Show { .. });
            with_identity(&store, read_only, |id| accounts(id, command))
        }
        Command::Clients { command, store } => {
            let read_only = matches!(command, ClientCommand::List | ClientCommand::Show { .. });
            with_identity(&store, read_only, |id| clients(id, command))
        }
        Command::Keys { command, store } => {
            let read_only = matches!(command, ApiKeyCommand::List | ApiKeyCommand::Show { .. });
            with_identity(&store, read_only, |id| api_keys(id, command))
        }
        Command::SigningKeys { command, store } => {
            let read_only = matches!(command, KeyCommand::List);
            with_identity(&store, read_only, |id| keys(id, command))
        }
    }
}
