//! One PKCS#11 token and the operations stampd needs on it: open a logged-in session, find
//! a key pair and its public key, sign, generate a key pair, store and read certificates,
//! list what is there. The signer's session pool and `stampd hsm` both go through here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

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

/// One PKCS#11 module, loaded and initialised once per process and shared by every
/// signer and command that uses it (C_Initialize and C_Finalize act on the whole
/// application, PKCS#11 v2.40 §5.4).
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
    /// Bumped by each re-initialisation. Sessions of an older generation are dead and their
    /// handles may be reused by the module: they are never used or closed again.
    generation: AtomicU64,
    /// Held shared around every call into the module that uses a session, exclusively by
    /// re-initialisation, so C_Finalize never runs while another thread is inside a call.
    gate: RwLock<()>,
}

/// The process's modules by path.
static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

/// `path`, loaded and initialised once per process.
pub fn module(path: &Path) -> Result<Arc<Module>, String> {
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(m) = modules.iter().find(|m| m.path == path) {
        return Ok(Arc::clone(m));
    }
    let ctx = Pkcs11::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("{}: {}", path.display(), p11(e))),
    }
    let m = Arc::new(Module {
        ctx,
        path: path.to_path_buf(),
        generation: AtomicU64::new(0),
        gate: RwLock::new(()),
    });
    modules.push(Arc::clone(&m));
    Ok(m)
}

/// Before the process exits: waits for every call inside a module to return, finalizes
/// the modules and keeps them closed, so no thread is inside a module while the process
/// tears it down (module destructors run at exit; a sign still running then crashes).
/// Returns false when a call did not return within `wait` (a hung network HSM): the
/// caller exits anyway.
pub fn close_modules(wait: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    let modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    for m in modules.iter() {
        let exclusive = loop {
            match m.gate.try_write() {
                Ok(guard) => break guard,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        };
        let _ = m.ctx.clone().finalize();
        // Held until the process is gone: later calls wait instead of entering.
        std::mem::forget(exclusive);
    }
    true
}

impl Module {
    /// Shared access for a call into the module.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Finalizes and initializes the module again: the way back when a token was removed
    /// and reinserted, which some modules (SoftHSM2 among them) notice only on
    /// C_Initialize. Done while no other call is inside the module; every session opened
    /// before is dead afterwards (see [`TokenSession::current`]): other signers on the
    /// module open fresh ones on their next sign. `seen` is the generation the caller's
    /// sessions failed in, so two healers do not both re-initialise.
    pub fn reinitialize(&self, seen: u64) -> Result<(), String> {
        let _exclusive = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation() != seen {
            return Ok(()); // another healer did it
        }
        // Not initialised (a previous attempt failed) is fine here.
        let _ = self.ctx.clone().finalize();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
            Err(e) => Err(p11(e)),
        }
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

/// A token, found by label, with the user PIN (if one was given) for its sessions.
pub struct Token {
    module: Arc<Module>,
    label: String,
    pin: Option<AuthPin>,
    /// The token's slot, as found in a module generation (found again after a
    /// re-initialisation).
    slot: Mutex<(u64, Slot)>,
}

/// A session that closes itself when dropped, unless its module was re-initialised since
/// it was opened (its handle is dead and may belong to someone else by now).
pub struct TokenSession {
    session: Option<Session>,
    generation: u64,
    module: Arc<Module>,
}

impl TokenSession {
    /// Whether the session still belongs to the module's current generation.
    pub fn current(&self) -> bool {
        self.generation == self.module.generation()
    }
}

impl std::ops::Deref for TokenSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("present until dropped")
    }
}

impl Drop for TokenSession {
    fn drop(&mut self) {
        let _gate = self.module.enter();
        if let Some(session) = self.session.take() {
            if self.current() {
                let _ = session.close();
            }
        }
    }
}

impl Token {
    pub fn open(module_path: &Path, label: &str, pin: Option<String>) -> Result<Token, String> {
        let module = module(module_path)?;
        let slot = {
            let _gate = module.enter();
            let slot = find_slot(&module.ctx, label)
                .map_err(|e| format!("{e} in {}", module_path.display()))?;
            (module.generation(), slot)
        };
        Ok(Token {
            module,
            label: label.to_string(),
            pin: pin.map(|p| AuthPin::new(p.into())),
            slot: Mutex::new(slot),
        })
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// A new session, logged in as the user when a PIN was given. The login state belongs
    /// to the application, not the session (PKCS#11 v2.40 §5.6): after the first login
    /// the token answers "already logged in", which is success here.
    pub fn session(&self, rw: bool) -> Result<TokenSession, String> {
        let _gate = self.module.enter();
        let generation = self.module.generation();
        let slot = {
            let mut cached = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if cached.0 != generation {
                *cached = (generation, find_slot(&self.module.ctx, &self.label)?);
            }
            cached.1
        };
        let ctx = &self.module.ctx;
        let session = if rw {
            ctx.open_rw_session_no_drop(slot)
        } else {
            ctx.open_ro_session_no_drop(slot)
        }
        .map_err(p11)?;
        // Logged in on the raw session, still under this gate: it is wrapped (and so
        // closes itself by entering the gate) only once it is good.
        if let Some(pin) = &self.pin {
            match session.login(UserType::User, Some(pin)) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => {
                    let _ = session.close();
                    return Err(p11(e));
                }
            }
        }
        Ok(TokenSession {
            session: Some(session),
            generation,
            module: Arc::clone(&self.module),
        })
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
    match der::read_single(raw, tag::OCTET_STRING) {
        Ok(t) if fits(t.value) => Some(t.value.to_vec()),
        _ if fits(raw) => Some(raw.to_vec()),
        _ => None,
    }
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
    let mut created = Vec::with_capacity(chain.len());
    let stored = chain.iter().enumerate().try_for_each(|(i, der_cert)| {
        let cert = crate::protocol::cert::CertView::parse(der_cert)
            .map_err(|_| format!("certificate {} is not DER X.509", i + 1))?;
        let mut id = key.id.clone();
        if i > 0 {
            id.push(u8::try_from(i).map_err(|_| "too many certificates")?);
        }
        let handle = session
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
            .map_err(|e| format!("storing certificate {}: {}", i + 1, p11(e)))?;
        created.push(handle);
        Ok::<(), String>(())
    });
    // Whichever set is not wanted goes: the new one on failure (the old chain stays), the
    // old one on success.
    let unwanted: Vec<ObjectHandle> = match &stored {
        Ok(()) => old.into_iter().map(|(_, h, _)| h).collect(),
        Err(_) => created,
    };
    for handle in unwanted {
        session.destroy_object(handle).map_err(p11)?;
    }
    stored
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

/// The certificate chain stored with the key whose CKA_ID is `key_id` (see
/// [`store_certificates`]), leaf first.
pub fn read_certificates(
    session: &Session,
    label: &str,
    key_id: &[u8],
) -> Result<Vec<Vec<u8>>, String> {
    let mut certs: Vec<StoredCert> = certificate_objects(session, label)?
        .into_iter()
        .filter(|(id, _, _)| id.len() <= key_id.len() + 1 && id.starts_with(key_id))
        .collect();
    certs.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    if certs.first().is_none_or(|c| c.0 != key_id) {
        return Err(format!(
            "no certificate for key `{label}` on the token (store one with `stampd hsm import-cert`, or set `cert`)"
        ));
    }
    if certs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "two certificates with the same CKA_ID are stored with key `{label}`: run `stampd hsm import-cert` again"
        ));
    }
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
