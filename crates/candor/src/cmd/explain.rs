//! `candor explain REQUEST_ID`: the story of one request, from the event log.

use candor_catalog::Catalog;
use candor_gateway::Config;
use candor_gateway::events::{EventReader, story};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the event log is: the configuration's (`--config`), or the data directory's
/// (`--data-dir`, default `candor-data`, where the demo keeps its configuration too).
#[derive(clap::Args)]
pub(crate) struct LogArgs {
    /// Use the event log (and catalog) of this configuration.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The data directory (default: candor-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The log's folder, the catalog and the public base URL `args` name.
fn locate(args: &LogArgs) -> Result<(PathBuf, Catalog, String), String> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("candor-data"));
    // With no --config, the demo's configuration in the data directory, if it is there.
    let config = match &args.config {
        Some(c) => Some(c.clone()),
        None => Some(data_dir.join("candor.toml")).filter(|c| c.exists()),
    };
    match config {
        Some(path) => {
            let config = Config::load(&path).map_err(|r| r.to_string())?;
            let dir = if args.data_dir.is_some() && args.config.is_none() {
                config.events.dir_in(&data_dir)
            } else {
                config.events.dir_in(&config.server.data_dir)
            };
            Ok((
                dir,
                (*config.catalog).clone(),
                config.server.public_base_url.clone(),
            ))
        }
        None => Ok((
            data_dir.join("events"),
            Catalog::builtin().clone(),
            String::new(),
        )),
    }
}

/// `candor explain`.
pub(crate) fn explain(request_id: &str, args: &LogArgs, json: bool) -> ExitCode {
    let request_id = request_id.trim();
    if request_id.is_empty() {
        eprintln!(
            "candor: explain needs a request id: the X-Request-Id header of the answer, or request_id in an error body"
        );
        return ExitCode::from(2);
    }
    let (dir, catalog, base_url) = match locate(args) {
        Ok(x) => x,
        Err(e) => {
            eprint!("{e}");
            if !e.ends_with('\n') {
                eprintln!();
            }
            return ExitCode::from(2);
        }
    };
    let reader = match EventReader::open(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("candor: {e}; --config or --data-dir points elsewhere");
            return ExitCode::FAILURE;
        }
    };
    // A request answered a moment ago may still be on its way to the log: looked for again
    // for up to a second.
    let mut found = story::find(&reader, request_id, &catalog, &base_url);
    for _ in 0..10 {
        if found.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        found = story::find(&reader, request_id, &catalog, &base_url);
    }
    match found {
        Ok(story) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&story).unwrap_or_default()
                );
            } else {
                print!("{}", story::text(&story));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The id is the operator's typing, echoed back: no control characters.
            let e: String = e
                .chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect();
            eprintln!("candor: {e} ({})", shown(&dir));
            ExitCode::FAILURE
        }
    }
}

fn shown(dir: &Path) -> String {
    format!("log: {}", dir.display())
}
