//! The HTTP side of legacy Authenticode timestamps (`protocol = "authenticode"`): `200
//! application/octet-stream` with the base64 countersignature, a `400` with the one-line
//! reason for a bad request, `503` when the TSA cannot issue now. No rejection message
//! exists in this protocol, so the status says it all.

use std::cell::RefCell;

use super::{Backend, BACKEND_DEADLINE};
use crate::error::Error;
use crate::outcome::Outcome;
use crate::policy::current::Cached;
use crate::policy::RequestMeta;
use crate::protocol::authenticode;

/// An answer to write: status, media type, body.
pub type Answer = (u16, &'static str, Vec<u8>);

const TEXT: &str = "text/plain; charset=utf-8";

/// What a client sending the wrong body to an RFC 3161 service's path is told (`415`).
pub const NOT_RFC3161: &str = "Unsupported Media Type: this is an RFC 3161 endpoint (send \
     Content-Type: application/timestamp-query, as signtool /tr and osslsigncode -ts do); legacy \
     Authenticode requests (signtool /t, osslsigncode -t) go to the Authenticode path";

fn text(status: u16, why: &str) -> Answer {
    let mut body = why.as_bytes().to_vec();
    body.push(b'\n');
    (status, TEXT, body)
}

/// Issues an Authenticode stamp for `body` through the backend and the service's filters,
/// and waits for its audit record (group commit) before answering.
pub async fn answer(
    backend: &Backend,
    tsa: &RefCell<Cached>,
    service: usize,
    body: &[u8],
    meta: &RequestMeta<'_>,
) -> Answer {
    let reply = match backend.reply(tsa, service, body, meta).await {
        Ok(reply) => reply,
        Err(Error::Overloaded) => {
            let status = tsa.borrow_mut().get().refuse(service, meta, 503);
            return text(status, "the server is overloaded: try again");
        }
        Err(e) => return text(e.http_status(), "the server cannot answer now"),
    };
    let outcome = reply.outcome.clone();
    let committed = match reply.durable {
        None => true,
        Some(durable) => matches!(
            monoio::time::timeout(BACKEND_DEADLINE, durable).await,
            Ok(Ok(true))
        ),
    };
    if !committed {
        // No stamp leaves without its audit record.
        return text(503, "the audit trail cannot take the record: try again");
    }
    match outcome {
        Outcome::Granted { .. } => (
            200,
            "application/octet-stream",
            authenticode::base64_reply(&reply.der),
        ),
        Outcome::Rejected(f) => text(f.legacy_http_status(), &String::from_utf8_lossy(&reply.der)),
        Outcome::Refused(status) => text(status, "refused"),
    }
}
