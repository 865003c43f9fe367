//! `candor serve`'s supervisor: a small parent process that holds the listening sockets, runs
//! the gateway in a worker process on them, and restarts a worker that ends abnormally.
//!
//! - **Sockets.** The supervisor binds the public and the admin listener (or takes those
//!   systemd passed it) and keeps them open for its whole life. A worker is the same
//!   executable (`/proc/self/exe` on Linux: an upgrade in place does not change it under a
//!   running supervisor) with the same arguments and the hidden `--supervised-worker`, and gets the
//!   sockets as fds 3 and 4 by systemd's convention (`LISTEN_FDS`, `LISTEN_FDNAMES=public:admin`,
//!   no `LISTEN_PID`: the parent cannot know the child's pid, and listenfd then does not check
//!   it). Connections that arrive while no worker runs wait in the kernel's accept queue of
//!   the supervisor's socket: clients see at most the in-flight requests of a dead worker
//!   fail, and no connection refused.
//! - **The link.** A worker's stdin is one end of a Unix socket pair whose other end only the
//!   supervisor holds. The worker writes `ready` there once it serves (after its listening
//!   lines), and reads EOF there when the supervisor is gone, however it died: it then drains
//!   and exits as on SIGTERM, so no worker outlives its supervisor.
//! - **Restarts.** A worker that exits 0 (it drained) is not restarted, nor one that ends
//!   before it was ever ready (a configuration or start-up error would only fail again): the
//!   supervisor exits with its status (128 + the signal's number for a signal). One that dies
//!   of a signal or exits non-zero after that is restarted at once, then with a crash-loop
//!   back-off (0.5 s, doubling, up to 30 s; reset once a worker has served for 60 s). The new
//!   worker gets the cause in `CANDOR_RESTARTED` ([`RestartCause`]) and does not print the
//!   tour again; the supervisor prints one line saying what ended the old one.
//! - **Signals.** SIGTERM and SIGINT are forwarded (the worker drains; no restart follows)
//!   and SIGHUP too (the worker reloads its configuration).

use candor_gateway::{Config, Listeners, Overrides, RESTARTED_ENV, RestartCause, demo};
use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

/// The hidden flag of `candor serve` that makes it a supervised worker.
pub(crate) const WORKER_FLAG: &str = "--supervised-worker";

/// What a worker writes on its link once it serves.
const READY: &[u8] = b"ready\n";

/// A worker that served this long ends a crash loop: the next restart is immediate again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before restart number `n` in a row: none for the first, then 0.5 s, 1 s, 2 s …
/// up to 30 s.
fn backoff(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let millis = 500u64.saturating_mul(1 << (n - 2).min(16));
    Duration::from_millis(millis).min(MAX_BACKOFF)
}

/// `0.5 s`, `2 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Runs `candor serve` as the supervisor of a worker process. The arguments are those of
/// `serve`, used here only to find which addresses to bind.
pub(crate) fn supervise(
    config_path: Option<&Path>,
    overrides: &Overrides,
    data_dir: &Path,
    reset_demo: bool,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("candor: cannot start the supervisor's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "candor: cannot install the supervisor's signal handlers: {e}; run `candor serve --no-supervisor` instead"
                );
                return ExitCode::FAILURE;
            }
        };
        let listeners = match listeners(config_path, overrides, data_dir, reset_demo).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("candor: {e}");
                return ExitCode::FAILURE;
            }
        };
        Supervisor {
            listeners,
            signals,
        }
        .run()
        .await
    })
}

/// The listeners the workers serve on: those systemd passed, or those the configuration
/// names, bound now. When the configuration does not load, none: the worker then reports
/// the configuration's problems itself (and exits 2, which is not restarted).
async fn listeners(
    config_path: Option<&Path>,
    overrides: &Overrides,
    data_dir: &Path,
    reset_demo: bool,
) -> std::io::Result<Listeners> {
    let passed = passed_listeners()?;
    if passed.public.is_some() {
        return Ok(passed);
    }
    let Some((public, admin)) = addresses(config_path, overrides, data_dir, reset_demo) else {
        return Ok(Listeners::default());
    };
    Listeners::bind(public, admin).await
}

