//! One audit entry: a [`Record`] of what happened to one request, or an [`Event`] of the
//! TSA itself (a clock synchronisation event), and their compact binary forms in the
//! journal (each in a frame of its own kind). The encodings are ours and versioned (first
//! byte); every length is explicit, so an entry decodes without trusting anything but its
//! own bytes.

use std::net::IpAddr;
use std::sync::Arc;

use crate::outcome::Outcome;
use crate::protocol::hex::hex;
use crate::protocol::{FailureInfo, HashAlg, Timestamp};
use crate::serial::SERIAL_LEN;

/// Version 2 added [`Record::request_digest`], version 3 [`Record::client_subject`],
/// version 4 [`Record::authenticode`]; older records (without them) still decode.
const VERSION: u8 = 4;

/// The SHA-256 and length of a request body that got no token: its record keeps at most a
/// prefix of the body, and these identify the whole of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestDigest {
    /// The body's length in bytes.
    pub len: u32,
    /// SHA-256 of the whole body.
    pub sha256: [u8; 32],
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// genTime of an issued token; the trusted time (or, when it was unavailable, the system
    /// time) at which any other request was answered.
    pub time: Timestamp,
    /// Issued (with its serial), rejected (with its failInfo) or refused (HTTP status).
    pub outcome: Outcome,
    /// The `[[service]] name` that answered.
    pub service: Arc<str>,
    /// The name of the policy that took the request, once one did.
    pub policy: Option<Arc<str>>,
    /// That policy's OID, dotted.
    pub policy_oid: Option<Arc<str>>,
    /// The imprint's hash algorithm, when the request decoded and stampd knows it.
    pub hash: Option<HashAlg>,
    /// The imprint's digest (hashedMessage), when the request decoded.
    pub imprint: Option<Vec<u8>>,
    /// The request's nonce (INTEGER content octets), when it had one.
    pub nonce: Option<Vec<u8>>,
    /// The request's certReq (false when it did not decode).
    pub cert_req: bool,
    /// The requester's IP address, unless the audit filter has `client_ip = false`.
    pub client: Option<IpAddr>,
    /// The signer's key id (16 hex digits of the SHA-256 of its SubjectPublicKeyInfo) for
    /// issued tokens.
    pub key_id: Option<Arc<str>>,
    /// Microseconds from the start of the pre-filters until the audit filter built this
    /// record (so without the audit commit and the write to the socket).
    pub latency_us: u64,
    /// The request DER, with the audit filter's `request = true`.
    pub request: Option<Vec<u8>>,
    /// The response DER, with the audit filter's `response = true`, or the issued token's
    /// response under a policy with the storage filter.
    pub response: Option<Vec<u8>>,
    /// The whole request body's SHA-256 and length, for requests that got no token (their
    /// `request` is at most a prefix of the body). `None` for issued tokens and in records
    /// written before version 2.
    pub request_digest: Option<RequestDigest>,
    /// The subject (RFC 4514) of the client's TLS certificate, on listeners with
    /// `tls.client_ca` (unless the audit filter has `client_subject = false`).
    pub client_subject: Option<Arc<str>>,
    /// A legacy Authenticode request (`protocol = "authenticode"`), not RFC 3161: its kind is
    /// `authenticode`, its imprint the digest of the signature it countersigns, and its
    /// serial the TSA's identifier for a stamp that carries none.
    pub authenticode: bool,
}

impl Record {
    /// The serial number of the issued token; `None` unless the outcome is `Granted`.
    pub fn serial(&self) -> Option<&[u8; SERIAL_LEN]> {
        match &self.outcome {
            Outcome::Granted { serial } => Some(serial),
            _ => None,
        }
    }

    /// Exactly the length of [`Record::encode`]'s output (for the batcher's byte limit).
    pub fn encoded_len(&self) -> usize {
        let field = |n: Option<usize>| 4 + n.unwrap_or(0);
        let bytes = |v: &Option<Vec<u8>>| field(v.as_ref().map(Vec::len));
        let text = |v: &Option<Arc<str>>| field(v.as_ref().map(|t| t.len()));
        let outcome = match self.outcome {
            Outcome::Granted { .. } => SERIAL_LEN,
            Outcome::Rejected(_) => 1,
            Outcome::Refused(_) => 2,
        };
        let client = match self.client {
            None => 0,
            Some(IpAddr::V4(_)) => 4,
            Some(IpAddr::V6(_)) => 16,
        };
        1 + 12
            + 1
            + outcome
            + 4
            + self.service.len()
            + text(&self.policy)
            + text(&self.policy_oid)
            + 1
            + bytes(&self.imprint)
            + bytes(&self.nonce)
            + 1
            + 1
            + client
            + text(&self.key_id)
            + 8
            + bytes(&self.request)
            + bytes(&self.response)
            + 1
            + self.request_digest.map_or(0, |_| 4 + 32)
            + text(&self.client_subject)
            + 1
    }

