//! Which client a connection comes from, as far as limits are concerned: the key that
//! rate buckets and seat counts use ([`address_key`]), and the client address behind
//! trusted reverse proxies ([`TrustedProxies::client_address`]). Both backends call
//! these, so one client is one key on either of them.

use crate::protocol::config::proxy_net;
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The limit key of a client address: an IPv4 address as itself, an IPv6 address as
/// its /64 prefix (`2001:db8:1:2::/64`). One IPv6 subscriber usually gets a whole /64
/// and can pick any of its 2^64 addresses, so keying by the full address would give
/// one client unlimited buckets and seats. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the
/// IPv4 address. Text that is not an IP address (`unknown`) is kept as it is.
pub fn address_key(addr: &str) -> String {
    match addr.trim().parse::<IpAddr>() {
        Ok(ip) => ip_key(ip),
        Err(_) => addr.to_owned(),
    }
}

/// The wider limit key of an address key ([`address_key`]): the /48 of an IPv6 /64
/// (`2001:db8:1:2::/64` → `2001:db8:1::/48`), `None` for anything else. A /48 is what a
/// site is commonly given, 65,536 /64s: keyed by /64 alone, one site would get 65,536
/// sets of seats and buckets, so the per-address limits also count per /48, with caps
/// `address_48_factor` times larger.
pub fn wide_key(key: &str) -> Option<String> {
    let prefix = key.strip_suffix("/64")?.parse::<Ipv6Addr>().ok()?;
    let wide = u128::from(prefix) & !((1u128 << 80) - 1);
    Some(format!("{}/48", Ipv6Addr::from(wide)))
}

fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
    }
}

/// The configured reverse proxies (`trusted_proxies`): addresses or CIDR prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `trusted_proxies` entry that is neither an IP address nor a CIDR prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadProxy(pub String);

impl fmt::Display for BadProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IP address or a CIDR prefix like 10.0.0.0/8",
            self.0
        )
    }
}

