//! candor's black-box suite: one test binary that starts the real `candor` binary on
//! loopback ports and talks to it over raw sockets, HTTP/2 and TLS, with small upstreams
//! that behave well or badly. One module per pipeline stage or feature, in request order:
//!
//! - [`harness`]: the gateway under test, raw clients, fake upstreams, the CLI, the
//!   identity setup, `assert_problem`, and temp directories removed when a test ends.
//! - [`transport`]: URI, header and body size limits (414, 431, 413).
//! - [`head_guard`]: malformed request lines and header lines, on any request of a connection.
//! - [`framing`]: one framing authority: every smuggling vector, table-driven, with what
//!   reached the upstream.
//! - [`parse`]: percent-encoding of the request target and path normalisation.
//! - [`route`]: host, path and method matching, suggestions on a miss, request ids.
//! - [`policy`]: HTTPS-only routes, redirects, allowed and denied networks, trusted proxies.
//! - [`negotiate`]: Accept against what a route produces, a body's Content-Type against
//!   what it accepts (406, 415).
//! - [`authenticate`]: bearer credentials and every refusal, an RFC 8725 attack suite.
//! - [`authorize`]: scopes, the account a request names, account quotas.
//! - [`validate`]: route contracts: parameters, headers and JSON bodies, every problem at
//!   once (`validation_failed`), schemas `candor check` refuses.
//! - [`config_modes`]: configuration modes (cluster, group, machine), overrides in the
//!   configuration and through the admin API, `unsupported_for_mode`.
//! - [`token_endpoint`]: client credentials, refusals, second factors, key rotation, JWT-bearer.
//! - [`api_keys`]: API keys, their restrictions, rotation and deletion.
//! - [`issuers`]: tokens of external issuers with JWK sets from a file or over HTTPS.
//! - [`body_faults`]: request bodies that stall, crawl or stop: the client's fault, in its
//!   own code.
//! - [`forward`]: the upstream exchange and its failures, pooling, streaming, route modes.
//! - [`protocols`]: HTTP/2 (h2c and h2 by ALPN) and TLS termination.
//! - [`caps`]: connection caps (server_overloaded), HTTP/2 stream caps and the reset budget,
//!   idle HTTP/2 connections and the maximum connection age.
//! - [`timeouts`]: request head, keep-alive and TLS waits, each from accept.
//! - [`lifecycle`]: `candor check`, reload on change and SIGHUP, graceful shutdown.
//! - [`supervisor`]: the worker process restarted on the same sockets when it dies, the
//!   crash-loop back-off, signals forwarded, `--no-supervisor`.
//! - [`catalog`]: `candor catalog`, operator catalogs, the `/errors/{code}` pages.
//! - [`docs_site`]: the troubleshooting site in a real headless Chromium ([`browser`], a
//!   minimal DevTools-protocol client): no console errors, no broken link, search,
//!   screenshots, one h1, a labelled search box, contrast; `candor docs build`.
//! - [`admin`]: the admin listener and its administration API.
//! - [`metrics`]: `/metrics` after requests that passed, missed and were rate limited;
//!   `traceparent` to the upstream; the trace id in problem bodies.
//! - [`demo`]: the embedded demo (`candor serve` with no configuration).
//! - [`events`]: the API event log, `candor explain`, `/requests/{id}` and `/events`.
//! - [`examples`]: the seed examples (asyncos, edgio, knox) as they ship, every error their
//!   seed documents produced by a real request.
//! - [`newcomer`]: the README's tour, read out of the README and run against the demo.
//! - [`shared_limits`]: rate limits shared through a real redis-server, Redis killed and
//!   restarted.
//! - [`catalog_coverage`]: every catalog code is produced by some test here.
//! - [`subscriptions`]: event subscriptions: webhooks in block and drop mode, signatures,
//!   syslog over UDP and TCP, filters.
//! - [`alerts`]: alerts by webhook and e-mail, deduplicated.
//! - [`traces`]: OTLP export of a span per request.
//! - [`seeds`]: the seed documents and the examples that reproduce them; [`profiles_pelion`]:
//!   `examples/pelion.toml` against seed 002, and how a profile is chosen and checked;
//!   [`profiles_ixon`]: `examples/ixon.toml` against seed 004.
//! - [`client`]: candor-client against the gateway: errors decoded, retries by retry class,
//!   `Retry-After`, the retry budget, tokens refreshed and re-acquired.

mod browser;
mod harness;

mod admin;
mod alerts;
mod api_keys;
mod authenticate;
mod authorize;
mod body_faults;
mod caps;
mod catalog;
mod catalog_coverage;
mod client;
mod config_modes;
mod demo;
mod docs_site;
mod events;
mod examples;
mod forward;
mod framing;
mod head_guard;
mod issuers;
mod lifecycle;
mod metrics;
mod negotiate;
mod newcomer;
mod openapi;
mod parse;
mod policy;
mod profiles_ixon;
mod profiles_pelion;
mod protocols;
mod rate_limits;
mod route;
mod seeds;
mod shared_limits;
mod subscriptions;
mod supervisor;
mod timeouts;
mod token_endpoint;
mod traces;
mod transport;
mod upstreams;
mod validate;
