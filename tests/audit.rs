//! The audit trail end to end: the real server, its journal on disk, the `stampd audit`
//! commands, and a real PostgreSQL server started for each test that needs one.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::{export, run, Loaders, Server, BIN};
use stampd::protocol::hex::hex;
use stampd::protocol::{request, response, FailureInfo, HashAlg, PkiStatus};

/// Issues one request over a fresh connection; the decoded reply's status, serial text and
/// fail info.
fn issue(server: &Server, digest: [u8; 32]) -> (PkiStatus, Option<String>, Vec<FailureInfo>) {
    let body = request::encode(HashAlg::Sha256, &digest, None, Some(&[1, 2, 3]), false);
    let r =
        common::exchange(server, &common::post_bytes(&server.path, &body, "")).expect("a reply");
    assert_eq!(r.status, 200);
    let resp = response::decode(&r.body).unwrap();
    let serial = resp
        .token
        .as_ref()
        .map(|t| common::serial_text(t.tst_info.serial));
    (resp.status, serial, resp.fail_info.clone())
}

/// An exported entry as PostgreSQL gives it back: rows carry no journal shard.
fn without_shard(mut entry: serde_json::Value) -> serde_json::Value {
    entry.as_object_mut().unwrap().remove("shard");
    entry
}

fn audit_cmd(args: &[&str], data_dir: &Path) -> (bool, String) {
    run(Command::new(BIN)
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir))
}

