//! The pipeline stages, one module each, in request order. A stage decides: it reads the
//! request (and what earlier stages found, in the request context), records its decision in
//! the trail, and lets the request through or refuses it with a catalog error. Stages do no
//! I/O of their own except `forward`, which talks to the upstream.
//!
//! | stage | module | what it decides |
//! | --- | --- | --- |
//! | transport | [`transport`] | URI, header and body size limits |
//! | parse | [`parse`] | the request target's encoding; one canonical path |
//! | route | [`route`] | host, path and method; suggestions on a miss |
//! | transport policy | [`policy`] | the route's mode, HTTPS only, allowed and denied client networks |
//! | negotiate | [`negotiate`] | Accept against what the route produces, a body's Content-Type against what it accepts |
//! | authenticate | [`authenticate`] | the credentials a route requires, each refusal precise |
//! | authorize | [`authorize`] | scopes, the account the request names, account state |
//! | limit | [`limit`] | the account's daily quota |
//! | configuration mode | [`config_mode`] | the mode a request names against the feature's overrides |
//! | validate | [`validate`] | the route's contract: parameters, headers and the JSON body, every problem at once |
//! | forward | [`forward`] | the upstream exchange, its failures, hop-by-hop headers |
//! | respond | [`respond`] | errors rendered from the catalog as RFC 9457 documents |
//!
//! May depend on: `http` (addresses, bodies), `identity` (snapshot, tokens), `limits`,
//! `upstream` (forward only), the catalog. Not on `config`'s reader, `admin` or `demo`.

pub(crate) mod authenticate;
pub(crate) mod authorize;
pub(crate) mod config_mode;
pub(crate) mod forward;
pub(crate) mod json_tree;
pub(crate) mod limit;
pub(crate) mod negotiate;
pub(crate) mod parse;
pub(crate) mod policy;
pub(crate) mod respond;
pub(crate) mod route;
pub(crate) mod transport;
pub(crate) mod validate;
