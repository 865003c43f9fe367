//! `candor docs build OUT`: the troubleshooting site the gateway serves under `/errors/`,
//! written as static files (to publish on a documentation host); `candor docs page` (in
//! `docs_page.rs`): an error profile's page.

use candor_catalog::{Catalog, Profile, site};
use candor_gateway::Config;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Where example answers point their `type` URLs when no configuration names a
/// `server.public_base_url`: the demo's listener.
const DEMO_BASE_URL: &str = "http://127.0.0.1:8080";

#[derive(Subcommand)]
pub(crate) enum DocsCommand {
    /// Write the troubleshooting site to OUT: index.html (every code by pipeline stage and
    /// by status, with a search), one CODE.html per code (with an example answer in each
    /// error profile the configuration uses), site.css, search.js, favicon.svg and
    /// search-index.json. Open OUT/index.html in a browser, or publish the folder.
    Build {
        /// The folder to write (created if missing; the site's files in it are replaced).
        out: PathBuf,
        /// The base of the `type` URLs in the example answers (default: the configuration's
        /// server.public_base_url, else the demo's http://127.0.0.1:8080).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Print the troubleshooting page of an error profile: its error table (status, code,
    /// type, message, description, troubleshooting) in the profile's words, the envelope by
    /// example and its header conventions, as Markdown (or HTML with --html).
    Page {
        /// The profile: problem, asyncos, edgio, pelion, knox, ixon, or one of the
        /// configuration's [profiles] files.
        #[arg(long)]
        profile: String,
        /// Print a standalone HTML page instead of Markdown.
        #[arg(long)]
        html: bool,
    },
}

pub(crate) fn docs(command: DocsCommand, config: Option<&Path>) -> ExitCode {
    match command {
        DocsCommand::Page { profile, html } => super::docs_page::docs_page(profile, html, config),
        DocsCommand::Build { out, base_url } => build_site(&out, base_url, config),
    }
}

/// `docs build`: the catalog, the profiles in use and the base URL from `config` (or the
/// built-in catalog, problem details and the demo's base URL), written to `out`.
fn build_site(out: &Path, base_url: Option<String>, config: Option<&Path>) -> ExitCode {
    let (catalog, configured_base, profiles) = match config {
        Some(p) => match Config::load(p) {
            Ok(c) => (
                c.catalog.clone(),
                Some(c.server.public_base_url.clone()),
                c.profiles_in_use(),
            ),
            Err(report) => {
                print!("{report}");
                return ExitCode::FAILURE;
            }
        },
        None => (Arc::new(Catalog::builtin().clone()), None, Vec::new()),
    };
    let base = base_url
        .or(configured_base)
        .unwrap_or_else(|| DEMO_BASE_URL.to_owned());
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        eprintln!("candor docs build: --base-url `{base}` is not an http(s) URL");
        return ExitCode::FAILURE;
    }
    let profiles: Vec<&Profile> = profiles.iter().map(|p| &**p).collect();
    build(&catalog, base.trim_end_matches('/'), &profiles, out)
}

fn build(catalog: &Catalog, base: &str, profiles: &[&Profile], out: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("candor docs build: cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let files = site::files(catalog, base, profiles);
    for (name, text) in &files {
        let path = out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("candor docs build: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!(
        "wrote {} files ({} error codes) to {}; open {}",
        files.len(),
        catalog.entries().len(),
        out.display(),
        out.join("index.html").display()
    );
    ExitCode::SUCCESS
}
