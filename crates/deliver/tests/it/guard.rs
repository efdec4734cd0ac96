//! The SSRF guard against a real receiver on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use callout_deliver::{is_internal, AllowList, ErrorClass, Request, Sender, SenderConfig, Verdict};

use callout_testkit::{Receiver, Reply};

fn sender(allow: &[&str]) -> Sender {
    Sender::new(SenderConfig {
        allow: AllowList::parse(allow).unwrap(),
        ..SenderConfig::default()
    })
    .unwrap()
}

#[test]
fn loopback_is_refused_unless_allowed() {
    let receiver = Receiver::ok();
    let request = Request::new("d", receiver.url.clone(), b"{}".to_vec());

    let outcome = sender(&[]).send(&request);
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::BlockedAddress),
        "{outcome:?}"
    );
    assert!(
        receiver.nth(0, Duration::from_millis(300)).is_none(),
        "the receiver was reached"
    );

    // An allowed range opens it, an unrelated one does not.
    assert_eq!(
        sender(&["10.0.0.0/8"]).send(&request).error_class(),
        Some(ErrorClass::BlockedAddress)
    );
    assert!(sender(&["127.0.0.0/8"]).send(&request).is_delivered());
    assert!(receiver.nth(0, Duration::from_secs(5)).is_some());
}

#[test]
fn the_resolved_address_is_checked_not_the_name() {
    let receiver = Receiver::ok();
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let outcome = sender(&[]).send(&Request::new("d", by_name.clone(), b"{}".to_vec()));
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::BlockedAddress),
        "{outcome:?}"
    );

    // Allowing the address the name resolves to lets it through (localhost may also resolve
    // to ::1, which stays refused and is simply not used).
    assert!(sender(&["127.0.0.1"])
        .send(&Request::new("d", by_name, b"{}".to_vec()))
        .is_delivered());
    assert!(receiver.nth(0, Duration::from_secs(5)).is_some());
}

#[test]
fn mapped_and_unspecified_forms_are_refused() {
    for url in [
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://0.0.0.0:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1:9/",
    ] {
        let outcome = sender(&[]).send(&Request::new("d", url, b"{}".to_vec()));
        assert_eq!(
            outcome.error_class(),
            Some(ErrorClass::BlockedAddress),
            "{url}: {outcome:?}"
        );
    }
}

#[test]
fn through_a_proxy_the_target_is_still_guarded() {
    // The receiver plays the proxy; it is reached although it is on loopback, because the
    // operator configured it.
    let receiver = Receiver::start(|_, _| Reply::status(502));
    let proxy = receiver.url.clone();
    let sender = |allow: &[&str]| {
        Sender::new(SenderConfig {
            allow: AllowList::parse(allow).unwrap(),
            proxy: Some(proxy.clone()),
            ..SenderConfig::default()
        })
        .unwrap()
    };
    let request = Request::new("d", "http://10.1.2.3:8080/hook", b"{}".to_vec());

    let outcome = sender(&[]).send(&request);
    assert_eq!(
        outcome.error_class(),
        Some(ErrorClass::BlockedAddress),
        "{outcome:?}"
    );
    assert!(
        receiver.nth(0, Duration::from_millis(300)).is_none(),
        "the proxy was asked"
    );

    // Allowed, the request goes to the proxy (ureq tunnels with CONNECT), which refuses it.
    let outcome = sender(&["10.0.0.0/8"]).send(&request);
    assert_eq!(outcome.error_class(), Some(ErrorClass::Io), "{outcome:?}");
    let asked = receiver.nth(0, Duration::from_secs(5)).unwrap();
    assert!(asked.path.contains("10.1.2.3"), "{}", asked.path);
}

/// Every block of the IANA IPv4 Special-Purpose Address Registry, and multicast. Written
/// independently of the guard's own table, so a block missing there fails here.
const V4_REFUSED: &[&str] = &[
    "0.0.0.0/8",
    "0.0.0.0/32",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.0.0/29",
    "192.0.0.8/32",
    "192.0.0.9/32",
    "192.0.0.10/32",
    "192.0.0.170/32",
    "192.0.0.171/32",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
];

/// Every block of the IANA IPv6 Special-Purpose Address Registry that is refused whole, with
/// the registry's "globally reachable" exceptions inside 2001::/23 (the guard refuses them too:
/// anycast infrastructure and identifier spaces), plus IPv4-translated, site-local, multicast
/// and space outside 2000::/3.
const V6_REFUSED: &[&str] = &[
    "::/128",
    "::1/128",
    "::/96",
    "::ffff:0:0:0/96",
    "64:ff9b:1::/48",
    "100::/64",
    "100:0:0:1::/64",
    "2001::/23",
    "2001:1::1/128",
    "2001:1::2/128",
    "2001:1::3/128",
    "2001:2::/48",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:10::/28",
    "2001:20::/28",
    "2001:30::/28",
    "2001:db8::/32",
    "2620:4f:8000::/48",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    // Not global unicast: IANA reserves the rest of the space outside 2000::/3.
    "4000::/3",
    "8000::/1",
    "1000::/4",
];