    /// Appends the binary form (version 3) to `out`: the body of a journal record frame.
    /// Integers little-endian; variable fields are prefixed with their length as a u32
    /// (`u32::MAX`: absent). [`Record::decode`] reads it back exactly.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&self.time.unix_secs.to_le_bytes());
        out.extend_from_slice(&self.time.nanos.to_le_bytes());
        match &self.outcome {
            Outcome::Granted { serial } => {
                out.push(0);
                out.extend_from_slice(serial);
            }
            Outcome::Rejected(f) => {
                out.push(1);
                out.push(f.bit());
            }
            Outcome::Refused(status) => {
                out.push(2);
                out.extend_from_slice(&status.to_le_bytes());
            }
        }
        put_bytes(out, self.service.as_bytes());
        put_opt(out, self.policy.as_deref().map(str::as_bytes));
        put_opt(out, self.policy_oid.as_deref().map(str::as_bytes));
        out.push(self.hash.map_or(0, |h| {
            1 + HashAlg::ALL.iter().position(|a| *a == h).unwrap_or(0) as u8
        }));
        put_opt(out, self.imprint.as_deref());
        put_opt(out, self.nonce.as_deref());
        out.push(u8::from(self.cert_req));
        match self.client {
            None => out.push(0),
            Some(IpAddr::V4(a)) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                out.push(6);
                out.extend_from_slice(&a.octets());
            }
        }
        put_opt(out, self.key_id.as_deref().map(str::as_bytes));
        out.extend_from_slice(&self.latency_us.to_le_bytes());
        put_opt(out, self.request.as_deref());
        put_opt(out, self.response.as_deref());
        match self.request_digest {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.len.to_le_bytes());
                out.extend_from_slice(&d.sha256);
            }
        }
        put_opt(out, self.client_subject.as_deref().map(str::as_bytes));
        out.push(u8::from(self.authenticode));
    }

    /// Reads a record written by [`Record::encode`]; the error names what is wrong (an
    /// unknown version, outcome or address family, truncation, trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Record, &'static str> {
        let mut r = Cursor(bytes);
        let version = r.u8()?;
        if !(1..=VERSION).contains(&version) {
            return Err("unknown record version");
        }
        let time = Timestamp {
            unix_secs: i64::from_le_bytes(r.array()?),
            nanos: u32::from_le_bytes(r.array()?),
        };
        let outcome = match r.u8()? {
            0 => Outcome::Granted { serial: r.array()? },
            1 => Outcome::Rejected(FailureInfo::from_bit(r.u8()?).ok_or("unknown failInfo")?),
            2 => Outcome::Refused(u16::from_le_bytes(r.array()?)),
            _ => return Err("unknown outcome"),
        };
        let service = r.string()?.ok_or("record without service")?;
        let policy = r.string()?;
        let policy_oid = r.string()?;
        let hash = match r.u8()? {
            0 => None,
            n => Some(
                *HashAlg::ALL
                    .get(usize::from(n) - 1)
                    .ok_or("unknown hash algorithm")?,
            ),
        };
        let imprint = r.opt()?;
        let nonce = r.opt()?;
        let cert_req = r.u8()? != 0;
        let client = match r.u8()? {
            0 => None,
            4 => Some(IpAddr::from(r.array::<4>()?)),
            6 => Some(IpAddr::from(r.array::<16>()?)),
            _ => return Err("unknown address family"),
        };
        let key_id = r.string()?;
        let latency_us = u64::from_le_bytes(r.array()?);
        let request = r.opt()?;
        let response = r.opt()?;
        let request_digest = match version {
            1 => None,
            _ => match r.u8()? {
                0 => None,
                1 => Some(RequestDigest {
                    len: u32::from_le_bytes(r.array()?),
                    sha256: r.array()?,
                }),
                _ => return Err("unknown request digest flag"),
            },
        };
        let client_subject = if version >= 3 { r.string()? } else { None };
        let authenticode = match version {
            ..=3 => false,
            _ => match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err("unknown protocol flag"),
            },
        };
        if !r.0.is_empty() {
            return Err("trailing bytes after the record");
        }
        Ok(Record {
            time,
            outcome,
            service,
            policy,
            policy_oid,
            hash,
            imprint,
            nonce,
            cert_req,
            client,
            key_id,
            latency_us,
            request,
            response,
            request_digest,
            client_subject,
            authenticode,
        })
    }

    /// `granted` or `rejection` (a TimeStampResp rejection or an HTTP-level refusal).
    pub fn status(&self) -> &'static str {
        match self.outcome {
            Outcome::Granted { .. } => "granted",
            _ => "rejection",
        }
    }

    /// The failInfo name of a rejection, and the HTTP status the request was answered with
    /// (an Authenticode rejection has no message: 400 for the client's mistakes, else 503).
    pub fn fail_info_and_http_status(&self) -> (Option<&'static str>, u16) {
        match self.outcome {
            Outcome::Granted { .. } => (None, 200),
            Outcome::Rejected(f) if self.authenticode => (Some(f.name()), f.legacy_http_status()),
            Outcome::Rejected(f) => (Some(f.name()), 200),
            Outcome::Refused(s) => (None, s),
        }
    }

    /// `rfc3161` or `authenticode`: the protocol, as PostgreSQL's `protocol` column holds it.
    pub fn protocol(&self) -> &'static str {
        if self.authenticode {
            "authenticode"
        } else {
            "rfc3161"
        }
    }

    /// `request` (RFC 3161) or `authenticode`: the record's kind in exports and queries.
    pub fn kind(&self) -> &'static str {
        if self.authenticode {
            "authenticode"
        } else {
            "request"
        }
    }

    /// The JSON object of `stampd audit export` and `query`: `serial` (lowercase hex, no
    /// prefix), `status`, `gen_time` (RFC 3339), `service`, `policy` and the rest.
    pub fn to_json(&self, seq: Option<u64>) -> serde_json::Value {
        let hex_of = |v: &Option<Vec<u8>>| v.as_deref().map(hex);
        let (fail_info, http_status) = self.fail_info_and_http_status();
        serde_json::json!({
            "seq": seq,
            "kind": self.kind(),
            "serial": self.serial().map(|s| serial_hex(s)),
            "status": self.status(),
            "fail_info": fail_info,
            "http_status": http_status,
            "gen_time": self.time.to_rfc3339(),
            "service": &*self.service,
            "policy": self.policy.as_deref(),
            "policy_oid": self.policy_oid.as_deref(),
            "hash_algorithm": self.hash.map(HashAlg::name),
            "message_imprint": hex_of(&self.imprint),
            "nonce": hex_of(&self.nonce),
            "cert_req": self.cert_req,
            "client_ip": self.client.map(|c| c.to_string()),
            "key_id": self.key_id.as_deref(),
            "latency_us": self.latency_us,
            "request": hex_of(&self.request),
            "response": hex_of(&self.response),
            "request_sha256": self.request_digest.map(|d| hex(&d.sha256)),
            "request_length": self.request_digest.map(|d| d.len),
            "client_subject": self.client_subject.as_deref(),
        })
    }
}

