//! The audit browser: search the journal by serial, imprint, time range, service, policy,
//! status, failInfo and client address, a page of results at a time (the journal is read as
//! a stream and the scan stops once a page is full: nothing loads the whole trail); a
//! record's page with the decoded request and token and its `.tsr`; export of a query as
//! JSON lines or CSV, streamed. Every shard of the journal is searched, merged in time order
//! ([`Query::in_journal`]); a record is addressed by its shard and seq.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;

use super::view::{self, Area};
use super::{App, Caller, Need};
use crate::audit::journal::Place;
use crate::audit::query::{entry_at, query_of, Query};
use crate::audit::Entry;
use crate::client::inspect;

/// Results per page.
const PAGE: usize = 50;

/// The search form's fields (all optional; empty means "any").
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Params {
    serial: Option<String>,
    imprint: Option<String>,
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
    policy: Option<String>,
    status: Option<String>,
    fail_info: Option<String>,
    client: Option<String>,
    kind: Option<String>,
    /// Show records after this cursor (the next page; see [`After`]).
    after: Option<String>,
    /// Export: `jsonl` (default) or `csv`.
    format: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A search: the journal query and the browser's extra fields.
struct Search {
    query: Query,
    policy: Option<String>,
    fail_info: Option<String>,
    client: Option<IpAddr>,
}

impl Search {
    fn of(p: &Params) -> Result<Search, String> {
        let mut query = query_of(
            given(&p.serial),
            given(&p.from),
            given(&p.to),
            given(&p.imprint),
            given(&p.service).map(String::from),
            given(&p.status).map(String::from),
        )?;
        query.kind = given(&p.kind).map(String::from);
        let client = given(&p.client)
            .map(|c| {
                c.parse()
                    .map_err(|_| format!("client {c}: not an IP address"))
            })
            .transpose()?;
        Ok(Search {
            query,
            policy: given(&p.policy).map(String::from),
            fail_info: given(&p.fail_info).map(String::from),
            client,
        })
    }

    fn matches(&self, e: &Entry) -> bool {
        let extra = self.policy.is_some() || self.fail_info.is_some() || self.client.is_some();
        match e {
            Entry::Request(r) => {
                let (fail, http) = r.fail_info_and_http_status();
                let outcome = fail.map_or_else(|| format!("http_{http}"), str::to_string);
                self.policy
                    .as_deref()
                    .is_none_or(|p| r.policy.as_deref() == Some(p))
                    && self.fail_info.as_deref().is_none_or(|f| outcome == f)
                    && self.client.is_none_or(|c| r.client == Some(c))
            }
            Entry::Event(_) => !extra,
        }
    }
}

/// The paging cursor (`after`): for every shard with entries shown so far, the seq of the
/// last one. The merge hands every shard's entries in that shard's own order, so the next
/// page is the merge of each shard's entries after its cursor: no entry is shown twice or
/// skipped, even while the server appends (a cursor on the time of the last entry shown
/// would skip an entry a shard commits later with an earlier time). Written
/// `SHARD:SEQ,SHARD:SEQ`; a bare `SEQ` (links from before sharding) is shard 0's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct After(BTreeMap<usize, u64>);

impl After {
    fn parse(s: &str) -> Result<After, String> {
        let bad = || format!("after {s}: SHARD:SEQ,SHARD:SEQ...");
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (shard, seq) = part.split_once(':').unwrap_or(("0", part));
            let shard = shard.parse().map_err(|_| bad())?;
            out.insert(shard, seq.parse().map_err(|_| bad())?);
        }
        Ok(After(out))
    }

    /// Whether `place` was on an earlier page.
    fn shown(&self, place: Place) -> bool {
        self.0
            .get(&place.shard)
            .is_some_and(|&seq| place.seq <= seq)
    }
}