/// The addresses the gateway will listen on, as the worker would find them; `None` when
/// the configuration does not load.
fn addresses(
    config_path: Option<&Path>,
    overrides: &Overrides,
    data_dir: &Path,
    reset_demo: bool,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let kept = data_dir.join(demo::CONFIG_FILE);
    let file = match config_path {
        Some(p) => Some(p.to_owned()),
        // The demo reuses its kept configuration where it knows its demo API's address
        // (see `start_demo`); otherwise it writes a new one on the default addresses.
        None if !reset_demo && kept.exists() && demo::kept_api_addr(data_dir).is_some() => {
            Some(kept)
        }
        None => None,
    };
    match file {
        Some(p) => Config::load(&p)
            .ok()
            .map(|config| overrides.listen_addrs(&config)),
        None => {
            let (listen, admin) = super::serve::demo_addresses(overrides);
            Some((listen, Some(admin)))
        }
    }
}

/// The listeners passed by systemd's convention: `LISTEN_FDS` sockets from fd 3 (checked
/// against `LISTEN_PID` when it is set), named by `LISTEN_FDNAMES` (`public`, `admin`; other
/// names are taken in order: the public listener first).
pub(crate) fn passed_listeners() -> std::io::Result<Listeners> {
    let mut fds = listenfd::ListenFd::from_env();
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut passed = Listeners::default();
    let mut in_order = Vec::new();
    for i in 0..fds.len() {
        let listener = fds.take_tcp_listener(i).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "socket {} of LISTEN_FDS (fd {}) is not a TCP listener ({e}): pass only TCP stream sockets (ListenStream= in a systemd .socket unit)",
                    i + 1,
                    i + 3
                ),
            )
        })?;
        let Some(listener) = listener else { continue };
        match names.get(i).map(String::as_str) {
            Some("public") if passed.public.is_none() => passed.public = Some(listener),
            Some("admin") if passed.admin.is_none() => passed.admin = Some(listener),
            _ => in_order.push(listener),
        }
    }
    for listener in in_order {
        if passed.public.is_none() {
            passed.public = Some(listener);
        } else if passed.admin.is_none() {
            passed.admin = Some(listener);
        } else {
            tracing::warn!(target: "candor::supervisor", "more sockets were passed in LISTEN_FDS than the public and the admin listener; the others are not served");
        }
    }
    Ok(passed)
}

/// The signals the supervisor forwards, armed before the first worker starts.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// One worker process.
struct Worker {
    child: tokio::process::Child,
    pid: u32,
    /// The supervisor's end of the worker's stdin.
    link: tokio::net::UnixStream,
    /// When the worker said it serves.
    ready: Option<Instant>,
}

/// How a worker ended.
struct Ended {
    status: ExitStatus,
    ready: Option<Instant>,
    /// The stop signal forwarded to it, if any: it is then not restarted.
    stopped_by: Option<Signal>,
}

struct Supervisor {
    listeners: Listeners,
    signals: Signals,
}

