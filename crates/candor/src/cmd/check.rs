//! `candor check`: every problem of a configuration file at once, or each route's plan;
//! with `--running`, what of the change only a restart would apply.

use candor_gateway::Config;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn check(path: &Path, running: Option<&Path>) -> ExitCode {
    // The running configuration first: a file that does not load cannot be what runs.
    let running = match running.map(|r| (r, Config::load(r))) {
        None => None,
        Some((r, Ok(c))) => Some((r, c)),
        Some((r, Err(report))) => {
            eprint!(
                "candor check: --running {} cannot be the configuration a gateway runs: it does not load\n{report}",
                r.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let loaded = Config::load(path);
    let code = if loaded.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    let mut out = std::io::stdout().lock();
    let written = report(
        &mut out,
        path,
        loaded,
        running.as_ref().map(|(r, c)| (*r, c)),
    );
    match written.and_then(|()| out.flush()) {
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
    running: Option<(&Path, &Config)>,
) -> std::io::Result<()> {
    let c = match loaded {
        Ok(c) => c,
        Err(report) => {
            write!(out, "{report}")?;
            if running.is_some() {
                writeln!(
                    out,
                    "A reload would refuse this file: the running configuration stays."
                )?;
            }
            return Ok(());
        }
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
    if let Some(shared) = &c.shared_limits {
        writeln!(
            out,
            "  rate limits shared through Redis at {}",
            shared.describe()
        )?;
    }
    // Which error profile answers where (problem details when none is named).
    if let Some(p) = c.profiles.listener() {
        writeln!(out, "  errors in profile {} (the listener's)", p.name)?;
    }
    for (host, p) in c.profiles.hosts() {
        writeln!(out, "  errors in profile {} for host {host}", p.name)?;
    }
    // Each route's plan: what its requests pass, in order.
    for plan in c.route_plans() {
        let methods = if plan.methods.is_empty() {
            "any".to_owned()
        } else {
            plan.methods.join(",")
        };
        let host = plan.host.map_or(String::new(), |h| format!("{h} "));
        let profile = c
            .routes
            .iter()
            .find(|r| r.name == plan.name)
            .and_then(|r| r.profile.as_ref())
            .map_or(String::new(), |p| {
                format!("  (errors in profile {})", p.name)
            });
        writeln!(
            out,
            "  {:<24} {:<10} {host}{}  {}{profile}",
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
    if let Some((file, was)) = running {
        restart_only(out, file, was, &c)?;
    }
    Ok(())
}

/// Each setting that `new` changes from the running configuration `was` (read from `file`)
/// and that only a restart applies: the same list a reload warns about.
fn restart_only(
    out: &mut impl Write,
    file: &Path,
    was: &Config,
    new: &Config,
) -> std::io::Result<()> {
    let changed: Vec<_> = was
        .restart_only()
        .into_iter()
        .zip(new.restart_only())
        .filter(|((_, a), (_, b))| a != b)
        .collect();
    let n = changed.len();
    if n == 0 {
        return writeln!(
            out,
            "Against the running configuration {}: nothing needs a restart; a reload applies every change.",
            file.display()
        );
    }
    writeln!(
        out,
        "Against the running configuration {}: {n} setting{} only a restart applies:",
        file.display(),
        if n == 1 { "" } else { "s" }
    )?;
    for ((key, a), (_, b)) in changed {
        writeln!(out, "  {key}: {a} → {b} — restart to apply")?;
    }
    Ok(())
}
