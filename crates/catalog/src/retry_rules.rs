//! The catalog's retry classes as data: what a client does after each error.
//!
//! `candor catalog export --retry-rules` prints [`RetryRules::from_catalog`] as JSON, and the
//! client library (`candor-client`) derives the same rules from the built-in catalog, or
//! reads an exported file when an operator's catalog adds codes.

use crate::{Catalog, Retry};
use serde::{Deserialize, Serialize};

/// How long and how often a client waits before trying again, for one retry class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Whether retrying the same request can succeed at all.
    pub retry: bool,
    /// Most retries after the first attempt (0 for `never`).
    pub max_retries: u32,
    /// The first delay, in milliseconds: the upper bound of the first jittered wait, or the
    /// wait when the answer carries no `Retry-After`.
    pub initial_delay_ms: u64,
    /// The longest single wait, in milliseconds (a longer `Retry-After` ends the retries:
    /// the caller gets the error and decides).
    pub max_delay_ms: u64,
    /// The bound grows by this factor after each attempt.
    pub multiplier: u32,
    /// `full`: each wait is uniformly random between 0 and the bound ("full jitter"), so
    /// that many clients failing at once do not come back at once; `none`: the bound itself.
    pub jitter: Jitter,
    /// Whether a `Retry-After` header (seconds or HTTP-date) sets the wait.
    pub honour_retry_after: bool,
    /// Whether to obtain new credentials before the retry.
    pub reauthenticate: bool,
}

/// The random part of a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// The bound itself.
    None,
    /// Uniform between 0 and the bound.
    Full,
}

impl Backoff {
    /// The guidance for one retry class.
    pub fn for_class(retry: Retry) -> Backoff {
        let base = Backoff {
            retry: true,
            max_retries: 3,
            initial_delay_ms: 200,
            max_delay_ms: 20_000,
            multiplier: 2,
            jitter: Jitter::Full,
            honour_retry_after: true,
            reauthenticate: false,
        };
        match retry {
            Retry::Never => Backoff {
                retry: false,
                max_retries: 0,
                initial_delay_ms: 0,
                max_delay_ms: 0,
                multiplier: 1,
                jitter: Jitter::None,
                honour_retry_after: false,
                reauthenticate: false,
            },
            // The answer says when: wait that long (1 s when it does not say).
            Retry::AfterDelay => Backoff {
                initial_delay_ms: 1_000,
                max_delay_ms: 60_000,
                jitter: Jitter::None,
                ..base
            },
            Retry::WithBackoff => base,
            // New credentials, then at once; a second refusal is the caller's to see.
            Retry::AfterReauth => Backoff {
                max_retries: 1,
                initial_delay_ms: 0,
                max_delay_ms: 0,
                multiplier: 1,
                jitter: Jitter::None,
                honour_retry_after: false,
                reauthenticate: true,
                ..base
            },
        }
    }
}

/// One code's rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRule {
    /// The catalog code.
    pub code: String,
    /// Its default status.
    pub status: u16,
    /// Its retry class (`never`, `after_delay`, `with_backoff`, `after_reauth`).
    pub retry: String,
    /// What the class means in waits and attempts.
    pub backoff: Backoff,
}

/// The rule for answers that carry no catalog code (another API's envelope, a bare status):
/// the status decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRule {
    /// The status, or `4xx` / `5xx` for the rest of a class.
    pub status: String,
    /// Its retry class.
    pub retry: String,
}

/// Every code's rule, plus the per-class guidance and the status fallbacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRules {
    /// The format's version; 1.
    pub version: u32,
    /// Guidance per retry class, by class name.
    pub classes: std::collections::BTreeMap<String, Backoff>,
    /// One rule per catalog code, in catalog order.
    pub codes: Vec<RetryRule>,
    /// For answers without a catalog code, first match wins.
    pub statuses: Vec<StatusRule>,
}

/// Every retry class, in the catalog's order of severity.
pub const CLASSES: [Retry; 4] = [
    Retry::Never,
    Retry::AfterDelay,
    Retry::WithBackoff,
    Retry::AfterReauth,
];

impl RetryRules {
    /// The rules of `catalog`.
    pub fn from_catalog(catalog: &Catalog) -> RetryRules {
        let statuses = [
            ("401", Retry::AfterReauth),
            ("408", Retry::WithBackoff),
            ("425", Retry::WithBackoff),
            ("429", Retry::AfterDelay),
            ("500", Retry::WithBackoff),
            ("501", Retry::Never),
            ("502", Retry::WithBackoff),
            ("503", Retry::AfterDelay),
            ("504", Retry::WithBackoff),
            ("4xx", Retry::Never),
            ("5xx", Retry::Never),
        ];
        RetryRules {
            version: 1,
            classes: CLASSES
                .iter()
                .map(|c| (c.as_str().to_owned(), Backoff::for_class(*c)))
                .collect(),
            codes: catalog
                .entries()
                .iter()
                .map(|e| RetryRule {
                    code: e.code.clone(),
                    status: e.status,
                    retry: e.retry.as_str().to_owned(),
                    backoff: Backoff::for_class(e.retry),
                })
                .collect(),
            statuses: statuses
                .iter()
                .map(|(s, r)| StatusRule {
                    status: (*s).to_owned(),
                    retry: r.as_str().to_owned(),
                })
                .collect(),
        }
    }

    /// The rules as pretty JSON (what `candor catalog export --retry-rules` prints).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The class of `code`, if the rules know it.
    pub fn class_of_code(&self, code: &str) -> Option<Retry> {
        self.codes
            .iter()
            .find(|r| r.code == code)
            .and_then(|r| Retry::parse(&r.retry))
    }

    /// The class for an answer with `status` and no known code.
    pub fn class_of_status(&self, status: u16) -> Retry {
        let exact = status.to_string();
        let family = format!("{}xx", status / 100);
        self.statuses
            .iter()
            .find(|r| r.status == exact)
            .or_else(|| self.statuses.iter().find(|r| r.status == family))
            .and_then(|r| Retry::parse(&r.retry))
            .unwrap_or(Retry::Never)
    }

    /// The guidance for `class`: the rules' own, else the built-in default.
    pub fn backoff(&self, class: Retry) -> Backoff {
        self.classes
            .get(class.as_str())
            .copied()
            .unwrap_or_else(|| Backoff::for_class(class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_class_and_the_json_reads_back() {
        let rules = RetryRules::from_catalog(Catalog::builtin());
        assert_eq!(rules.codes.len(), Catalog::builtin().entries().len());
        assert_eq!(rules.class_of_code("rate_limited"), Some(Retry::AfterDelay));
        assert_eq!(rules.class_of_code("validation_failed"), Some(Retry::Never));
        assert_eq!(
            rules.class_of_code("token_expired"),
            Some(Retry::AfterReauth)
        );
        assert_eq!(rules.class_of_code("no_such_code"), None);
        assert_eq!(rules.class_of_status(503), Retry::AfterDelay);
        assert_eq!(rules.class_of_status(418), Retry::Never);
        assert_eq!(rules.class_of_status(507), Retry::Never);
        assert!(!rules.backoff(Retry::Never).retry);
        assert!(rules.backoff(Retry::AfterReauth).reauthenticate);
        let back: RetryRules = serde_json::from_str(&rules.to_json()).unwrap();
        assert_eq!(back, rules);
    }
}
