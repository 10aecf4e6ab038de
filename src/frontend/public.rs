//! The public timestamp pages of a service, on its own listener (`public_pages = true`, the
//! default): a browser's `GET` of the service path shows what this TSA is (policies, hash
//! algorithms, accuracy, the certificate chain, rate limits, commands to copy); `POST
//! PATH/stamp` takes a digest the browser computed (the file never leaves the machine) and
//! goes through the service's pre-filters, policies and audit like any RFC 3161 request;
//! `POST PATH/verify` runs `stampd verify`'s checks on a token against a digest. Every
//! form also works without JavaScript (a pasted digest or base64 token).
//!
//! Pure: the connection code hands the request in and writes the [`Answer`] out.

use std::collections::HashMap;

use base64::Engine as _;
use maud::{html, Markup};

use crate::client::inspect;
use crate::client::verify::{self, Expectation};
use crate::policy::{RequestMeta, Tsa};
use crate::protocol::cert::CertView;
use crate::protocol::hex::unhex;
use crate::protocol::{request, response, HashAlg};

/// A public-page request: the service it is for and its head.
pub struct Ask<'a> {
    /// The set being served.
    pub tsa: &'a Tsa,
    /// The service's index.
    pub service: usize,
    /// The service path the page belongs to, e.g. `/tsa`.
    pub path: &'a str,
    /// The request head (for `Host` and `Accept`).
    pub head: &'a [u8],
    /// The listener speaks HTTPS.
    pub tls: bool,
}

/// What to send back.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// More headers (the security headers are added by the writer).
    pub headers: Vec<(&'static str, String)>,
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

impl Ask<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        let meta = RequestMeta {
            head: self.head,
            ..RequestMeta::local(self.path)
        };
        meta.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The page's script asked for JSON (`Accept: application/json`).
    fn wants_json(&self) -> bool {
        self.header("accept")
            .is_some_and(|a| a.contains("application/json"))
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = self
            .header("host")
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .unwrap_or("localhost");
        format!("{scheme}://{host}{}", self.path)
    }

    fn svc(&self) -> &crate::policy::Service {
        &self.tsa.services[self.service]
    }

    fn html(&self, status: u16, title: &str, body: Markup) -> Answer {
        let assets = format!("{}/assets", self.path);
        let nav = html! { nav { a href=(self.path) { "Timestamp service " (self.svc().name) } } };
        let page = crate::web::page(title, &assets, &["sha256.js", "public.js"], nav, body);
        Answer {
            status,
            content_type: HTML,
            body: page.into_bytes(),
            headers: Vec::new(),
        }
    }

    fn json(&self, status: u16, value: serde_json::Value) -> Answer {
        Answer {
            status,
            content_type: JSON,
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// An error, as the caller wants it.
    fn error(&self, status: u16, why: &str) -> Answer {
        if self.wants_json() {
            self.json(status, serde_json::json!({ "error": why }))
        } else {
            self.html(
                status,
                "Error",
                html! { h1 { "Error" } p.error id="error" { (why) } p { a href=(self.path) { "Back" } } },
            )
        }
    }

    fn chain(&self) -> &[Vec<u8>] {
        self.svc().signer.chain()
    }
}

/// 404 for a page of a service whose pages are off.
pub fn not_found() -> Answer {
    Answer {
        status: 404,
        content_type: "text/plain; charset=utf-8",
        body: b"Not Found\n".to_vec(),
        headers: Vec::new(),
    }
}

/// Whether the head's `Accept` asks for HTML (a browser), not a timestamp reply.
pub fn accepts_html(accept: &[u8]) -> bool {
    accept
        .split(|&b| b == b',')
        .any(|m| m.trim_ascii().starts_with(b"text/html"))
}

/// The embedded asset at `index` of [`crate::web::ASSETS`].
pub fn asset(index: usize) -> Answer {
    let a = &crate::web::ASSETS[index];
    Answer {
        status: 200,
        content_type: a.content_type,
        body: a.bytes.to_vec(),
        headers: vec![("Cache-Control", "public, max-age=3600".into())],
    }
}

/// `GET PATH/chain.pem`: the TSA certificate and its chain, PEM.
pub fn chain(ask: &Ask<'_>) -> Answer {
    let pem: String = ask
        .chain()
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.clone())))
        .collect();
    Answer {
        status: 200,
        content_type: "application/x-pem-file",
        body: pem.into_bytes(),
        headers: vec![(
            "Content-Disposition",
            format!("attachment; filename=\"{}-chain.pem\"", ask.svc().name),
        )],
    }
}

