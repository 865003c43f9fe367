//! One catalog entry.

use crate::Template;
use serde::Serialize;

/// Whether and how a client may retry after this error. Drives `Retry-After` and the client
/// library's retry rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Retrying the same request cannot succeed.
    Never,
    /// Retry after the delay in `Retry-After`.
    AfterDelay,
    /// Transient: retry with exponential back-off.
    WithBackoff,
    /// Obtain new credentials, then retry.
    AfterReauth,
}

impl Retry {
    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Retry::Never => "never",
            Retry::AfterDelay => "after_delay",
            Retry::WithBackoff => "with_backoff",
            Retry::AfterReauth => "after_reauth",
        }
    }

    /// Parses the catalog spelling.
    pub fn parse(s: &str) -> Option<Retry> {
        Some(match s {
            "never" => Retry::Never,
            "after_delay" => Retry::AfterDelay,
            "with_backoff" => Retry::WithBackoff,
            "after_reauth" => Retry::AfterReauth,
            _ => return None,
        })
    }
}

/// One error of the catalog.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Stable snake_case identifier; a contract once shipped.
    pub code: String,
    /// Default HTTP status.
    pub status: u16,
    /// The class, e.g. `invalid_auth`, `validation_error`, `not_found`.
    pub kind: String,
    /// Short, stable summary.
    pub title: String,
    /// The detail template.
    pub message: Template,
    /// What the error means, in a paragraph.
    pub explanation: String,
    /// Ordered troubleshooting steps.
    pub checklist: Vec<String>,
    /// Retry class.
    pub retry: Retry,
    /// Other codes worth reading.
    pub related: Vec<String>,
}
