//! A service's run-time switch: the admin interface disables and enables a service without a
//! reload. A disabled service answers its requests `503` (and its pre-filters still count,
//! limit and audit them); the switch outlives reloads (the assembler hands the same switch to
//! the rebuilt service of that name) and a restart starts every service enabled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One service's switch (one relaxed load per request).
#[derive(Debug)]
pub struct Switch(AtomicBool);

impl Switch {
    /// Whether the service answers requests.
    pub fn enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Turns the service on or off; returns whether it was on.
    pub fn set(&self, on: bool) -> bool {
        self.0.swap(on, Ordering::Relaxed)
    }
}

/// Every service's switch, by name, kept across reloads.
#[derive(Debug, Default)]
pub struct Switches(Mutex<BTreeMap<String, Arc<Switch>>>);

impl Switches {
    /// The switch of service `name`, created enabled the first time.
    pub fn of(&self, name: &str) -> Arc<Switch> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(name.to_string())
            .or_insert_with(|| Arc::new(Switch(AtomicBool::new(true))))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_is_shared_by_name_and_starts_enabled() {
        let s = Switches::default();
        let a = s.of("a");
        assert!(a.enabled());
        assert!(a.set(false));
        assert!(!s.of("a").enabled(), "the same switch after a reload");
        assert!(s.of("b").enabled());
    }
}
