//! Who is calling: the store of accounts, clients, API keys and signing keys (SQLite, read
//! through an in-memory snapshot), tokens (JWT, JWK sets, external issuers), TOTP second
//! factors, and the token endpoint that issues tokens.
//!
//! | module | what |
//! | --- | --- |
//! | [`store`] | domain types, the store trait, SQLite, the snapshot |
//! | [`jwt`] | issuing and verifying JSON Web Tokens (RFC 7519, RFC 8725) |
//! | [`jwk`] | JSON Web Keys (RFC 7517) |
//! | [`issuers`] | external issuers' JWK sets, cached and refreshed |
//! | [`totp`] | RFC 6238 one-time codes |
//! | [`token_endpoint`] | `POST /oauth/token` and the JWKS document |
//!
//! May depend on: `http` (bodies, addresses), `limits` (failed attempts, replay cache),
//! the catalog. Not on `stages` or `pipeline`.

pub(crate) mod issuers;
pub(crate) mod jwk;
pub(crate) mod jwt;
pub(crate) mod store;
pub(crate) mod token_endpoint;
pub(crate) mod totp;
