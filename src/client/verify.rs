//! Token verification for `stampd verify`: status, imprint, nonce, message digest, ESS
//! signing certificate, signature, and the certificate chain up to a trusted CA at genTime.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};

use crate::protocol::cert::CertView;
use ::der::asn1::OctetStringRef;
use ::der::Decode;

use crate::protocol::asn1::{AlgorithmIdentifierRef, OidRef};
use crate::protocol::hex::hex;
use crate::protocol::response::{self, SignerInfo, Token};
use crate::protocol::tsp::{SigningCertificate, SigningCertificateV2};
use crate::protocol::{oid, HashAlg, PkiStatus, Timestamp};

/// What the token must be about.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The imprint's hash algorithm the token must name.
    pub hash: HashAlg,
    /// The digest of the timestamped data the token's imprint must carry.
    pub digest: Vec<u8>,
    /// Nonce magnitude (big-endian) the request carried, if the caller knows it.
    pub nonce: Option<Vec<u8>>,
}

/// A verified token's facts, as `stampd verify` prints them (its `--json` keys are these
/// field names, which scripts read).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// Always `granted` (anything else fails verification).
    pub status: &'static str,
    /// serialNumber, hex, without leading zero octets.
    pub serial: String,
    /// genTime exactly as the token writes it (GeneralizedTime, e.g. `20300101000000.5Z`).
    pub gen_time: String,
    /// The policy OID, dotted.
    pub policy: String,
    /// The imprint's hash algorithm (config name, e.g. `sha256`).
    pub hash_algorithm: &'static str,
    /// The imprint's digest, hex.
    pub digest: String,
    /// The nonce, hex without leading zero octets; `None` when the token has none.
    pub nonce: Option<String>,
    /// The declared accuracy in microseconds; `None` when the token states none.
    pub accuracy_us: Option<u64>,
    /// The first 8 octets of SHA-256 over the TSA certificate's subject Name, hex: a short
    /// fingerprint to tell TSA identities apart.
    pub tsa_certificate_subject_sha256: String,
    /// The token signature's scheme, e.g. `ecdsa-p256-sha256`.
    pub signature_algorithm: &'static str,
    /// Certificates in the verified path, TSA certificate and trust anchor included.
    pub chain_length: usize,
}

fn oid_text(bytes: &[u8]) -> String {
    oid::to_dotted(bytes).unwrap_or_else(|| hex(bytes))
}

/// Strips leading zero octets of an INTEGER's content (for comparing magnitudes).
pub fn magnitude(v: &[u8]) -> &[u8] {
    let skip = v.iter().take_while(|&&b| b == 0).count();
    &v[skip..]
}

/// Verifies a `TimeStampResp` (or a bare token when `bare`). `trusted` are CA certificates;
/// `extra` are untrusted certificates that may complete the chain.
pub fn verify(
    input: &[u8],
    bare: bool,
    expect: &Expectation,
    trusted: &[Vec<u8>],
    extra: &[Vec<u8>],
) -> Result<Verified, String> {
    let token = if bare {
        response::decode_token(input).map_err(|e| format!("not a timestamp token: {e}"))?
    } else {
        let resp = response::decode(input).map_err(|e| format!("not a TimeStampResp: {e}"))?;
        if resp.status != PkiStatus::Granted && resp.status != PkiStatus::GrantedWithMods {
            let fails: Vec<_> = resp.fail_info.iter().map(|f| f.name()).collect();
            return Err(format!(
                "status {} (failInfo: {}; text: {})",
                resp.status.name(),
                if fails.is_empty() {
                    "none".into()
                } else {
                    fails.join(", ")
                },
                resp.status_text.join(" / ")
            ));
        }
        resp.token.ok_or("granted response without a token")?
    };
    verify_token(&token, expect, trusted, extra)
}

/// One check of a token, and what it found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What is checked: `version`, `imprint`, `nonce`, `signer`, `signed attributes`,
    /// `ESS signing certificate`, `signature`, `EKU`, `chain`.
    pub check: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// What was found (the reason, when it failed).
    pub detail: String,
}

