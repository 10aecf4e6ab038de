//! Where records leave the issuing path: issued tokens (storage filter) and audit records
//! (audit pre-filter). The audit trail provides the durable sinks; until then records are
//! discarded, and tests collect them in memory.

use std::sync::Mutex;

pub trait Sink<T>: Send + Sync {
    fn put(&self, item: T);
}

/// Drops every item.
#[derive(Debug, Default)]
pub struct Discard;

impl<T> Sink<T> for Discard {
    fn put(&self, _item: T) {}
}

/// Keeps every item (tests).
#[derive(Debug)]
pub struct Memory<T>(pub Mutex<Vec<T>>);

impl<T> Default for Memory<T> {
    fn default() -> Self {
        Memory(Mutex::new(Vec::new()))
    }
}

impl<T: Send> Sink<T> for Memory<T> {
    fn put(&self, item: T) {
        if let Ok(mut v) = self.0.lock() {
            v.push(item);
        }
    }
}
