//! `[demo_api]`: the built-in demo devices API, served by `candor serve` next to the
//! gateway on a loopback address, so that an example configuration needs nothing else to
//! run (its routes name `http://<that address>` as their upstream).

use super::reader::{Problems, TableReader};
use std::net::SocketAddr;

const DEMO_API: &[&str] = &["listen"];

/// Reads `[demo_api]`: the loopback address the demo API is served on, if any.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> Option<SocketAddr> {
    let t = top.table(p, "demo_api", DEMO_API)?;
    let addr = match t.string(p, "listen") {
        None => {
            p.at(
                t.span.clone(),
                "demo_api",
                "names no `listen` address".into(),
            )
            .expected = Some("listen = \"127.0.0.1:18000\"".into());
            None
        }
        Some((text, span)) => match text.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() && a.port() != 0 => Some(a),
            Ok(_) => {
                p.at(
                    span,
                    "demo_api.listen",
                    format!("`{text}` is not a loopback address with a port: the demo API has no authentication of its own, so it is served on loopback only, where the routes reach it"),
                )
                .expected = Some("an address such as \"127.0.0.1:18000\"".into());
                None
            }
            Err(e) => {
                p.at(span, "demo_api.listen", format!("`{text}`: {e}"))
                    .expected = Some("an address such as \"127.0.0.1:18000\"".into());
                None
            }
        },
    };
    t.finish(p);
    addr
}
