//! `kind = "pkcs11"`: keys in an HSM, signed through PKCS#11 (cryptoki) over a pool of
//! sessions. WORK IN PROGRESS (issue 5): ECDSA P-256/P-384, RSA (PKCS#1 v1.5, PSS) and
//! Ed25519; no fault recovery yet.
//!
//! Sessions are `Send` but not `Sync`: each sits behind its own mutex, and a bounded
//! channel of free session indexes hands them out. `reserve` takes an index (waiting a
//! bounded time, so overload is refused early), `sign` uses that session and gives the index
//! back.

use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use super::checks::check_tsa_certificate;
use super::{Reservation, SignError, TokenSigner};
use crate::policy::filters::timestamp_token::EssCertId;
use crate::protocol::cert::CertView;
use crate::protocol::der::{self, tag};
use crate::protocol::token::{SignatureScheme, SignerTemplate};
use crate::protocol::{HashAlg, Timestamp};

/// Longest `reserve` waits for a free session.
const RESERVE_WAIT: Duration = Duration::from_secs(2);

/// Where the key is.
pub struct Pkcs11Config<'a> {
    pub module: &'a std::path::Path,
    /// RSA keys: PKCS#1 v1.5 or PSS.
    pub rsa_padding: super::software::RsaPadding,
    pub token_label: &'a str,
    pub pin: &'a str,
    pub key_label: &'a str,
    pub sessions: usize,
}

pub struct Pkcs11Signer {
    _ctx: Pkcs11,
    sessions: Vec<Mutex<(Session, ObjectHandle)>>,
    free_tx: Sender<usize>,
    free_rx: Receiver<usize>,
    template: SignerTemplate,
    chain: Vec<Vec<u8>>,
    validity: (Timestamp, Timestamp),
    key_id: String,
    scheme: SignatureScheme,
}

fn p11(e: cryptoki::error::Error) -> String {
    e.to_string()
}

/// The EC point from CKA_EC_POINT: an OCTET STRING around the uncompressed point.
fn ec_point(raw: &[u8]) -> Vec<u8> {
    match der::read_single(raw, tag::OCTET_STRING) {
        Ok(t) => t.value.to_vec(),
        Err(_) => raw.to_vec(),
    }
}

enum PublicKey {
    /// The uncompressed point.
    Ec(Vec<u8>),
    /// RSAPublicKey DER (what a certificate's subjectPublicKey holds).
    Rsa(Vec<u8>),
}

/// RSAPublicKey (RFC 8017 §A.1.1) from the token's modulus and exponent (unsigned
/// big-endian).
pub fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let v = &v[v
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(v.len().saturating_sub(1))..];
        let mut out = Vec::with_capacity(v.len() + 1);
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            out.push(0);
        }
        out.extend_from_slice(v);
        der::tlv(tag::INTEGER, &out)
    };
    der::tlv_of(tag::SEQUENCE, &[&int(n), &int(e)])
}

/// r‖s (each `n` bytes) as a DER ECDSA-Sig-Value (RFC 5480 §2.2.3 via RFC 3279).
fn ecdsa_sig_value(raw: &[u8]) -> Result<Vec<u8>, SignError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(SignError::Failed);
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 8);
    for part in [r, s] {
        let part = &part[part.iter().position(|b| *b != 0).unwrap_or(part.len() - 1)..];
        let mut int = Vec::with_capacity(part.len() + 1);
        if part[0] & 0x80 != 0 {
            int.push(0);
        }
        int.extend_from_slice(part);
        body.extend_from_slice(&der::tlv(tag::INTEGER, &int));
    }
    Ok(der::tlv(tag::SEQUENCE, &body))
}