/// Waits until PostgreSQL holds as many records as the journal; returns that count.
fn wait_shipped(pg: &Postgres, data_dir: &Path) -> usize {
    let journal = export(data_dir).len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let in_pg: usize = pg
            .sql("SELECT count(*) FROM audit_record")
            .parse()
            .unwrap_or(0);
        if in_pg == journal {
            return journal;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL holds {in_pg} records, the journal {journal}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every granted serial in PostgreSQL exactly once, and the set equal to the journal's.
fn assert_pg_matches_journal(pg: &Postgres, data_dir: &Path, received: &[String]) {
    let journal: Vec<String> = export(data_dir)
        .iter()
        .filter(|r| r["status"] == "granted")
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect();
    let in_pg = pg.serials_once();
    let journal_set: HashSet<&String> = journal.iter().collect();
    assert_eq!(
        journal_set.len(),
        journal.len(),
        "a serial appears twice in the journal"
    );
    assert_eq!(journal_set, in_pg.iter().collect::<HashSet<_>>());
    for s in received {
        assert!(
            journal_set.contains(s),
            "token {s} was received but is not in the trail"
        );
    }
}

/// Entries (records and events) in the journal.
fn export_all_len(data_dir: &Path) -> usize {
    common::export_all(data_dir).len()
}

#[test]
fn every_request_is_in_the_journal_before_its_reply_and_the_cli_finds_it() {
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    let server = Server::start(&data, None);
    let mut serials = Vec::new();
    for i in 0..5u8 {
        let (status, serial, _) = issue(&server, [i; 32]);
        assert_eq!(status, PkiStatus::Granted);
        let serial = serial.unwrap();
        // Group commit: the record is on disk by the time the reply arrives.
        let records = export(&data);
        assert!(
            records.iter().any(|r| r["serial"] == serial.as_str()),
            "{serial} not yet in the journal"
        );
        serials.push(serial);
    }
    let junk = common::exchange(&server, &common::post_bytes(&server.path, b"junk", "")).unwrap();
    assert_eq!(junk.status, 200);

    let records = export(&data);
    assert_eq!(records.len(), 6);
    // The export is in genTime order; records of two shards (cores) within one millisecond
    // have no order between them, so they are found by what they hold.
    let r = records
        .iter()
        .find(|r| r["serial"] == serials[0].as_str())
        .unwrap();
    // Each entry names its shard and its seq there.
    assert!(records
        .iter()
        .all(|r| r["shard"].is_u64() && r["seq"].is_u64()));
    assert_eq!(r["status"], "granted");
    assert_eq!(r["service"], "default");
    assert_eq!(r["policy"], "default");
    assert_eq!(r["policy_oid"], "2.999.1.1");
    assert_eq!(r["hash_algorithm"], "sha256");
    assert_eq!(r["message_imprint"], "00".repeat(32));
    assert_eq!(r["nonce"], "010203");
    assert_eq!(r["client_ip"], "127.0.0.1");
    assert!(r["key_id"].is_string());
    // The standard chain's storage filter keeps the issued token.
    assert!(r["response"].as_str().is_some_and(|d| d.starts_with("30")));
    assert!(r["gen_time"].as_str().unwrap().ends_with('Z'));
    let rejected: Vec<_> = records
        .iter()
        .filter(|r| r["status"] == "rejection")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["fail_info"], "badDataFormat");
    assert!(rejected[0]["serial"].is_null());

    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(ok, "{out}");
    assert!(out.contains("6 records") && out.contains("intact"), "{out}");

    // Queries: by serial (as openssl prints it, too), imprint, status, time.
    let lines = |args: &[&str]| {
        let (ok, out) = audit_cmd(args, &data);
        assert!(ok, "{out}");
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let by_serial = lines(&["query", "--serial", &serials[2]]);
    assert_eq!(by_serial.len(), 1);
    assert!(by_serial[0].contains(&serials[2]));
    let upper = format!("0x{}", serials[2].to_uppercase());
    assert_eq!(lines(&["query", "--serial", &upper]), by_serial);
    assert_eq!(lines(&["query", "--imprint", &"03".repeat(32)]).len(), 1);
    assert_eq!(lines(&["query", "--status", "rejection"]).len(), 1);
    assert_eq!(
        lines(&["query", "--status", "granted", "--service", "default"]).len(),
        5
    );
    assert_eq!(lines(&["query", "--service", "other"]).len(), 0);
    let t0 = records[0]["gen_time"].as_str().unwrap();
    let t2 = records[2]["gen_time"].as_str().unwrap();
    // The first three, and any later one in the same millisecond as the third.
    let tied = records[3..]
        .iter()
        .take_while(|r| r["gen_time"] == records[2]["gen_time"])
        .count();
    assert_eq!(lines(&["export", "--from", t0, "--to", t2]).len(), 3 + tied);
    assert_eq!(lines(&["export", "--to", "2000-01-01T00:00:00Z"]).len(), 0);
    let (ok, out) = audit_cmd(&["query", "--from", "yesterday"], &data);
    assert!(!ok && out.contains("RFC 3339"), "{out}");
}

#[test]
fn a_torn_tail_is_repaired_on_start_and_an_edit_is_reported() {
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    // One core: one shard, so every record is in the segment this test edits.
    let one_core = Some("[server]\ncores = 1\n");
    let server = Server::start(&data, one_core);
    for i in 0..20u8 {
        assert_eq!(issue(&server, [i; 32]).0, PkiStatus::Granted);
    }
    server.kill();
    let seg = data.join("journal/00000000000000000001.seg");
    let whole = std::fs::read(&seg).unwrap();
    // A crash in the middle of a batch write: garbage after the last whole frame.
    let mut torn = whole.clone();
    torn.extend_from_slice(&[0xff; 8]);
    torn.extend_from_slice(&whole[whole.len() - 300..whole.len() - 100]);
    std::fs::write(&seg, &torn).unwrap();
    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(!ok, "a torn tail is not an intact journal:\n{out}");

    let server = Server::start(&data, one_core);
    assert_eq!(issue(&server, [99; 32]).0, PkiStatus::Granted);
    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(ok, "{out}");
    assert!(out.contains("21 records"), "{out}");
    assert!(std::fs::read_dir(data.join("journal")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".torn-")));
    server.kill();

    // An edited record in the middle: one bit of a message imprint.
    let mut bytes = std::fs::read(&seg).unwrap();
    let imprint = [7u8; 32];
    let at = bytes
        .windows(32)
        .position(|w| w == imprint)
        .expect("the 8th request's imprint is in the journal");
    bytes[at] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(!ok, "{out}");
    assert!(out.contains("BROKEN") && out.contains("CRC"), "{out}");
    let (ok, out) = audit_cmd(&["verify", "--json"], &data);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["intact"], false);
    // Each shard's result names it; the edit breaks one shard's chain.
    let broken: Vec<&serde_json::Value> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["intact"] == false)
        .collect();
    assert_eq!(broken.len(), 1, "{v}");
    assert!(
        broken[0]["shard"].is_u64() && broken[0]["break"].as_str().unwrap().contains("CRC"),
        "{v}"
    );
    // Damage in the middle is not a torn write: the server refuses to start on it.
    let (ok, out) = run(Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data));
    assert!(!ok && out.contains("audit verify"), "{out}");
}