impl Supervisor {
    async fn run(mut self) -> ExitCode {
        let mut in_a_row: u32 = 0;
        let mut cause: Option<RestartCause> = None;
        let mut ever_ready = false;
        loop {
            let mut worker = match self.spawn(cause.as_ref()) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!(
                        "candor: cannot start the gateway's worker process: {e}; run `candor serve --no-supervisor` to serve without one"
                    );
                    return ExitCode::FAILURE;
                }
            };
            let pid = worker.pid;
            println!("candor supervisor: worker pid {pid}");
            let ended = self.watch(&mut worker).await;
            let status = ended.status;
            if let Some(sig) = ended.stopped_by {
                tracing::info!(target: "candor::supervisor", pid, status = %status, "the worker stopped after {}; the supervisor exits", sig.as_str());
                return exit_code(status);
            }
            if status.success() {
                // Stopped by a SIGTERM sent to the worker itself: it drained, as asked.
                tracing::info!(target: "candor::supervisor", pid, "the worker exited 0; the supervisor exits");
                return ExitCode::SUCCESS;
            }
            if ended.ready.is_none() && !ever_ready {
                // A start that failed (it said why) would fail again.
                if let Some(sig) = status.signal() {
                    eprintln!(
                        "candor: the gateway's worker (pid {pid}) ended by signal {sig} ({}) before it served; not restarted",
                        signal_name(sig).unwrap_or("unknown")
                    );
                }
                return exit_code(status);
            }
            ever_ready |= ended.ready.is_some();
            if ended.ready.is_some_and(|r| r.elapsed() >= STABLE_AFTER) {
                in_a_row = 0;
            }
            in_a_row += 1;
            let next = RestartCause {
                signal: status.signal(),
                signal_name: status.signal().and_then(signal_name).map(str::to_owned),
                exit_status: status.code(),
                restarts: in_a_row,
                at: candor_gateway::rfc3339(candor_gateway::unix_now()),
                previous_pid: pid,
            };
            let wait = backoff(in_a_row);
            let when = if wait.is_zero() {
                format!("restarting it now (restart {in_a_row} in a row)")
            } else {
                format!(
                    "restarting it in {} (restart {in_a_row} in a row: crash-loop back-off, doubling up to {}; a worker that serves for {} resets it)",
                    seconds(wait),
                    seconds(MAX_BACKOFF),
                    seconds(STABLE_AFTER)
                )
            };
            println!(
                "candor supervisor: worker pid {pid} ended by {}; {when}",
                next.ended_by()
            );
            tracing::warn!(target: "candor::supervisor", pid, signal = next.signal, signal_name = next.signal_name, exit_status = next.exit_status, restarts = in_a_row, backoff_ms = wait.as_millis() as u64, "worker pid {pid} ended by {}; {when}", next.ended_by());
            cause = Some(next);
            if !wait.is_zero() && !self.back_off(wait).await {
                return ExitCode::SUCCESS;
            }
        }
    }

    /// Waits `wait` before the next restart; `false` when a stop signal came meanwhile.
    async fn back_off(&mut self, wait: Duration) -> bool {
        let until = tokio::time::sleep(wait);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return true,
                _ = self.signals.term.recv() => break,
                _ = self.signals.int.recv() => break,
                _ = self.signals.hup.recv() => {
                    tracing::info!(target: "candor::supervisor", "SIGHUP while no worker runs: the next worker reads the configuration as it is");
                }
            }
        }
        tracing::info!(target: "candor::supervisor", "stop signal while waiting to restart the worker; the supervisor exits");
        false
    }

    /// Starts a worker on the listeners, telling it `cause` when it replaces one.
    fn spawn(&self, cause: Option<&RestartCause>) -> std::io::Result<Worker> {
        // The supervisor's own executable, even when its file was replaced or removed since
        // (an upgrade in place): the workers run the version the supervisor runs.
        let exe = if Path::new("/proc/self/exe").exists() {
            "/proc/self/exe".into()
        } else {
            std::env::current_exe()?
        };
        let (ours, theirs) = UnixStream::pair()?;
        let mut cmd = std::process::Command::new(exe);
        let mut args = std::env::args_os();
        if let Some(name) = args.next() {
            cmd.arg0(name);
        }
        cmd.args(args)
            .arg(WORKER_FLAG)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
        let mut mappings = Vec::new();
        let mut names = Vec::new();
        for (name, listener) in [
            ("public", &self.listeners.public),
            ("admin", &self.listeners.admin),
        ] {
            if let Some(l) = listener {
                mappings.push(FdMapping {
                    parent_fd: l.as_fd().try_clone_to_owned()?,
                    child_fd: 3 + mappings.len() as i32,
                });
                names.push(name);
            }
        }
        if !mappings.is_empty() {
            cmd.env("LISTEN_FDS", mappings.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
            cmd.fd_mappings(mappings).map_err(std::io::Error::other)?;
        }
        match cause {
            Some(c) => cmd.env(RESTARTED_ENV, c.to_env_value()),
            None => cmd.env_remove(RESTARTED_ENV),
        };
        // The command holds the worker's ends (its stdin, the sockets' copies): they close
        // here when it is dropped, so that the worker alone holds its end of the link.
        let child = tokio::process::Command::from(cmd).spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the worker ended before its pid was read"))?;
        ours.set_nonblocking(true)?;
        let link = tokio::net::UnixStream::from_std(ours)?;
        Ok(Worker {
            child,
            pid,
            link,
            ready: None,
        })
    }

    /// Waits for the worker to end, forwarding signals to it and noting when it is ready.
    async fn watch(&mut self, w: &mut Worker) -> Ended {
        let mut stopped_by = None;
        let mut link_open = true;
        let mut buf = [0u8; 64];
        let status = loop {
            let forward = tokio::select! {
                status = w.child.wait() => break status,
                _ = self.signals.term.recv() => Signal::SIGTERM,
                _ = self.signals.int.recv() => Signal::SIGINT,
                _ = self.signals.hup.recv() => Signal::SIGHUP,
                read = w.link.read(&mut buf), if link_open => {
                    match read {
                        Ok(0) | Err(_) => link_open = false,
                        Ok(n) => {
                            if w.ready.is_none() && READY.starts_with(&buf[..n.min(READY.len())]) {
                                w.ready = Some(Instant::now());
                            }
                        }
                    }
                    continue;
                }
            };
            if forward != Signal::SIGHUP {
                stopped_by = Some(forward);
            }
            // The worker is not reaped before `wait` returns, so its pid is still its own.
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(w.pid as i32), forward) {
                tracing::warn!(target: "candor::supervisor", pid = w.pid, error = %e, "cannot forward {} to the worker", forward.as_str());
            }
        };
        let status = status.unwrap_or_else(|e| {
            tracing::error!(target: "candor::supervisor", pid = w.pid, error = %e, "cannot wait for the worker");
            ExitStatus::from_raw(1 << 8)
        });
        Ended {
            status,
            ready: w.ready,
            stopped_by,
        }
    }
}

