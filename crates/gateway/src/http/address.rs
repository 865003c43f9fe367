//! Client addresses: IP networks (CIDR) for trusted-proxy and access lists, the client's
//! address behind trusted proxies, and whether it reached the edge over HTTPS.

use http::HeaderMap;
use std::fmt;
use std::net::IpAddr;

/// An IP network such as `10.0.0.0/8` or `::1/128`; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The prefix length in bits (0: every address).
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`/{p}` is not a prefix length from 0 to {max}"))?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Each octet's value as text: its length, then its digits.
const OCTETS: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let v = i as u8;
        table[i] = if v >= 100 {
            [3, b'0' + v / 100, b'0' + v / 10 % 10, b'0' + v % 10]
        } else if v >= 10 {
            [2, b'0' + v / 10, b'0' + v % 10, 0]
        } else {
            [1, b'0' + v, 0, 0]
        };
        i += 1;
    }
    table
};

/// Appends `ip` as text (an IPv4 address's octets from a table, made in place and appended
/// at once: every proxied request writes its client's address, and every event line).
#[inline]
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Each octet's three digit places are written, then the dot where its digits
            // end: `255.255.255.255.` and two places of room.
            let mut text = [0u8; 18];
            let mut n = 0;
            for octet in v4.octets() {
                let [len, digits @ ..] = OCTETS[usize::from(octet)];
                text[n..n + 3].copy_from_slice(&digits);
                n += usize::from(len);
                text[n] = b'.';
                n += 1;
            }
            out.extend_from_slice(&text[..n - 1]);
        }
        v6 => {
            use std::io::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
/// untrusted address in X-Forwarded-For.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|n| n.contains(peer)) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|a| !trusted.iter().any(|n| n.contains(**a)))
        .copied()
        .or(chain.first().copied())
        .unwrap_or(peer)
}

/// Whether the request reached the edge over HTTPS (directly, or per a trusted proxy).
pub(crate) fn is_https(tls: bool, peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    tls || (trusted.iter().any(|n| n.contains(peer))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        // Every octet's value, in every position.
        for v in 0..=255u8 {
            for at in 0..4 {
                let mut octets = [1, 22, 133, 4];
                octets[at] = v;
                let ip = IpAddr::from(octets);
                let mut out = Vec::new();
                push_ip(&mut out, ip);
                assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
            }
        }
    }
    use http::HeaderValue;

    #[test]
    fn client_address_behind_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.7"),
        );
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap(),
            "untrusted peers cannot claim an address"
        );
    }

    #[test]
    fn cidr_matching() {
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            IpNet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("banana").is_err());
    }
}