#[test]
fn sigterm_under_load_answers_every_accepted_request_ships_and_exits_0() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    // Async durability: the replies leave before their records are committed, so the
    // records still queued at the signal must be committed before the process ends.
    let config = format!(
        "[server]\ndrain_timeout_ms = 20000\n[server.http]\nrequest_timeout_ms = 5000\n\
         [audit]\ndurability = \"async\"\npostgres = \"{}\"\n",
        pg.dsn()
    );
    let server = Server::start(&data, Some(&config));
    let loaders = Loaders::start(server.addr, &server.path, 4, 0);
    std::thread::sleep(Duration::from_millis(1000));
    // A request half sent when the signal comes: the drain waits for it.
    let mut slow = server.connect();
    slow.write_all(b"POST /tsa HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    server.signal("TERM");
    // At once: /ready says 503 (the admin listener keeps answering), and the public port
    // takes no new connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.admin_get("/ready").0 != 503 {
        assert!(Instant::now() < deadline, "/ready never said draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.admin_get("/ready").1.contains("draining"));
    while std::net::TcpStream::connect(server.addr).is_ok() {
        assert!(Instant::now() < deadline, "the listener stayed open");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The half-sent request is finished and answered with a token, and the connection
    // is closed after it.
    let body = request::encode(HashAlg::Sha256, &[9; 32], None, None, false);
    let rest = common::post_bytes("/tsa", &body, "");
    let head_end = rest.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    // The request line and Host were sent; send the other headers and the body.
    let after_host = rest[head_end..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| head_end + i + 2)
        .unwrap();
    slow.write_all(&rest[after_host..]).unwrap();
    let r = common::read_response(&mut slow, &mut Vec::new()).expect("an answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let token = response::decode(&r.body).unwrap();
    assert_eq!(token.status, PkiStatus::Granted);
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let seen = loaders.finish();
    assert!(
        seen.granted.len() > 50,
        "too little load: {}",
        seen.granted.len()
    );
    assert_eq!(seen.other, 0, "a request got an error instead of a token");
    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(ok, "{out}");
    // Every record reached PostgreSQL before the exit, without a restart.
    let journal = export(&data).len();
    assert_eq!(
        pg.sql("SELECT count(*) FROM audit_record"),
        journal.to_string()
    );
    assert_pg_matches_journal(&pg, &data, &seen.granted);
}

#[test]
fn kill_9_under_load_with_several_shards_loses_nothing_and_ships_everything_exactly_once() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    // Three cores, so three audit shards, each with its own chain and shipper position;
    // the restart has two: shard 2 is kept, read and shipped, but no longer written.
    let config = |cores| {
        format!(
            "[server]\ncores = {cores}\n[audit]\npostgres = \"{}\"\n",
            pg.dsn()
        )
    };
    let server = Server::start(&data, Some(&config(3)));
    // The kernel spreads connections over the cores' listeners by a hash: with 18, the
    // chance that one of three cores gets none is (2/3)^18, under 0.1%.
    let loaders = Loaders::start(server.addr, &server.path, 18, 0);
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    let server = Server::start(&data, Some(&config(2)));
    *loaders.addr.lock().unwrap() = server.addr;
    std::thread::sleep(Duration::from_millis(1000));
    let seen = loaders.finish();
    assert!(
        seen.granted.len() > 100,
        "too little load: {}",
        seen.granted.len()
    );
    let unique: HashSet<&String> = seen.granted.iter().collect();
    assert_eq!(
        unique.len(),
        seen.granted.len(),
        "a serial was issued twice"
    );
    assert!(server.metrics().contains("stampd_audit_shards 2\n"));
    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(ok, "{out}");
    // Every shard of the first run took records (the load spreads over the cores).
    let per_shard = export(&data).iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r["shard"].as_u64().unwrap()).or_insert(0) += 1;
        m
    });
    assert_eq!(per_shard.len(), 3, "{per_shard:?}");
    let shipped = wait_shipped(&pg, &data);
    assert!(shipped >= seen.granted.len());
    assert_pg_matches_journal(&pg, &data, &seen.granted);
    // Each shard is its own journal in PostgreSQL, and every frame of each arrived.
    let journals = pg.sql("SELECT count(DISTINCT journal) FROM audit_position");
    assert_eq!(journals, "3");
}

