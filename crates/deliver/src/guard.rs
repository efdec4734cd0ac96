//! The SSRF guard: which resolved addresses a delivery may connect to.
//!
//! A webhook URL is chosen by whoever registers the subscription, so by default callout refuses
//! to connect to addresses inside the host's own network (loopback, private, link-local,
//! multicast, unspecified, ...). The check is made on the *resolved* address, inside the
//! resolver that ureq uses for the connection itself ([`GuardResolver`]): ureq connects only to
//! the addresses the guard has approved, so a DNS answer that changes between check and connect
//! (DNS rebinding) cannot slip a private address through.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use callout_core::redact_url;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use crate::DeliverError;

/// Addresses and CIDR ranges a delivery may reach although the guard would refuse them, e.g.
/// `127.0.0.1` for tests or `10.0.0.0/8` for an intranet deployment. Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    ranges: Vec<(IpAddr, u8)>,
}

impl AllowList {
    /// An empty list: every non-public address is refused.
    pub fn new() -> AllowList {
        AllowList::default()
    }

    /// Parses entries such as `127.0.0.1`, `::1`, `127.0.0.0/8` or `fc00::/7`.
    ///
    /// ```
    /// let allow = callout_deliver::AllowList::parse(["127.0.0.0/8", "::1"])?;
    /// assert!(allow.allows("127.0.0.2".parse().unwrap()));
    /// # Ok::<(), callout_deliver::DeliverError>(())
    /// ```
    pub fn parse<I, S>(entries: I) -> Result<AllowList, DeliverError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowList::new();
        for entry in entries {
            list.add(entry.as_ref())?;
        }
        Ok(list)
    }

    /// Adds one address or CIDR range.
    pub fn add(&mut self, entry: &str) -> Result<(), DeliverError> {
        let invalid = || DeliverError::InvalidAllowEntry {
            entry: entry.to_string(),
        };
        let text = entry.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = canonical(address.parse::<IpAddr>().map_err(|_| invalid())?);
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().map_err(|_| invalid())?,
            None => max,
        };
        // A v4 range written in mapped form (`::ffff:10.0.0.0/104`) was canonicalised to v4.
        let prefix = match (address, entry.contains(':')) {
            (IpAddr::V4(_), true) if prefix >= 96 => prefix - 96,
            _ => prefix,
        };
        if prefix > max {
            return Err(invalid());
        }
        self.ranges.push((address, prefix));
        Ok(())
    }

    /// Whether `address` is inside one of the entries.
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.ranges
            .iter()
            .any(|&(range, prefix)| in_range(address, range, prefix))
    }

    /// Whether the guard lets a delivery connect to `address`: public addresses always, others
    /// only when allowed here.
    pub fn permits(&self, address: IpAddr) -> bool {
        !is_internal(address) || self.allows(address)
    }
}

fn in_range(address: IpAddr, range: IpAddr, prefix: u8) -> bool {
    match (address, range) {
        (IpAddr::V4(a), IpAddr::V4(r)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(r) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(r)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(r) & mask
        }
        _ => false,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) reach the IPv4 host: judge them as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether `address` is one the guard refuses by default: anything that is not a plain public
/// unicast address.
pub fn is_internal(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_unspecified()
        || a == 0 // "this network" 0.0.0.0/8
        || v4.is_loopback() // 127.0.0.0/8
        || v4.is_private() // 10/8, 172.16/12, 192.168/16
        || v4.is_link_local() // 169.254/16, cloud metadata endpoints
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || v4.is_multicast() // 224/4
        || a >= 240 // reserved 240/4 and broadcast
        || v4.is_documentation()
}

fn is_internal_v6(v6: Ipv6Addr) -> bool {
    let segments = v6.segments();
    // The low 32 bits, for the prefixes that carry an IPv4 address there.
    let low_v4 = Ipv4Addr::from((u128::from(v6) & 0xffff_ffff) as u32);
    v6.is_unspecified()
        || v6.is_loopback()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || v6.is_multicast() // ff00::/8
        // IPv4-compatible ::a.b.c.d (deprecated) and NAT64 64:ff9b::/96 reach an IPv4 host.
        || (segments[..6] == [0, 0, 0, 0, 0, 0] && is_internal_v4(low_v4))
        || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_internal_v4(low_v4))
        // 6to4 2002:a.b.c.d::/48 embeds the IPv4 address in bits 16..48.
        || (segments[0] == 0x2002
            && is_internal_v4(Ipv4Addr::new(
                (segments[1] >> 8) as u8,
                segments[1] as u8,
                (segments[2] >> 8) as u8,
                segments[2] as u8,
            )))
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
}

