//! The policy mapper: which policy of a service takes a request.
//!
//! A policy's `match` holds rules over the request context; every rule that is present must
//! match (AND), any value of a rule's list may match (OR). The service tries its policies in
//! order and the first match wins; no match is `unacceptedPolicy`, unless the service names
//! a fallback policy.

use std::net::IpAddr;

use regex::bytes::Regex;

use crate::protocol::oid::Oid;
use crate::protocol::{HashAlg, TimeStampReq};

/// What the mapper may look at besides the decoded request.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta<'a> {
    /// The client's address (the TCP peer).
    pub client: IpAddr,
    /// The URL path the request was POSTed to (one of the service's paths).
    pub path: &'a str,
    /// The raw HTTP request head, for header rules (looked up only when a rule needs it).
    pub head: &'a [u8],
    /// The subject (RFC 4514) of the client's TLS certificate, on listeners that ask for
    /// one (`tls.client_ca`).
    pub client_subject: Option<&'a std::sync::Arc<str>>,
}

impl<'a> RequestMeta<'a> {
    /// Context for callers without HTTP (benches, tests, tools).
    pub fn local(path: &'a str) -> Self {
        RequestMeta {
            client: IpAddr::from([127, 0, 0, 1]),
            path,
            head: b"",
            client_subject: None,
        }
    }

    /// The value of the first header called `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.head
            .split(|&b| b == b'\n')
            .skip(1) // request line
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                Some((&line[..colon], &line[colon + 1..]))
            })
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.trim_ascii())
    }
}

/// An IP network, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or a bare address (a single host).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        // An IPv4-mapped network (::ffff:a.b.c.d/96+) is the IPv4 network: clients are
        // compared as IPv4 too.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Some(Cidr {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Some(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this network; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is an IPv4 client.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n) as u128, u32::from(a) as u128, self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(net: u128, addr: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (net >> shift) == (addr >> shift)
}

/// A string rule: exact values or a regular expression.
#[derive(Debug, Clone)]
pub enum StringMatch {
    /// Any of these values, byte for byte.
    Exact(Vec<String>),
    /// A regular expression, unanchored (add `^...$` to match the whole value).
    Regex(Regex),
}