#[test]
fn a_damaged_shard_refuses_the_start_and_names_itself() {
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    let config = "[server]\ncores = 2\n";
    let server = Server::start(&data, Some(config));
    for i in 0..40u8 {
        assert_eq!(issue(&server, [i; 32]).0, PkiStatus::Granted);
    }
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    // Edit the first record of shard 1 that another follows: not a torn tail, damage.
    let seg = data.join("journal/shard-1/00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut found: Vec<usize> = (0..40u8)
        .filter_map(|i| bytes.windows(32).position(|w| w == [i; 32]))
        .collect();
    found.sort_unstable();
    assert!(found.len() >= 2, "shard 1 holds {} records", found.len());
    bytes[found[0]] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let (ok, out) = run(Command::new("timeout")
        .arg("30")
        .arg(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--config")
        .arg(data.with_extension("toml")));
    assert!(!ok, "a damaged shard must stop the start:\n{out}");
    assert!(out.contains("audit shard 1"), "{out}");
    let (ok, out) = audit_cmd(&["verify"], &data);
    assert!(!ok && out.contains("shard 1"), "{out}");
}

#[test]
fn a_postgres_outage_mid_load_loses_and_duplicates_nothing() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    let config = format!("[audit]\npostgres = \"{}\"\n", pg.dsn());
    let server = Server::start(&data, Some(&config));
    let loaders = Loaders::start(server.addr, &server.path, 2, 0);
    std::thread::sleep(Duration::from_millis(700));
    pg.pause();
    std::thread::sleep(Duration::from_millis(1000));
    // Serving went on; the shipper is down and its lag visible.
    let text = server.metrics();
    assert!(text.contains("stampd_audit_shipper_up 0"), "{text}");
    let lag: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("stampd_audit_shipper_lag_frames "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(lag > 0, "{text}");
    pg.resume();
    std::thread::sleep(Duration::from_millis(500));
    let seen = loaders.finish();
    assert_eq!(seen.other, 0, "every request was granted during the outage");
    wait_shipped(&pg, &data);
    assert_pg_matches_journal(&pg, &data, &seen.granted);
}

#[test]
fn postgres_only_mode_commits_before_replying_and_refuses_while_down() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    let config = format!(
        "[audit]\nstore = \"postgres\"\npostgres = \"{}\"\n",
        pg.dsn()
    );
    let server = Server::start(&data, Some(&config));
    for i in 0..10u8 {
        let (status, serial, _) = issue(&server, [i; 32]);
        assert_eq!(status, PkiStatus::Granted);
        // Group commit waited for the database commit.
        let found = pg.sql(&format!(
            "SELECT count(*) FROM audit_record WHERE encode(serial, 'hex') LIKE '%{}'",
            serial.unwrap()
        ));
        assert_eq!(found, "1");
    }
    assert!(
        !data.join("journal").exists(),
        "no journal in PostgreSQL-only mode"
    );
    pg.pause();
    let started = Instant::now();
    let (status, serial, fail) = issue(&server, [50; 32]);
    assert_eq!((status, serial), (PkiStatus::Rejection, None));
    assert_eq!(fail, vec![FailureInfo::SystemFailure]);
    assert!(started.elapsed() < Duration::from_secs(20));
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    while issue(&server, [51; 32]).0 != PkiStatus::Granted {
        assert!(Instant::now() < deadline, "service did not resume");
    }
}

#[test]
fn migrate_and_query_postgres_from_the_command_line() {
    let pg = Postgres::start();
    let dsn = pg.dsn();
    let migrate = || run(Command::new(BIN).args(["audit", "migrate", "--postgres", &dsn]));
    let (ok, out) = migrate();
    assert!(ok && out.contains("7 migration(s) applied"), "{out}");
    let (ok, out) = migrate();
    assert!(ok && out.contains("0 migration(s) applied"), "{out}");
    // A database at schema version 1 (before the request digest columns, the events table,
    // the client subject and the protocol columns, the node claims and the chain table) is
    // brought up to date.
    pg.sql(
        "ALTER TABLE audit_record DROP COLUMN request_sha256, DROP COLUMN request_length, \
         DROP COLUMN client_subject, DROP COLUMN protocol; DROP TABLE audit_event; \
         DROP TABLE stampd_node; DROP TABLE audit_frame; \
         ALTER TABLE audit_position DROP COLUMN node, DROP COLUMN shard, DROP COLUMN chain_from; \
         DELETE FROM stampd_schema WHERE version >= 2",
    );
    let (ok, out) = migrate();
    assert!(ok && out.contains("6 migration(s) applied"), "{out}");
    // A password in the connection string is refused: secrets come from env or files.
    let (ok, out) = run(Command::new(BIN).args([
        "audit",
        "migrate",
        "--postgres",
        &format!("{dsn} password=hunter2"),
    ]));
    assert!(
        !ok && out.contains("password") && !out.contains("hunter2"),
        "{out}"
    );

    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    let config = format!("[audit]\npostgres = \"{dsn}\"\nidentity = \"tsa-a\"\n");
    let server = Server::start(&data, Some(&config));
    let (_, serial, _) = issue(&server, [5; 32]);
    issue(&server, [6; 32]);
    // A rejection (a 20-byte "SHA-256" digest): its record carries the request's digest.
    let bad = request::encode(HashAlg::Sha256, &[1; 20], None, None, false);
    let r = common::exchange(&server, &common::post_bytes(&server.path, &bad, "")).unwrap();
    assert_eq!(
        response::decode(&r.body).unwrap().status,
        PkiStatus::Rejection
    );
    let serial = serial.unwrap();
    wait_shipped(&pg, &data);
    let query = |args: &[&str]| {
        let (ok, out) = run(Command::new(BIN)
            .args(["audit", "query", "--postgres", &dsn])
            .args(args));
        assert!(ok, "{out}");
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let found = query(&["--serial", &serial]);
    assert_eq!(found.len(), 1);
    // PostgreSQL gives back the same record the journal holds (which also names its shard).
    let journal: Vec<_> = export(&data)
        .into_iter()
        .filter(|r| r["serial"] == serial.as_str())
        .map(without_shard)
        .collect();
    assert_eq!(found, journal);
    assert_eq!(
        query(&["--identity", "tsa-a", "--status", "granted"]).len(),
        2
    );
    assert_eq!(query(&["--identity", "tsa-b"]).len(), 0);
    assert_eq!(query(&["--imprint", &"06".repeat(32)]).len(), 1);
    let rejected = query(&["--status", "rejection"]);
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["request_sha256"],
        hex(&stampd::protocol::request::sha256(&bad))
    );
    assert_eq!(rejected[0]["request_length"], bad.len());
    let journal_rejected: Vec<_> = export(&data)
        .into_iter()
        .filter(|r| r["status"] == "rejection")
        .map(without_shard)
        .collect();
    assert_eq!(rejected, journal_rejected);
    // The clock's events are shipped too, in the journal's order, and found by kind; a
    // request filter leaves them out.
    let clock_events = || -> Vec<serde_json::Value> {
        common::export_all(&data)
            .into_iter()
            .filter(|e| e["kind"] == "clock")
            .map(without_shard)
            .collect()
    };
    let events = clock_events();
    assert_eq!(events[0]["event"], "monitor-started");
    assert_eq!(events[1]["event"], "in-sync");
    assert_eq!(query(&["--kind", "clock"]), events);
    assert!(query(&["--status", "granted"])
        .iter()
        .all(|r| r["kind"] == "request"));

    // A lost position: shipping again skips what is there and duplicates nothing.
    let (ok, out) = run(Command::new(BIN)
        .args(["audit", "ship", "--postgres", &dsn, "--data-dir"])
        .arg(&data));
    assert!(
        !ok && out.contains("locked"),
        "a live journal is not shipped by hand: {out}"
    );
    server.kill();
    pg.sql("DELETE FROM audit_position");
    let (ok, out) = run(Command::new(BIN)
        .args([
            "audit",
            "ship",
            "--postgres",
            &dsn,
            "--identity",
            "tsa-a",
            "--data-dir",
        ])
        .arg(&data));
    assert!(ok, "{out}");
    assert_eq!(pg.sql("SELECT count(*) FROM audit_record"), "3");
    assert_eq!(query(&["--serial", &serial]), journal);
    assert_eq!(
        query(&["--kind", "clock"]),
        clock_events(),
        "no event twice"
    );
}

#[test]
fn group_commit_holds_the_reply_until_the_batch_is_on_disk_and_async_does_not() {
    let tmp = common::tempdir();
    let config = |durability: &str| {
        // One core: pacing is per audit shard, and both requests must meet the same one.
        format!("[server]\ncores = 1\n[audit]\ndurability = \"{durability}\"\n[audit.batch]\ninterval_us = 1000000\n")
    };
    let interval = Duration::from_secs(1);
    // Group commit, commits at least 1 s apart while the shard is busy: a requester that
    // sends its next request once its reply is out finds the shard idle each time (nothing
    // arrived while its batch was committed), so both are committed at once, not an
    // interval apart. Pacing under load is covered by the shard's unit tests.
    let data = tmp.path().join("g");
    let server = Server::start(&data, Some(&config("group-commit")));
    // The clock's start-up events (monitor-started, in-sync) were the first commit: let one
    // interval pass after it, so the writer is idle again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while export_all_len(&data) < 2 {
        assert!(
            Instant::now() < deadline,
            "the start-up events were never committed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(interval);
    let started = Instant::now();
    let (status, first, _) = issue(&server, [1; 32]);
    assert_eq!(status, PkiStatus::Granted);
    let (status, serial, _) = issue(&server, [4; 32]);
    assert_eq!(status, PkiStatus::Granted);
    assert!(started.elapsed() < Duration::from_millis(900));
    // Each reply left after its record was on disk.
    let records = export(&data);
    for s in [&first, &serial] {
        assert!(records.iter().any(|r| r["serial"] == s.as_deref().unwrap()));
    }
    drop(server);

    // Async: the reply leaves at once; the record follows with the next commit.
    let data = tmp.path().join("a");
    let server = Server::start(&data, Some(&config("async")));
    let committed = |serial: &Option<String>| {
        export(&data)
            .iter()
            .any(|r| r["serial"] == serial.as_deref().unwrap())
    };
    let wait_for = |serial: &Option<String>| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !committed(serial) {
            assert!(Instant::now() < deadline, "never committed");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The first record is committed at once (the writer is idle); the next commit cannot
    // begin within the interval of that one's start. Wait for the first commit before
    // sending the second, so that the two never share it (on a loaded machine the writer
    // may not have taken the first record yet when the second arrives).
    let before = Instant::now();
    let (status, first, _) = issue(&server, [5; 32]);
    assert_eq!(status, PkiStatus::Granted);
    wait_for(&first);
    let (status, serial, _) = issue(&server, [2; 32]);
    assert_eq!(status, PkiStatus::Granted);
    let pending = !committed(&serial);
    if before.elapsed() < interval {
        assert!(pending, "committed within the interval");
    }
    wait_for(&first);
    wait_for(&serial);
    // SIGTERM commits what is queued at once, without waiting out the interval (most of
    // it is left: the last commit began moments ago).
    let started = Instant::now();
    issue(&server, [3; 32]);
    server.terminate();
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(export(&data).len(), 3);
}

/// Bytes of every file in the journal directory and its shards' (segments grow in 256 KiB
/// prefill steps).
fn journal_bytes(data_dir: &Path) -> u64 {
    fn files(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    files(&e.path())
                } else {
                    m.len()
                }
            })
            .sum()
    }
    files(&data_dir.join("journal"))
}

