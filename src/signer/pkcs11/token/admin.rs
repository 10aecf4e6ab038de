//! What `stampd hsm` does on a token beyond the signer's needs: generate the TSA key pair,
//! and list slots, tokens and their objects.

use std::path::Path;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;

use super::keys::{find_key, find_one, key_protection, KeyPair, ED25519, PRIME256V1, SECP384R1};
use super::p11;
use super::registry::module;
use super::session::Token;
use crate::pki::KeyType;

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
    // A TSA key signs and does nothing else (ETSI EN 319 421 §7.6: the key is used only
    // for timestamps); some tokens default decrypt/unwrap/derive to true.
    private.extend([
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    let mut public = common.to_vec();
    public.extend([
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
    ]);
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
    let (_, private_handle) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| format!("generating the key pair: {}", p11(e)))?;
    let protected = key_protection(session, private_handle)?;
    if protected != [true, false, true, true] {
        return Err(format!(
            "the token generated key `{label}` without the protection asked for \
             (sensitive, not extractable): {protected:?}; remove it"
        ));
    }
    find_key(session, label)
}

/// One object on a token, for `stampd hsm list`.
#[derive(Debug, serde::Serialize)]
pub struct ObjectInfo {
    /// `private-key`, `public-key`, `certificate`, or the module's name for another class.
    pub class: String,
    /// CKA_LABEL (invalid UTF-8 replaced).
    pub label: String,
    /// CKA_ID, hex.
    pub id: String,
    /// CKA_KEY_TYPE as cryptoki names it (e.g. `CKK_EC`), for keys only.
    pub key_type: Option<String>,
}

/// A slot and its token, for `stampd hsm list`.
#[derive(Debug, serde::Serialize)]
pub struct SlotInfo {
    /// The module's slot id.
    pub slot: u64,
    /// The slot description, trailing blanks trimmed.
    pub description: String,
    /// The token in the slot; `None` when the slot is empty.
    pub token: Option<TokenInfo>,
}

/// A token in a slot, for `stampd hsm list` (the `--json` keys are these field names).
#[derive(Debug, serde::Serialize)]
pub struct TokenInfo {
    /// The token label (what `token_label` names), trailing blanks trimmed.
    pub label: String,
    /// The manufacturer id, trimmed.
    pub manufacturer: String,
    /// The model, trimmed.
    pub model: String,
    /// The token's serial number, trimmed.
    pub serial: String,
    /// Whether the token has been initialised (C_InitToken); an uninitialised one lists no
    /// objects.
    pub initialized: bool,
    /// Objects visible in a session: public ones, and private ones when logged in.
    pub objects: Vec<ObjectInfo>,
    /// Why the objects could not be listed (e.g. a wrong PIN).
    pub error: Option<String>,
}

/// Every slot of `module` (only the one holding `token_label`, when given) and the
/// objects of each token. `pin` logs in to `token_label`'s token, so its private keys show;
/// a token whose objects cannot be read says why in `error`.
pub fn list(
    module_path: &Path,
    token_label: Option<&str>,
    pin: Option<String>,
) -> Result<Vec<SlotInfo>, String> {
    let module = module(module_path)?;
    let mut out = Vec::new();
    let slots = {
        let _gate = module.enter();
        module.ctx.get_all_slots().map_err(p11)?
    };
    for slot in slots {
        let (info, token_info) = {
            let _gate = module.enter();
            let info = module.ctx.get_slot_info(slot).map_err(p11)?;
            let t = if info.token_present() {
                Some(module.ctx.get_token_info(slot).map_err(p11)?)
            } else {
                None
            };
            (info, t)
        };
        let token = match token_info {
            Some(t) => {
                let label = t.label().trim_end().to_string();
                if token_label.is_some_and(|l| l != label) {
                    continue;
                }
                let (objects, error) = if t.token_initialized() {
                    match Token::open(module_path, &label, pin.clone())
                        .and_then(|token| token.session(false))
                        .and_then(|session| objects(&session))
                    {
                        Ok(o) => (o, None),
                        Err(e) => (Vec::new(), Some(e)),
                    }
                } else {
                    (Vec::new(), None)
                };
                Some(TokenInfo {
                    label,
                    manufacturer: t.manufacturer_id().trim_end().to_string(),
                    model: t.model().trim_end().to_string(),
                    serial: t.serial_number().trim_end().to_string(),
                    initialized: t.token_initialized(),
                    objects,
                    error,
                })
            }
            None if token_label.is_some() => continue,
            None => None,
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
            id: crate::protocol::hex::hex(&id),
            key_type,
        });
    }
    out.sort_by(|a, b| (&a.label, &a.class, &a.id).cmp(&(&b.label, &b.class, &b.id)));
    Ok(out)
}
