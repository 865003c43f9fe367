//! `candor catalog list|show|export`: the error catalog.

use candor_catalog::{Catalog, Entry, RetryRules, codes};
use candor_gateway::Config;
use candor_gateway::did_you_mean;
use clap::Subcommand;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum CatalogCommand {
    /// List every error code with its status and title.
    List,
    /// Show one entry: what it means, its checklist, its retry class.
    Show {
        /// The code, e.g. route_not_found.
        code: String,
    },
    /// Print the catalog as JSON data: every entry, or with --retry-rules each code's
    /// status, retry class and back-off guidance (what candor-client retries by).
    Export {
        /// Only the retry rules: per code its status, retry class and back-off guidance,
        /// per class the guidance, and the status fallbacks for answers without a code.
        #[arg(long)]
        retry_rules: bool,
    },
}

pub(crate) fn catalog(command: CatalogCommand, config: Option<&Path>) -> ExitCode {
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
        CatalogCommand::Export { retry_rules: true } => {
            println!("{}", RetryRules::from_catalog(&catalog).to_json());
            ExitCode::SUCCESS
        }
        CatalogCommand::Export { retry_rules: false } => {
            let entries: Vec<serde_json::Value> = catalog
                .entries()
                .iter()
                .map(candor_catalog::page::entry_json)
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&entries).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        CatalogCommand::Show { code } => match catalog.get(&code) {
            Some(e) => {
                print_entry(e);
                ExitCode::SUCCESS
            }
            None => {
                let all: Vec<&str> = catalog.entries().iter().map(|e| e.code.as_str()).collect();
                // Codes are lower-case words joined by '_': ROUTE_NOT_FOUND and
                // route-not-found are compared as route_not_found.
                let normal = code.trim().to_ascii_lowercase().replace(['-', ' '], "_");
                let suggestion = did_you_mean(&normal, &all);
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

pub(crate) fn print_entry(e: &Entry) {
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
