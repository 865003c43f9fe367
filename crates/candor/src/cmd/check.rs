//! `candor check`: every problem of a configuration file at once, or each route's plan.

use candor_gateway::Config;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn check(path: &Path) -> ExitCode {
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
            if !c.notices.is_empty() {
                let n = c.notices.len();
                println!(
                    "{n} notice{}: loaded, but not checked by the gateway:",
                    if n == 1 { "" } else { "s" }
                );
                for notice in &c.notices {
                    println!("  {}", notice.located(&path.display().to_string()));
                }
            }
            ExitCode::SUCCESS
        }
        Err(report) => {
            print!("{report}");
            ExitCode::FAILURE
        }
    }
}
