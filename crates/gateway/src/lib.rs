//! # candor-gateway
//!
//! The candor server. A request passes the areas below top to bottom; each area is a folder
//! whose module doc says what it is for and what it may depend on.
//!
//! | area | module | what it holds |
//! | --- | --- | --- |
//! | accept | `http` | listeners, TLS, the head guard, bodies, request ids, client addresses, reload, shutdown |
//! | the pipeline | `pipeline` | one configuration generation compiled; the request context; the trail; `Pipeline::run`, the stages as a list |
//! | stages | `stages` | one module per stage, in request order (below) |
//! | upstream | `upstream` | the connection pool |
//! | identity | `identity` | accounts, clients, keys (SQLite + snapshot), tokens, JWK sets, external issuers, TOTP, the token endpoint |
//! | limits | `limits` | quotas, failed attempts, the assertion replay cache |
//! | events | [`events`] | the API event log (JSON lines + SQLite index), subscriptions, alerts; a request's story |
//! | config | `config` | the TOML file: root, report, reader, one file per section |
//! | durations | [`duration`] | the one grammar of durations a person types (`90s`, `5m`, `30d`) |
//! | admin | [`admin`](crate) | the admin listener, its `/stats` (`stats`), `/metrics` (`metrics`) and the gateway's own error pages |
//! | demo | [`demo`] | the demo devices API |
//! | supervised | [`RestartCause`] | why `candor serve`'s supervisor restarted the worker (for the event log) |
//! | OpenAPI out | [`openapi`] | the catalog's errors as OpenAPI components; a document annotated with what each route answers |
//!
//! The stages, in request order (`stages/`):
//!
//! | stage | module | what it decides |
//! | --- | --- | --- |
//! | transport | `stages::transport` | URI, header and body size limits |
//! | parse | `stages::parse` | the request target's encoding; one canonical path |
//! | route | `stages::route` | host, path and method; suggestions on a miss; the gateway's own endpoints |
//! | policy | `stages::policy` | the route's mode, HTTPS only, allowed and denied client networks |
//! | negotiate | `stages::negotiate` | Accept against what the route produces; a body's Content-Type against what it accepts |
//! | authenticate | `stages::authenticate` | the credentials a route requires, each refusal precise |
//! | authorize | `stages::authorize` | scopes, the account the request names, account state |
//! | limit | `stages::limit` | the account's daily quota (rate limits to come) |
//! | validate | `stages::validate` | the request against the route's contract: parameters, headers, the JSON body |
//! | forward | `stages::forward` | the upstream exchange, its failures, hop-by-hop headers |
//! | respond | `stages::respond` | errors rendered from the catalog: RFC 9457 documents, or in the error profile chosen for the request |
//!
//! [`GatewayError`] is the one error type: its catalog code, source and retry class.
//!
//! Where things go: a new stage is a module in `stages/` and a variant of the plan's
//! `Stage` enum (`pipeline/plan.rs`); a new section of the file is a file in `config/`
//! returning that stage's config type; a new upstream feature goes in `upstream/`.
//!
//! The public surface is what the `candor` binary and its tests use, re-exported here.

mod admin;
mod config;
pub mod demo;
pub mod duration;
mod error;
pub mod events;
mod http;
mod identity;
mod limits;
mod metrics;
pub mod openapi;
mod pipeline;
#[cfg(test)]
mod properties;
mod stages;
mod stats;
mod supervised;
mod time;
mod upstream;

pub use config::EventsConfig;
pub use config::{
    AlertRules, AlertsConfig, EmailConfig, ErrorRateRule, EventFilterConfig, Mode, Secret,
    SinkConfig, SubscriptionConfig, SyslogConfig, SyslogTransport, WebhookConfig,
};
pub use config::{Config, ConfigProblem, ConfigReport, did_you_mean};
pub use error::GatewayError;
pub use http::path_segment;
pub use http::server::{Listeners, Overrides, Server, probe_listeners, shutdown_signal};
pub use identity::jwt::Claims;
pub use identity::store::{
    Account, AccountStatus, ApiKey, Client, Identity, NewAccount, NewApiKey, NewClient, Snapshot,
    StoreError,
};
pub use identity::totp::code_at as totp_code_at;
pub use pipeline::plan::RoutePlan;
pub use stages::respond::{Profiles, Renderer};
pub use stages::validate::BodyCheck;
pub use supervised::{RESTARTED_ENV, RestartCause};
pub use time::{rfc3339, rfc3339_millis, unix_now};
