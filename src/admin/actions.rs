//! The dashboard's actions, each a POST carrying the session's CSRF token (or a bearer
//! token, on `/api/`), each an audit event (`kind = "admin"`) naming the administrator:
//! enable or disable a service, reload the configuration, run a signer's self-test, verify
//! the journal's integrity.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::view;
use super::{App, Caller, Need};
use crate::audit::journal;

/// An action's result.
struct Done {
    /// Whether it worked.
    ok: bool,
    /// The HTTP status to answer.
    status: StatusCode,
    /// A title for the result page.
    title: &'static str,
    /// One line (or a few) saying what happened.
    message: String,
    /// The JSON API's details.
    detail: serde_json::Value,
}

impl Done {
    fn refused(status: StatusCode, title: &'static str, message: String) -> Done {
        Done {
            ok: false,
            status,
            title,
            detail: serde_json::json!({}),
            message,
        }
    }
}

/// Authorizes an action: the caller, or the refusal to answer.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the whole axum Response the handler returns, made once per refused request"
)]
fn caller(app: &App, headers: &HeaderMap, body: &Bytes, api: bool) -> Result<Caller, Response> {
    let fields: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    app.authorize(
        headers,
        Need::Act,
        api,
        fields.get("csrf").map(String::as_str),
    )
}

fn answer(caller: &Caller, api: bool, done: Done) -> Response {
    if api {
        let mut body = done.detail;
        if let Some(m) = body.as_object_mut() {
            m.insert("ok".into(), done.ok.into());
            m.insert("message".into(), done.message.into());
        }
        return (done.status, Json(body)).into_response();
    }
    view::message_page(caller, done.status, done.title, &done.message)
}

async fn service(app: &App, caller: &Caller, name: &str, action: &str) -> Done {
    let on = match action {
        "enable" => true,
        "disable" => false,
        _ => {
            return Done::refused(
                StatusCode::NOT_FOUND,
                "No such action",
                format!("`{action}`: a service can be enabled or disabled"),
            )
        }
    };
    let tsa = app.current.load();
    let Some(svc) = tsa.services.iter().find(|s| s.name == name) else {
        return Done::refused(
            StatusCode::NOT_FOUND,
            "No such service",
            format!("no service is called `{name}`"),
        );
    };
    let was = svc.switch.set(on);
    let state = if on { "enabled" } else { "disabled" };
    tracing::warn!(service = name, by = %caller.name, "service {state} by an administrator");
    app.audit(
        &caller.name,
        if on {
            "service-enabled"
        } else {
            "service-disabled"
        },
        format!("service {name} {state} by {}", caller.name),
        serde_json::json!({ "service": name, "was_enabled": was }),
    )
    .await;
    Done {
        ok: true,
        status: StatusCode::OK,
        title: "Service changed",
        message: format!("service {name} is {state}"),
        detail: serde_json::json!({ "service": name, "enabled": on }),
    }
}

pub async fn service_page(
    State(app): State<App>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match caller(&app, &headers, &body, false) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let done = service(&app, &caller, &name, &action).await;
    if done.ok {
        // Back to the dashboard, which shows the new state.
        return view::redirect("/#services");
    }
    answer(&caller, false, done)
}

pub async fn service_json(
    State(app): State<App>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match caller(&app, &headers, &body, true) {
        Ok(c) => {
            let done = service(&app, &c, &name, &action).await;
            answer(&c, true, done)
        }
        Err(r) => r,
    }
}

async fn reload(app: &App, caller: &Caller) -> Done {
    let who = format!("admin interface ({})", caller.name);
    let reloading = app.clone();
    // A reload reads files and may log in to an HSM: off the event loop. It records
    // itself in the audit trail, naming `who`.
    let result = tokio::task::spawn_blocking(move || (reloading.reload)(&who))
        .await
        .unwrap_or_else(|_| Err("the reload stopped unexpectedly".into()));
    match result {
        Ok(()) => Done {
            ok: true,
            status: StatusCode::OK,
            title: "Configuration reloaded",
            message: "configuration reloaded: the new services, policies and signers serve".into(),
            detail: serde_json::json!({}),
        },
        Err(e) => Done {
            ok: false,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Reload refused",
            message: format!("reload refused; nothing changed:\n{e}"),
            detail: serde_json::json!({ "errors": e.lines().collect::<Vec<_>>() }),
        },
    }
}

