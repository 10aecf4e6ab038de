//! One PKCS#11 token and the operations stampd needs on it: open a logged-in session, find
//! a key pair and its public key, sign, generate a key pair, store and read certificates,
//! list what is there. The signer's session pool and `stampd hsm` both go through here.
//!
//! - `registry.rs`: the process's modules, loaded and initialised once each, and their
//!   re-initialisation ([`Module`]);
//! - `session.rs`: a token found by label and its logged-in sessions ([`Token`]);
//! - `keys.rs`: the key pair on a token, its protection, and signing with it ([`KeyPair`]);
//! - `certificates.rs`: the certificate chain stored beside a key;
//! - `admin.rs`: what `stampd hsm` does beyond that (keygen, list).

mod admin;
mod certificates;
mod keys;
mod registry;
mod session;

use cryptoki::error::Error as P11Error;

pub(crate) use admin::{generate, list};
pub use certificates::{read_certificates, store_certificates};
pub use keys::{find_key, key_protection, sign, KeyPair, PublicKey};
pub use registry::{close_modules, module, Module};
pub use session::{Token, TokenSession};

/// A PKCS#11 error as one short line: `C_Login failed: PinIncorrect`.
pub fn p11(e: P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("C_{function:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}