impl std::fmt::Display for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(s, q)| format!("{s}:{q}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// One page of matches after `after`, and the cursor to continue from when there are more.
struct Found {
    entries: Vec<(Place, Entry)>,
    next: Option<String>,
    damage: Option<String>,
}

fn find(
    dir: &std::path::Path,
    search: &Search,
    after: &After,
    limit: usize,
) -> Result<Found, String> {
    let mut entries = Vec::new();
    let mut next = after.clone();
    let mut more = false;
    let damage = search.query.in_journal(dir, |place, e| {
        if after.shown(place) || !search.matches(&e) {
            return true;
        }
        if entries.len() == limit {
            more = true;
            return false;
        }
        next.0.insert(place.shard, place.seq);
        entries.push((place, e));
        true
    })?;
    let damage: Vec<String> = damage.iter().map(ToString::to_string).collect();
    Ok(Found {
        entries,
        next: more.then(|| next.to_string()),
        damage: (!damage.is_empty()).then(|| damage.join("; ")),
    })
}

/// The page of the entry at `place`.
fn record_href(place: Place) -> String {
    format!("/audit/shards/{}/records/{}", place.shard, place.seq)
}

async fn search(app: &App, params: &Params) -> Result<Found, String> {
    let Some(dir) = app.journal.clone() else {
        return Err("this server's audit trail has no journal to search".into());
    };
    let s = Search::of(params)?;
    let after = After::parse(params.after.as_deref().unwrap_or(""))?;
    tokio::task::spawn_blocking(move || find(&dir, &s, &after, PAGE))
        .await
        .map_err(|_| "the search stopped unexpectedly".to_string())?
}

fn query_string(p: &Params, after: Option<&str>, format: Option<&str>) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("serial", &p.serial),
        ("imprint", &p.imprint),
        ("from", &p.from),
        ("to", &p.to),
        ("service", &p.service),
        ("policy", &p.policy),
        ("status", &p.status),
        ("fail_info", &p.fail_info),
        ("client", &p.client),
        ("kind", &p.kind),
    ] {
        if let Some(v) = given(v) {
            pairs.push((k, v.to_string()));
        }
    }
    if let Some(a) = after {
        pairs.push(("after", a.to_string()));
    }
    if let Some(f) = format {
        pairs.push(("format", f.to_string()));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn form(p: &Params) -> Markup {
    let field = |name: &str, label: &str, v: &Option<String>, hint: &str| {
        html! {
            div {
                label for=(name) { (label) }
                input id=(name) name=(name) value=(v.clone().unwrap_or_default()) placeholder=(hint);
            }
        }
    };
    html! {
        form.grid method="get" action="/audit" id="search" {
            (field("serial", "Serial (hex)", &p.serial, "0x…"))
            (field("imprint", "Message imprint (hex)", &p.imprint, "digest"))
            (field("from", "From (RFC 3339)", &p.from, "2026-12-01T00:00:00Z"))
            (field("to", "To (RFC 3339)", &p.to, ""))
            (field("service", "Service", &p.service, ""))
            (field("policy", "Policy", &p.policy, ""))
            div {
                label for="status" { "Status" }
                select id="status" name="status" {
                    @for (v, l) in [("", "any"), ("granted", "granted"), ("rejection", "not granted")] {
                        option value=(v) selected[p.status.as_deref().unwrap_or("") == v] { (l) }
                    }
                }
            }
            (field("fail_info", "failInfo or http_NNN", &p.fail_info, "badAlg"))
            div {
                label for="kind" { "Kind" }
                select id="kind" name="kind" {
                    @for (v, l) in [("", "any"), ("request", "RFC 3161 request"), ("authenticode", "Authenticode request"), ("admin", "admin action"), ("reload", "reload"), ("clock", "clock event")] {
                        option value=(v) selected[p.kind.as_deref().unwrap_or("") == v] { (l) }
                    }
                }
            }
            (field("client", "Client address", &p.client, "192.0.2.1"))
            div { button type="submit" id="search-button" { "Search" } }
        }
    }
}

fn results(found: &Found, p: &Params) -> Markup {
    html! {
        @if let Some(d) = &found.damage {
            div.error { "The journal is damaged; results of that shard stop there: " (d) }
        }
        @if found.entries.is_empty() {
            p.note id="no-results" { "No matching records." }
        } @else {
            table id="results" {
                tr { th { "Shard:seq" } th { "Time" } th { "Kind" } th { "Serial" } th { "Status" } th { "Service / policy" } th { "Imprint" } th { "Client" } }
                @for (place, e) in &found.entries {
                    @match e {
                        Entry::Request(r) => {
                            @let (fail, http) = r.fail_info_and_http_status();
                            tr.record {
                                td { a href=(record_href(*place)) { (place.shard) ":" (place.seq) } }
                                td.mono { (r.time.to_rfc3339()) }
                                td { "request" }
                                td.mono.serial { (r.serial().map(|s| crate::audit::record::serial_hex(s)).unwrap_or_default()) }
                                td { (r.status()) @if let Some(f) = fail { " (" (f) ")" } @else if http != 200 { " (HTTP " (http) ")" } }
                                td { (r.service) " / " (r.policy.as_deref().unwrap_or("–")) }
                                td.mono { (r.imprint.as_deref().map(crate::protocol::hex::hex).unwrap_or_default()) }
                                td.mono { (r.client.map(|c| c.to_string()).unwrap_or_default()) }
                            }
                        }
                        Entry::Event(ev) => {
                            tr.event {
                                td { a href=(record_href(*place)) { (place.shard) ":" (place.seq) } }
                                td.mono { (ev.time.to_rfc3339()) }
                                td { (ev.kind) }
                                td {}
                                td { (ev.name) }
                                td colspan="3" { (ev.message) }
                            }
                        }
                    }
                }
            }
        }
        div.pager {
            @if let Some(next) = &found.next {
                a id="next-page" href={ "/audit?" (query_string(p, Some(next), None)) } { "Next page" }
            }
            a href={ "/audit/export?" (query_string(p, None, Some("jsonl"))) } id="export-jsonl" { "Export as JSON lines" }
            a href={ "/audit/export?" (query_string(p, None, Some("csv"))) } id="export-csv" { "Export as CSV" }
        }
    }
}

pub async fn search_page(
    State(app): State<App>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<Params>,
) -> Response {
    let caller = match app.authorize(&headers, Need::Audit, false, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (status, found) = match search(&app, &p).await {
        Ok(f) => (StatusCode::OK, html! { (results(&f, &p)) }),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            html! { div.error id="search-error" { (e) } },
        ),
    };
    let body = html! {
        h1 { "Audit trail" }
        section.card { (form(&p)) }
        section.card { (found) }
    };
    view::html(
        status,
        view::page(Some(&caller), Area::Audit, "Audit trail", &[], body),
    )
}

pub async fn search_json(
    State(app): State<App>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<Params>,
) -> Response {
    if let Err(r) = app.authorize(&headers, Need::Audit, true, None) {
        return r;
    }
    match search(&app, &p).await {
        Ok(f) => Json(serde_json::json!({
            "records": f.entries.iter().map(|(place, e)| e.to_json_at(*place)).collect::<Vec<_>>(),
            "next_after": f.next,
            "damage": f.damage,
        }))
        .into_response(),
        Err(e) => view::json_error(StatusCode::BAD_REQUEST, &e),
    }
}

/// A record page's address: `/audit/shards/SHARD/records/SEQ`, or `/audit/records/SEQ`
/// for shard 0 (as links from before sharding name it).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RecordAt {
    #[serde(default)]
    shard: usize,
    seq: u64,
}