#[test]
fn refused_requests_leave_bounded_records_even_when_requests_are_kept() {
    // A SHA-256 AlgorithmIdentifier with a 65,000-byte digest is valid DER under the 64 KiB
    // body limit and refused (badDataFormat): its record must not keep the 65 KB, neither
    // as the imprint nor as the kept request.
    let tmp = common::tempdir();
    let data = tmp.path().join("d");
    let config = "[preprocess.keep]\nkind = \"audit\"\nrequest = true\n\
                  [[service]]\npreprocess = [\"clock\", \"keep\"]\n";
    let server = Server::start(&data, Some(config));
    issue(&server, [9; 32]); // the journal exists, with its first prefill
    let before = journal_bytes(&data);
    let body = request::encode(HashAlg::Sha256, &[7; 65_000], None, None, false);
    let raw = common::post_bytes(&server.path, &body, "");
    let mut s = server.connect();
    let mut pending = Vec::new();
    const FLOOD: u64 = 2_000;
    for _ in 0..FLOOD {
        s.write_all(&raw).unwrap();
        let r = common::read_response(&mut s, &mut pending).expect("a reply");
        assert_eq!(r.status, 200);
        let resp = response::decode(&r.body).unwrap();
        assert_eq!(resp.status, PkiStatus::Rejection);
        assert_eq!(resp.fail_info, [FailureInfo::BadDataFormat]);
    }
    drop(s);
    assert!(server.terminate().is_some_and(|s| s.success()));
    // At most 1 KiB per refused record, plus one prefill step of slack.
    let grown = journal_bytes(&data) - before;
    assert!(
        grown <= FLOOD * 1024 + (256 << 10),
        "the journal grew by {grown} bytes for {FLOOD} refused requests"
    );
    let records = export(&data);
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["status"] == "rejection")
        .collect();
    assert_eq!(refused.len() as u64, FLOOD);
    for r in refused {
        assert!(r["message_imprint"].is_null(), "{r}");
        // The kept request is its first 256 bytes, in hex; the digest and length are the
        // whole body's.
        assert_eq!(r["request"].as_str().map(str::len), Some(512), "{r}");
        assert_eq!(r["request_length"], body.len(), "{r}");
        assert_eq!(
            r["request_sha256"],
            hex(&stampd::protocol::request::sha256(&body))
        );
    }
}

