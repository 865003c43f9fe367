//! Running under `candor serve`'s supervisor: why a worker was restarted.
//!
//! The supervisor (the `candor` binary's `cmd/supervisor.rs`) keeps the listening sockets
//! and runs the gateway in a worker process. When a worker it has seen ready ends abnormally
//! (killed by a signal, or a non-zero exit), the supervisor starts a new one on the same
//! sockets and tells it why in the environment variable [`RESTARTED_ENV`], as the JSON of a
//! [`RestartCause`]. The new worker reads it with [`RestartCause::from_env`], logs it and
//! hands it to its [`Server`](crate::Server) ([`Server::restarted`](crate::Server::restarted)),
//! where the event log finds it ([`Server::restart_cause`](crate::Server::restart_cause)) to
//! record `api.restarted` and raise the alert.

use serde::{Deserialize, Serialize};

/// The environment variable carrying a [`RestartCause`] to a restarted worker, as JSON:
/// `{"signal":9,"signal_name":"SIGKILL","exit_status":null,"restarts":1,"at":"2026-12-07T01:02:03Z","previous_pid":1234}`.
pub const RESTARTED_ENV: &str = "CANDOR_RESTARTED";

/// Why the supervisor restarted the worker: how the previous worker ended, and how many
/// restarts in a row this is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartCause {
    /// The signal that ended the previous worker (9 for SIGKILL), when a signal did.
    pub signal: Option<i32>,
    /// That signal's name, such as `SIGKILL`.
    pub signal_name: Option<String>,
    /// The previous worker's exit status, when it exited by itself (never 0: a worker that
    /// exits 0 is not restarted).
    pub exit_status: Option<i32>,
    /// Restarts in a row, this one included: 1 after a worker that had run for at least
    /// a minute; the supervisor's crash-loop back-off grows with it.
    pub restarts: u32,
    /// When the previous worker ended, RFC 3339 in UTC (`2026-12-07T01:02:03Z`).
    pub at: String,
    /// The previous worker's process id.
    pub previous_pid: u32,
}

impl RestartCause {
    /// The cause the supervisor passed in [`RESTARTED_ENV`]; `None` on a first start (or
    /// when the gateway runs without the supervisor). A value that is not a cause's JSON is
    /// logged and read as `None`: the worker serves either way.
    pub fn from_env() -> Option<RestartCause> {
        let raw = std::env::var(RESTARTED_ENV).ok()?;
        match serde_json::from_str(&raw) {
            Ok(cause) => Some(cause),
            Err(e) => {
                tracing::warn!(target: "candor::supervisor", value = %raw, error = %e, "{RESTARTED_ENV} is not a restart cause; ignored");
                None
            }
        }
    }

    /// The value of [`RESTARTED_ENV`] for this cause.
    pub fn to_env_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// How the previous worker ended, in words: `signal 9 (SIGKILL)`, `exit status 3`.
    pub fn ended_by(&self) -> String {
        match (self.signal, &self.signal_name, self.exit_status) {
            (Some(n), Some(name), _) => format!("signal {n} ({name})"),
            (Some(n), None, _) => format!("signal {n}"),
            (None, _, Some(code)) => format!("exit status {code}"),
            (None, _, None) => "an unknown cause".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_survives_the_environment_and_says_how_the_worker_ended() {
        let cause = RestartCause {
            signal: Some(9),
            signal_name: Some("SIGKILL".into()),
            exit_status: None,
            restarts: 1,
            at: "2026-12-07T01:02:03Z".into(),
            previous_pid: 1234,
        };
        let back: RestartCause = serde_json::from_str(&cause.to_env_value()).unwrap();
        assert_eq!(back, cause);
        assert_eq!(cause.ended_by(), "signal 9 (SIGKILL)");
        let exited = RestartCause {
            signal: None,
            signal_name: None,
            exit_status: Some(3),
            ..cause
        };
        assert_eq!(exited.ended_by(), "exit status 3");
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = r#"{"signal":9,"signal_name":"SIGKILL","exit_status":null,"restarts":1,"at":"2026-12-07T01:02:03Z","previous_pid":1234}"#;
        let cause: RestartCause = serde_json::from_str(doc).unwrap();
        assert_eq!(cause.restarts, 1);
        assert_eq!(cause.signal_name.as_deref(), Some("SIGKILL"));
    }
}
