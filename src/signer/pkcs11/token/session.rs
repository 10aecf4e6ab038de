//! A token found by label, and its sessions: opened under the module's gate, logged in,
//! and closed on drop unless the module was re-initialised since.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::p11;
use super::registry::{module, Module};

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
    /// Loads (once per process) the module at `module_path` and finds the slot whose token
    /// is labelled `label`; `pin` is kept to log in each new session. Opens no session.
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

    /// The module this token is reached through (its gate and generation).
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