/// The first, a middle and the last address of `cidr`.
fn samples(cidr: &str) -> [IpAddr; 3] {
    let (network, prefix) = cidr.split_once('/').unwrap();
    let prefix: u32 = prefix.parse().unwrap();
    match network.parse::<IpAddr>().unwrap() {
        IpAddr::V4(network) => {
            let first = u32::from(network);
            let size = u32::MAX.checked_shr(prefix).unwrap_or(0);
            [first, first + size / 2, first + size].map(|a| IpAddr::V4(a.into()))
        }
        IpAddr::V6(network) => {
            let first = u128::from(network);
            let size = u128::MAX.checked_shr(prefix).unwrap_or(0);
            [first, first + size / 2, first + size].map(|a| IpAddr::V6(a.into()))
        }
    }
}

/// `v4` in each IPv6 form that carries an IPv4 address: mapped, well-known NAT64, 6to4, and as
/// a Teredo server and (obfuscated) client next to a public counterpart.
fn embeddings(v4: Ipv4Addr) -> [Ipv6Addr; 5] {
    let bits = u128::from(u32::from(v4));
    let public = u128::from(u32::from(Ipv4Addr::new(65, 54, 227, 120)));
    let teredo = 0x2001_0000_u128 << 96;
    [
        (0xffff << 32) | bits,
        (0x64_ff9b << 96) | bits,
        (0x2002 << 112) | (bits << 80),
        teredo | (bits << 64) | u128::from(!u32::from(Ipv4Addr::new(8, 8, 8, 8))),
        teredo | (public << 64) | u128::from(!u32::from(v4)),
    ]
    .map(Ipv6Addr::from)
}

#[test]
fn every_special_purpose_block_is_refused() {
    let allow = AllowList::new();
    let mut checked = 0;
    for cidr in V4_REFUSED {
        for address in samples(cidr) {
            assert!(is_internal(address), "{address} ({cidr}) is not refused");
            assert!(!allow.permits(address), "{address} ({cidr}) is permitted");
            let IpAddr::V4(v4) = address else {
                unreachable!()
            };
            for embedded in embeddings(v4) {
                assert!(
                    is_internal(IpAddr::V6(embedded)),
                    "{embedded} (embedding {address} of {cidr}) is not refused"
                );
            }
            checked += 1;
        }
    }
    for cidr in V6_REFUSED {
        for address in samples(cidr) {
            assert!(is_internal(address), "{address} ({cidr}) is not refused");
            assert!(!allow.permits(address), "{address} ({cidr}) is permitted");
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * (V4_REFUSED.len() + V6_REFUSED.len()));
}

#[test]
fn global_addresses_pass_also_inside_the_embedding_prefixes() {
    let allow = AllowList::new();
    for text in [
        "8.8.8.8",
        "1.1.1.1",
        "9.9.9.9",
        "192.0.1.255",
        "192.0.3.0",
        "198.20.0.0",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2001:200::1",
        "2000::",
        "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "64:ff9b::808:808",
        "::ffff:1.1.1.1",
        "2002:808:808::1",
    ] {
        let address: IpAddr = text.parse().unwrap();
        assert!(!is_internal(address), "{text} is refused");
        assert!(allow.permits(address), "{text} is not permitted");
    }
    for embedded in embeddings(Ipv4Addr::new(1, 1, 1, 1)) {
        assert!(!is_internal(IpAddr::V6(embedded)), "{embedded} is refused");
    }
}

#[test]
fn a_refused_delivery_names_the_block() {
    for (url, block) in [
        (
            "http://[64:ff9b:1::1]:9/",
            "64:ff9b:1::/48 (local-use NAT64)",
        ),
        (
            "http://[64:ff9b::a9fe:a9fe]:9/",
            "64:ff9b::/96 (well-known NAT64), whose embedded IPv4 169.254.169.254",
        ),
        (
            "http://192.0.0.170:9/",
            "192.0.0.170/32 (NAT64/DNS64 discovery)",
        ),
    ] {
        let outcome = sender(&[]).send(&Request::new("d", url, b"{}".to_vec()));
        match &outcome.verdict {
            Verdict::Failed { class, detail } => {
                assert_eq!(*class, ErrorClass::BlockedAddress, "{url}: {detail}");
                assert!(detail.contains(block), "{url}: {detail}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn the_allow_list_opens_refused_ipv6_blocks() {
    let allow = AllowList::parse(["64:ff9b:1::/48", "2001:4:112::/48", "fd00::/8"]).unwrap();
    for text in ["64:ff9b:1::1", "2001:4:112::1", "fd12::1"] {
        assert!(allow.permits(text.parse().unwrap()), "{text}");
    }
    assert!(!allow.permits("fc00::1".parse().unwrap()));
    assert!(!allow.permits("64:ff9b::a00:1".parse().unwrap()));
}
