//! The key pair on a token, found by label: its public half in certificate form, its
//! protection attributes, and signing with it in each signature scheme.

use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, KeyType as P11KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;

use super::p11;
use crate::pki::KeyType;
use crate::protocol::keys::{ecdsa_sig_value, rsa_public_key};
use crate::protocol::token::SignatureScheme;

/// DER of the namedCurve OIDs (RFC 5480 §2.1.1.1) and id-Ed25519 (RFC 8410 §3), as
/// CKA_EC_PARAMS holds them.
pub(super) const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(super) const SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub(super) const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// The printable form some tokens (SoftHSM2 among them) also accept for Ed25519.
const ED25519_PRINTABLE: &[u8] = b"\x13\x0cedwards25519";

/// A key pair's public half, in the form a certificate holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The key's type, from CKA_KEY_TYPE and the curve in CKA_EC_PARAMS or the RSA modulus
    /// length.
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
    /// The private key's handle, valid in the session it was found in.
    pub private: ObjectHandle,
    /// The public half, read from the public key object.
    pub public: PublicKey,
    /// CKA_ID shared by the key pair and its certificates.
    pub id: Vec<u8>,
}

pub(super) fn find_one(
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
                        crate::protocol::hex::hex(other)
                    ))
                }
            };
            let bits = public_point(&point, key_type).ok_or_else(|| {
                format!("key `{label}`: CKA_EC_POINT is not a point of its curve")
            })?;
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

/// The public point from CKA_EC_POINT, which PKCS#11 v2.40 §2.3.3 defines as a DER OCTET
/// STRING around it; some tokens give the bare point. An uncompressed EC point starts with
/// 04, the OCTET STRING tag, so the wrapped form is taken only when its content has
/// exactly the curve's length (and the bare form likewise).
fn public_point(raw: &[u8], key_type: KeyType) -> Option<Vec<u8>> {
    let fits = |p: &[u8]| match key_type {
        KeyType::P256 => p.len() == 65 && p[0] == 4,
        KeyType::P384 => p.len() == 97 && p[0] == 4,
        KeyType::Ed25519 => p.len() == 32,
        KeyType::Rsa2048 | KeyType::Rsa3072 => false,
    };
    // CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 3.0 §2.3.6); some
    // tokens store the bare point.
    use ::der::Decode;
    match ::der::asn1::OctetStringRef::from_der(raw).map(|o| o.as_bytes()) {
        Ok(point) if fits(point) => Some(point.to_vec()),
        _ if fits(raw) => Some(raw.to_vec()),
        _ => None,
    }
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

/// CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE of a
/// private key: `[true, false, true, true]` for a key that never left the token.
pub fn key_protection(session: &Session, key: ObjectHandle) -> Result<[bool; 4], String> {
    let mut flags = [false, true, false, false];
    for a in session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
            ],
        )
        .map_err(p11)?
    {
        match a {
            Attribute::Sensitive(v) => flags[0] = v,
            Attribute::Extractable(v) => flags[1] = v,
            Attribute::AlwaysSensitive(v) => flags[2] = v,
            Attribute::NeverExtractable(v) => flags[3] = v,
            _ => {}
        }
    }
    Ok(flags)
}
