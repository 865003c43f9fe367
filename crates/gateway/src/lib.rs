//! # candor-gateway
//!
//! The candor server. One module per pipeline stage, in request order:
//!
//! | stage | module | what it decides |
//! | --- | --- | --- |
//! | accept | [`server`] | listeners, TLS (h2 by ALPN), h2c, reload, graceful shutdown |
//! | transport | [`transport`] | URI, header and body size limits |
//! | parse | [`parse`] | the request target's encoding; one canonical path |
//! | route | [`route`] | host, path and method; suggestions on a miss |
//! | transport policy | [`policy`] | HTTPS only, allowed and denied client networks |
//! | authenticate | [`authenticate`] | the credentials a route requires, each refusal precise |
//! | authorize | [`authorize`] | scopes, the account the request names, account state |
//! | forward | [`forward`] | the upstream exchange, its failures, hop-by-hop headers |
//! | respond | [`respond`] | errors rendered from the catalog as RFC 9457 documents |
//!
//! [`pipeline`] strings the stages together, [`config`] loads and checks the TOML file,
//! [`trail`] records each stage's decision, [`docs`] serves `/errors/{code}`, [`admin`] the
//! admin listener and [`demo`] the built-in demo API. [`store`] keeps accounts, clients and
//! signing keys (SQLite, read through an in-memory snapshot), [`token_endpoint`] issues
//! tokens ([`jwt`]), [`totp`] checks second factors.

pub mod admin;
pub mod authenticate;
pub mod authorize;
pub mod body;
pub mod config;
pub mod demo;
pub mod docs;
pub mod error;
pub mod forward;
pub mod guard;
pub mod issuers;
pub mod jwk;
pub mod jwt;
pub mod negotiate;
pub mod net;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod pool;
pub mod quota;
pub mod request_id;
pub mod respond;
pub mod route;
pub mod server;
pub mod store;
pub mod time;
pub mod tls;
pub mod token_endpoint;
pub mod totp;
pub mod trail;
pub mod transport;

pub use config::{Config, ConfigReport, did_you_mean};
pub use error::GatewayError;
pub use jwt::Claims;
pub use respond::Renderer;
pub use server::{Overrides, Server, shutdown_signal};
pub use store::{
    Account, AccountStatus, ApiKey, Client, Identity, NewAccount, NewApiKey, NewClient, StoreError,
};
pub use time::{rfc3339, unix_now};
pub use totp::code_at as totp_code_at;