/// Version of the [`Event`] encoding.
const EVENT_VERSION: u8 = 1;

/// Something that happened to the TSA rather than to a request: a clock synchronisation
/// event (ETSI EN 319 421 asks for every one to be recorded). Kept in the same hash chain as
/// the requests' records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened (the system time: the event may be that the clock is not trusted).
    pub time: Timestamp,
    /// What it is about: `clock`.
    pub kind: Arc<str>,
    /// What happened, e.g. `out-of-sync`, `back-in-sync`, `falseticker`.
    pub name: Arc<str>,
    /// One line for people.
    pub message: String,
    /// The particulars, a JSON object (text).
    pub detail: String,
}

impl Event {
    /// An event of the TSA's own (a reload, an administrator's action) at the system time
    /// now (the Unix epoch should the system clock be before it).
    pub fn now(kind: &str, name: &str, message: String, detail: &serde_json::Value) -> Event {
        Event {
            time: crate::clock::unix_time(crate::clock::wall_now()).unwrap_or(Timestamp {
                unix_secs: 0,
                nanos: 0,
            }),
            kind: kind.into(),
            name: name.into(),
            message,
            detail: detail.to_string(),
        }
    }

    /// Exactly the length of [`Event::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        1 + 12 + 4 * 4 + self.kind.len() + self.name.len() + self.message.len() + self.detail.len()
    }

    /// Appends the binary form: the body of a journal event frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(EVENT_VERSION);
        out.extend_from_slice(&self.time.unix_secs.to_le_bytes());
        out.extend_from_slice(&self.time.nanos.to_le_bytes());
        for text in [&*self.kind, &*self.name, &self.message, &self.detail] {
            put_bytes(out, text.as_bytes());
        }
    }

    /// Reads an event written by [`Event::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Event, &'static str> {
        let mut r = Cursor(bytes);
        if r.u8()? != EVENT_VERSION {
            return Err("unknown event version");
        }
        let time = Timestamp {
            unix_secs: i64::from_le_bytes(r.array()?),
            nanos: u32::from_le_bytes(r.array()?),
        };
        let mut text = || r.string()?.ok_or("event without text");
        let (kind, name) = (text()?, text()?);
        let (message, detail) = (text()?.to_string(), text()?.to_string());
        if !r.0.is_empty() {
            return Err("trailing bytes after the event");
        }
        Ok(Event {
            time,
            kind,
            name,
            message,
            detail,
        })
    }

    /// The JSON object of `stampd audit export` and `query`: `kind` (e.g. `clock`),
    /// `event`, `time`, `message`, `detail`.
    pub fn to_json(&self, seq: Option<u64>) -> serde_json::Value {
        serde_json::json!({
            "seq": seq,
            "kind": &*self.kind,
            "event": &*self.name,
            "time": self.time.to_rfc3339(),
            "message": self.message,
            "detail": serde_json::from_str::<serde_json::Value>(&self.detail)
                .unwrap_or(serde_json::Value::String(self.detail.clone())),
        })
    }
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A request and what happened to it.
    Request(Record),
    /// An event of the TSA itself.
    Event(Event),
}