/// A small tmpfs, unmounted when dropped; `None` where mounting is not allowed (not root).
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs(at.to_path_buf()))
    }

    /// Bytes free, as `df` reports them.
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[allow(
    clippy::print_stderr,
    reason = "a test skipped for lack of root says so in the test output"
)]
fn a_full_journal_disk_refuses_requests_before_it_tears_and_recovers_by_itself() {
    let tmp = common::tempdir();
    let Some(fs) = SmallFs::mount(&tmp.path().join("small"), "8m") else {
        eprintln!("skipped: cannot mount a tmpfs here (the test needs root)");
        return;
    };
    // 8 MiB with a 5 MiB filler: about 3 MiB free, 2 of them reserved, so the journal has
    // room for less than 1 MiB of records before the budget is reached.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![1u8; 5 << 20]).unwrap();
    let journal = fs.0.join("journal");
    let data = tmp.path().join("d");
    let config = format!(
        "[audit.journal]\ndir = \"{}\"\nmin_free_mib = 2\n\
         [preprocess.keep]\nkind = \"audit\"\nrequest = true\nresponse = true\n\
         [[service]]\npreprocess = [\"clock\", \"keep\"]\n",
        journal.display()
    );
    let server = Server::start(&data, Some(&config));
    let ready = |server: &Server| {
        common::exchange(server, b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap()
            .status
    };
    assert_eq!(ready(&server), 200);
    let mut s = server.connect();
    let mut pending = Vec::new();
    let mut granted = 0u32;
    let mut refused = false;
    for i in 0u32..20_000 {
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&i.to_be_bytes());
        let body = request::encode(HashAlg::Sha256, &digest, None, None, false);
        s.write_all(&common::post_bytes(&server.path, &body, ""))
            .unwrap();
        let r = common::read_response(&mut s, &mut pending).expect("a reply");
        assert_eq!(r.status, 200);
        let resp = response::decode(&r.body).unwrap();
        if resp.status == PkiStatus::Granted {
            assert!(!refused, "granted after the budget was reached");
            granted += 1;
            continue;
        }
        assert_eq!(resp.fail_info, [FailureInfo::SystemFailure]);
        refused = true;
        if i > granted + 10 {
            break;
        }
    }
    assert!(
        refused && granted > 100,
        "granted {granted}, refused {refused}"
    );
    // Refused before the reserve was touched: the filesystem is far from full.
    assert!(fs.free() >= 1 << 20, "free {}", fs.free());
    assert_eq!(ready(&server), 503);
    let metrics = server.metrics();
    assert!(
        metrics.contains("stampd_audit_disk_budget_state 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stampd_audit_disk_free_bytes "),
        "{metrics}"
    );
    // One log line for the state change, however many requests were refused after it.
    assert_eq!(server.log_count("audit journal disk budget reached"), 1);
    // (The batch that met the budget failed and says so; the requests after it were refused
    // before signing, without a line each.)
    assert!(server.log_count("audit batch not committed") <= 1);
    assert!(
        server.log_count("stampd::audit") <= 3,
        "one line per state change"
    );
    // Space comes back: within the writer's idle tick the service resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&server) != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _, _) = issue(&server, [0xee; 32]);
    assert_eq!(status, PkiStatus::Granted);
    drop(s);
    assert!(server.terminate().is_some_and(|s| s.success()));
    let (ok, out) = run(Command::new(BIN)
        .args(["audit", "verify", "--journal"])
        .arg(&journal));
    assert!(ok, "{out}");
    let granted_records = Command::new(BIN)
        .args(["audit", "export", "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&granted_records.stdout);
    let issued = text.lines().filter(|l| l.contains("\"granted\"")).count();
    // Every issued token is in the journal: the ones before the budget and the one after.
    assert_eq!(issued as u32, granted + 1);
}

#[test]
fn the_shipper_ships_to_a_postgresql_that_accepts_only_tls() {
    let tmp = common::tempdir();
    let pki = tmp.path().join("tls");
    let (ca, chain, key) = common::tls::server(&pki, 0o600);
    let pg = Postgres::start_tls(&chain, &key);
    let query = |dsn: &str| {
        run(Command::new(BIN).args(["audit", "query", "--postgres", dsn, "--kind", "request"]))
    };
    // Without TLS the server refuses (pg_hba.conf: hostnossl reject) ...
    let (ok, out) = query(&format!("{} sslmode=disable", pg.dsn()));
    assert!(!ok && out.contains("no encryption"), "{out}");
    // ... and verify-full refuses a server whose chain does not lead to sslrootcert.
    let other = common::tls::ca(&pki, "some other CA");
    let (ok, out) = query(&format!(
        "{} sslmode=verify-full sslrootcert='{}'",
        pg.dsn(),
        other.0.display()
    ));
    assert!(!ok && out.to_lowercase().contains("certificate"), "{out}");
    // require (encrypted, unauthenticated) connects.
    let (ok, out) = run(Command::new(BIN).args([
        "audit",
        "migrate",
        "--postgres",
        &format!("{} sslmode=require", pg.dsn()),
    ]));
    assert!(ok && out.contains("7 migration(s) applied"), "{out}");

    let dsn = format!(
        "{} sslmode=verify-full sslrootcert='{}'",
        pg.dsn(),
        ca.display()
    );
    let data = tmp.path().join("d");
    let server = Server::start(&data, Some(&format!("[audit]\npostgres = \"{dsn}\"\n")));
    let serials: Vec<String> = (0..5u8)
        .map(|i| issue(&server, [i; 32]).1.expect("granted"))
        .collect();
    assert_eq!(wait_shipped(&pg, &data), 5);
    // The shipper's own connection is the TLS one.
    let ssl = pg.sql(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'stampd'",
    );
    assert_eq!(ssl, "t");
    drop(server);
    assert_pg_matches_journal(&pg, &data, &serials);
    let (ok, out) = query(&dsn);
    assert!(ok && out.lines().count() == 5, "{out}");
}