/// Every check of `token` against `expect` (as [`verify`] runs them, in order), each with
/// its result; the verified facts when all pass. A check that needs the TSA certificate
/// fails when the certificate cannot be found.
pub fn checks(
    token: &Token<'_>,
    expect: &Expectation,
    trusted: &[Vec<u8>],
    extra: &[Vec<u8>],
) -> (Vec<Check>, Option<Verified>) {
    let mut out = Vec::new();
    let mut note = |check: &'static str, r: Result<String, String>| {
        let passed = r.is_ok();
        out.push(Check {
            check,
            passed,
            detail: r.unwrap_or_else(|e| e),
        });
        passed
    };
    let tst = &token.tst_info;
    note(
        "version",
        if tst.version == 1 {
            Ok("TSTInfo version 1".into())
        } else {
            Err(format!("TSTInfo version {} (expected 1)", tst.version))
        },
    );
    note(
        "imprint",
        if tst.hash_oid != expect.hash.oid() {
            Err(format!(
                "token imprint uses {}, expected {}",
                oid_text(tst.hash_oid),
                expect.hash.name()
            ))
        } else if tst.digest != expect.digest.as_slice() {
            Err("message imprint does not match the data".into())
        } else {
            Ok(format!("{} digest of the data matches", expect.hash.name()))
        },
    );
    note(
        "nonce",
        match (&expect.nonce, tst.nonce) {
            (Some(want), Some(got)) if magnitude(want) == magnitude(got) => {
                Ok("the request's nonce is echoed".into())
            }
            (Some(_), Some(_)) => Err("nonce in the token differs from the request's".into()),
            (Some(_), None) => Err("the token carries no nonce but the request had one".into()),
            (None, _) => Ok("no nonce expected".into()),
        },
    );
    let si = match token.signer_infos.as_slice() {
        [si] => Ok(si),
        more => Err(format!("{} SignerInfos (expected exactly one)", more.len())),
    };
    let digest_alg = si.clone().and_then(|si| {
        HashAlg::from_oid_bytes(si.digest_alg)
            .filter(|h| *h != HashAlg::Sha1)
            .ok_or_else(|| format!("unsupported digest algorithm {}", oid_text(si.digest_alg)))
    });
    note(
        "signed attributes",
        si.clone()
            .and_then(|si| digest_alg.clone().map(|d| (si, d)))
            .and_then(|(si, d)| signed_attributes(token, si, d)),
    );
    // Find the TSA certificate by sid among the token's and the extra certificates.
    let pool: Vec<&[u8]> = token
        .certificates
        .iter()
        .copied()
        .chain(extra.iter().map(Vec::as_slice))
        .collect();
    let signer = si.clone().and_then(|si| {
        pool.iter()
            .filter_map(|c| CertView::parse(c).ok())
            .find(|c| c.issuer == si.sid_issuer && c.serial == si.sid_serial)
            .ok_or_else(|| {
                "TSA certificate not found: request it with certReq (--cert) or pass --untrusted"
                    .to_string()
            })
    });
    let with_signer =
        |f: &dyn Fn(&SignerInfo<'_>, &CertView<'_>) -> Result<String, String>| match (&si, &signer)
        {
            (Ok(si), Ok(c)) => f(si, c),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
    note(
        "ESS signing certificate",
        with_signer(&|si, c| {
            check_signing_certificate(si, c).map(|()| "names the TSA certificate".into())
        }),
    );
    let scheme: Result<&'static str, String> = match (&si, &signer) {
        (Ok(si), Ok(c)) => digest_alg.clone().and_then(|d| {
            verify_signature(c, si.signature_alg, d, &si.signed_attrs_der(), si.signature)
                .map_err(|e| format!("token signature: {e}"))
        }),
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    };
    note(
        "signature",
        scheme
            .clone()
            .map(|s| format!("{s}, by the TSA certificate")),
    );
    note(
        "EKU",
        with_signer(&|_, c| check_eku(c).map(|()| "critical, timeStamping only".into())),
    );
    let chain: Result<usize, String> = match &signer {
        Ok(c) => verify_chain(c, &pool, trusted, tst.gen_time),
        Err(e) => Err(e.clone()),
    };
    note(
        "chain",
        chain
            .clone()
            .map(|n| format!("{n} certificates up to a trusted CA, valid at genTime")),
    );
    if out.iter().any(|c| !c.passed) {
        return (out, None);
    }
    let (Ok(signer), Ok(scheme), Ok(chain)) = (signer, scheme, chain) else {
        return (out, None);
    };
    let accuracy_us = match tst.accuracy {
        None => None,
        Some((s, ms, us)) => {
            let total = s
                .checked_mul(1_000_000)
                .and_then(|v| v.checked_add(ms.checked_mul(1_000)?))
                .and_then(|v| v.checked_add(us));
            if total.is_none() {
                out.push(Check {
                    check: "accuracy",
                    passed: false,
                    detail: "accuracy out of range".into(),
                });
                return (out, None);
            }
            total
        }
    };
    let verified = Verified {
        status: "granted",
        serial: hex(magnitude(tst.serial)),
        gen_time: tst.gen_time_text.to_string(),
        policy: oid_text(tst.policy),
        hash_algorithm: expect.hash.name(),
        digest: hex(tst.digest),
        nonce: tst.nonce.map(|n| hex(magnitude(n))),
        accuracy_us,
        tsa_certificate_subject_sha256: hex(&HashAlg::Sha256.digest(signer.subject)[..8]),
        signature_algorithm: scheme,
        chain_length: chain,
    };
    (out, Some(verified))
}

