//! The process's PKCS#11 modules: each loaded and initialised once, shared, and
//! re-initialised (or finalized at exit) only while no other thread is inside it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};

use super::p11;

/// One PKCS#11 module, loaded and initialised once per process and shared by every
/// signer and command that uses it (C_Initialize and C_Finalize act on the whole
/// application, PKCS#11 v2.40 §5.4).
pub struct Module {
    pub(super) ctx: Pkcs11,
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

    /// How many times the module has been re-initialised; a session opened in an older
    /// generation is dead and must not be used or closed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Finalizes and initializes the module again: the way back when a token was removed
    /// and reinserted, which some modules (SoftHSM2 among them) notice only on
    /// C_Initialize. Done while no other call is inside the module; every session opened
    /// before is dead afterwards (see [`TokenSession::current`]): other signers on the
    /// module open fresh ones on their next sign. `seen` is the generation the caller's
    /// sessions failed in, so two healers do not both re-initialise.
    ///
    /// [`TokenSession::current`]: super::TokenSession::current
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
