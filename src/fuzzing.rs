//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test
//! (`tests/fuzz_corpus.rs`): one function per parser of untrusted input, each fed arbitrary
//! bytes. None may panic on any input; the few `assert!`s here state invariants of the code
//! under test (a token we build must decode, a record must read back as written), so a
//! panic is always a bug to fix, never a harness limit.
//!
//! This module stands on the top floor (beside `cli`) because it reaches every floor it
//! fuzzes: `protocol` (through [`crate::protocol::fuzzing`]), `signer`, `audit`,
//! `frontend`. The configuration's entry point is `config::fuzzing::config`, in the
//! assembler itself, so that no runtime module imports `config`. Nothing but fuzz targets
//! and tests calls these.

use std::sync::OnceLock;

use crate::audit::journal;
use crate::protocol::cert::CertView;
use crate::protocol::token::{
    self, Accuracy, EssCertId, Extensions, IncludeCerts, PolicyTemplate, SignatureScheme,
    SignerTemplate, TsaName,
};
use crate::protocol::{oid, request, response, HashAlg, Precision, TimeStampReq, Timestamp};
use crate::signer::{checks, software, Certified};

/// A fixed genTime for the tokens built here: 2030-03-17T17:46:40.123456789Z, truncated to
/// milliseconds by the policy template.
const GEN_TIME: Timestamp = Timestamp {
    unix_secs: 1_900_000_000,
    nanos: 123_456_789,
};

/// A `TimeStampReq` (DER): decode, imprint check and extensions as the request path does,
/// then, for a request the path would sign, the token it would get: it must decode and
/// echo the request's imprint and nonce.
pub fn request(data: &[u8]) {
    crate::protocol::fuzzing::decode_request(data);
    let Ok(req) = request::decode(data) else {
        return;
    };
    if request::check_imprint(&req).is_ok() {
        issue_and_read_back(fixed_signer(), &req);
    }
}

/// A `TimeStampResp` (DER), or a bare token: decoded, then verified as `stampd verify` does,
/// expecting the imprint and nonce the token itself carries and trusting the certificates
/// it carries, so verification runs as far as the bytes allow.
pub fn response(data: &[u8]) {
    crate::protocol::fuzzing::decode_response(data);
    let token = match response::decode(data) {
        Ok(resp) => resp.token,
        Err(_) => response::decode_token(data).ok(),
    };
    let Some(token) = token else {
        return;
    };
    let tst = &token.tst_info;
    let expect = crate::client::verify::Expectation {
        hash: HashAlg::from_oid_bytes(tst.hash_oid).unwrap_or(HashAlg::Sha256),
        digest: tst.digest.to_vec(),
        nonce: tst.nonce.map(<[u8]>::to_vec),
    };
    let trusted: Vec<Vec<u8>> = token.certificates.iter().map(|c| c.to_vec()).collect();
    for bare in [false, true] {
        let _ = crate::client::verify::verify(data, bare, &expect, &trusted, &[]);
    }
}

/// A certificate chain file as the signer loads one: PEM `CERTIFICATE` blocks (the TSA
/// certificate first), or, for input that is not PEM, DER certificates back to back (a
/// chain as read from an HSM token, one DER certificate per object). Each certificate is
/// parsed; the leaf goes through the signer's startup checks (`Certified::new`, at the
/// leaf's notBefore, against its own public key); and a token template built from any
/// chain that parses must yield tokens that decode.
pub fn certificate(data: &[u8]) {
    crate::protocol::fuzzing::parse_certificate(data);
    let chain = match software::pem_blocks(data, "CERTIFICATE") {
        Ok(blocks) if !blocks.is_empty() => blocks,
        _ => der_sequence(data),
    };
    for der in &chain {
        crate::protocol::fuzzing::parse_certificate(der);
    }
    let Some(leaf) = chain.first().and_then(|c| CertView::parse(c).ok()) else {
        return;
    };
    let now = leaf.not_before;
    let _ = checks::check_tsa_certificate(&leaf, leaf.public_key, now);
    let _ = Certified::new(
        SignatureScheme::EcdsaP256Sha256,
        chain.clone(),
        leaf.public_key,
        now,
    );
    // Whatever the EKU says, the template a chain yields must make decodable tokens: a
    // certificate that breaks them must be refused when the signer loads it.
    let req_der = request::encode(HashAlg::Sha256, &[0x5a; 32], None, Some(&[1, 2]), true);
    let Ok(req) = request::decode(&req_der) else {
        unreachable!("request::encode output decodes")
    };
    for (scheme, ess) in [
        (
            SignatureScheme::EcdsaP256Sha256,
            EssCertId::V2(HashAlg::Sha256),
        ),
        (SignatureScheme::Ed25519, EssCertId::V1),
    ] {
        if let Ok(template) = SignerTemplate::new(scheme, &chain, ess) {
            issue_and_read_back(&template, &req);
        }
    }
}