fn hash_choices(ask: &Ask<'_>) -> Vec<HashAlg> {
    let mut all: Vec<HashAlg> = Vec::new();
    for p in ask.svc().policies.iter().chain(&ask.svc().fallback) {
        for h in &p.hash_algorithms {
            if !all.contains(h) && *h != HashAlg::Sha1 {
                all.push(*h);
            }
        }
    }
    all
}

/// `GET PATH` from a browser: what this TSA is, and the stamp and verify forms.
pub fn info(ask: &Ask<'_>) -> Answer {
    let svc = ask.svc();
    let url = ask.url();
    let limits: Vec<String> = svc.preprocess.iter().filter_map(|f| f.describe()).collect();
    let certs: Vec<(String, String, String)> = ask
        .chain()
        .iter()
        .filter_map(|c| CertView::parse(c).ok())
        .map(|c| {
            (
                c.certificate().tbs_certificate.subject.to_string(),
                c.not_before.to_rfc3339(),
                c.not_after.to_rfc3339(),
            )
        })
        .collect();
    let hashes = hash_choices(ask);
    let body = html! {
        h1 { "Time-Stamp Authority" }
        p {
            "This is an RFC 3161 time-stamp authority (service " strong { (svc.name) } "). "
            "Send a TimeStampReq by POST to " code { (url) } " with "
            code { "Content-Type: application/timestamp-query" } "."
        }
        section.card id="policies" {
            h2 { "Policies" }
            table {
                tr { th { "Policy" } th { "OID" } th { "Hash algorithms" } th { "Accuracy" } th { "Qualified" } }
                @for p in svc.policies.iter().chain(&svc.fallback) {
                    tr {
                        td { (p.name) }
                        td.mono.oid { (p.oid_text) }
                        td { (p.hash_algorithms.iter().map(|h| h.name()).collect::<Vec<_>>().join(", ")) }
                        td { @if p.template.accuracy_us > 0 { "± " (p.template.accuracy_us as f64 / 1e6) " s" } @else { "not declared" } }
                        td { @if p.template.qualified { "yes (ETSI EN 319 422)" } @else { "no" } }
                    }
                }
            }
            p.note {
                @if limits.is_empty() { "No rate limit applies." }
                @else { "Rate limits: " (limits.join("; ")) "." }
            }
        }
        section.card id="chain" {
            h2 { "Certificates" }
            table {
                @for (subject, from, to) in &certs {
                    tr { td { (subject) } td.mono { (from) " – " (to) } }
                }
            }
            p { a id="chain-download" href={ (ask.path) "/chain.pem" } { "Download the chain (PEM)" } }
        }
        section.card id="commands" {
            h2 { "From the command line" }
            pre { "openssl ts -query -data FILE -sha256 -cert -out req.tsq\n"
                  "curl -s -H 'Content-Type: application/timestamp-query' --data-binary @req.tsq " (url) " -o resp.tsr\n"
                  "curl -s -o chain.pem " (url) "/chain.pem\n"
                  "openssl ts -verify -in resp.tsr -data FILE -CAfile chain.pem" }
            p { "Code and document signing tools (RFC 3161):" }
            pre { "signtool sign /fd sha256 /tr " (url) " /td sha256 FILE\n"
                  "osslsigncode sign -certs CERT -key KEY -ts " (url) " -in FILE -out SIGNED\n"
                  "jarsigner -tsa " (url) " app.jar ALIAS" }
            p { "With stampd: " }
            pre { "stampd request --url " (url) " --cert --out resp.tsr FILE\n"
                  "stampd verify --ca chain.pem --data FILE resp.tsr" }
        }
        section.card id="stamp-section" {
            h2 { "Stamp a file" }
            p.note { "The file is hashed in this browser; only its digest is sent." }
            form.grid id="stamp" method="post" action={ (ask.path) "/stamp" } {
                div { label for="stamp-file" { "File" } input id="stamp-file" name="file" type="file"; }
                div {
                    label for="stamp-hash" { "Hash algorithm" }
                    select id="stamp-hash" name="hash" {
                        @for h in &hashes { option value=(h.name()) { (h.name()) } }
                    }
                }
                div { label for="stamp-digest" { "or its digest (hex)" } input id="stamp-digest" name="digest" placeholder="sha256sum FILE"; }
                div { button type="submit" id="stamp-button" { "Get a timestamp" } }
            }
            (crate::web::without_script("Without JavaScript, paste the file's digest (e.g. from sha256sum): the form answers with the .tsr file."))
            div id="stamp-result" {}
        }
        section.card id="verify-section" {
            h2 { "Verify a token" }
            p.note { "The data file is hashed in this browser; the token is checked against this TSA's certificates." }
            form.grid id="verify" method="post" action={ (ask.path) "/verify" } {
                div { label for="verify-token-file" { "Token (.tsr)" } input id="verify-token-file" name="token_file" type="file"; }
                div { label for="verify-data-file" { "Data file" } input id="verify-data-file" name="data_file" type="file"; }
                div { label for="verify-token" { "or the token in base64" } textarea id="verify-token" name="token" {} }
                div { label for="verify-sha256" { "or the data's SHA-256 (hex)" } input id="verify-sha256" name="sha256"; }
                div { label for="verify-sha384" { "SHA-384 (hex)" } input id="verify-sha384" name="sha384"; }
                div { label for="verify-sha512" { "SHA-512 (hex)" } input id="verify-sha512" name="sha512"; }
                div { button type="submit" id="verify-button" { "Verify" } }
            }
            (crate::web::without_script("Without JavaScript, paste the token in base64 (base64 -w0 FILE.tsr) and the data's digest."))
            div id="verify-result" {}
        }
    };
    ask.html(200, &format!("Timestamp service {}", svc.name), body)
}

fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// `POST PATH/stamp`: the `TimeStampReq` to issue for the form's digest (with a random
/// nonce and certReq), or the answer refusing the form.
pub fn stamp_request(ask: &Ask<'_>, body: &[u8]) -> Result<Vec<u8>, Answer> {
    let f = form(body);
    let name = f.get("hash").map_or("sha256", |h| h.trim());
    let Some(alg) = HashAlg::from_name(name) else {
        return Err(ask.error(
            400,
            &format!("hash {name}: not a hash algorithm stampd knows"),
        ));
    };
    let text = f.get("digest").map_or("", |d| d.trim());
    let digest = unhex(&text.to_ascii_lowercase())
        .filter(|d| d.len() == alg.digest_len())
        .ok_or_else(|| {
            ask.error(
                400,
                &format!(
                    "digest: {} hex digits of a {} digest are needed",
                    alg.digest_len() * 2,
                    alg.name()
                ),
            )
        })?;
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ask.error(500, "no randomness"))?;
    nonce[0] |= 1;
    Ok(request::encode(alg, &digest, None, Some(&nonce), true))
}

/// The answer to a stamp: the `TimeStampResp` (the `.tsr` download, or JSON with it in
/// base64 and a summary for the page's script), or the HTTP status it was refused with.
pub fn stamp_answer(ask: &Ask<'_>, result: Result<Vec<u8>, u16>) -> Answer {
    let der = match result {
        Ok(der) => der,
        Err(429) => return ask.error(429, "too many requests: try again in a moment"),
        Err(503) => {
            return ask.error(
                503,
                "the service cannot issue timestamps now (disabled, overloaded, or its audit trail is unavailable)",
            )
        }
        Err(status) => return ask.error(status, "the request was refused"),
    };
    let facts = match inspect::response_facts(&der) {
        Ok(f) => f,
        Err(e) => return ask.error(500, &format!("the response does not decode: {e}")),
    };
    let Some(t) = facts.token else {
        let why = format!(
            "refused: {} ({})",
            facts.fail_info.join(", "),
            facts.status_text.join(" / ")
        );
        return if ask.wants_json() {
            ask.json(200, serde_json::json!({ "granted": false, "error": why }))
        } else {
            ask.error(422, &why)
        };
    };
    if ask.wants_json() {
        let tsa = ask
            .chain()
            .first()
            .and_then(|c| CertView::parse(c).ok())
            .map(|c| c.certificate().tbs_certificate.subject.to_string());
        return ask.json(
            200,
            serde_json::json!({
                "granted": true,
                "serial": t.serial,
                "gen_time": t.gen_time_rfc3339,
                "policy": t.policy,
                "tsa": tsa,
                "tsr": base64::engine::general_purpose::STANDARD.encode(&der),
            }),
        );
    }
    Answer {
        status: 200,
        content_type: "application/timestamp-reply",
        headers: vec![(
            "Content-Disposition",
            format!("attachment; filename=\"stamp-{}.tsr\"", t.serial),
        )],
        body: der,
    }
}

