//! `[access]`, and the same keys on a route: the transport policy (HTTPS only, allowed and
//! denied networks), read into the policy stage's `AccessPolicy`.

use super::reader::{Problems, TableReader};
use crate::http::address::IpNet;
use crate::stages::policy::AccessPolicy;

const ACCESS: &[&str] = &["require_https", "redirect_to_https", "allow", "deny"];

/// Reads `[access]`, the policy every route starts from.
pub(super) fn read_section(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> AccessPolicy {
    match top.table(p, "access", ACCESS) {
        Some(a) => {
            let policy = read(&a, p);
            a.finish(p);
            policy
        }
        None => crate::stages::policy::AccessPolicy::default(),
    }
}

pub(super) fn read(
    t: &TableReader<'_, '_>,
    p: &mut Problems<'_>,
) -> crate::stages::policy::AccessPolicy {
    let mut nets = |key: &str| -> Vec<IpNet> {
        let mut out = Vec::new();
        for (item, span) in t.strings(p, key).unwrap_or_default() {
            match IpNet::parse(&item) {
                Ok(n) => out.push(n),
                Err(e) => {
                    p.at(span, &t.key_path(key), e).expected =
                        Some("an address or CIDR, e.g. \"10.0.0.0/8\"".into());
                }
            }
        }
        out
    };
    let allow = nets("allow");
    let deny = nets("deny");
    crate::stages::policy::AccessPolicy {
        require_https: t.boolean(p, "require_https").unwrap_or(false),
        redirect_to_https: t.boolean(p, "redirect_to_https").unwrap_or(false),
        allow,
        deny,
    }
}