async fn selftest(app: &App, caller: &Caller, name: &str) -> Done {
    let tsa = app.current.load();
    let Some((_, signer)) = tsa.signers.iter().find(|(n, _)| n == name) else {
        return Done::refused(
            StatusCode::NOT_FOUND,
            "No such signer",
            format!("no signer in use is called `{name}`"),
        );
    };
    let signer = signer.clone();
    // The chain's last certificate is the anchor: the test proves the key signs and matches
    // its certificate, and that the chain the tokens carry holds together.
    let trusted: Vec<Vec<u8>> = signer.chain().last().cloned().into_iter().collect();
    let test_name = name.to_string();
    let result =
        tokio::task::spawn_blocking(move || crate::policy::selftest(&test_name, signer, &trusted))
            .await
            .unwrap_or_else(|_| Err("the self-test stopped unexpectedly".into()));
    let (ok, message, detail) = match &result {
        Ok((v, took)) => (
            true,
            format!(
                "self-test of signer {name} passed: {} token signed in {:.1} ms and verified ({} certificates in the path)",
                v.signature_algorithm,
                took.as_secs_f64() * 1e3,
                v.chain_length
            ),
            serde_json::to_value(v).unwrap_or_default(),
        ),
        Err(e) => (
            false,
            format!("self-test of signer {name} FAILED: {e}"),
            serde_json::json!({ "error": e }),
        ),
    };
    app.audit(
        &caller.name,
        "selftest",
        message.clone(),
        serde_json::json!({ "signer": name, "passed": ok }),
    )
    .await;
    Done {
        ok,
        status: if ok {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        },
        title: if ok {
            "Self-test passed"
        } else {
            "Self-test failed"
        },
        message,
        detail,
    }
}

async fn verify(app: &App, caller: &Caller) -> Done {
    let Some(dir) = app.journal.clone() else {
        return Done::refused(
            StatusCode::CONFLICT,
            "No journal",
            "this server's audit trail has no journal to verify".into(),
        );
    };
    let shown = dir.clone();
    let result = tokio::task::spawn_blocking(move || journal::verify_shards(&dir))
        .await
        .map_err(|_| "the verification stopped unexpectedly".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let verified = match result {
        Ok(v) => v,
        Err(e) => {
            return Done::refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Verification failed",
                format!("the journal could not be read: {e}"),
            )
        }
    };
    let intact = verified.iter().all(|(_, v)| v.broken.is_none());
    let (records, events) = journal::totals(&verified);
    // One line per shard: each has its own chain, head and possible break.
    let shards: Vec<String> = verified
        .iter()
        .map(|(shard, v)| match (&v.broken, v.head) {
            (Some(b), _) => format!("shard {shard} BROKEN: {b}"),
            (None, Some((seq, hash))) => format!(
                "shard {shard}: {} records, {} events, {} segments; head seq {seq} hash {}",
                v.records,
                v.events,
                v.segments,
                crate::protocol::hex::hex(&hash)
            ),
            (None, None) => format!("shard {shard}: empty"),
        })
        .collect();
    let message = format!(
        "journal {}: {} shard(s), {records} records, {events} events; {}",
        if intact { "intact" } else { "BROKEN" },
        verified.len(),
        shards.join("; ")
    );
    app.audit(
        &caller.name,
        "journal-verified",
        message.clone(),
        serde_json::json!({ "intact": intact, "records": records }),
    )
    .await;
    Done {
        ok: intact,
        status: StatusCode::OK,
        title: if intact {
            "Journal intact"
        } else {
            "Journal broken"
        },
        message,
        detail: journal::shards_json(&shown, &verified),
    }
}

/// The page and JSON handlers of an action over `run`.
macro_rules! handlers {
    ($page:ident, $json:ident, |$app:ident, $caller:ident $(, $arg:ident: $ty:ty)?| $run:expr) => {
        pub async fn $page(
            State($app): State<App>,
            $(Path($arg): Path<$ty>,)?
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            match caller(&$app, &headers, &body, false) {
                Ok($caller) => {
                    let done = $run;
                    answer(&$caller, false, done)
                }
                Err(r) => r,
            }
        }

        pub async fn $json(
            State($app): State<App>,
            $(Path($arg): Path<$ty>,)?
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            match caller(&$app, &headers, &body, true) {
                Ok($caller) => {
                    let done = $run;
                    answer(&$caller, true, done)
                }
                Err(r) => r,
            }
        }
    };
}

handlers!(reload_page, reload_json, |app, c| reload(&app, &c).await);
handlers!(selftest_page, selftest_json, |app, c, name: String| {
    selftest(&app, &c, &name).await
});
handlers!(verify_page, verify_json, |app, c| verify(&app, &c).await);
