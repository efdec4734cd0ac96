//! The SSRF guard: which resolved addresses a delivery may connect to.
//!
//! A webhook URL is chosen by whoever registers the subscription, so by default callout refuses
//! to connect to addresses inside the host's own network (loopback, private, link-local,
//! multicast, unspecified, ...): every block of the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries, written out in [`V4_BLOCKS`] and [`V6_BLOCKS`]. The check is made on the
//! *resolved* address, inside the resolver that ureq uses for the connection itself
//! ([`GuardResolver`]): ureq connects only to the addresses the guard has approved, so a DNS
//! answer that changes between check and connect (DNS rebinding) cannot slip a private address
//! through.

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

/// Whether `address` is one the guard refuses by default: anything in a special-purpose block
/// of the IANA IPv4 or IPv6 registries, multicast, or IPv6 outside `2000::/3`.
///
/// The guard is stricter than the registries' "Globally Reachable" column: it also refuses the
/// few special-purpose blocks marked reachable (the PCP, TURN and DNS-SD anycast addresses, AMT
/// relays, the AS112 sinks, ORCHIDv2 and drone identifiers), because each is protocol
/// infrastructure or an identifier space, never where a webhook receiver lives. The exceptions
/// are the blocks that stand for an IPv4 host (IPv4-mapped, the well-known NAT64 prefix, 6to4,
/// Teredo): an address there is judged by the IPv4 addresses it embeds. A host that really needs
/// one of the refused blocks puts it on its [`AllowList`].
///
/// ```
/// use callout_deliver::is_internal;
/// assert!(is_internal("64:ff9b:1::1".parse().unwrap())); // local-use NAT64
/// assert!(is_internal("64:ff9b::a00:1".parse().unwrap())); // NAT64 of 10.0.0.1
/// assert!(!is_internal("64:ff9b::808:808".parse().unwrap())); // NAT64 of 8.8.8.8
/// ```
pub fn is_internal(address: IpAddr) -> bool {
    refusal(address).is_some()
}

/// Why the guard refuses `address` by default, or `None` when it is a public address.
pub(crate) fn refusal(address: IpAddr) -> Option<Refusal> {
    match address {
        IpAddr::V4(v4) => special_v4(v4).map(Refusal::Special),
        IpAddr::V6(v6) => {
            // The first block that contains the address decides, so the table lists more
            // specific blocks before the ones around them.
            let Some(block) = V6_BLOCKS
                .iter()
                .find(|block| block.contains(IpAddr::V6(v6)))
            else {
                return (!in_range(IpAddr::V6(v6), GLOBAL_UNICAST, 3))
                    .then_some(Refusal::NotGlobalUnicast);
            };
            match block.rule {
                Rule::Refuse => Some(Refusal::Special(block)),
                Rule::Embeds(embedding) => {
                    embedding.ipv4(v6).into_iter().flatten().find_map(|ipv4| {
                        special_v4(ipv4).map(|inner| Refusal::Embeds { block, ipv4, inner })
                    })
                }
            }
        }
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<&'static Block> {
    V4_BLOCKS
        .iter()
        .find(|block| block.contains(IpAddr::V4(v4)))
}

/// The one block IANA allocates for IPv6 global unicast; the rest is reserved or special.
const GLOBAL_UNICAST: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0));

/// One block of a special-purpose registry and what the guard does with its addresses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Block {
    network: IpAddr,
    prefix: u8,
    name: &'static str,
    rule: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Refuse,
    /// The block stands for IPv4 hosts: an address is refused when an IPv4 address it embeds is.
    Embeds(Embedding),
}

/// The ways an IPv6 address carries the IPv4 address(es) that a packet to it ends up at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291): the socket API sends to a.b.c.d.
    Mapped,
    /// `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 translates to a.b.c.d.
    Nat64,
    /// `2002:aabb:ccdd::/48` (RFC 3056): tunnelled to a.b.c.d.
    SixToFour,
    /// `2001:0:server:flags:port:client` (RFC 4380): a Teredo client or relay talks to the server
    /// and to the client's NAT, whose address is stored with every bit flipped.
    Teredo,
}

impl Embedding {
    /// The IPv4 addresses inside `v6` (for Teredo the server's, then the client's).
    fn ipv4(self, v6: Ipv6Addr) -> [Option<Ipv4Addr>; 2] {
        let bits = u128::from(v6);
        let low = Ipv4Addr::from(bits as u32);
        match self {
            Embedding::Mapped | Embedding::Nat64 => [Some(low), None],
            Embedding::SixToFour => [Some(Ipv4Addr::from((bits >> 80) as u32)), None],
            Embedding::Teredo => [
                Some(Ipv4Addr::from((bits >> 64) as u32)),
                Some(Ipv4Addr::from(!(bits as u32))),
            ],
        }
    }
}

impl Block {
    const fn v4(octets: [u8; 4], prefix: u8, name: &'static str) -> Block {
        let [a, b, c, d] = octets;
        Block {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
            name,
            rule: Rule::Refuse,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8, name: &'static str, rule: Rule) -> Block {
        let [a, b, c, d, e, f, g, h] = segments;
        Block {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
            name,
            rule,
        }
    }

    fn contains(&self, address: IpAddr) -> bool {
        in_range(address, self.network, self.prefix)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.network, self.prefix, self.name)
    }
}