impl RecordAt {
    fn place(self) -> Place {
        Place {
            shard: self.shard,
            seq: self.seq,
        }
    }
}

/// The entry at `place`.
async fn entry(app: &App, place: Place) -> Result<Option<Entry>, String> {
    let Some(dir) = app.journal.clone() else {
        return Err("this server's audit trail has no journal".into());
    };
    tokio::task::spawn_blocking(move || entry_at(&dir, place))
        .await
        .map_err(|_| "the search stopped unexpectedly".to_string())?
}

fn facts(rows: &[(&str, String)]) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows {
                dt { (k) } dd.mono { (v) }
            }
        }
    }
}

fn record_body(place: Place, e: &Entry) -> Markup {
    let json = e.to_json_at(place);
    let rows: Vec<(&str, String)> = json
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| !v.is_null() && *k != "request" && *k != "response")
                .map(|(k, v)| {
                    (
                        k.as_str(),
                        v.as_str().map_or_else(|| v.to_string(), String::from),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let Entry::Request(r) = e else {
        return html! { h1 { "Event " (place.shard) ":" (place.seq) } section.card { (facts(&rows)) } };
    };
    html! {
        h1 { "Record " (place.shard) ":" (place.seq) }
        section.card id="record" { (facts(&rows)) }
        section.card id="request" {
            h2 { "Request" }
            @match r.request.as_deref().map(inspect::request_facts) {
                None => p.note { "The request was not kept (audit filter option request = true keeps it)." }
                Some(Err(e)) => p.error { "does not decode: " (e) }
                Some(Ok(q)) => (facts(&[
                    ("version", q.version.to_string()),
                    ("hash algorithm", q.hash_algorithm),
                    ("digest", q.digest),
                    ("reqPolicy", q.req_policy.unwrap_or_else(|| "–".into())),
                    ("nonce", q.nonce.unwrap_or_else(|| "–".into())),
                    ("certReq", q.cert_req.to_string()),
                    ("extensions", q.extensions.join(", ")),
                ]))
            }
        }
        section.card id="token" {
            h2 { "Response" }
            @match r.response.as_deref().map(inspect::response_facts) {
                None => p.note { "The response was not kept (the storage filter, or the audit filter option response = true, keeps it)." }
                Some(Err(e)) => p.error { "does not decode: " (e) }
                Some(Ok(f)) => {
                    (facts(&[("status", f.status.to_string()), ("failInfo", f.fail_info.join(", ")), ("statusString", f.status_text.join(" / "))]))
                    @if let Some(t) = f.token {
                        h2 { "TSTInfo" }
                        (facts(&[
                            ("serialNumber", t.serial),
                            ("genTime", format!("{} ({})", t.gen_time, t.gen_time_rfc3339)),
                            ("policy", t.policy),
                            ("messageImprint", format!("{} {}", t.hash_algorithm, t.digest)),
                            ("accuracy", t.accuracy_us.map_or("–".into(), |a| format!("{a} µs"))),
                            ("nonce", t.nonce.unwrap_or_else(|| "–".into())),
                            ("tsa", t.tsa.unwrap_or_else(|| "–".into())),
                            ("extensions", if t.has_extensions { "present".into() } else { "none".into() }),
                            ("signer", format!("{} serial {}", t.signer_issuer, t.signer_serial)),
                        ]))
                        h2 { "Certificates" }
                        @if t.certificates.is_empty() { p.note { "none (the request had no certReq)" } }
                        table {
                            @for c in &t.certificates {
                                tr { td { (c.subject) div.note { "issued by " (c.issuer) ", serial " (c.serial) } } td.mono { (c.not_before) " – " (c.not_after) } }
                            }
                        }
                    }
                    p { a id="download-tsr" href={ (record_href(place)) "/token.tsr" } { "Download the response (.tsr)" } }
                }
            }
        }
    }
}

async fn record_or_error(app: &App, place: Place) -> Result<Entry, (StatusCode, String)> {
    match entry(app, place).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err((
            StatusCode::NOT_FOUND,
            format!("no record with seq {} in shard {}", place.seq, place.shard),
        )),
        Err(e) => Err((StatusCode::CONFLICT, e)),
    }
}

pub async fn record_page(
    State(app): State<App>,
    Path(at): Path<RecordAt>,
    headers: HeaderMap,
) -> Response {
    let place = at.place();
    let caller: Caller = match app.authorize(&headers, Need::Audit, false, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match record_or_error(&app, place).await {
        Ok(e) => view::html(
            StatusCode::OK,
            view::page(
                Some(&caller),
                Area::Audit,
                &format!("Record {}:{}", place.shard, place.seq),
                &[],
                record_body(place, &e),
            ),
        ),
        Err((status, e)) => view::message_page(&caller, status, "Not found", &e),
    }
}

pub async fn record_json(
    State(app): State<App>,
    Path(at): Path<RecordAt>,
    headers: HeaderMap,
) -> Response {
    let place = at.place();
    if let Err(r) = app.authorize(&headers, Need::Audit, true, None) {
        return r;
    }
    match record_or_error(&app, place).await {
        Ok(e) => {
            let mut j = e.to_json_at(place);
            if let (Entry::Request(r), Some(m)) = (&e, j.as_object_mut()) {
                let req = r
                    .request
                    .as_deref()
                    .and_then(|d| inspect::request_facts(d).ok());
                let resp = r
                    .response
                    .as_deref()
                    .and_then(|d| inspect::response_facts(d).ok());
                m.insert(
                    "decoded_request".into(),
                    serde_json::to_value(req).unwrap_or_default(),
                );
                m.insert(
                    "decoded_response".into(),
                    serde_json::to_value(resp).unwrap_or_default(),
                );
            }
            Json(j).into_response()
        }
        Err((status, e)) => view::json_error(status, &e),
    }
}

pub async fn token(
    State(app): State<App>,
    Path(at): Path<RecordAt>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = app.authorize(&headers, Need::Audit, false, None) {
        return r;
    }
    let place = at.place();
    match record_or_error(&app, place).await {
        Ok(Entry::Request(r)) if r.response.is_some() => {
            let name = r.serial().map_or_else(
                || format!("record-{}-{}", place.shard, place.seq),
                |s| crate::audit::record::serial_hex(s),
            );
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "application/timestamp-reply".to_string(),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.tsr\""),
                    ),
                ],
                r.response.unwrap_or_default(),
            )
                .into_response()
        }
        Ok(_) => (StatusCode::NOT_FOUND, "this record holds no response\n").into_response(),
        Err((status, e)) => (status, e).into_response(),
    }
}

