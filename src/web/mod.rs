//! What the two web faces share: the page layout, the security headers every HTML answer
//! carries, and the static assets compiled into the binary (no frontend build step). The
//! public timestamp pages ([`crate::frontend`], on each service's listener) and the
//! administration interface ([`crate::admin`], on the admin listener) both render through
//! [`page`].

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// Headers on every HTML page and asset. The CSP allows scripts and styles from this origin
/// only (no inline script, so an injected `<script>` cannot run), no framing (clickjacking),
/// and forms that post back here only.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// One embedded file: its name under `assets/`, media type and bytes.
pub struct Asset {
    /// The file name, e.g. `stampd.css`.
    pub name: &'static str,
    /// The `Content-Type` to answer with.
    pub content_type: &'static str,
    /// The file itself.
    pub bytes: &'static [u8],
}

/// The stylesheet, the public pages' script (local hashing, stamp, verify), the streaming
/// SHA-256 it uses for large files, and the admin pages' script (live figures).
pub const ASSETS: [Asset; 4] = [
    Asset {
        name: "stampd.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/stampd.css"),
    },
    Asset {
        name: "public.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/public.js"),
    },
    Asset {
        name: "sha256.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/sha256.js"),
    },
    Asset {
        name: "admin.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/admin.js"),
    },
];

/// The asset called `name`, if there is one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A whole HTML page: `title`, the assets under `assets` (the URL prefix they are served
/// at, e.g. `/assets` or `/tsa/assets`), `scripts` from there, a navigation bar and the body.
pub fn page(title: &str, assets: &str, scripts: &[&str], nav: Markup, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — stampd" }
                link rel="stylesheet" href={ (assets) "/stampd.css" };
                @for s in scripts {
                    script src={ (assets) "/" (s) } defer {}
                }
            }
            body {
                header.top {
                    span.brand { "stampd" }
                    (nav)
                }
                main { (body) }
                footer { "stampd " (env!("CARGO_PKG_VERSION")) " — RFC 3161 Time-Stamp Authority" }
            }
        }
    }
    .into_string()
}

/// A `<noscript>` note for a part of a page that needs JavaScript, saying what works
/// without it.
pub fn without_script(what: &str) -> Markup {
    html! { noscript { p.note { (PreEscaped("&#9888; ")) (what) } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_escapes_what_it_is_given_and_loads_only_its_own_assets() {
        let p = page(
            "<x>",
            "/tsa/assets",
            &["public.js"],
            html! {},
            html! { p { "a & b" } },
        );
        assert!(p.contains("&lt;x&gt; — stampd"), "{p}");
        assert!(p.contains("a &amp; b"));
        assert!(p.contains(r#"<script src="/tsa/assets/public.js" defer>"#));
        assert!(
            !p.contains("<script>"),
            "no inline script: the CSP forbids it"
        );
        for a in ASSETS {
            assert!(!a.bytes.is_empty(), "{}", a.name);
        }
        assert!(asset("stampd.css").is_some() && asset("../x").is_none());
    }
}
