//! Where the identity store is, for the commands that change it, and how their failures print.

use candor_catalog::Catalog;
use candor_gateway::Config;
use candor_gateway::{Identity, StoreError};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the identity store is.
#[derive(clap::Args)]
pub(crate) struct StoreArgs {
    /// Use the data directory named by this configuration (server.data_dir).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// The data directory (default: candor-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

/// Prints a store failure as its catalog error and turns it into an exit code.
pub(crate) fn store_failure(e: &StoreError) -> ExitCode {
    let err = e.to_gateway_error();
    let entry = Catalog::builtin().get(err.code).expect("built-in code");
    let params: Vec<(&str, &str)> = err.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    eprintln!("error[{}]: {}", entry.code, entry.message.render(&params));
    ExitCode::FAILURE
}

/// Runs `f` on the store `args` name. A `read_only` command never creates one: where
/// there is none, it says where it looked.
pub(crate) fn with_identity(
    args: &StoreArgs,
    read_only: bool,
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
    let file = dir.join("candor.sqlite");
    if read_only && !file.exists() {
        eprintln!(
            "candor: no store in {} (looked for {}): nothing has been added there yet; `candor accounts add` or `candor serve` creates it, and --config or --data-dir points elsewhere",
            dir.display(),
            file.display()
        );
        return ExitCode::FAILURE;
    }
    match Identity::open(&dir).and_then(|id| f(&id)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => store_failure(&e),
    }
}
