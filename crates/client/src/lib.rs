//! # candor-client
//!
//! An async client for APIs behind candor that acts on every error as the catalog says.
//!
//! - [`ApiError`]: one error type, decoded from RFC 9457 problem details and from each seed
//!   API's envelope (AsyncOS, Edgio, Pelion, Knox, IXON), recognised by the body's shape:
//!   the [`ErrorClass`] (network, content, server), the code, the fields at fault, the
//!   request id, the retry class and `Retry-After`, the troubleshooting URL.
//! - Retries by the catalog's retry classes ([`rules`]; the same data as
//!   `candor catalog export --retry-rules`): `never` is never retried; `with_backoff` and
//!   network errors wait with exponential back-off and full jitter; `after_delay` waits what
//!   `Retry-After` says; `after_reauth` obtains a new token once. A retry budget shared by the
//!   client's requests stops retry storms; POST and PATCH carry an `Idempotency-Key`.
//! - Tokens: client credentials or a signed JWT assertion ([`AssertionKey`], RFC 7523),
//!   a one-time code ([`Totp`]) when the client has a second factor; cached and refreshed
//!   before they expire.
//!
//! HTTP/1.1 on hyper's connection API, TLS by rustls with ring: the crates candor itself
//! is built on, nothing more.
//!
//! ```no_run
//! # async fn run() -> Result<(), candor_client::ApiError> {
//! use candor_client::{Client, ErrorClass};
//! use candor_client::Retry;
//! let client = Client::builder("http://127.0.0.1:8080")
//!     .client_credentials("cl_123", "secret", "/oauth/token")
//!     .build()?;
//! let created = client
//!     .post_json("/v1/customers/acme/devices", &serde_json::json!({"name": "pump-7"}))
//!     .send()
//!     .await;
//! match created {
//!     Ok(resp) => println!("created after {} attempt(s): {}", resp.attempts(), resp.text()),
//!     Err(e) if e.class == ErrorClass::Content && e.retry == Retry::Never => {
//!         eprintln!("fix the request: {e}");
//!         if let Some(url) = &e.troubleshooting_url {
//!             eprintln!("read {url}");
//!         }
//!     }
//!     Err(e) => eprintln!("gave up after {} attempt(s): {e}", e.attempts),
//! }
//! # Ok(()) }
//! ```

mod auth;
mod client;
mod error;
mod profiles;
mod retry;
pub mod rules;
mod transport;

pub use auth::{AssertionKey, Totp};
pub use candor_catalog::{Backoff, Jitter, Retry, RetryRule, RetryRules};
pub use client::{Client, ClientBuilder, RequestBuilder, Response, RetryEvent, Stats};
pub use error::{ApiError, Envelope, ErrorClass, ErrorDetails, FieldFault};
