//! A request or response in words, for people: the admin interface's record pages and the
//! public verify page show these facts. Decoding only; [`super::verify`] checks.

use ::der::Decode;
use serde::Serialize;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

use crate::protocol::cert::CertView;
use crate::protocol::hex::hex;
use crate::protocol::{oid, request, response, HashAlg};

/// A decoded `TimeStampReq`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestFacts {
    /// `version` (1).
    pub version: u64,
    /// The imprint's hash algorithm (name, or dotted OID).
    pub hash_algorithm: String,
    /// The digest, hex.
    pub digest: String,
    /// reqPolicy, dotted.
    pub req_policy: Option<String>,
    /// The nonce, hex.
    pub nonce: Option<String>,
    /// certReq.
    pub cert_req: bool,
    /// Extensions carried (OIDs, dotted).
    pub extensions: Vec<String>,
}

/// One certificate of a token.
#[derive(Debug, Clone, Serialize)]
pub struct CertFacts {
    /// subject (RFC 4514).
    pub subject: String,
    /// issuer (RFC 4514).
    pub issuer: String,
    /// serialNumber, hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

/// A decoded `TimeStampResp`.
#[derive(Debug, Clone, Serialize)]
pub struct ResponseFacts {
    /// `granted`, `rejection`, ...
    pub status: &'static str,
    /// statusString.
    pub status_text: Vec<String>,
    /// failInfo names.
    pub fail_info: Vec<&'static str>,
    /// The token's TSTInfo and signer, when granted.
    pub token: Option<TokenFacts>,
}

/// A token's TSTInfo fields, its signer and certificates.
#[derive(Debug, Clone, Serialize)]
pub struct TokenFacts {
    /// serialNumber, hex without leading zero octets.
    pub serial: String,
    /// genTime as written.
    pub gen_time: String,
    /// genTime, RFC 3339.
    pub gen_time_rfc3339: String,
    /// The policy OID, dotted.
    pub policy: String,
    /// The imprint's hash algorithm.
    pub hash_algorithm: String,
    /// The imprint's digest, hex.
    pub digest: String,
    /// The nonce, hex.
    pub nonce: Option<String>,
    /// The accuracy, µs.
    pub accuracy_us: Option<u64>,
    /// TSTInfo's `tsa` name (RFC 4514), when present.
    pub tsa: Option<String>,
    /// Extensions present (qcStatements of a qualified stamp).
    pub has_extensions: bool,
    /// The signer's issuer (RFC 4514) and serial (hex), from its SignerInfo.
    pub signer_issuer: String,
    /// The signer certificate's serial, hex.
    pub signer_serial: String,
    /// The certificates the token carries, in order.
    pub certificates: Vec<CertFacts>,
}

fn oid_text(bytes: &[u8]) -> String {
    oid::to_dotted(bytes).unwrap_or_else(|| hex(bytes))
}

fn hash_text(bytes: &[u8]) -> String {
    HashAlg::from_oid_bytes(bytes).map_or_else(|| oid_text(bytes), |h| h.name().to_string())
}

fn name_text(tlv: &[u8]) -> String {
    Name::from_der(tlv).map_or_else(|_| hex(tlv), |n| n.to_string())
}

/// INTEGER content as hex, without leading zero octets.
fn int_hex(content: &[u8]) -> String {
    hex(super::verify::magnitude(content))
}

/// The INTEGER TLV's content octets.
fn integer_content(tlv: &[u8]) -> &[u8] {
    ::der::asn1::IntRef::from_der(tlv).map_or(tlv, |i| i.as_bytes())
}

/// The facts of a request body.
pub fn request_facts(der: &[u8]) -> Result<RequestFacts, String> {
    let req = request::decode(der).map_err(|r| r.text.to_string())?;
    Ok(RequestFacts {
        version: req.version,
        hash_algorithm: hash_text(req.hash_oid),
        digest: hex(req.digest),
        req_policy: req.req_policy.map(oid_text),
        nonce: req.nonce.map(int_hex),
        cert_req: req.cert_req,
        extensions: req.extensions().map(|e| oid_text(e.oid)).collect(),
    })
}

/// The facts of a `TimeStampResp`.
pub fn response_facts(der: &[u8]) -> Result<ResponseFacts, String> {
    let resp = response::decode(der).map_err(|e| e.to_string())?;
    let token = resp.token.as_ref().map(|t| {
        let tst = &t.tst_info;
        let (signer_issuer, signer_serial) = t.signer_infos.first().map_or_else(
            || (String::new(), String::new()),
            |si| {
                (
                    name_text(si.sid_issuer),
                    int_hex(integer_content(si.sid_serial)),
                )
            },
        );
        TokenFacts {
            serial: int_hex(tst.serial),
            gen_time: tst.gen_time_text.to_string(),
            gen_time_rfc3339: tst.gen_time.to_rfc3339(),
            policy: oid_text(tst.policy),
            hash_algorithm: hash_text(tst.hash_oid),
            digest: hex(tst.digest),
            nonce: tst.nonce.map(int_hex),
            accuracy_us: tst
                .accuracy
                .map(|(s, ms, us)| s * 1_000_000 + ms * 1_000 + us),
            tsa: tst.tsa.map(|g| match GeneralName::from_der(g) {
                Ok(GeneralName::DirectoryName(n)) => n.to_string(),
                _ => hex(g),
            }),
            has_extensions: tst.has_extensions,
            signer_issuer,
            signer_serial,
            certificates: t
                .certificates
                .iter()
                .filter_map(|c| CertView::parse(c).ok())
                .map(|c| CertFacts {
                    subject: name_text(c.subject),
                    issuer: name_text(c.issuer),
                    serial: int_hex(integer_content(c.serial)),
                    not_before: c.not_before.to_rfc3339(),
                    not_after: c.not_after.to_rfc3339(),
                })
                .collect(),
        }
    });
    Ok(ResponseFacts {
        status: resp.status.name(),
        status_text: resp.status_text,
        fail_info: resp.fail_info.iter().map(|f| f.name()).collect(),
        token,
    })
}
