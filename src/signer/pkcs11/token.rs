//! One PKCS#11 token and the operations stampd needs on it: open a logged-in session, find
//! a key pair and its public key, sign, generate a key pair, store and read certificates,
//! list what is there. The signer's session pool and `stampd hsm` both go through here.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType as P11KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::pki::KeyType;
use crate::protocol::der::{self, tag};
use crate::protocol::token::SignatureScheme;

/// DER of the namedCurve OIDs (RFC 5480 §2.1.1.1) and id-Ed25519 (RFC 8410 §3), as
/// CKA_EC_PARAMS holds them.
const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// The printable form some tokens (SoftHSM2 among them) also accept for Ed25519.
const ED25519_PRINTABLE: &[u8] = b"\x13\x0cedwards25519";

/// A PKCS#11 error as one short line: `C_Login failed: PinIncorrect`.
pub fn p11(e: P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("C_{function:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}

/// A token, found by label, with the user PIN (if one was given) for its sessions.
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pin: Option<std::sync::Arc<AuthPin>>,
}

/// Loads `module` and initialises it. A module that another part of this process
/// initialised already (a second signer on the same HSM) is used as it is.
pub fn load(module: &Path) -> Result<Pkcs11, String> {
    let ctx = Pkcs11::new(module).map_err(|e| format!("{}: {e}", module.display()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(format!("{}: C_Initialize: {e}", module.display())),
    }
}

/// The slot holding the token labelled `label`.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, String> {
    ctx.get_slots_with_token()
        .map_err(p11)?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == label)
        })
        .ok_or_else(|| format!("no token labelled `{label}`"))
}

impl Token {
    pub fn open(module: &Path, label: &str, pin: Option<String>) -> Result<Token, String> {
        let ctx = load(module)?;
        let slot = find_slot(&ctx, label).map_err(|e| format!("{e} in {}", module.display()))?;
        Ok(Token {
            ctx,
            slot,
            label: label.to_string(),
            pin: pin.map(|p| std::sync::Arc::new(AuthPin::new(p.into()))),
        })
    }

    /// Finalizes and initializes the module again, then finds the token anew: the way
    /// back when a token was removed and reinserted, which some modules (SoftHSM2 among
    /// them) only notice on C_Initialize. Every session of the module in this process is
    /// gone afterwards, so the caller does it only when none of its sessions works.
    pub fn reinitialize(&self) -> Result<Token, String> {
        // Not initialized (a previous attempt failed) is fine here.
        let _ = self.ctx.clone().finalize();
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(p11(e)),
        }
        Ok(Token {
            ctx: self.ctx.clone(),
            slot: find_slot(&self.ctx, &self.label)?,
            label: self.label.clone(),
            pin: self.pin.clone(),
        })
    }

    /// A new session, logged in as the user when a PIN was given. The login state belongs
    /// to the application, not the session (PKCS#11 v2.40 §5.6): after the first login
    /// the token answers "already logged in", which is success here.
    pub fn session(&self, rw: bool) -> Result<Session, P11Error> {
        let session = if rw {
            self.ctx.open_rw_session(self.slot)?
        } else {
            self.ctx.open_ro_session(self.slot)?
        };
        if let Some(pin) = &self.pin {
            match session.login(UserType::User, Some(&**pin)) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(session)
    }
}

/// A key pair's public half, in the form a certificate holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: KeyType,
    /// The subjectPublicKey BIT STRING contents: an uncompressed EC point, the Ed25519 key
    /// or an RSAPublicKey (DER).
    pub bits: Vec<u8>,
}

impl PublicKey {
    /// The signature scheme this key signs tokens with.
    pub fn scheme(&self, rsa_padding: crate::signer::software::RsaPadding) -> SignatureScheme {
        use crate::signer::software::RsaPadding;
        match (self.key_type, rsa_padding) {
            (KeyType::P256, _) => SignatureScheme::EcdsaP256Sha256,
            (KeyType::P384, _) => SignatureScheme::EcdsaP384Sha384,
            (KeyType::Ed25519, _) => SignatureScheme::Ed25519,
            (KeyType::Rsa2048 | KeyType::Rsa3072, RsaPadding::Pkcs1) => {
                SignatureScheme::RsaPkcs1Sha256
            }
            (KeyType::Rsa2048 | KeyType::Rsa3072, RsaPadding::Pss) => SignatureScheme::RsaPssSha256,
        }
    }
}