/// contentType and messageDigest signed attributes (RFC 5652 §5.3, §11).
fn signed_attributes(
    token: &Token<'_>,
    si: &SignerInfo<'_>,
    digest_alg: HashAlg,
) -> Result<String, String> {
    let ct = si
        .attribute(oid::ATTR_CONTENT_TYPE)
        .ok_or("no content-type attribute")?;
    if OidRef::from_der(ct).map(|o| o.0) != Ok(oid::CT_TST_INFO) {
        return Err("content-type attribute is not id-ct-TSTInfo".into());
    }
    let md = si
        .attribute(oid::ATTR_MESSAGE_DIGEST)
        .ok_or("no message-digest attribute")?;
    let md = OctetStringRef::from_der(md)
        .map_err(|_| "bad message-digest")?
        .as_bytes();
    if md != digest_alg.digest(token.tst_info_der).as_slice() {
        return Err("message-digest attribute does not match TSTInfo".into());
    }
    Ok("content-type id-ct-TSTInfo, message-digest matches TSTInfo".into())
}

fn verify_token(
    token: &Token<'_>,
    expect: &Expectation,
    trusted: &[Vec<u8>],
    extra: &[Vec<u8>],
) -> Result<Verified, String> {
    let (checks, verified) = checks(token, expect, trusted, extra);
    match checks.into_iter().find(|c| !c.passed) {
        Some(failed) => Err(failed.detail),
        None => verified.ok_or_else(|| "the token did not verify".into()),
    }
}

/// ESS signing-certificate-v2 (RFC 5035) or v1 (RFC 2634) must name the TSA certificate.
fn check_signing_certificate(si: &SignerInfo<'_>, cert: &CertView<'_>) -> Result<(), String> {
    let (attr, v2) = match si.attribute(oid::ATTR_SIGNING_CERTIFICATE_V2) {
        Some(a) => (a, true),
        None => (
            si.attribute(oid::ATTR_SIGNING_CERTIFICATE)
                .ok_or("no ESS signing-certificate attribute")?,
            false,
        ),
    };
    let bad = |_| "malformed ESS signing-certificate attribute".to_string();
    let (hash, cert_hash) = if v2 {
        let sc = SigningCertificateV2::from_der(attr).map_err(bad)?;
        let id = sc.certs.first().ok_or("an empty ESS certificate list")?;
        let hash = match &id.hash_algorithm {
            None => HashAlg::Sha256,
            Some(a) => {
                HashAlg::from_oid_bytes(a.oid.as_bytes()).ok_or("unsupported ESSCertIDv2 hash")?
            }
        };
        (hash, id.cert_hash.as_bytes().to_vec())
    } else {
        let sc = SigningCertificate::from_der(attr).map_err(bad)?;
        let id = sc.certs.first().ok_or("an empty ESS certificate list")?;
        (HashAlg::Sha1, id.cert_hash.as_bytes().to_vec())
    };
    if cert_hash != hash.digest(cert.raw).as_slice() {
        return Err("ESS signing certificate hash does not match the TSA certificate".into());
    }
    Ok(())
}

fn check_eku(cert: &CertView<'_>) -> Result<(), String> {
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.critical && eku.purposes == [oid::KP_TIME_STAMPING] => Ok(()),
        Ok(Some(eku))
            if eku.critical && eku.purposes.iter().any(|p| p == oid::KP_TIME_STAMPING) =>
        {
            Err("TSA certificate EKU holds purposes besides timeStamping".into())
        }
        _ => Err("TSA certificate lacks a critical extendedKeyUsage with timeStamping".into()),
    }
}

/// May `issuer` have issued a certificate with `below` intermediate CAs under it?
fn may_issue(issuer: &CertView<'_>, below: u64) -> bool {
    match issuer.ca_path_len() {
        Ok(Some(limit)) => limit.is_none_or(|l| below <= l),
        _ => false,
    }
}

/// Checks that `issuer` signed `child` (signature algorithm of the child certificate).
fn signed_by(child: &CertView<'_>, issuer: &CertView<'_>) -> bool {
    verify_signature(
        issuer,
        child.signature_alg,
        HashAlg::Sha256,
        child.tbs,
        child.signature,
    )
    .is_ok()
}