/// Why the guard refused a target; carried through ureq as `ureq::Error::Other` and turned into
/// [`ErrorClass::BlockedAddress`](crate::ErrorClass::BlockedAddress).
#[derive(Debug)]
pub(crate) struct BlockedAddress {
    pub(crate) host: String,
    pub(crate) address: IpAddr,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` resolves to {}, an internal address; add it to the allow-list to deliver there",
            self.host, self.address
        )
    }
}

impl std::error::Error for BlockedAddress {}

/// Resolves `host:port` and keeps the addresses the guard permits. Fails with `HostNotFound`
/// when the name does not resolve, and with a [`BlockedAddress`] when it resolves only to
/// refused addresses. Refused addresses among permitted ones are dropped rather than failing
/// the delivery: the caller connects only to what is returned, so they are never reached.
pub(crate) fn resolve_permitted(
    allow: &AllowList,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ureq::Error> {
    let resolved = (unbracket(host), port)
        .to_socket_addrs()
        .map_err(|_| ureq::Error::HostNotFound)?;
    let mut permitted = Vec::new();
    let mut refused = None;
    for address in resolved {
        if allow.permits(address.ip()) {
            permitted.push(address);
        } else {
            refused.get_or_insert(address.ip());
        }
    }
    match (permitted.is_empty(), refused) {
        (false, _) => Ok(permitted),
        (true, Some(address)) => Err(ureq::Error::Other(Box::new(BlockedAddress {
            host: host.to_string(),
            address,
        }))),
        (true, None) => Err(ureq::Error::HostNotFound),
    }
}

/// A URI keeps the brackets of an IPv6 literal (`[::1]`); `ToSocketAddrs` for `(&str, u16)`
/// wants the bare address.
fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// The host and port a URI connects to (default ports for http and https).
pub(crate) fn host_and_port(uri: &Uri) -> Result<(&str, u16), ureq::Error> {
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| ureq::Error::BadUri(format!("{}: no host", redact_url(&uri.to_string()))))?;
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        _ => {
            return Err(ureq::Error::BadUri(format!(
                "{}: scheme must be http or https",
                redact_url(&uri.to_string())
            )))
        }
    };
    Ok((host, port))
}

/// ureq's resolver with the guard built in: ureq connects only to what this returns, which
/// closes the window between check and connect that DNS rebinding would use.
///
/// It resolves synchronously and ignores ureq's resolve timeout on purpose: honouring it would
/// mean a thread per lookup (FACTS.md). The system resolver's own timeout bounds a lookup.
pub(crate) struct GuardResolver {
    pub(crate) allow: AllowList,
    /// The configured proxy's host and port: the operator chose it, so it is not guarded.
    pub(crate) proxy: Option<(String, u16)>,
}

impl fmt::Debug for GuardResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardResolver")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl Resolver for GuardResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (host, port) = host_and_port(uri)?;
        let is_proxy = self.proxy.as_ref().is_some_and(|(proxy_host, proxy_port)| {
            *proxy_port == port && unbracket(proxy_host).eq_ignore_ascii_case(unbracket(host))
        });
        let addresses = if is_proxy {
            (unbracket(host), port)
                .to_socket_addrs()
                .map_err(|_| ureq::Error::HostNotFound)?
                .collect()
        } else {
            resolve_permitted(&self.allow, host, port)?
        };
        let mut result = self.empty();
        for address in config.ip_family().keep_wanted(addresses.into_iter()) {
            // The list holds 16; more addresses than that add nothing but connect attempts.
            if result.try_push(address).is_err() {
                break;
            }
        }
        if result.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let allow = AllowList::new();
        for text in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!allow.permits(ip(text)), "{text} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_permitted() {
        let allow = AllowList::new();
        for text in [
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
        ] {
            assert!(allow.permits(ip(text)), "{text} should be permitted");
        }
    }

    #[test]
    fn allow_list_opens_addresses_and_ranges() {
        let allow = AllowList::parse(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]).unwrap();
        assert!(allow.permits(ip("127.0.0.1")));
        assert!(allow.permits(ip("::ffff:127.0.0.1")));
        assert!(!allow.permits(ip("127.0.0.2")));
        assert!(allow.permits(ip("10.200.0.1")));
        assert!(allow.permits(ip("fd12::1")));
        assert!(!allow.permits(ip("fc00::1")));
        assert!(!allow.permits(ip("::1")));
        let everything = AllowList::parse(["0.0.0.0/0", "::/0"]).unwrap();
        assert!(everything.permits(ip("127.0.0.1")) && everything.permits(ip("::1")));
    }

    #[test]
    fn allow_list_rejects_garbage() {
        for entry in [
            "",
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/x",
            "1.2.3/8",
        ] {
            assert!(
                matches!(
                    AllowList::parse([entry]),
                    Err(DeliverError::InvalidAllowEntry { .. })
                ),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn resolving_checks_the_resolved_address_not_the_name() {
        // `localhost` is a name, but it resolves to loopback.
        let refused = resolve_permitted(&AllowList::new(), "localhost", 80).unwrap_err();
        assert!(matches!(refused, ureq::Error::Other(ref e) if e.is::<BlockedAddress>()));
        let allowed = AllowList::parse(["127.0.0.0/8", "::1"]).unwrap();
        let addresses = resolve_permitted(&allowed, "localhost", 80).unwrap();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()));
        let v6 = resolve_permitted(&allowed, "[::1]", 8080).unwrap();
        assert_eq!(v6, vec!["[::1]:8080".parse::<SocketAddr>().unwrap()]);
    }
}