impl From<&PublicKey> for crate::pki::ExternalKey {
    fn from(k: &PublicKey) -> Self {
        crate::pki::ExternalKey {
            point: k.bits.clone(),
            key_type: k.key_type,
        }
    }
}

/// The handles of a key pair on the token, found by label.
pub struct KeyPair {
    pub private: ObjectHandle,
    pub public: PublicKey,
    /// CKA_ID shared by the key pair and its certificates.
    pub id: Vec<u8>,
}

fn find_one(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Option<ObjectHandle>, String> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(p11)?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(format!(
            "{} objects of class {class} are labelled `{label}`: labels must be unique",
            found.len()
        )),
    }
}

/// The private key labelled `label` and its public key.
pub fn find_key(session: &Session, label: &str) -> Result<KeyPair, String> {
    let private = find_one(session, ObjectClass::PRIVATE_KEY, label)?.ok_or_else(|| {
        format!("no private key labelled `{label}` (is the PIN right and the key generated?)")
    })?;
    let public = find_one(session, ObjectClass::PUBLIC_KEY, label)?
        .ok_or_else(|| format!("no public key labelled `{label}` next to the private key"))?;
    let attrs = session
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::Id,
                AttributeType::EcParams,
                AttributeType::EcPoint,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .map_err(p11)?;
    let (mut kind, mut id, mut params, mut point, mut n, mut e) =
        (None, Vec::new(), None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => kind = Some(k),
            Attribute::Id(v) => id = v,
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => e = Some(x),
            _ => {}
        }
    }
    let public = match (kind, params, point, n, e) {
        (Some(k), Some(params), Some(point), _, _)
            if k == P11KeyType::EC || k == P11KeyType::EC_EDWARDS =>
        {
            let key_type = match params.as_slice() {
                PRIME256V1 => KeyType::P256,
                SECP384R1 => KeyType::P384,
                ED25519 | ED25519_PRINTABLE => KeyType::Ed25519,
                other => {
                    return Err(format!(
                        "key `{label}`: unsupported curve (CKA_EC_PARAMS {})",
                        crate::client::verify::hex(other)
                    ))
                }
            };
            // CKA_EC_POINT is an OCTET STRING around the point (PKCS#11 v2.40 §2.3.3);
            // some tokens give the bare point.
            let bits = match der::read_single(&point, tag::OCTET_STRING) {
                Ok(t) => t.value.to_vec(),
                Err(_) => point,
            };
            PublicKey { key_type, bits }
        }
        (Some(k), _, _, Some(n), Some(e)) if k == P11KeyType::RSA => {
            let key_type = match n.iter().skip_while(|b| **b == 0).count() * 8 {
                2048 => KeyType::Rsa2048,
                3072 => KeyType::Rsa3072,
                bits => return Err(format!("key `{label}`: RSA-{bits} is not supported")),
            };
            PublicKey {
                key_type,
                bits: rsa_public_key(&n, &e),
            }
        }
        _ => return Err(format!("key `{label}`: not an EC, EdDSA or RSA key")),
    };
    Ok(KeyPair {
        private,
        public,
        id,
    })
}

/// RSAPublicKey (RFC 8017 §A.1.1) from the token's modulus and exponent (unsigned
/// big-endian).
pub fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    der::tlv_of(tag::SEQUENCE, &[&unsigned_int(n), &unsigned_int(e)])
}

/// An unsigned big-endian number as a DER INTEGER: no redundant leading zeros, one zero
/// added when the top bit is set.
fn unsigned_int(v: &[u8]) -> Vec<u8> {
    let v = &v[v
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(v.len().saturating_sub(1))..];
    let mut out = Vec::with_capacity(v.len() + 1);
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(v);
    der::tlv(tag::INTEGER, &out)
}

/// r‖s (each half the length) as a DER ECDSA-Sig-Value (RFC 5480 §2.2.3 via RFC 3279).
fn ecdsa_sig_value(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(der::tlv_of(
        tag::SEQUENCE,
        &[&unsigned_int(r), &unsigned_int(s)],
    ))
}

