//! # candor-catalog
//!
//! The one error catalog every candor error comes from. No async, no I/O: the built-in
//! catalog is compiled into the binary and an operator's catalog file is handed in as text.
//!
//! - [`Catalog`] — the validated set of [`Entry`]s, built-in plus operator overrides.
//! - [`Template`] — a message template compiled once at load (`{name}` placeholders).
//! - [`Problem`] — one rendered error: RFC 9457 `application/problem+json`.
//! - [`page`] — an entry as JSON, and HTML escaping.
//! - [`RetryRules`] — each code's retry class and back-off guidance, as data for clients.
//! - [`profile`] — the same errors in another API's envelope and words ([`Profile`]).
//! - [`profile_page`] — a profile's troubleshooting page (Markdown or HTML).
//! - [`site`] — the troubleshooting site: an index and one page per code (HTML), as the
//!   gateway serves it under `/errors/` and `candor docs build` writes it.
//! - [`codes`] — the built-in codes as constants, so raising code cannot misspell one.
//!
//! ```
//! use candor_catalog::{Catalog, Problem, codes};
//! let catalog = Catalog::builtin();
//! let entry = catalog.get(codes::ROUTE_NOT_FOUND).unwrap();
//! let detail = entry.message.render(&[("method", "GET"), ("path", "/v1/x"), ("hint", "")]);
//! assert_eq!(detail, "No route matches GET /v1/x.");
//! let body = Problem::new(entry, "http://127.0.0.1:8080", &detail, "/v1/x", "01J0").to_json();
//! assert!(body.contains(r#""code":"route_not_found""#));
//! ```

mod entry;
mod load;
pub mod page;
mod problem;
pub mod profile;
pub mod profile_page;
mod retry_rules;
pub mod site;
mod template;

pub use entry::{Entry, HeaderDoc, Retry, Stage};
pub use load::{Catalog, CatalogProblem};
pub use problem::{FieldError, Problem};
pub use profile::Profile;
pub use retry_rules::{Backoff, CLASSES, Jitter, RetryRule, RetryRules, StatusRule};
pub use template::Template;

/// The built-in catalog's source text (TOML), embedded at build time.
pub const BUILTIN_SOURCE: &str = include_str!("../../../catalog/errors.toml");

/// The built-in catalog codes. Raising code names codes through these constants.
pub mod codes {
    macro_rules! codes {
        ($($name:ident = $code:literal;)*) => {
            $(#[doc = concat!("`", $code, "`")] pub const $name: &str = $code;)*
            /// Every built-in code, in catalog order.
            pub const ALL: &[&str] = &[$($code),*];
        };
    }
    codes! {
        HTTPS_REQUIRED = "https_required";
        ACCESS_RESTRICTED = "access_restricted";
        URI_TOO_LONG = "uri_too_long";
        HEADERS_TOO_LARGE = "headers_too_large";
        PAYLOAD_TOO_LARGE = "payload_too_large";
        REQUEST_TIMEOUT = "request_timeout";
        MALFORMED_REQUEST = "malformed_request";
        MALFORMED_HEADER = "malformed_header";
        INVALID_URL_ENCODING = "invalid_url_encoding";
        ROUTE_NOT_FOUND = "route_not_found";
        METHOD_NOT_ALLOWED = "method_not_allowed";
        NOT_ACCEPTABLE = "not_acceptable";
        UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type";
        MALFORMED_BODY = "malformed_body";
        CREDENTIALS_MISSING = "credentials_missing";
        CREDENTIALS_MALFORMED = "credentials_malformed";
        TOKEN_INVALID = "token_invalid";
        TOKEN_EXPIRED = "token_expired";
        TOKEN_NOT_YET_VALID = "token_not_yet_valid";
        TOKEN_WRONG_AUDIENCE = "token_wrong_audience";
        TOKEN_REVOKED = "token_revoked";
        API_KEY_INVALID = "api_key_invalid";
        API_KEY_RESTRICTION_MISSING = "api_key_restriction_missing";
        API_KEY_RESTRICTION_MISMATCH = "api_key_restriction_mismatch";
        INVALID_CLIENT = "invalid_client";
        INVALID_GRANT = "invalid_grant";
        ASSERTION_REPLAYED = "assertion_replayed";
        INVALID_TOKEN_VALIDITY = "invalid_token_validity";
        UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type";
        SECOND_FACTOR_REQUIRED = "second_factor_required";
        SECOND_FACTOR_INVALID = "second_factor_invalid";
        TOO_MANY_FAILED_ATTEMPTS = "too_many_failed_attempts";
        INSUFFICIENT_SCOPE = "insufficient_scope";
        ACCOUNT_MISMATCH = "account_mismatch";
        ACCOUNT_INACTIVE = "account_inactive";
        QUOTA_EXCEEDED = "quota_exceeded";
        RATE_LIMITED = "rate_limited";
        RATE_LIMIT_STORE_UNAVAILABLE = "rate_limit_store_unavailable";
        EVENT_LOG_UNAVAILABLE = "event_log_unavailable";
        VALIDATION_FAILED = "validation_failed";
        UPSTREAM_UNREACHABLE = "upstream_unreachable";
        UPSTREAM_PROTOCOL_ERROR = "upstream_protocol_error";
        UPSTREAM_TIMEOUT = "upstream_timeout";
        UPSTREAM_ERROR = "upstream_error";
        NO_HEALTHY_UPSTREAM = "no_healthy_upstream";
        UPSTREAM_OVERLOADED = "upstream_overloaded";
        SERVICE_UNAVAILABLE = "service_unavailable";
        SERVER_OVERLOADED = "server_overloaded";
        NOT_IMPLEMENTED = "not_implemented";
        INTERNAL_ERROR = "internal_error";
        RESOURCE_NOT_FOUND = "resource_not_found";
        UNKNOWN_PATH = "unknown_path";
        DUPLICATE_RESOURCE = "duplicate_resource";
        CONFLICT = "conflict";
        UNSUPPORTED_FOR_MODE = "unsupported_for_mode";
    }
}
