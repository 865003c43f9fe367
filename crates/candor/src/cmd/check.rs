//! `candor check`: every problem of a configuration file at once, or each route's plan.

use candor_gateway::Config;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn check(path: &Path) -> ExitCode {
    let loaded = Config::load(path);
    let code = if loaded.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    let mut out = std::io::stdout().lock();
    match report(&mut out, path, loaded).and_then(|()| out.flush()) {
        // A reader that stops early (`| head`) is no failure of the check.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("candor check: {e}");
            ExitCode::FAILURE
        }
        _ => code,
    }
}

fn report(
    out: &mut impl Write,
    path: &Path,
    loaded: Result<Config, candor_gateway::ConfigReport>,
) -> std::io::Result<()> {
    let c = match loaded {
        Ok(c) => c,
        Err(report) => return write!(out, "{report}"),
    };
    writeln!(
        out,
        "{}: OK — {} route{}, listening on {}{}",
        path.display(),
        c.routes.len(),
        if c.routes.len() == 1 { "" } else { "s" },
        c.server.listen,
        c.server
            .admin_listen
            .map_or(String::new(), |a| format!(", admin on {a}")),
    )?;
    // Each route's plan: what its requests pass, in order.
    for plan in c.route_plans() {
        let methods = if plan.methods.is_empty() {
            "any".to_owned()
        } else {
            plan.methods.join(",")
        };
        let host = plan.host.map_or(String::new(), |h| format!("{h} "));
        writeln!(
            out,
            "  {:<24} {:<10} {host}{}  {}",
            plan.name,
            methods,
            plan.path,
            plan.stages.join(" → ")
        )?;
    }
    if !c.notices.is_empty() {
        let n = c.notices.len();
        writeln!(
            out,
            "{n} notice{}: loaded, but not checked by the gateway:",
            if n == 1 { "" } else { "s" }
        )?;
        for notice in &c.notices {
            writeln!(out, "  {}", notice.located(&path.display().to_string()))?;
        }
    }
    Ok(())
}