/// Signs `message` with the private key: the signature as CMS carries it.
pub fn sign(
    session: &Session,
    key: ObjectHandle,
    scheme: SignatureScheme,
    message: &[u8],
) -> Result<Vec<u8>, P11Error> {
    match scheme {
        SignatureScheme::RsaPkcs1Sha256 => session.sign(&Mechanism::Sha256RsaPkcs, key, message),
        SignatureScheme::RsaPssSha256 => {
            // RFC 4056: SHA-256, MGF1 with SHA-256, 32-byte salt.
            let params = PkcsPssParams {
                hash_alg: MechanismType::SHA256,
                mgf: PkcsMgfType::MGF1_SHA256,
                s_len: 32.into(),
            };
            session.sign(&Mechanism::Sha256RsaPkcsPss(params), key, message)
        }
        SignatureScheme::Ed25519 => {
            // Pure Ed25519 over the whole message (RFC 8419).
            let pure = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
            session.sign(&pure, key, message)
        }
        SignatureScheme::EcdsaP256Sha256 | SignatureScheme::EcdsaP384Sha384 => {
            // The token signs the digest (CKM_ECDSA): hashing here works with tokens that
            // lack the combined mechanisms, and sends less over a network HSM's wire.
            let digest = scheme.digest().digest(message);
            let raw = session.sign(&Mechanism::Ecdsa, key, &digest)?;
            ecdsa_sig_value(&raw).ok_or(P11Error::Pkcs11(
                RvError::SignatureInvalid,
                cryptoki::context::Function::Sign,
            ))
        }
    }
}

/// Generates a key pair labelled `label` on the token: private, sensitive, never
/// extractable. Refuses a label already in use.
pub fn generate(session: &Session, label: &str, key_type: KeyType) -> Result<KeyPair, String> {
    if find_one(session, ObjectClass::PRIVATE_KEY, label)?.is_some()
        || find_one(session, ObjectClass::PUBLIC_KEY, label)?.is_some()
    {
        return Err(format!(
            "a key labelled `{label}` already exists on the token"
        ));
    }
    let mut id = vec![0u8; 16];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| "no randomness for the key id")?;
    let common = [
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id),
    ];
    let mut private = common.to_vec();
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let mut public = common.to_vec();
    public.push(Attribute::Verify(true));
    let mechanism = match key_type {
        KeyType::Rsa2048 | KeyType::Rsa3072 => {
            let bits: u64 = if key_type == KeyType::Rsa2048 {
                2048
            } else {
                3072
            };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![1, 0, 1]));
            Mechanism::RsaPkcsKeyPairGen
        }
        KeyType::Ed25519 => {
            public.push(Attribute::EcParams(ED25519.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
        KeyType::P256 | KeyType::P384 => {
            let curve = if key_type == KeyType::P256 {
                PRIME256V1
            } else {
                SECP384R1
            };
            public.push(Attribute::EcParams(curve.to_vec()));
            Mechanism::EccKeyPairGen
        }
    };
    session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| format!("generating the key pair: {e}"))?;
    find_key(session, label)
}

/// Stores `chain` (leaf first) as certificate objects labelled like the key: the leaf with
/// the key's CKA_ID, the rest with that id and one more byte (their position), so they read
/// back in order. Certificates already stored under the label are replaced.
pub fn store_certificates(
    session: &Session,
    label: &str,
    key: &KeyPair,
    chain: &[Vec<u8>],
) -> Result<(), String> {
    let old = certificate_objects(session, label)?;
    for (i, der_cert) in chain.iter().enumerate() {
        let cert = crate::protocol::cert::CertView::parse(der_cert)
            .map_err(|_| format!("certificate {} is not DER X.509", i + 1))?;
        let mut id = key.id.clone();
        if i > 0 {
            id.push(u8::try_from(i).map_err(|_| "too many certificates")?);
        }
        session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
                Attribute::Subject(cert.subject.to_vec()),
                Attribute::Issuer(cert.issuer.to_vec()),
                Attribute::Value(der_cert.clone()),
            ])
            .map_err(|e| format!("storing certificate {}: {e}", i + 1))?;
    }
    // Removed only after the new ones are stored: a failure above leaves the old chain.
    for (_, handle, _) in old {
        session.destroy_object(handle).map_err(p11)?;
    }
    Ok(())
}

/// A certificate object: CKA_ID, handle, DER.
type StoredCert = (Vec<u8>, ObjectHandle, Vec<u8>);

/// The certificates labelled `label`.
fn certificate_objects(session: &Session, label: &str) -> Result<Vec<StoredCert>, String> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(p11)?;
    let mut out = Vec::new();
    for h in handles {
        let (mut id, mut value) = (Vec::new(), Vec::new());
        for a in session
            .get_attributes(h, &[AttributeType::Id, AttributeType::Value])
            .map_err(p11)?
        {
            match a {
                Attribute::Id(v) => id = v,
                Attribute::Value(v) => value = v,
                _ => {}
            }
        }
        out.push((id, h, value));
    }
    Ok(out)
}

