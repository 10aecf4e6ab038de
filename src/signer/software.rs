//! The software signer: a PKCS#8 key file, signed with aws-lc-rs. The embedded default for
//! development; production keys belong in an HSM.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair};

use super::{Certified, Reservation, SignError, TokenSigner};
use crate::error::Error;
use crate::protocol::token::SignatureScheme;
use crate::protocol::Timestamp;

enum Key {
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
}

impl Key {
    fn public_key(&self) -> &[u8] {
        match self {
            Key::Ecdsa(k) => k.public_key().as_ref(),
            Key::Ed25519(k) => k.public_key().as_ref(),
            Key::Rsa(k, _) => k.public_key().as_ref(),
        }
    }
}

/// RSA padding for RSA keys.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum RsaPadding {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    Pkcs1,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt 32.
    Pss,
}

/// `kind = "file"`: a PKCS#8 private key held in this process's memory (ECDSA P-256/P-384,
/// Ed25519, RSA 2048-4096), signed with aws-lc-rs. `reserve` never waits and `sign` takes
/// one signature's CPU time on the calling thread. For development and for keys that need
/// no HSM; the key is read once at start and never written anywhere.
pub struct SoftwareSigner {
    key: Key,
    rng: SystemRandom,
    certified: Certified,
}

/// Parses a PKCS#8 private key (DER) into a key and its signature scheme.
fn parse_key(pkcs8: &[u8], padding: RsaPadding) -> Result<(Key, SignatureScheme), String> {
    if let Ok(k) = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8) {
        return Ok((Key::Ecdsa(k), SignatureScheme::EcdsaP256Sha256));
    }
    if let Ok(k) = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8) {
        return Ok((Key::Ecdsa(k), SignatureScheme::EcdsaP384Sha384));
    }
    if let Ok(k) = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8) {
        return Ok((Key::Ed25519(k), SignatureScheme::Ed25519));
    }
    if let Ok(k) = sig::RsaKeyPair::from_pkcs8(pkcs8) {
        let bits = k.public_modulus_len() * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(format!(
                "RSA keys must be 2048 to 4096 bits, this one has {bits}"
            ));
        }
        return Ok(match padding {
            RsaPadding::Pkcs1 => (
                Key::Rsa(k, &sig::RSA_PKCS1_SHA256),
                SignatureScheme::RsaPkcs1Sha256,
            ),
            RsaPadding::Pss => (
                Key::Rsa(k, &sig::RSA_PSS_SHA256),
                SignatureScheme::RsaPssSha256,
            ),
        });
    }
    Err(
        "not a supported PKCS#8 private key (ECDSA P-256/P-384, Ed25519, RSA 2048-4096); \
         convert with `openssl pkcs8 -topk8 -nocrypt`"
            .into(),
    )
}

/// Reads every PEM block with `label` from `text`.
pub fn pem_blocks(text: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("invalid PEM: {e}"))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == label)
        .map(|b| b.into_contents())
        .collect())
}

/// The CERTIFICATE blocks (DER) of the PEM file at `path`, at least one; the error names
/// the file.
pub fn pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = pem_blocks(&text, "CERTIFICATE").map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

impl SoftwareSigner {
    /// Loads and checks a key and its certificate chain (leaf first).
    pub fn load(
        name: &str,
        key_path: &Path,
        cert_path: &Path,
        padding: RsaPadding,
        now: Timestamp,
    ) -> Result<Self, Error> {
        let fail = |reason: String| Error::Signer {
            name: name.to_string(),
            reason,
        };
        let key_pem = std::fs::read(key_path).map_err(|e| Error::io(key_path, e))?;
        let keys = pem_blocks(&key_pem, "PRIVATE KEY")
            .map_err(|e| fail(format!("{}: {e}", key_path.display())))?;
        let [pkcs8] = keys.as_slice() else {
            return Err(fail(format!(
                "{}: expected exactly one `PRIVATE KEY` (PKCS#8) PEM block, found {}",
                key_path.display(),
                keys.len()
            )));
        };
        let (key, scheme) =
            parse_key(pkcs8, padding).map_err(|e| fail(format!("{}: {e}", key_path.display())))?;
        let cert_pem = std::fs::read(cert_path).map_err(|e| Error::io(cert_path, e))?;
        let chain = pem_blocks(&cert_pem, "CERTIFICATE")
            .map_err(|e| fail(format!("{}: {e}", cert_path.display())))?;
        Self::from_parts(key, scheme, chain, now)
            .map_err(|e| fail(format!("{}: {e}", cert_path.display())))
    }

    /// Builds a signer from a PKCS#8 DER key and a DER chain (tests and benches).
    pub fn from_der(
        pkcs8: &[u8],
        chain: Vec<Vec<u8>>,
        padding: RsaPadding,
        now: Timestamp,
    ) -> Result<Self, String> {
        let (key, scheme) = parse_key(pkcs8, padding)?;
        Self::from_parts(key, scheme, chain, now)
    }

    fn from_parts(
        key: Key,
        scheme: SignatureScheme,
        chain: Vec<Vec<u8>>,
        now: Timestamp,
    ) -> Result<Self, String> {
        let certified = Certified::new(scheme, chain, key.public_key(), now)?;
        Ok(SoftwareSigner {
            key,
            rng: SystemRandom::new(),
            certified,
        })
    }
}

impl TokenSigner for SoftwareSigner {
    fn certified(&self) -> &Certified {
        &self.certified
    }

    fn reserve(&self) -> Result<Reservation, SignError> {
        Ok(Reservation::unpooled())
    }

    fn sign(&self, _reservation: Reservation, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.key {
            Key::Ecdsa(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Failed),
            Key::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Key::Rsa(k, enc) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(*enc, &self.rng, message, &mut out)
                    .map_err(|_| SignError::Failed)?;
                Ok(out)
            }
        }
    }
}
