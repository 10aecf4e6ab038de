//! The admin pages' frame (navigation, the logged-in user, the logout form) and the small
//! answers every handler gives: redirects, JSON errors, message pages.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::config::Role;
use super::Caller;

/// Which part of the interface a page belongs to (for the navigation bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// The dashboard and its actions.
    Dashboard,
    /// The audit browser.
    Audit,
    /// Neither (login, messages).
    None,
}

/// The hidden form field carrying the session's CSRF token (nothing for a bearer caller).
pub fn csrf(caller: &Caller) -> Markup {
    html! {
        @if let Some(s) = &caller.session {
            input type="hidden" name="csrf" value=(s.csrf);
        }
    }
}

fn nav(caller: Option<&Caller>, here: Area) -> Markup {
    let class = |a: Area| if a == here { "here" } else { "" };
    html! {
        nav {
            @if let Some(c) = caller {
                @if c.role == Role::Admin {
                    a.(class(Area::Dashboard)) href="/" { "Dashboard" }
                }
                a.(class(Area::Audit)) href="/audit" { "Audit trail" }
                span.who { (c.name) " (" (c.role.name()) ")" }
                form.inline method="post" action="/logout" {
                    (csrf(c))
                    button.quiet type="submit" id="logout" { "Log out" }
                }
            }
        }
    }
}

/// A whole admin page.
pub fn page(
    caller: Option<&Caller>,
    here: Area,
    title: &str,
    scripts: &[&str],
    body: Markup,
) -> String {
    crate::web::page(title, "/assets", scripts, nav(caller, here), body)
}

/// An HTML answer.
pub fn html(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A page that says one thing (an action's result, a refusal), with a way back.
pub fn message_page(caller: &Caller, status: StatusCode, title: &str, text: &str) -> Response {
    let ok = status.is_success();
    let body = html! {
        h1 { (title) }
        div class=(if ok { "notice" } else { "error" }) id="message" { (text) }
        p { a href=(if caller.role == Role::Admin { "/" } else { "/audit" }) { "Back" } }
    };
    html(status, page(Some(caller), Area::None, title, &[], body))
}

/// `303 See Other` to `to` (after a POST, and to the login page).
pub fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// A JSON error: `{"error": "..."}`.
pub fn json_error(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}