/// `POST PATH/verify`: `stampd verify`'s checks of the form's token against the form's
/// digest and this service's certificates (the chain's last certificate as the trust
/// anchor).
pub fn verify(ask: &Ask<'_>, body: &[u8]) -> Answer {
    let f = form(body);
    let text: String = f
        .get("token")
        .map_or(String::new(), |t| t.split_whitespace().collect());
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&text) else {
        return ask.error(400, "token: not base64 (base64 -w0 FILE.tsr)");
    };
    let decoded = response::decode(&der);
    let (token, status_text) = match &decoded {
        Ok(resp) => match &resp.token {
            Some(t) => (t.clone(), resp.status.name()),
            None => {
                return ask.error(
                    400,
                    &format!(
                        "the response holds no token (status {})",
                        resp.status.name()
                    ),
                )
            }
        },
        Err(_) => match response::decode_token(&der) {
            Ok(t) => (t, "bare token"),
            Err(e) => return ask.error(400, &format!("not a TimeStampResp or token: {e}")),
        },
    };
    let hash = HashAlg::from_oid_bytes(token.tst_info.hash_oid);
    let given = hash
        .and_then(|h| f.get(h.name()))
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty());
    let (checks, verified) = match (hash, &given) {
        (Some(hash), Some(d)) => {
            let expect = Expectation {
                hash,
                digest: unhex(d).unwrap_or_default(),
                nonce: None,
            };
            let trusted: Vec<Vec<u8>> = ask.chain().last().cloned().into_iter().collect();
            verify::checks(&token, &expect, &trusted, ask.chain())
        }
        _ => (
            vec![verify::Check {
                check: "imprint",
                passed: false,
                detail: format!(
                    "no {} digest of the data was given",
                    hash.map_or("known", HashAlg::name)
                ),
            }],
            None,
        ),
    };
    let valid = verified.is_some();
    let facts = inspect::response_facts(&der).ok().and_then(|r| r.token);
    if ask.wants_json() {
        return ask.json(
            200,
            serde_json::json!({
                "valid": valid,
                "status": status_text,
                "checks": checks,
                "token": facts.map(|t| serde_json::json!({
                    "serial": t.serial, "gen_time": t.gen_time_rfc3339, "policy": t.policy,
                    "hash_algorithm": t.hash_algorithm, "digest": t.digest,
                })),
            }),
        );
    }
    let body = html! {
        h1 { "Verification" }
        p id="verify-verdict" class=(if valid { "ok" } else { "bad" }) {
            @if valid { "Valid: the token is over this data and verifies" } @else { "Invalid: a check failed" }
        }
        ul.checks {
            @for c in &checks {
                li class=(if c.passed { "pass" } else { "fail" }) { (c.check) ": " (c.detail) }
            }
        }
        @if let Some(t) = facts {
            dl.facts {
                dt { "genTime" } dd { (t.gen_time_rfc3339) }
                dt { "serial" } dd.mono { (t.serial) }
                dt { "policy" } dd.mono { (t.policy) }
                dt { "imprint" } dd.mono { (t.hash_algorithm) " " (t.digest) }
            }
        }
        p { a href=(ask.path) { "Back" } }
    };
    ask.html(200, "Verification", body)
}
