//! `candor docs page --profile NAME [--html]`: the troubleshooting page of an error profile,
//! generated from the catalog and the profile (built-in, or an operator's named by the
//! configuration's `[profiles] files`).

use candor_catalog::{Catalog, Profile, profile_page};
use candor_gateway::{Config, did_you_mean};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// `candor docs page --profile NAME [--html]`.
pub(crate) fn docs_page(profile: String, html: bool, config: Option<&Path>) -> ExitCode {
    let (catalog, profiles): (Arc<Catalog>, Vec<Arc<Profile>>) = match config {
        Some(p) => match Config::load(p) {
            Ok(c) => (c.catalog.clone(), c.profiles.all().to_vec()),
            Err(report) => {
                eprint!("{report}");
                return ExitCode::from(2);
            }
        },
        None => (
            Arc::new(Catalog::builtin().clone()),
            Profile::builtins()
                .iter()
                .map(|p| Arc::new(p.clone()))
                .collect(),
        ),
    };
    {
        {
            let Some(found) = profiles.iter().find(|p| p.name == profile) else {
                let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
                eprintln!(
                    "candor: `{profile}` is not a profile{}; the profiles are {}{}",
                    did_you_mean(&profile, &names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default(),
                    names.join(", "),
                    if config.is_none() {
                        " (an operator's profile needs --config naming its file)"
                    } else {
                        ""
                    }
                );
                return ExitCode::from(2);
            };
            let page = if html {
                profile_page::html(found, &catalog)
            } else {
                profile_page::markdown(found, &catalog)
            };
            print!("{page}");
            ExitCode::SUCCESS
        }
    }
}
