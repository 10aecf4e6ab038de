//! `GET /login`, `POST /login`, `POST /logout`: a session from a password or token. A failed
//! login is answered only after a delay that doubles while one address keeps failing
//! ([`super::auth::Throttle`]), and is counted and audited.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::config::Role;
use super::view::{self, Area};
use super::{App, Peer};

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let body = html! {
        section.card.login {
            h1 { "Log in" }
            @if let Some(e) = error {
                div.error id="login-error" { (e) }
            }
            form method="post" action="/login" {
                div {
                    label for="name" { "Name (leave empty to log in with a token)" }
                    input id="name" name="name" autocomplete="username";
                }
                div {
                    label for="secret" { "Password or token" }
                    input id="secret" name="secret" type="password" autocomplete="current-password" required;
                }
                button type="submit" id="login" { "Log in" }
            }
            p.note { "The embedded default's token is in DATA_DIR/admin-token." }
        }
    };
    view::html(status, view::page(None, Area::None, "Log in", &[], body))
}

pub async fn form(State(app): State<App>, headers: HeaderMap) -> Response {
    match app.caller(&headers) {
        Some(c) if c.role == Role::Admin => view::redirect("/"),
        Some(_) => view::redirect("/audit"),
        None => login_page(StatusCode::OK, None),
    }
}

pub async fn submit(
    State(app): State<App>,
    Extension(Peer(ip)): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return login_page(StatusCode::FORBIDDEN, Some("a cross-site login is refused"));
    }
    let fields: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let name = fields.get("name").map_or("", |n| n.trim()).to_string();
    let secret = fields.get("secret").cloned().unwrap_or_default();
    let checking = app.clone();
    // What a failed attempt claimed goes to the log and the trail: bounded.
    let claimed: String = name.chars().take(64).collect();
    let who = name.clone();
    // argon2 takes tens of milliseconds of CPU: off the event loop.
    let found = tokio::task::spawn_blocking(move || {
        checking
            .auth
            .users
            .check(&who, &secret)
            .map(|u| (u.name.clone(), u.role))
    })
    .await
    .ok()
    .flatten();
    let Some((user, role)) = found else {
        let delay = app.auth.throttle.failed(ip);
        tracing::warn!(client = %ip, name = %claimed, "admin login failed");
        if app.current.load().audit.roomy() {
            app.audit(
                if claimed.is_empty() { "-" } else { &claimed },
                "login-failed",
                format!("failed admin login from {ip}"),
                serde_json::json!({ "client": ip.to_string() }),
            )
            .await;
        }
        tokio::time::sleep(delay).await;
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("wrong name, password or token"),
        );
    };
    app.auth.throttle.succeeded(ip);
    let id = app.auth.sessions.open(&user, role);
    app.audit(
        &user,
        "login",
        format!("{user} logged in from {ip}"),
        serde_json::json!({ "client": ip.to_string(), "role": role.name() }),
    )
    .await;
    let to = if role == Role::Admin { "/" } else { "/audit" };
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, app.auth.cookie(&id)),
            (header::LOCATION, to.to_string()),
        ],
    )
        .into_response()
}

pub async fn logout(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let fields: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // Logging out needs a session and its CSRF token (so another site cannot log one out),
    // but not the admin role.
    let caller = match app.caller(&headers) {
        Some(c) => c,
        None => return view::redirect("/login"),
    };
    let Some(session) = &caller.session else {
        return view::json_error(StatusCode::BAD_REQUEST, "a bearer token has no session");
    };
    if !super::auth::csrf_ok(session, fields.get("csrf").map(String::as_str)) {
        return view::message_page(
            &caller,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "the request carries no valid CSRF token: reload the page and try again",
        );
    }
    if let Some(id) = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(super::auth::session_id)
    {
        app.auth.sessions.close(id);
    }
    app.audit(
        &caller.name,
        "logout",
        format!("{} logged out", caller.name),
        serde_json::json!({}),
    )
    .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, app.auth.expired_cookie()),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}