/// `SIGKILL` for 9.
fn signal_name(n: i32) -> Option<&'static str> {
    Signal::try_from(n).ok().map(Signal::as_str)
}

/// The supervisor's exit status for a worker's: the same code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// A worker's side of its link to the supervisor: its stdin, a Unix socket.
pub(crate) struct SupervisorLink {
    stream: UnixStream,
}

impl SupervisorLink {
    /// The link on stdin, as the supervisor set it up.
    pub(crate) fn from_stdin() -> Result<SupervisorLink, String> {
        let not_ours = |e: std::io::Error| {
            format!(
                "{WORKER_FLAG} is for candor's supervisor only (the worker's stdin must be its link to it: {e}); run `candor serve`, or `candor serve --no-supervisor` for one process"
            )
        };
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(not_ours)?;
        let stream = UnixStream::from(fd);
        // Not a socket (a terminal, /dev/null): not started by the supervisor.
        stream.local_addr().map_err(not_ours)?;
        Ok(SupervisorLink { stream })
    }

    /// Tells the supervisor the worker serves; the future returned resolves when the
    /// supervisor is gone (its end of the link closed, however it ended).
    pub(crate) async fn ready(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let stream = self
            .stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(self.stream));
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "candor::supervisor", error = %e, "cannot use the link to the supervisor; this worker will not notice if the supervisor dies");
                return Box::pin(std::future::pending());
            }
        };
        if let Err(e) = stream.write_all(READY).await {
            tracing::warn!(target: "candor::supervisor", error = %e, "cannot tell the supervisor this worker serves");
        }
        Box::pin(async move {
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            tracing::warn!(target: "candor::supervisor", "the supervisor is gone: this worker drains and exits");
        })
    }
}