/// The IANA IPv4 Special-Purpose Address Registry (as of 2025), plus multicast, which has a
/// registry of its own. More specific blocks come first so that errors name them.
static V4_BLOCKS: &[Block] = &[
    Block::v4([0, 0, 0, 0], 32, "this host on this network"),
    Block::v4([0, 0, 0, 0], 8, "this network"),
    Block::v4([10, 0, 0, 0], 8, "private-use"),
    Block::v4(
        [100, 64, 0, 0],
        10,
        "shared address space, carrier-grade NAT",
    ),
    Block::v4([127, 0, 0, 0], 8, "loopback"),
    Block::v4([169, 254, 0, 0], 16, "link-local, cloud metadata"),
    Block::v4([172, 16, 0, 0], 12, "private-use"),
    Block::v4([192, 0, 0, 0], 29, "IPv4 service continuity, DS-Lite"),
    Block::v4([192, 0, 0, 8], 32, "IPv4 dummy address"),
    Block::v4([192, 0, 0, 9], 32, "Port Control Protocol anycast"),
    Block::v4([192, 0, 0, 10], 32, "TURN anycast"),
    Block::v4([192, 0, 0, 170], 32, "NAT64/DNS64 discovery"),
    Block::v4([192, 0, 0, 171], 32, "NAT64/DNS64 discovery"),
    Block::v4([192, 0, 0, 0], 24, "IETF protocol assignments"),
    Block::v4([192, 0, 2, 0], 24, "documentation, TEST-NET-1"),
    Block::v4([192, 31, 196, 0], 24, "AS112"),
    Block::v4([192, 52, 193, 0], 24, "AMT relays"),
    Block::v4([192, 88, 99, 0], 24, "deprecated 6to4 relay anycast"),
    Block::v4([192, 168, 0, 0], 16, "private-use"),
    Block::v4([192, 175, 48, 0], 24, "AS112 direct delegation"),
    Block::v4([198, 18, 0, 0], 15, "benchmarking"),
    Block::v4([198, 51, 100, 0], 24, "documentation, TEST-NET-2"),
    Block::v4([203, 0, 113, 0], 24, "documentation, TEST-NET-3"),
    Block::v4([224, 0, 0, 0], 4, "multicast"),
    Block::v4([255, 255, 255, 255], 32, "limited broadcast"),
    Block::v4([240, 0, 0, 0], 4, "reserved"),
];

const REFUSE: Rule = Rule::Refuse;

/// The IANA IPv6 Special-Purpose Address Registry (as of 2025), plus the blocks of the IPv6
/// addressing architecture that are not in it (IPv4-compatible and -translated, site-local,
/// multicast). More specific blocks come first: the first block that contains an address
/// decides.
static V6_BLOCKS: &[Block] = &[
    Block::v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", REFUSE),
    Block::v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", REFUSE),
    Block::v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        "IPv4-mapped",
        Rule::Embeds(Embedding::Mapped),
    ),
    // SIIT's form (RFC 2765) names an IPv6 node, so it is not judged by its IPv4 part.
    Block::v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96, "IPv4-translated", REFUSE),
    // Deprecated by RFC 4291; only an automatic tunnel on the host would deliver there.
    Block::v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "deprecated IPv4-compatible",
        REFUSE,
    ),
    Block::v6(
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        "well-known NAT64",
        Rule::Embeds(Embedding::Nat64),
    ),
    Block::v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64",
        REFUSE,
    ),
    Block::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", REFUSE),
    Block::v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy prefix", REFUSE),
    Block::v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        "Teredo",
        Rule::Embeds(Embedding::Teredo),
    ),
    Block::v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "PCP anycast", REFUSE),
    Block::v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN anycast", REFUSE),
    Block::v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD SRP anycast",
        REFUSE,
    ),
    Block::v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", REFUSE),
    Block::v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT relays", REFUSE),
    Block::v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", REFUSE),
    Block::v6(
        [0x2001, 0x10, 0, 0, 0, 0, 0, 0],
        28,
        "deprecated ORCHID",
        REFUSE,
    ),
    Block::v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", REFUSE),
    Block::v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "drone remote ID tags",
        REFUSE,
    ),
    Block::v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments",
        REFUSE,
    ),
    Block::v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation",
        REFUSE,
    ),
    Block::v6(
        [0x2002, 0, 0, 0, 0, 0, 0, 0],
        16,
        "6to4",
        Rule::Embeds(Embedding::SixToFour),
    ),
    Block::v6(
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "AS112 direct delegation",
        REFUSE,
    ),
    Block::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", REFUSE),
    Block::v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "SRv6 SIDs", REFUSE),
    Block::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local", REFUSE),
    Block::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", REFUSE),
    Block::v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "deprecated site-local",
        REFUSE,
    ),
    Block::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", REFUSE),
];

