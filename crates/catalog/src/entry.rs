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
    /// The pipeline stage that raises it: the name of one of [`crate::Catalog::stages`].
    pub stage: String,
    /// The response headers that come with it (`Retry-After`, `WWW-Authenticate`...), each
    /// described in [`crate::Catalog::headers`].
    pub headers: Vec<String>,
    /// The configuration options that make it appear (`routes.scopes`...).
    pub config: Vec<String>,
    /// Placeholder values for the example response of its troubleshooting page.
    pub example: Vec<(String, String)>,
    /// The `errors[]` items of that example response, for a code that lists field
    /// problems (`validation_failed`); empty for the others.
    pub example_errors: Vec<crate::FieldError>,
}

/// A stage of the request pipeline: the docs group the codes by these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The name entries refer to (`authenticate`).
    pub name: String,
    /// The heading (`Authenticate`).
    pub title: String,
    /// What happens in this stage, in a sentence.
    pub about: String,
}

/// A response header an entry may carry, as documented on the troubleshooting pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderDoc {
    /// The header's name (`Retry-After`).
    pub name: String,
    /// What it tells the client.
    pub about: String,
    /// An example value, shown in example responses.
    pub example: String,
}