/// CSV columns of the export (requests only).
const CSV_COLUMNS: [&str; 17] = [
    "shard",
    "seq",
    "serial",
    "status",
    "fail_info",
    "http_status",
    "gen_time",
    "service",
    "policy",
    "policy_oid",
    "hash_algorithm",
    "message_imprint",
    "nonce",
    "cert_req",
    "client_ip",
    "key_id",
    "latency_us",
];

fn csv_field(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub async fn export(
    State(app): State<App>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<Params>,
) -> Response {
    if let Err(r) = app.authorize(&headers, Need::Audit, false, None) {
        return r;
    }
    let Some(dir) = app.journal.clone() else {
        return view::json_error(
            StatusCode::CONFLICT,
            "this server's audit trail has no journal",
        );
    };
    let search = match Search::of(&p) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let csv = given(&p.format) == Some("csv");
    // A reader thread streams the matches through a small channel: memory stays bounded
    // however large the trail, and a client that stops reading stops the scan.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        if csv
            && tx
                .blocking_send(Bytes::from(CSV_COLUMNS.join(",") + "\n"))
                .is_err()
        {
            return;
        }
        let _ = search.query.in_journal(&dir, |place, e| {
            if !search.matches(&e) {
                return true;
            }
            let line = if csv {
                let Entry::Request(_) = &e else { return true };
                let j = e.to_json_at(place);
                CSV_COLUMNS.map(|c| csv_field(&j[c])).join(",") + "\n"
            } else {
                e.to_json_at(place).to_string() + "\n"
            };
            tx.blocking_send(Bytes::from(line)).is_ok()
        });
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let (ctype, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "jsonl")
    };
    (
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"stampd-audit.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::journal::shard_dir;
    use crate::audit::query::tests::{requests, write_shard};

    #[test]
    fn the_cursor_is_read_as_written_and_a_bare_seq_is_shard_0() {
        let after = After::parse("0:7,2:3").unwrap();
        assert_eq!(after.to_string(), "0:7,2:3");
        assert_eq!(After::parse("12").unwrap().to_string(), "0:12");
        assert_eq!(After::parse("").unwrap(), After::default());
        assert!(After::parse("x:1").is_err() && After::parse("1:").is_err());
        assert!(after.shown(Place { shard: 2, seq: 3 }));
        assert!(!after.shown(Place { shard: 2, seq: 4 }));
        assert!(
            !after.shown(Place { shard: 1, seq: 1 }),
            "nothing of shard 1 shown"
        );
    }

    #[test]
    fn pages_show_every_entry_once_while_a_shard_appends_an_earlier_one() {
        let tmp = tempfile::tempdir().unwrap();
        let one = shard_dir(tmp.path(), 1);
        write_shard(tmp.path(), &requests(&[10, 20, 30]));
        write_shard(&one, &requests(&[15, 25]));
        let search = Search::of(&Params::default()).unwrap();
        let mut after = After::default();
        let mut pages = Vec::new();
        loop {
            let found = find(tmp.path(), &search, &after, 2).unwrap();
            assert!(found.damage.is_none());
            let times: Vec<i64> = found
                .entries
                .iter()
                .map(|(_, e)| e.time().unix_secs - 1_795_000_000)
                .collect();
            pages.push(times);
            if pages.len() == 1 {
                // Committed after the first page, with a time before everything shown.
                write_shard(&one, &requests(&[5]));
            }
            match found.next {
                Some(next) => after = After::parse(&next).unwrap(),
                None => break,
            }
        }
        assert_eq!(pages, [vec![10, 15], vec![20, 25], vec![5, 30]]);
    }

    #[test]
    fn a_record_is_addressed_by_shard_and_seq_or_by_seq_in_shard_0() {
        use axum::routing::get;
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/r/{seq}",
                get(|Path(at): Path<RecordAt>| async move { format!("{:?}", at.place()) }),
            )
            .route(
                "/s/{shard}/r/{seq}",
                get(|Path(at): Path<RecordAt>| async move { format!("{:?}", at.place()) }),
            );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let get = |uri: &str| {
            let req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
            rt.block_on(async {
                let res = app.clone().oneshot(req).await.unwrap();
                let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
                String::from_utf8(body.to_vec()).unwrap()
            })
        };
        assert_eq!(get("/r/12"), "Place { shard: 0, seq: 12 }");
        assert_eq!(get("/s/3/r/12"), "Place { shard: 3, seq: 12 }");
    }
}