/// Which rule refused an address, for the error a host shows its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The address is inside a refused block.
    Special(&'static Block),
    /// The address embeds an IPv4 address inside a refused block.
    Embeds {
        block: &'static Block,
        ipv4: Ipv4Addr,
        inner: &'static Block,
    },
    /// An IPv6 address outside every special block and outside global unicast.
    NotGlobalUnicast,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Special(block) => write!(f, "in {block}"),
            Refusal::Embeds { block, ipv4, inner } => {
                write!(f, "in {block}, whose embedded IPv4 {ipv4} is in {inner}")
            }
            Refusal::NotGlobalUnicast => write!(f, "outside 2000::/3, the IPv6 global unicast"),
        }
    }
}

/// Why the guard refused a target; carried through ureq as `ureq::Error::Other` and turned into
/// [`ErrorClass::BlockedAddress`](crate::ErrorClass::BlockedAddress).
#[derive(Debug)]
pub(crate) struct BlockedAddress {
    pub(crate) host: String,
    pub(crate) address: IpAddr,
    pub(crate) refusal: Refusal,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` resolves to {}, an internal address {}; add it to the allow-list to deliver there",
            self.host, self.address, self.refusal
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
        match refusal(address.ip()) {
            Some(refusal) if !allow.allows(address.ip()) => {
                refused.get_or_insert((address.ip(), refusal));
            }
            _ => permitted.push(address),
        }
    }
    match (permitted.is_empty(), refused) {
        (false, _) => Ok(permitted),
        (true, Some((address, refusal))) => Err(ureq::Error::Other(Box::new(BlockedAddress {
            host: host.to_string(),
            address,
            refusal,
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
    fn embedded_ipv4_addresses_are_extracted() {
        let v6 = |text: &str| text.parse::<Ipv6Addr>().unwrap();
        let v4 = |text: &str| Some(text.parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            Embedding::Mapped.ipv4(v6("::ffff:10.1.2.3")),
            [v4("10.1.2.3"), None]
        );
        // RFC 6052, section 2.4.
        assert_eq!(
            Embedding::Nat64.ipv4(v6("64:ff9b::c000:221")),
            [v4("192.0.2.33"), None]
        );
        // RFC 3056: the IPv4 address is the 32 bits after the 2002 prefix.
        assert_eq!(
            Embedding::SixToFour.ipv4(v6("2002:c000:221:1::1")),
            [v4("192.0.2.33"), None]
        );
        // RFC 4380, section 4: server 65.54.227.120, client 192.0.2.45 behind a cone NAT.
        assert_eq!(
            Embedding::Teredo.ipv4(v6("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
            [v4("65.54.227.120"), v4("192.0.2.45")]
        );
    }

    #[test]
    fn embedded_addresses_are_judged_by_their_ipv4() {
        for (text, refused) in [
            ("::ffff:127.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::7f00:1", true),
            ("64:ff9b::808:808", false),
            ("2002:a00:1::1", true),
            ("2002:808:808::1", false),
            // Teredo: a documentation client, then a private server, then both public.
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("2001:0:a00:1:8000:63bf:f7f7:f7f7", true),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", false),
        ] {
            assert_eq!(is_internal(ip(text)), refused, "{text}");
        }
    }

    #[test]
    fn refusals_name_the_block() {
        let named = |text: &str| refusal(ip(text)).unwrap().to_string();
        assert_eq!(named("10.1.2.3"), "in 10.0.0.0/8 (private-use)");
        assert_eq!(
            named("192.0.0.9"),
            "in 192.0.0.9/32 (Port Control Protocol anycast)"
        );
        assert_eq!(named("64:ff9b:1::1"), "in 64:ff9b:1::/48 (local-use NAT64)");
        assert_eq!(
            named("64:ff9b::a00:1"),
            "in 64:ff9b::/96 (well-known NAT64), whose embedded IPv4 10.0.0.1 is in 10.0.0.0/8 (private-use)"
        );
        assert_eq!(
            named("::ffff:169.254.169.254"),
            "in ::ffff:0.0.0.0/96 (IPv4-mapped), whose embedded IPv4 169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata)"
        );
        assert_eq!(named("2001:2::1"), "in 2001:2::/48 (benchmarking)");
        assert_eq!(
            named("2001:1ff::1"),
            "in 2001::/23 (IETF protocol assignments)"
        );
        assert_eq!(
            named("4000::1"),
            "outside 2000::/3, the IPv6 global unicast"
        );
    }

    #[test]
    fn no_block_hides_behind_an_earlier_one() {
        // The first block containing an address decides; a block inside an earlier, wider one
        // would never be reached and its name or rule would be dead.
        for table in [V4_BLOCKS, V6_BLOCKS] {
            for (later, block) in table.iter().enumerate() {
                for earlier in &table[..later] {
                    assert!(
                        !(earlier.prefix <= block.prefix && earlier.contains(block.network)),
                        "{block} is hidden by {earlier}"
                    );
                }
                assert_eq!(
                    block.network,
                    mask(block.network, block.prefix),
                    "{block} has host bits set"
                );
            }
        }
    }

    fn mask(address: IpAddr, prefix: u8) -> IpAddr {
        match address {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
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
