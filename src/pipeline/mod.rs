//! The only cross-thread seam: request envelopes go from frontend cores to backend workers
//! through one bounded crossbeam channel; each reply goes back through its own oneshot,
//! which wakes the owning core's task.
//!
//! When the queue is full the frontend answers 503 at once: a core never blocks on it.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures_channel::oneshot;

use crate::policy::current::{Cached, Current};
use crate::policy::{Reply, RequestMeta};

/// Most requests a worker takes from the queue in one go before it looks again.
pub const BATCH: usize = 64;

/// One request on its way to a backend worker. Only `Send` values.
pub struct Envelope {
    /// The index of the service in `Tsa::services` (from the listener's route).
    pub service: usize,
    /// The request body (DER `TimeStampReq`), copied out of the connection's buffer.
    pub body: Vec<u8>,
    /// The request context the policy mapper may look at.
    pub client: std::net::IpAddr,
    /// The URL path the request was POSTed to.
    pub path: String,
    /// The raw HTTP request head, for header rules.
    pub head: Vec<u8>,
    /// The client certificate's subject, on listeners that ask for one.
    pub client_subject: Option<Arc<str>>,
    /// The audit shard of the core that owns the request: its record goes there.
    pub shard: Option<usize>,
    /// The reply; the frontend waits for its audit record (group commit), not the worker.
    pub reply: oneshot::Sender<Reply>,
}

/// The frontend's handle on the queue.
#[derive(Clone)]
pub struct Queue {
    tx: Sender<Envelope>,
}

impl Queue {
    /// Queues a request, or gives it back at once when the queue is full (boxed: only the
    /// refused path pays for the move).
    pub fn try_submit(&self, env: Envelope) -> Result<(), Box<Envelope>> {
        self.tx.try_send(env).map_err(|e| match e {
            TrySendError::Full(env) | TrySendError::Disconnected(env) => Box::new(env),
        })
    }
}

/// Starts `workers` backend threads draining a queue of `capacity` requests. They stop
/// when every [`Queue`] handle is dropped.
pub fn start(
    tsa: Arc<Current>,
    workers: usize,
    capacity: usize,
) -> std::io::Result<(Queue, Vec<JoinHandle<()>>)> {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let handles = (0..workers.max(1))
        .map(|i| {
            let rx = rx.clone();
            let mut tsa = tsa.cached();
            std::thread::Builder::new()
                .name(format!("stampd-worker-{i}"))
                .spawn(move || work(&mut tsa, &rx))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((Queue { tx }, handles))
}

fn work(tsa: &mut Cached, rx: &Receiver<Envelope>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter().take(BATCH - 1));
        for env in batch.drain(..) {
            let meta = RequestMeta {
                client: env.client,
                path: &env.path,
                head: &env.head,
                client_subject: env.client_subject.as_ref(),
            };
            let reply = crate::audit::shard::on_behalf_of(env.shard, || {
                tsa.get().issue(env.service, &env.body, &meta)
            });
            // The requester may have gone; its reply is simply dropped.
            let _ = env.reply.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_gives_the_request_back_at_once() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let queue = Queue { tx };
        let env = |n: u8| Envelope {
            service: 0,
            body: vec![n],
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            path: "/tsa".into(),
            head: Vec::new(),
            client_subject: None,
            shard: None,
            reply: oneshot::channel().0,
        };
        assert!(queue.try_submit(env(1)).is_ok());
        let back = queue.try_submit(env(2)).expect_err("full");
        assert_eq!(back.body, vec![2]);
        drop(rx);
        // No worker left: refused as well, never blocking.
        assert!(queue.try_submit(env(3)).is_err());
    }
}