impl TrustedProxies {
    /// Parses the entries of `trusted_proxies` (`127.0.0.1`, `10.0.0.0/8`, `::1`,
    /// `fd00::/8`).
    pub fn parse(entries: &[String]) -> Result<Self, BadProxy> {
        entries
            .iter()
            .map(|e| proxy_net(e).ok_or_else(|| BadProxy(e.trim().to_owned())))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if `ip` is one of the proxies. IPv4-mapped IPv6 counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `peer` (the TCP peer),
    /// carrying these `X-Forwarded-For` and `Forwarded` header values (each header's
    /// lines in the order received).
    ///
    /// The headers are used only when `peer` is a trusted proxy; never by default.
    /// The hops they list are then walked from the right (the hop nearest to us): each
    /// hop was written by the trusted proxy to its right, so the first hop that is not
    /// itself a trusted proxy is the client. If every hop is trusted, the left-most is
    /// the client. A hop that is no IP address (`unknown`, an obfuscated `_name`, or
    /// garbage) cannot be keyed, and a client must not be able to pick a fresh key per
    /// request, so the trusted proxy that wrote it stands for the client.
    ///
    /// `X-Forwarded-For` is read when present, because it is what common proxies
    /// (nginx, HAProxy, Caddy, Traefik) append to; `Forwarded` (RFC 7239) only when
    /// there is no `X-Forwarded-For`. A proxy that maintains `Forwarded` must therefore
    /// remove any `X-Forwarded-For` a client sends, or a client could write its own.
    pub fn client_address(
        &self,
        peer: IpAddr,
        x_forwarded_for: &[&str],
        forwarded: &[&str],
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = if x_forwarded_for.iter().any(|v| !v.trim().is_empty()) {
            x_forwarded_for
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .collect()
        } else {
            forwarded
                .iter()
                .flat_map(|v| split_unquoted(v, ','))
                .filter_map(forwarded_for)
                .collect()
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.60;proto=http`), unquoted.
/// An element without `for=` names no hop.
fn forwarded_for(element: &str) -> Option<&str> {
    split_unquoted(element, ';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Splits at `sep` outside double quotes (a quoted `Forwarded` value may hold `,`/`;`).
fn split_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    text.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
    .map(str::trim)
    .filter(|s| !s.is_empty())
}

/// One hop as an IP address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:5678`. Anything else is `None`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok
            .then(|| inside.parse::<Ipv6Addr>().ok())
            .flatten()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (ip, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedProxies::parse(&owned).unwrap()
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        assert_eq!(address_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(
            address_key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_ne!(
            address_key("2001:db8:1:3::1"),
            address_key("2001:db8:1:2::1")
        );
        assert_eq!(address_key("::1"), "::/64");
        assert_eq!(address_key("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(address_key("10.1.2.3"), "10.1.2.3");
        assert_eq!(address_key(" 10.1.2.3 "), "10.1.2.3");
        assert_eq!(address_key("unknown"), "unknown");
    }

    #[test]
    fn a_64_key_widens_to_its_48_and_nothing_else_does() {
        assert_eq!(
            wide_key(&address_key("2001:db8:1:2:3:4:5:6")).as_deref(),
            Some("2001:db8:1::/48")
        );
        assert_eq!(
            wide_key(&address_key("2001:db8:1:ffff::1")),
            wide_key(&address_key("2001:db8:1:0::1")),
            "every /64 of a /48 is one wide key"
        );
        assert_ne!(
            wide_key(&address_key("2001:db8:2::1")),
            wide_key(&address_key("2001:db8:1::1"))
        );
        assert_eq!(wide_key(&address_key("::1")).as_deref(), Some("::/48"));
        for other in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "unknown",
            "2001:db8::/48",
            "x/64",
        ] {
            assert_eq!(wide_key(&address_key(other)), None, "{other}");
        }
    }

    #[test]
    fn headers_are_ignored_unless_the_peer_is_a_trusted_proxy() {
        let none = TrustedProxies::default();
        let xff = ["6.6.6.6"];
        let fwd = ["for=6.6.6.6"];
        assert_eq!(
            none.client_address(ip("1.2.3.4"), &xff, &fwd),
            ip("1.2.3.4")
        );
        let some = proxies(&["10.0.0.1"]);
        assert_eq!(
            some.client_address(ip("1.2.3.4"), &xff, &fwd),
            ip("1.2.3.4"),
            "an untrusted peer's headers are the client's own words"
        );
        assert_eq!(
            some.client_address(ip("::ffff:1.2.3.4"), &[], &[]),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        // The client forged the first entry; the proxies appended the rest.
        let xff = ["6.6.6.6, 203.0.113.7", "192.168.1.1"];
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &xff, &[]),
            ip("203.0.113.7")
        );
        // With a port, in brackets.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &["203.0.113.7:4711"], &[]),
            ip("203.0.113.7")
        );
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &["[2001:db8::17]:4711"], &[]),
            ip("2001:db8::17")
        );
        // Every hop trusted: the left-most is the client.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &["10.9.9.9, 10.0.0.2"], &[]),
            ip("10.9.9.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(p.client_address(ip("10.0.0.1"), &[], &[]), ip("10.0.0.1"));
    }

    #[test]
    fn an_unreadable_hop_stands_for_the_proxy_that_wrote_it() {
        let p = proxies(&["10.0.0.0/8"]);
        for garbage in ["unknown", "_hidden", "nonsense", "1.2.3.4:99999", "[::1"] {
            assert_eq!(
                p.client_address(ip("10.0.0.1"), &[garbage], &[]),
                ip("10.0.0.1"),
                "{garbage}"
            );
            assert_eq!(
                p.client_address(ip("10.0.0.1"), &[&format!("{garbage}, 10.0.0.2")], &[]),
                ip("10.0.0.2"),
                "{garbage}"
            );
        }
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let p = proxies(&["10.0.0.1"]);
        let fwd = [
            r#"for=6.6.6.6;proto=https, For="[2001:db8:cafe::17]:4711";by=10.0.0.1"#,
            "for=10.0.0.1",
        ];
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &[], &fwd),
            ip("2001:db8:cafe::17")
        );
        // A quoted value with separators inside stays one value (and is no address).
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &[], &[r#"for="a,b;c""#]),
            ip("10.0.0.1")
        );
        // Elements without for= name no hop.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &[], &["proto=http, for=203.0.113.9"]),
            ip("203.0.113.9")
        );
        // X-Forwarded-For wins when both are present.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &["203.0.113.1"], &["for=6.6.6.6"]),
            ip("203.0.113.1")
        );
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &["  "], &["for=203.0.113.2"]),
            ip("203.0.113.2")
        );
    }

    #[test]
    fn a_quoted_forwarded_value_is_one_value_even_if_it_starts_like_an_address() {
        let p = proxies(&["10.0.0.1"]);
        // Inside quotes a `,` or `;` separates nothing, so this is one `for=` value
        // that is no address: the proxy stands for the client. Split at the `,` or
        // the `;`, it would name 203.0.113.9 as the client.
        for fwd in [
            r#"for="203.0.113.9,6.6.6.6""#,
            r#"for="203.0.113.9;for=6.6.6.6""#,
        ] {
            assert_eq!(
                p.client_address(ip("10.0.0.1"), &[], &[fwd]),
                ip("10.0.0.1"),
                "{fwd}"
            );
        }
    }

    #[test]
    fn an_empty_proxy_list_is_empty() {
        assert!(TrustedProxies::default().is_empty());
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
        assert!(!proxies(&["10.0.0.1"]).is_empty());
    }

    #[test]
    fn proxy_lists_parse_addresses_and_prefixes() {
        let p = proxies(&["127.0.0.1", " 10.0.0.0/8 ", "::1", "fd00::/8", "10.1.2.3/8"]);
        assert!(p.contains(ip("127.0.0.1")));
        assert!(p.contains(ip("::ffff:127.0.0.1")));
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(p.contains(ip("10.200.0.1")));
        assert!(p.contains(ip("fd12::1")));
        assert!(!p.contains(ip("fe80::1")));
        for bad in ["", "localhost", "10.0.0.0/33", "1.2.3"] {
            let e = TrustedProxies::parse(&[bad.to_owned()]).unwrap_err();
            assert!(e.to_string().contains("not an IP address"), "{bad}: {e}");
        }
    }
}