/// The certificate chain stored with the key (see [`store_certificates`]), leaf first.
pub fn read_certificates(session: &Session, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = certificate_objects(session, label)?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate labelled `{label}` on the token (store one with `stampd hsm import-cert`, or set `cert`)"
        ));
    }
    certs.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    Ok(certs.into_iter().map(|(_, _, der)| der).collect())
}

/// One object on a token, for `stampd hsm list`.
#[derive(Debug, serde::Serialize)]
pub struct ObjectInfo {
    pub class: String,
    pub label: String,
    pub id: String,
    pub key_type: Option<String>,
}

/// A slot and its token, for `stampd hsm list`.
#[derive(Debug, serde::Serialize)]
pub struct SlotInfo {
    pub slot: u64,
    pub description: String,
    pub token: Option<TokenInfo>,
}

#[derive(Debug, serde::Serialize)]
pub struct TokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub initialized: bool,
    /// Objects visible in a session: public ones, and private ones when logged in.
    pub objects: Vec<ObjectInfo>,
}

/// Every slot of `module`; tokens' objects are listed through `pin_for` (the PIN for a
/// token label, if one applies).
pub fn list(
    module: &Path,
    pin_for: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<SlotInfo>, String> {
    let ctx = load(module)?;
    let mut out = Vec::new();
    for slot in ctx.get_all_slots().map_err(p11)? {
        let info = ctx.get_slot_info(slot).map_err(p11)?;
        let token = if info.token_present() {
            let t = ctx.get_token_info(slot).map_err(p11)?;
            let label = t.label().trim_end().to_string();
            let objects = if t.token_initialized() {
                let token = Token {
                    ctx: ctx.clone(),
                    slot,
                    label: label.clone(),
                    pin: pin_for(&label).map(|p| std::sync::Arc::new(AuthPin::new(p.into()))),
                };
                let session = token.session(false).map_err(p11)?;
                objects(&session)?
            } else {
                Vec::new()
            };
            Some(TokenInfo {
                label,
                manufacturer: t.manufacturer_id().trim_end().to_string(),
                model: t.model().trim_end().to_string(),
                serial: t.serial_number().trim_end().to_string(),
                initialized: t.token_initialized(),
                objects,
            })
        } else {
            None
        };
        out.push(SlotInfo {
            slot: slot.id(),
            description: info.slot_description().trim_end().to_string(),
            token,
        });
    }
    Ok(out)
}

fn objects(session: &Session) -> Result<Vec<ObjectInfo>, String> {
    let mut out = Vec::new();
    for h in session.find_objects(&[]).map_err(p11)? {
        let (mut class, mut label, mut id, mut key_type) = (None, String::new(), Vec::new(), None);
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Class,
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::KeyType,
                ],
            )
            .map_err(p11)?;
        for a in attrs {
            match a {
                Attribute::Class(c) => class = Some(c),
                Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                Attribute::Id(v) => id = v,
                Attribute::KeyType(k) => key_type = Some(k.to_string()),
                _ => {}
            }
        }
        let class = match class {
            Some(c) if c == ObjectClass::PRIVATE_KEY => "private-key".to_string(),
            Some(c) if c == ObjectClass::PUBLIC_KEY => "public-key".to_string(),
            Some(c) if c == ObjectClass::CERTIFICATE => "certificate".to_string(),
            Some(c) => c.to_string(),
            None => "unknown".to_string(),
        };
        out.push(ObjectInfo {
            class,
            label,
            id: crate::client::verify::hex(&id),
            key_type,
        });
    }
    out.sort_by(|a, b| (&a.label, &a.class, &a.id).cmp(&(&b.label, &b.class, &b.id)));
    Ok(out)
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
        assert!(ecdsa_sig_value(&[1, 2, 3]).is_none());
        assert!(ecdsa_sig_value(&[]).is_none());
    }

    #[test]
    fn rsa_public_keys_are_minimal_unsigned_integers() {
        // n = 0x00 0x80..., e = 65537: n keeps one zero for its top bit, e has none.
        let der = rsa_public_key(&[0, 0x80, 1], &[0, 1, 0, 1]);
        assert_eq!(
            der,
            [0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]
        );
    }
}