/// Walks from `leaf` to a trusted certificate, checking each signature, that every issuer is
/// a CA allowed to issue (basicConstraints, keyUsage, pathLen), and validity at `at`.
/// Returns the number of certificates in the path, trust anchor included.
fn verify_chain(
    leaf: &CertView<'_>,
    pool: &[&[u8]],
    trusted: &[Vec<u8>],
    at: Timestamp,
) -> Result<usize, String> {
    let mut current = leaf.clone();
    for depth in 1..=8u64 {
        if !current.valid_at(at) {
            return Err(format!(
                "certificate at depth {depth} is not valid at genTime"
            ));
        }
        // Intermediate CAs between the certificate being issued and the leaf.
        let below = depth - 1;
        for t in trusted {
            let Ok(anchor) = CertView::parse(t) else {
                continue;
            };
            if anchor.subject == current.issuer && signed_by(&current, &anchor) {
                if !may_issue(&anchor, below) {
                    return Err("the trusted certificate is not a CA allowed to issue this \
                                chain (basicConstraints / keyUsage / pathLen)"
                        .into());
                }
                return Ok(depth as usize + 1);
            }
        }
        let next = pool
            .iter()
            .filter_map(|c| CertView::parse(c).ok())
            .find(|c| c.subject == current.issuer && c.raw != current.raw && signed_by(&current, c))
            .ok_or("the TSA certificate does not chain to a trusted CA (--ca)")?;
        if !may_issue(&next, below) {
            return Err(
                "a certificate in the chain issued another without being a CA \
                        (basicConstraints / keyUsage / pathLen)"
                    .into(),
            );
        }
        current = next;
    }
    Err("certificate chain too long".into())
}

/// Verifies `signature` over `message` with the key of `signer_cert` under `alg_tlv`
/// (an AlgorithmIdentifier). Returns a name for the scheme.
fn verify_signature(
    signer_cert: &CertView<'_>,
    alg_tlv: &[u8],
    digest: HashAlg,
    message: &[u8],
    signature: &[u8],
) -> Result<&'static str, String> {
    let alg = AlgorithmIdentifierRef::from_der(alg_tlv).map_err(|e| e.to_string())?;
    let alg_oid = alg.algorithm.0;
    let params = alg.parameters.map_or(&[][..], |p| p.value());
    let curve = signer_cert
        .key_params
        .and_then(|p| OidRef::from_der(p).ok())
        .map(|o| o.0);
    let is = |o: &[u8]| alg_oid == o;
    let p256 = curve == Some(oid::SECP256R1);
    let p384 = curve == Some(oid::SECP384R1);
    let contains = |h: &[u8]| params.windows(h.len()).any(|w| w == h);
    let (v, name): (&'static dyn VerificationAlgorithm, &'static str) =
        if is(oid::ECDSA_WITH_SHA256) && p256 {
            (&sig::ECDSA_P256_SHA256_ASN1, "ecdsa-p256-sha256")
        } else if is(oid::ECDSA_WITH_SHA256) && p384 {
            (&sig::ECDSA_P384_SHA256_ASN1, "ecdsa-p384-sha256")
        } else if is(oid::ECDSA_WITH_SHA384) && p384 {
            (&sig::ECDSA_P384_SHA384_ASN1, "ecdsa-p384-sha384")
        } else if is(oid::ECDSA_WITH_SHA384) && p256 {
            (&sig::ECDSA_P256_SHA384_ASN1, "ecdsa-p256-sha384")
        } else if is(oid::ED25519) {
            (&sig::ED25519, "ed25519")
        } else if is(oid::SHA256_WITH_RSA) || (is(oid::RSA_ENCRYPTION) && digest == HashAlg::Sha256)
        {
            (&sig::RSA_PKCS1_2048_8192_SHA256, "rsa-pkcs1-sha256")
        } else if is(oid::SHA384_WITH_RSA) || (is(oid::RSA_ENCRYPTION) && digest == HashAlg::Sha384)
        {
            (&sig::RSA_PKCS1_2048_8192_SHA384, "rsa-pkcs1-sha384")
        } else if is(oid::SHA512_WITH_RSA) || (is(oid::RSA_ENCRYPTION) && digest == HashAlg::Sha512)
        {
            (&sig::RSA_PKCS1_2048_8192_SHA512, "rsa-pkcs1-sha512")
        } else if is(oid::RSASSA_PSS) && contains(oid::SHA384) {
            (&sig::RSA_PSS_2048_8192_SHA384, "rsa-pss-sha384")
        } else if is(oid::RSASSA_PSS) && contains(oid::SHA512) {
            (&sig::RSA_PSS_2048_8192_SHA512, "rsa-pss-sha512")
        } else if is(oid::RSASSA_PSS) {
            (&sig::RSA_PSS_2048_8192_SHA256, "rsa-pss-sha256")
        } else {
            return Err(format!(
                "unsupported signature algorithm {}",
                oid_text(alg_oid)
            ));
        };
    UnparsedPublicKey::new(v, signer_cert.public_key)
        .verify(message, signature)
        .map(|_| name)
        .map_err(|_| "signature does not verify".to_string())
}