/// The DER TLVs at the start of `data`, back to back, up to the first that does not read
/// whole (`der`'s reader). Only splits: each certificate is parsed strictly later.
fn der_sequence(data: &[u8]) -> Vec<Vec<u8>> {
    use ::der::Reader;
    let Ok(mut r) = ::der::SliceReader::new(data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Ok(tlv) = r.tlv_bytes() {
        out.push(tlv.to_vec());
    }
    out
}

/// Bytes received on a connection: request heads parsed with the default HTTP limits and
/// two routes, one after the other as a keep-alive connection reads them (see
/// [`crate::frontend::fuzzing::http_heads`]).
pub fn http_head(data: &[u8]) {
    crate::frontend::fuzzing::http_heads(data);
}

/// The bytes of a journal segment file, damaged or not: read as `Journal::open` reads the
/// last segment (torn-tail repair) and as `stampd audit verify` and the shipper read
/// frames, records decoded (see [`journal::fuzzing::segment`]).
pub fn journal(data: &[u8]) {
    journal::fuzzing::segment(data);
}

/// The signer of the request target's tokens: a P-256 certificate made once per process.
fn fixed_signer() -> &'static SignerTemplate {
    static SIGNER: OnceLock<SignerTemplate> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap_or_else(|e| panic!("P-256 key generation: {e}"));
        let params = rcgen::CertificateParams::new(vec!["fuzz tsa".to_string()])
            .unwrap_or_else(|e| panic!("certificate parameters: {e}"));
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-signed certificate: {e}"));
        SignerTemplate::new(
            SignatureScheme::EcdsaP256Sha256,
            &[cert.der().to_vec()],
            EssCertId::V2(HashAlg::Sha256),
        )
        .unwrap_or_else(|e| panic!("template of an rcgen certificate: {e}"))
    })
}

/// Builds the granted response `signer` would send for `req` (with a placeholder
/// signature), then decodes it: it must decode and carry the request's imprint, nonce and,
/// with certReq, the chain.
fn issue_and_read_back(signer: &SignerTemplate, req: &TimeStampReq<'_>) {
    static POLICY: OnceLock<PolicyTemplate> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let Some(policy_oid) = oid::Oid::parse("1.3.6.1.4.1.99999.1") else {
            unreachable!("a valid dotted OID")
        };
        PolicyTemplate::new(
            &policy_oid,
            Accuracy::from_micros(1_500),
            Precision::Millis,
            TsaName::Subject,
            IncludeCerts::Chain,
            true,
        )
        .expect("a fixed policy template encodes")
    });
    let serial = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    let Ok(prepared) = token::prepare(
        signer,
        policy,
        req,
        &serial,
        GEN_TIME,
        &Extensions::default(),
    ) else {
        unreachable!("GEN_TIME is within years 0..=9999")
    };
    let der = token::finish(signer, policy, &prepared, &[0x30, 0x06, 2, 1, 1, 2, 1, 1]);
    let token = match response::decode(&der) {
        Ok(response::Response { token: Some(t), .. }) => t,
        Ok(_) => unreachable!("token::finish writes a granted response with its token"),
        Err(e) => panic!(
            "a token we built does not decode ({e}): {}",
            crate::protocol::hex::hex(&der)
        ),
    };
    assert_eq!(token.tst_info.message_imprint, req.message_imprint);
    assert_eq!(token.tst_info.nonce, req.nonce);
    assert_eq!(token.tst_info.gen_time_text, "20300317174640.123Z");
    assert_eq!(token.certificates.is_empty(), !req.cert_req);
}