impl Entry {
    /// Its time: genTime or answer time of a request, the time of an event.
    pub fn time(&self) -> Timestamp {
        match self {
            Entry::Request(r) => r.time,
            Entry::Event(e) => e.time,
        }
    }

    /// Exactly the length of [`Entry::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Request(r) => r.encoded_len(),
            Entry::Event(e) => e.encoded_len(),
        }
    }

    /// The frame body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Request(r) => r.encode(out),
            Entry::Event(e) => e.encode(out),
        }
    }

    /// The JSON object of `export` and `query`.
    pub fn to_json(&self, seq: Option<u64>) -> serde_json::Value {
        match self {
            Entry::Request(r) => r.to_json(seq),
            Entry::Event(e) => e.to_json(seq),
        }
    }
}

/// A serial number as the value of the token's serialNumber INTEGER: lowercase hex, no
/// prefix, no leading zeros (what `openssl ts -reply -text` shows after `0x`).
pub fn serial_hex(serial: &[u8]) -> String {
    let text = hex(serial);
    let trimmed = text.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Records are bounded by the HTTP body limit and the token size, far below 4 GiB.
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(b) => put_bytes(out, b),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("record truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn opt(&mut self) -> Result<Option<Vec<u8>>, &'static str> {
        let len = u32::from_le_bytes(self.array()?);
        if len == u32::MAX {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?.to_vec()))
    }

    fn string(&mut self) -> Result<Option<Arc<str>>, &'static str> {
        match self.opt()? {
            None => Ok(None),
            Some(b) => Ok(Some(
                String::from_utf8(b)
                    .map_err(|_| "text is not UTF-8")?
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(n: u64) -> Record {
        let mut serial = [0u8; SERIAL_LEN];
        serial[10..].copy_from_slice(&n.to_be_bytes());
        Record {
            time: Timestamp {
                unix_secs: 1_795_000_000 + n as i64,
                nanos: 123_000_000,
            },
            outcome: Outcome::Granted { serial },
            service: "default".into(),
            policy: Some("default".into()),
            policy_oid: Some("2.999.1.1".into()),
            hash: Some(HashAlg::Sha256),
            imprint: Some(vec![7; 32]),
            nonce: Some(n.to_be_bytes().to_vec()),
            cert_req: true,
            client: Some(IpAddr::from([127, 0, 0, 1])),
            key_id: Some("00ff".into()),
            latency_us: 40,
            request: None,
            response: Some(vec![0x30, 0x03, 2, 1, 0]),
            request_digest: None,
            client_subject: None,
            authenticode: false,
        }
    }

    #[test]
    fn round_trips_every_outcome_and_field() {
        let mut records = vec![sample(1)];
        let mut r = sample(2);
        r.outcome = Outcome::Rejected(FailureInfo::BadAlg);
        r.client = Some("2001:db8::1".parse().unwrap());
        r.policy = None;
        r.hash = Some(HashAlg::Sha3_512);
        records.push(r);
        let mut r = sample(3);
        r.outcome = Outcome::Refused(429);
        r.client = None;
        r.imprint = None;
        r.nonce = Some(Vec::new());
        r.request = Some(vec![1, 2, 3]);
        r.request_digest = Some(RequestDigest {
            len: 65_000,
            sha256: [0x5a; 32],
        });
        r.client_subject = Some("CN=build-7,O=Acme".into());
        records.push(r);
        for r in records {
            let mut out = Vec::new();
            r.encode(&mut out);
            assert_eq!(out.len(), r.encoded_len());
            assert_eq!(Record::decode(&out).unwrap(), r);
            // Every truncation is an error, never a panic or a wrong record.
            for n in 0..out.len() {
                assert!(Record::decode(&out[..n]).is_err(), "prefix {n}");
            }
            out.push(0);
            assert!(Record::decode(&out).is_err());
        }
    }

    #[test]
    fn older_versions_still_decode() {
        // A version 3 record is a version 4 record without the protocol flag, a version 2
        // one without the client subject either (an absent field: four 0xff bytes), a
        // version 1 record one without the request digest's flag byte either.
        let r = sample(4);
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(out.pop(), Some(0));
        out[0] = 3;
        assert_eq!(Record::decode(&out).unwrap(), r);
        assert_eq!(out.split_off(out.len() - 4), [0xff; 4]);
        out[0] = 2;
        assert_eq!(Record::decode(&out).unwrap(), r);
        assert_eq!(out.pop(), Some(0));
        out[0] = 1;
        assert_eq!(Record::decode(&out).unwrap(), r);
        out[0] = 5;
        assert_eq!(Record::decode(&out), Err("unknown record version"));
    }

    #[test]
    fn events_round_trip_and_show_their_kind() {
        let e = Event {
            time: Timestamp {
                unix_secs: 1_795_000_000,
                nanos: 5,
            },
            kind: "clock".into(),
            name: "out-of-sync".into(),
            message: "clock out-of-sync: 1 of 3 servers agree".into(),
            detail: r#"{"offset_ms":1.5}"#.into(),
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(out.len(), e.encoded_len());
        assert_eq!(Event::decode(&out).unwrap(), e);
        for n in 0..out.len() {
            assert!(Event::decode(&out[..n]).is_err(), "prefix {n}");
        }
        let j = Entry::Event(e).to_json(Some(3));
        assert_eq!(j["kind"], "clock");
        assert_eq!(j["event"], "out-of-sync");
        assert_eq!(j["detail"]["offset_ms"], 1.5);
        assert_eq!(j["time"], "2026-11-18T11:06:40.000000005Z");
        assert_eq!(Entry::Request(sample(1)).to_json(None)["kind"], "request");
    }

    #[test]
    fn json_has_the_fields_scripts_rely_on() {
        let r = sample(255);
        let j = r.to_json(Some(9));
        assert_eq!(j["serial"], "ff");
        assert_eq!(serial_hex(&[0, 0x0a, 0xbc]), "abc");
        assert_eq!(serial_hex(&[0, 0]), "0");
        assert_eq!(j["status"], "granted");
        assert_eq!(j["gen_time"], "2026-11-18T11:10:55.123Z");
        assert_eq!(j["service"], "default");
        assert_eq!(j["policy"], "default");
        let mut r = sample(1);
        r.outcome = Outcome::Rejected(FailureInfo::TimeNotAvailable);
        let j = r.to_json(None);
        assert_eq!(j["status"], "rejection");
        assert_eq!(j["fail_info"], "timeNotAvailable");
        assert!(j["serial"].is_null());
        assert!(j["request_sha256"].is_null());
        r.request_digest = Some(RequestDigest {
            len: 5,
            sha256: [0xab; 32],
        });
        let j = r.to_json(None);
        assert_eq!(j["request_sha256"], "ab".repeat(32));
        assert_eq!(j["request_length"], 5);
    }
}