impl Pkcs11Signer {
    pub fn open(c: &Pkcs11Config<'_>, chain: Vec<Vec<u8>>, now: Timestamp) -> Result<Self, String> {
        let ctx = Pkcs11::new(c.module).map_err(p11)?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(p11)?;
        let slot = ctx
            .get_slots_with_token()
            .map_err(p11)?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label().trim_end() == c.token_label)
            })
            .ok_or_else(|| format!("no token labelled `{}`", c.token_label))?;
        let pin = AuthPin::new(c.pin.into());
        let mut sessions = Vec::new();
        let mut public = None;
        for i in 0..c.sessions.max(1) {
            let session = ctx.open_ro_session(slot).map_err(p11)?;
            if i == 0 {
                // One login serves every session of the application (PKCS#11 §5.6).
                session.login(UserType::User, Some(&pin)).map_err(p11)?;
            }
            let key = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(c.key_label.as_bytes().to_vec()),
                ])
                .map_err(p11)?
                .into_iter()
                .next()
                .ok_or_else(|| format!("no private key labelled `{}`", c.key_label))?;
            if public.is_none() {
                let pubkey = session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PUBLIC_KEY),
                        Attribute::Label(c.key_label.as_bytes().to_vec()),
                    ])
                    .map_err(p11)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("no public key labelled `{}`", c.key_label))?;
                let attrs = session
                    .get_attributes(
                        pubkey,
                        &[
                            AttributeType::EcPoint,
                            AttributeType::Modulus,
                            AttributeType::PublicExponent,
                        ],
                    )
                    .map_err(p11)?;
                let (mut point, mut n, mut e) = (None, None, None);
                for a in attrs {
                    match a {
                        Attribute::EcPoint(p) => point = Some(ec_point(&p)),
                        Attribute::Modulus(m) => n = Some(m),
                        Attribute::PublicExponent(x) => e = Some(x),
                        _ => {}
                    }
                }
                public = match (point, n, e) {
                    (Some(p), _, _) => Some(PublicKey::Ec(p)),
                    (None, Some(n), Some(e)) => Some(PublicKey::Rsa(rsa_public_key(&n, &e))),
                    _ => None,
                };
            }
            sessions.push(Mutex::new((session, key)));
        }
        let public = public.ok_or("the key is neither an EC nor an RSA key (EdDSA: to do)")?;
        let (scheme, public) = match public {
            PublicKey::Ec(p) if p.len() == 32 => (SignatureScheme::Ed25519, p),
            PublicKey::Ec(p) if p.len() == 65 => (SignatureScheme::EcdsaP256Sha256, p),
            PublicKey::Ec(p) if p.len() == 97 => (SignatureScheme::EcdsaP384Sha384, p),
            PublicKey::Ec(p) => return Err(format!("unsupported EC point of {} bytes", p.len())),
            PublicKey::Rsa(k) => match c.rsa_padding {
                super::software::RsaPadding::Pkcs1 => (SignatureScheme::RsaPkcs1Sha256, k),
                super::software::RsaPadding::Pss => (SignatureScheme::RsaPssSha256, k),
            },
        };
        let leaf_der = chain.first().ok_or("no certificate")?;
        let leaf = CertView::parse(leaf_der).map_err(|_| "unparseable certificate")?;
        check_tsa_certificate(&leaf, &public, now).map_err(|e| e.to_string())?;
        let validity = (leaf.not_before, leaf.not_after);
        let key_id = HashAlg::Sha256.digest(leaf.spki)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let template = SignerTemplate::new(scheme, &chain, EssCertId::V2(HashAlg::Sha256))
            .map_err(|_| "unparseable certificate")?;
        let (free_tx, free_rx) = crossbeam_channel::bounded(sessions.len());
        for i in 0..sessions.len() {
            let _ = free_tx.send(i);
        }
        Ok(Pkcs11Signer {
            _ctx: ctx,
            sessions,
            free_tx,
            free_rx,
            template,
            chain,
            validity,
            key_id,
            scheme,
        })
    }
}

impl TokenSigner for Pkcs11Signer {
    fn template(&self) -> &SignerTemplate {
        &self.template
    }

    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn validity(&self) -> (Timestamp, Timestamp) {
        self.validity
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn reserve(&self) -> Result<Reservation, SignError> {
        self.free_rx
            .recv_timeout(RESERVE_WAIT)
            .map(|slot| Reservation { slot })
            .map_err(|_| SignError::Unavailable)
    }

    fn sign(&self, reservation: Reservation, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let slot = reservation.slot;
        let result = (|| {
            let guard = self.sessions.get(slot)?.lock().ok()?;
            let (session, key) = &*guard;
            match self.scheme {
                SignatureScheme::RsaPkcs1Sha256 => {
                    session.sign(&Mechanism::Sha256RsaPkcs, *key, message).ok()
                }
                SignatureScheme::RsaPssSha256 => {
                    // RFC 4056: SHA-256, MGF1 with SHA-256, 32-byte salt.
                    let params = PkcsPssParams {
                        hash_alg: MechanismType::SHA256,
                        mgf: PkcsMgfType::MGF1_SHA256,
                        s_len: 32.into(),
                    };
                    session
                        .sign(&Mechanism::Sha256RsaPkcsPss(params), *key, message)
                        .ok()
                }
                SignatureScheme::Ed25519 => {
                    // Pure Ed25519 over the signed attributes (RFC 8419).
                    let pure = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                    session.sign(&pure, *key, message).ok()
                }
                _ => {
                    // The token signs the digest (CKM_ECDSA): hashing here works with
                    // tokens that lack the combined mechanisms.
                    let digest = self.scheme.digest().digest(message);
                    let raw = session.sign(&Mechanism::Ecdsa, *key, &digest).ok()?;
                    ecdsa_sig_value(&raw).ok()
                }
            }
        })();
        let _ = self.free_tx.send(slot);
        result.ok_or(SignError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[63] = 1; // s is 1
        let der = ecdsa_sig_value(&raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(ecdsa_sig_value(&[1, 2, 3]).is_err());
    }
}