impl StringMatch {
    fn is_match(&self, v: &[u8]) -> bool {
        match self {
            StringMatch::Exact(list) => list.iter().any(|s| s.as_bytes() == v),
            StringMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// The compiled `match` of one policy.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Accepted reqPolicy: `absent`, and OIDs.
    pub requested_policy: Option<(bool, Vec<Oid>)>,
    /// Accepted imprint hash algorithms.
    pub hash_algorithm: Option<Vec<HashAlg>>,
    /// Accepted client networks.
    pub client: Option<Vec<Cidr>>,
    /// Accepted URL paths.
    pub path: Option<StringMatch>,
    /// (header name, value rule).
    pub header: Option<(String, StringMatch)>,
    /// Accepted TLS client-certificate subjects; a request without one never matches.
    pub client_subject: Option<StringMatch>,
}

impl Rules {
    /// Whether every rule present accepts the request (no rule: every request).
    pub fn matches(&self, req: &TimeStampReq<'_>, meta: &RequestMeta<'_>) -> bool {
        let policy_ok = match &self.requested_policy {
            None => true,
            Some((absent, oids)) => match req.req_policy {
                None => *absent,
                Some(p) => oids.iter().any(|o| o.as_bytes() == p),
            },
        };
        policy_ok && self.matches_any_policy(req, meta)
    }

    /// Every rule but `requested_policy` (also used for the fallback policy).
    pub fn matches_any_policy(&self, req: &TimeStampReq<'_>, meta: &RequestMeta<'_>) -> bool {
        if let Some(hashes) = &self.hash_algorithm {
            if !req.hash_alg().is_some_and(|h| hashes.contains(&h)) {
                return false;
            }
        }
        if let Some(nets) = &self.client {
            if !nets.iter().any(|n| n.contains(meta.client)) {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if !p.is_match(meta.path.as_bytes()) {
                return false;
            }
        }
        if let Some((name, rule)) = &self.header {
            if !meta.header(name).is_some_and(|v| rule.is_match(v)) {
                return false;
            }
        }
        if let Some(rule) = &self.client_subject {
            if !meta
                .client_subject
                .is_some_and(|s| rule.is_match(s.as_bytes()))
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request;

    fn req_bytes(hash: HashAlg, policy: Option<&str>) -> Vec<u8> {
        let p = policy.map(|p| Oid::parse(p).unwrap());
        request::encode(hash, &vec![1; hash.digest_len()], p.as_ref(), None, false)
    }

    fn meta<'a>(client: &str, path: &'a str, head: &'a [u8]) -> RequestMeta<'a> {
        RequestMeta {
            client: client.parse().unwrap(),
            path,
            head,
            client_subject: None,
        }
    }

    #[test]
    fn cidrs() {
        let n = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.9.8.7".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.9.8.7".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(!Cidr::parse("fd00::/8")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "1.2.3.4/x"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_trimmed() {
        let head = b"POST /tsa HTTP/1.1\r\nHost: a\r\nX-Tenant:  acme-7 \r\n\r\n";
        let m = meta("127.0.0.1", "/tsa", head);
        assert_eq!(m.header("x-tenant"), Some(&b"acme-7"[..]));
        assert_eq!(m.header("missing"), None);
    }

    #[test]
    fn every_present_rule_must_match() {
        let rules = Rules {
            requested_policy: Some((true, vec![Oid::parse("2.999.1.1").unwrap()])),
            hash_algorithm: Some(vec![HashAlg::Sha512]),
            client: Some(vec![Cidr::parse("127.0.0.0/8").unwrap()]),
            path: Some(StringMatch::Regex(Regex::new("^/(tsa|v2/tsa)$").unwrap())),
            header: Some(("X-Tenant".into(), StringMatch::Exact(vec!["acme".into()]))),
            client_subject: None,
        };
        let head = b"POST /tsa HTTP/1.1\r\nX-Tenant: acme\r\n\r\n";
        let ok = req_bytes(HashAlg::Sha512, Some("2.999.1.1"));
        let r = request::decode(&ok).unwrap();
        assert!(rules.matches(&r, &meta("127.0.0.9", "/v2/tsa", head)));
        // Each rule alone can refuse.
        assert!(!rules.matches(&r, &meta("10.0.0.1", "/tsa", head)));
        assert!(!rules.matches(&r, &meta("127.0.0.1", "/other", head)));
        assert!(!rules.matches(
            &r,
            &meta(
                "127.0.0.1",
                "/tsa",
                b"POST /tsa HTTP/1.1\r\nX-Tenant: evil\r\n\r\n"
            )
        ));
        let sha256 = req_bytes(HashAlg::Sha256, None);
        assert!(!rules.matches(
            &request::decode(&sha256).unwrap(),
            &meta("127.0.0.1", "/tsa", head)
        ));
        let other_policy = req_bytes(HashAlg::Sha512, Some("2.999.7"));
        assert!(!rules.matches(
            &request::decode(&other_policy).unwrap(),
            &meta("127.0.0.1", "/tsa", head)
        ));
        // No rules at all: everything matches.
        assert!(Rules::default().matches(&r, &meta("10.9.9.9", "/x", b"")));
    }

    #[test]
    fn client_subject_rules_need_a_certificate() {
        let ok = req_bytes(HashAlg::Sha256, None);
        let r = request::decode(&ok).unwrap();
        let subjects: Vec<std::sync::Arc<str>> = ["CN=build-7,O=Acme", "CN=build-8,O=Acme"]
            .into_iter()
            .chain(["CN=anyone,O=Acme", "CN=anyone,O=Acme Evil"])
            .map(Into::into)
            .collect();
        let with = |subject: Option<&str>| RequestMeta {
            client_subject: subject.map(|s| subjects.iter().find(|a| &***a == s).unwrap()),
            ..meta("127.0.0.1", "/tsa", b"")
        };
        let exact = Rules {
            client_subject: Some(StringMatch::Exact(vec!["CN=build-7,O=Acme".into()])),
            ..Rules::default()
        };
        assert!(exact.matches(&r, &with(Some("CN=build-7,O=Acme"))));
        assert!(!exact.matches(&r, &with(Some("CN=build-8,O=Acme"))));
        // No certificate (plain HTTP, or TLS without client_ca): never matches.
        assert!(!exact.matches(&r, &with(None)));
        let regex = Rules {
            client_subject: Some(StringMatch::Regex(Regex::new(",O=Acme$").unwrap())),
            ..Rules::default()
        };
        assert!(regex.matches(&r, &with(Some("CN=anyone,O=Acme"))));
        assert!(!regex.matches(&r, &with(Some("CN=anyone,O=Acme Evil"))));
        assert!(!regex.matches(&r, &with(None)));
    }
}
