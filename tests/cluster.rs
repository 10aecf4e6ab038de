//! Several nodes of one TSA sharing one PostgreSQL, behind a real HAProxy
//! (`deploy/cluster/haproxy.cfg`, the example's own file) — proven by failure: a node killed
//! with `kill -9` under load, PostgreSQL stopped under load, a rolling restart, and node ids
//! claimed in the database.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::sntp::FakeSntp;
use common::{export, load, run, Loaders, Server, BIN};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The example's node config `deploy/cluster/nodeN.toml`, on this test's PostgreSQL (its
/// default database) and
/// with a lease of `lease` seconds.
fn node_config(n: u16, pg: &Postgres, lease: u64) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/deploy/cluster/node{n}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let example_db = "port=55432 user=postgres dbname=stampd";
    assert!(text.contains(example_db) && text.contains(&format!("node_id = {n}\n")));
    text.replace(
        example_db,
        &format!("port={} user=postgres dbname=postgres", pg.port),
    )
    .replace(
        &format!("node_id = {n}\n"),
        &format!("node_id = {n}\nnode_lease_seconds = {lease}\n"),
    )
}

/// One TSA key for every node: the development PKI of `stampd init`, copied into each
/// node's data directory.
fn shared_pki(root: &Path, nodes: usize) -> Vec<PathBuf> {
    let src = root.join("pki-src");
    let (ok, out) = run(Command::new(BIN).arg("init").arg("--data-dir").arg(&src));
    assert!(ok, "{out}");
    (1..=nodes)
        .map(|n| {
            let dir = root.join(format!("node{n}"));
            std::fs::create_dir_all(dir.join("pki")).unwrap();
            for f in std::fs::read_dir(src.join("pki")).unwrap().flatten() {
                std::fs::copy(f.path(), dir.join("pki").join(f.file_name())).unwrap();
            }
            dir
        })
        .collect()
}

/// The three nodes of the example, each on a fixed address (a restarted node comes back
/// where HAProxy expects it).
struct Nodes {
    pg: Postgres,
    dirs: Vec<PathBuf>,
    addrs: Vec<SocketAddr>,
    configs: Vec<String>,
    running: Vec<Option<Server>>,
    _tmp: tempfile::TempDir,
}

impl Nodes {
    fn start() -> Nodes {
        Nodes::start_with(|_, text| text)
    }

    /// [`Nodes::start`] with node N's configuration as `config(N, example's)` makes it.
    fn start_with(config: impl Fn(u16, String) -> String) -> Nodes {
        let pg = Postgres::start();
        let tmp = common::tempdir();
        let dirs = shared_pki(tmp.path(), 3);
        let configs: Vec<String> = (1..=3)
            .map(|n| config(n, node_config(n, &pg, 30)))
            .collect();
        let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let running = (0..3)
            .map(|i| Some(Server::start_at(&dirs[i], Some(&configs[i]), addrs[i])))
            .collect();
        Nodes {
            pg,
            dirs,
            addrs,
            configs,
            running,
            _tmp: tmp,
        }
    }

    fn restart(&mut self, i: usize) {
        assert!(self.running[i].is_none());
        self.running[i] = Some(Server::start_at(
            &self.dirs[i],
            Some(&self.configs[i]),
            self.addrs[i],
        ));
    }

    /// Every granted record in all the nodes' journals, and each received token among them;
    /// then waits until PostgreSQL holds every record once: nothing missing, nothing twice.
    fn assert_every_token_in_postgres_once(&self, received: &[String]) {
        let journals: Vec<String> = self
            .dirs
            .iter()
            .flat_map(|d| export(d))
            .filter(|r| r["status"] == "granted")
            .map(|r| r["serial"].as_str().unwrap().to_string())
            .collect();
        let journal_set: HashSet<&String> = journals.iter().collect();
        assert_eq!(journal_set.len(), journals.len(), "a serial issued twice");
        for s in received {
            assert!(
                journal_set.contains(s),
                "token {s} received but in no journal"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let in_pg = self.pg.serials_once();
            if in_pg.len() == journals.len() {
                assert_eq!(journal_set, in_pg.iter().collect::<HashSet<_>>());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL holds {} granted records, the journals {}",
                in_pg.len(),
                journals.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A real HAProxy on `deploy/cluster/haproxy.cfg`, in front of three nodes.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(nodes: &[SocketAddr]) -> Haproxy {
        let dir = common::tempdir();
        let socket = dir.path().join("haproxy.sock");
        let addr = free_addr();
        let bin = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(bin)
            .arg("-f")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/cluster/haproxy.cfg"
            ))
            .arg("-db")
            .env("STAMPD_LB_BIND", addr.to_string())
            .env("STAMPD_LB_SOCKET", &socket)
            .env("STAMPD_NODE1", nodes[0].to_string())
            .env("STAMPD_NODE2", nodes[1].to_string())
            .env("STAMPD_NODE3", nodes[2].to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy (tests/run.sh installs it)");
        let lb = Haproxy {
            child,
            addr,
            socket,
            _dir: dir,
        };
        for n in ["n1", "n2", "n3"] {
            lb.wait(n, true);
        }
        lb
    }

    /// A command on the admin socket; its answer.
    fn command(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Each server's status (`UP`, `DOWN`, `MAINT`, ...) and last check (`L7OK`, ...).
    fn servers(&self) -> HashMap<String, (String, String)> {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return HashMap::new();
        };
        let _ = s.write_all(b"show stat\n");
        let mut csv = String::new();
        let _ = s.read_to_string(&mut csv);
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return HashMap::new();
        };
        let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let col = |name| cols.iter().position(|c| *c == name).unwrap();
        let (px, sv, st, check) = (
            col("pxname"),
            col("svname"),
            col("status"),
            col("check_status"),
        );
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > check && f[px] == "stampd" && f[sv].starts_with('n'))
            .map(|f| (f[sv].to_string(), (f[st].to_string(), f[check].to_string())))
            .collect()
    }

    /// Waits until `server` is in the pool (UP after a passing check) or out of it.
    fn wait(&self, server: &str, up: bool) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.servers();
            let state = s.get(server).cloned().unwrap_or_default();
            let is_up = state.0 == "UP" && state.1 == "L7OK";
            let is_out = state.0.starts_with("DOWN") || state.0.starts_with("MAINT");
            if (up && is_up) || (!up && is_out) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{server} did not go {}: {s:?}",
                if up { "UP" } else { "DOWN" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token from `url`, checked by `openssl ts -verify` against the shared CA.
fn stamp_and_verify(url: &str, node_dir: &Path, tag: &str) {
    let dir = common::tempdir();
    let data = dir.path().join("data.txt");
    std::fs::write(&data, format!("cluster {tag}")).unwrap();
    let reply = dir.path().join("r.tsr");
    let (ok, out) = run(Command::new(BIN)
        .arg("request")
        .arg(&data)
        .arg("--url")
        .arg(url)
        .arg("--cert")
        .arg("-o")
        .arg(&reply));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(&reply)
        .arg("-data")
        .arg(&data)
        .arg("-CAfile")
        .arg(node_dir.join("pki/ca.pem"))
        .arg("-untrusted")
        .arg(node_dir.join("pki/tsa.pem")));
    assert!(ok && out.contains("Verification: OK"), "{out}");
}

#[test]
fn three_nodes_behind_haproxy_lose_no_token_when_a_node_is_killed_or_postgresql_stops() {
    let mut nodes = Nodes::start();
    let lb = Haproxy::start(&nodes.addrs);
    for i in 0..3 {
        stamp_and_verify(
            &format!("http://{}/tsa", lb.addr),
            &nodes.dirs[0],
            &i.to_string(),
        );
    }
    const LOADERS: u64 = 6;
    let loaders = Loaders::start(lb.addr, "/tsa", LOADERS, 1000);
    std::thread::sleep(Duration::from_millis(1500));

    // kill -9 node 2 mid-load: HAProxy takes it out by its failing checks; requests that
    // were on it fail (at most one per loader), the others are sent elsewhere.
    nodes.running[1].take().unwrap().kill();
    let out_after = lb.wait("n2", false);
    std::thread::sleep(Duration::from_millis(500));
    nodes.restart(1);
    let back_after = lb.wait("n2", true);
    let _ = writeln!(
        std::io::stderr(),
        "n2 out of the pool {} ms after kill -9, back {} ms after its restart",
        out_after.as_millis(),
        back_after.as_millis()
    );

    // PostgreSQL stopped under load: every node serves on from its journal (each asked
    // directly, besides the load through the balancer).
    nodes.pg.pause();
    std::thread::sleep(Duration::from_millis(500));
    for addr in &nodes.addrs {
        stamp_and_verify(&format!("http://{addr}/tsa"), &nodes.dirs[0], "outage");
    }
    std::thread::sleep(Duration::from_millis(500));
    nodes.pg.resume();
    std::thread::sleep(Duration::from_millis(1000));
    let seen = loaders.finish();

    let _ = writeln!(
        std::io::stderr(),
        "{} tokens received, {} failed requests",
        seen.granted.len(),
        seen.other
    );
    assert!(
        seen.granted.len() > 300,
        "too little load: {}",
        seen.granted.len()
    );
    assert!(
        seen.other <= LOADERS,
        "only requests in flight on the killed node may fail: {} failed",
        seen.other
    );
    let unique: HashSet<&String> = seen.granted.iter().collect();
    assert_eq!(unique.len(), seen.granted.len(), "a serial received twice");
    // Serials of all three nodes among them (round robin).
    // (The node id is the 4 hex digits before the counter's 16.)
    let node_ids: HashSet<&str> = seen
        .granted
        .iter()
        .map(|s| &s[s.len() - 20..s.len() - 16])
        .collect();
    assert_eq!(node_ids.len(), 3, "{node_ids:?}");
    nodes.assert_every_token_in_postgres_once(&seen.granted);
    // Any node's token is found in PostgreSQL, whichever node issued it.
    for (i, serial) in seen
        .granted
        .iter()
        .step_by(seen.granted.len() / 3)
        .enumerate()
    {
        let (ok, out) = run(Command::new(BIN).args([
            "audit",
            "query",
            "--postgres",
            &nodes.pg.dsn(),
            "--serial",
            serial,
        ]));
        assert!(
            ok && out.lines().count() == 1,
            "token {i} ({serial}): {out}"
        );
    }
    // Every node's chains hold in PostgreSQL alone, across the kill and the outage.
    let (ok, text) = verify_postgres(&nodes.pg, &[]);
    assert!(ok && text.contains("intact: "), "{text}");
}

#[test]
fn a_rolling_restart_behind_haproxy_fails_no_request() {
    let mut nodes = Nodes::start();
    let lb = Haproxy::start(&nodes.addrs);
    let loaders = Loaders::start(lb.addr, "/tsa", 4, 1000);
    std::thread::sleep(Duration::from_millis(500));
    for (i, name) in ["n1", "n2", "n3"].into_iter().enumerate() {
        // Drain at the balancer: no new requests go to the node; those on it finish.
        lb.command(&format!("set server stampd/{name} state maint"));
        lb.wait(name, false);
        let node = nodes.running[i].take().unwrap();
        node.signal("TERM");
        assert!(node.wait_exit(Duration::from_secs(30)).success());
        nodes.restart(i);
        lb.command(&format!("set server stampd/{name} state ready"));
        lb.wait(name, true);
    }
    // Verified while every shipper is committing: one snapshot, no false break.
    let (ok, text) = verify_postgres(&nodes.pg, &[]);
    assert!(ok && text.contains("intact: "), "{text}");
    let seen = loaders.finish();
    assert!(
        seen.granted.len() > 200,
        "too little load: {}",
        seen.granted.len()
    );
    assert_eq!(seen.other, 0, "a request failed during the rolling restart");
    nodes.assert_every_token_in_postgres_once(&seen.granted);
}

#[test]
fn a_node_whose_clock_leaves_sync_leaves_the_pool_by_its_ready_and_comes_back() {
    // Node 3 follows three fake SNTP servers on loopback (the others trust their clock).
    let fakes: Vec<FakeSntp> = (0..3).map(|_| FakeSntp::start()).collect();
    let servers: Vec<String> = fakes.iter().map(|f| format!("\"{}\"", f.addr)).collect();
    let sntp = format!(
        "[clock]\nsync = \"sntp\"\nservers = [{}]\npoll_interval_ms = 300\ntimeout_ms = 250\n\
         max_offset_ms = 1000\nwarn_offset_ms = 500\n",
        servers.join(", ")
    );
    let nodes = Nodes::start_with(|n, text| {
        if n != 3 {
            return text;
        }
        let clock = text.find("[clock]").expect("the example sets [clock]");
        format!("{}{sntp}", &text[..clock])
    });
    let lb = Haproxy::start(&nodes.addrs);
    for f in &fakes {
        f.set(|b| b.offset_ms = 5_000);
    }
    // Out of sync: its /ready says 503, and HAProxy takes it out by itself.
    let out = lb.wait("n3", false);
    for i in 0..6 {
        stamp_and_verify(
            &format!("http://{}/tsa", lb.addr),
            &nodes.dirs[0],
            &format!("x{i}"),
        );
    }
    for f in &fakes {
        f.set(|b| b.offset_ms = 0);
    }
    let back = lb.wait("n3", true);
    let _ = writeln!(
        std::io::stderr(),
        "n3 out of the pool {} ms after its clock left sync, back {} ms after it returned",
        out.as_millis(),
        back.as_millis()
    );
    // The node audited both sync events.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events: Vec<String> = common::export_all(&nodes.dirs[2])
            .iter()
            .filter(|e| e["kind"] == "clock")
            .map(|e| e["event"].as_str().unwrap_or_default().to_string())
            .collect();
        if events.iter().any(|e| e == "out-of-sync") && events.iter().any(|e| e == "back-in-sync") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sync events not audited: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_postgresql_a_node_says_that_node_ids_are_the_operators_to_keep_apart() {
    let tmp = common::tempdir();
    let node = Server::start(&tmp.path().join("d"), None);
    assert_eq!(
        node.log_count("nothing checks that no other node uses this server.node_id"),
        1
    );
}

/// `stampd cluster status --postgres DSN --json`.
fn cluster_status(pg: &Postgres) -> Vec<serde_json::Value> {
    let out = common::stdout_of(
        Command::new(BIN)
            .args(["cluster", "status", "--json", "--postgres"])
            .arg(pg.dsn()),
    );
    serde_json::from_str(&out).unwrap()
}

/// `stampd serve` that must refuse to start: its exit status and stderr.
fn refused_start(dir: &Path, config: &str) -> String {
    let file = dir.with_extension("toml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(&file)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .env("STAMPD_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second node started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_id_held_by_a_live_node_is_refused_and_free_again_after_its_lease() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let dirs = shared_pki(tmp.path(), 2);
    let config = node_config(1, &pg, 3);
    let first = Server::start(&dirs[0], Some(&config));
    let epoch_of = |pg: &Postgres| -> i64 {
        let s = cluster_status(pg);
        assert_eq!(s.len(), 1, "{s:?}");
        s[0]["epoch"].as_i64().unwrap()
    };
    let status = cluster_status(&pg);
    assert_eq!(status[0]["state"], "live", "{status:?}");
    assert_eq!(status[0]["pid"], first.pid());
    assert_eq!(status[0]["node_id"], 1);
    let first_epoch = epoch_of(&pg);

    // A second node (its own data directory) with the same id: refused, naming the holder.
    let err = refused_start(&dirs[1], &config);
    assert!(
        err.contains("held by another node") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );

    // The holder restarted on its own data directory after kill -9 takes its id back at once.
    first.kill();
    let first = Server::start(&dirs[0], Some(&config));
    assert_eq!(cluster_status(&pg)[0]["pid"], first.pid());
    assert!(epoch_of(&pg) > first_epoch);

    // Killed for good: still refused while the lease runs, free once it lapsed (3 s).
    let killed_epoch = epoch_of(&pg);
    first.kill();
    let err = refused_start(&dirs[1], &config);
    assert!(err.contains("held by another node"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster_status(&pg)[0]["state"] != "expired" {
        assert!(Instant::now() < deadline, "the lease did not expire");
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = Server::start(&dirs[1], Some(&config));
    let status = cluster_status(&pg);
    assert_eq!(status[0]["pid"], second.pid());
    assert!(
        status[0]["epoch"].as_i64().unwrap() > killed_epoch,
        "the new holder's serials start past the old one's epoch: {status:?}"
    );
    // Its heartbeat reports the audit shards' heads.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster_status(&pg)[0]["shards"]
        .as_array()
        .is_none_or(|s| s.is_empty())
    {
        assert!(Instant::now() < deadline, "no shard heads reported");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A clean stop releases the id at once: the old node starts again on its own directory.
    assert!(second.terminate().unwrap().success());
    assert_eq!(cluster_status(&pg)[0]["state"], "released");
    let again = Server::start(&dirs[0], Some(&config));
    assert_eq!(cluster_status(&pg)[0]["pid"], again.pid());
    let (ok, text) = run(Command::new(BIN)
        .args(["cluster", "status", "--postgres"])
        .arg(pg.dsn()));
    assert!(ok && text.contains("cluster node 1: live"), "{text}");

    // A copy of a running node's data directory (a restored snapshot) has its instance id:
    // the copy starts past the original's epoch, and the original, finding its id taken at
    // its next heartbeat, stops — the two never issue under one epoch.
    let copy = tmp.path().join("copy");
    let (ok, out) = run(Command::new("cp").arg("-a").arg(&dirs[0]).arg(&copy));
    assert!(ok, "{out}");
    let before = epoch_of(&pg);
    let twin = Server::start(&copy, Some(&config));
    assert!(epoch_of(&pg) > before);
    assert!(again.wait_exit(Duration::from_secs(15)).success());
    let status = cluster_status(&pg);
    assert_eq!(
        (&status[0]["pid"], &status[0]["state"]),
        (&twin.pid().into(), &"live".into())
    );
}

#[test]
fn a_node_that_never_claimed_its_id_does_not_start_without_postgresql() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let dirs = shared_pki(tmp.path(), 1);
    let config = node_config(2, &pg, 9);
    // It held its id less than a lease ago: it may start while the database is down, and
    // claims its id when the database is back.
    let node = Server::start(&dirs[0], Some(&config));
    node.kill();
    pg.pause();
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let err = refused_start(&fresh, &config);
    assert!(err.contains("cannot claim server.node_id 2"), "{err}");
    let node = Server::start(&dirs[0], Some(&config));
    assert!(node.log_count("cannot reach PostgreSQL to claim") == 1);
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = cluster_status(&pg);
        if s[0]["pid"] == node.pid() && s[0]["state"] == "live" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not claimed after the database came back: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `stampd audit verify --postgres DSN [ARGS]`: exit status and stdout.
fn verify_postgres(pg: &Postgres, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--postgres"])
        .arg(pg.dsn())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_chains_verify_from_postgresql_alone_and_an_edit_or_a_cut_off_head_is_found() {
    let pg = Postgres::start();
    let tmp = common::tempdir();
    let dirs = shared_pki(tmp.path(), 2);
    let mut received = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        // Checkpoints every 25 frames, each anchored by a token of the node's own.
        let config =
            node_config(i as u16 + 1, &pg, 30) + "\n[audit.journal]\ncheckpoint_every = 25\n";
        let node = Server::start(dir, Some(&config));
        let stop = AtomicBool::new(false);
        let addr = Mutex::new(node.addr);
        std::thread::scope(|s| {
            let load = s.spawn(|| load(&addr, "/tsa", &stop, i as u64));
            std::thread::sleep(Duration::from_millis(400));
            stop.store(true, Ordering::Relaxed);
            received.extend(load.join().unwrap().granted);
        });
        // A clean stop ships everything first.
        assert!(node.terminate().unwrap().success());
    }
    assert!(received.len() > 100, "{}", received.len());
    let (ok, text) = verify_postgres(&pg, &[]);
    assert!(ok && text.contains("intact: 4 chain(s)"), "{text}");
    // The anchors verify against the TSA's CA too, in PostgreSQL and in each journal.
    let ca = dirs[0].join("pki/ca.pem");
    let (ok, json) = verify_postgres(&pg, &["--json", "--ca", ca.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let anchored: u64 = v["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["anchored_checkpoints"].as_u64().unwrap())
        .sum();
    assert!(ok && anchored >= 2, "{v}");
    let (ok, text) = run(Command::new(BIN)
        .args(["audit", "verify", "--ca"])
        .arg(&ca)
        .arg("--data-dir")
        .arg(&dirs[0]));
    assert!(
        ok && text.contains("anchored checkpoints; the newest stamps seq"),
        "{text}"
    );
    // A wrong trust anchor fails them.
    let other = tmp.path().join("other-ca");
    let (ok, out) = run(Command::new(BIN).arg("init").arg("--data-dir").arg(&other));
    assert!(ok, "{out}");
    let (ok, text) = verify_postgres(&pg, &["--ca", other.join("pki/ca.pem").to_str().unwrap()]);
    assert!(!ok && text.contains("anchor does not verify"), "{text}");
    let (ok, json) = verify_postgres(&pg, &["--node", "2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(ok && v["intact"] == true, "{v}");
    let chains = v["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2, "node 2's two shards: {v}");
    assert!(chains.iter().all(|c| c["node"] == 2));
    let records: u64 = chains.iter().map(|c| c["records"].as_u64().unwrap()).sum();
    assert!(records > 0);
    // The head an auditor learnt (e.g. from an anchored checkpoint) is there.
    let busiest = chains
        .iter()
        .max_by_key(|c| c["records"].as_u64().unwrap())
        .unwrap();
    let (journal, head_seq) = (&busiest["journal"], busiest["head_seq"].as_u64().unwrap());
    let head = format!("{head_seq}:{}", busiest["head_hash"].as_str().unwrap());
    let (ok, text) = verify_postgres(&pg, &["--expect-head", &head]);
    assert!(ok && text.contains(": present"), "{text}");

    // Cut off the newest two frames of that journal — rows, frames and the position, so
    // every remaining link and CRC holds: only the known head shows it.
    let cut = head_seq - 2;
    pg.sql(&format!(
        "DELETE FROM audit_record WHERE journal = {journal} AND seq > {cut}; \
         DELETE FROM audit_event WHERE journal = {journal} AND seq > {cut}; \
         DELETE FROM audit_frame WHERE journal = {journal} AND seq > {cut}; \
         UPDATE audit_position SET seq = {cut}, \
             hash = (SELECT sha256(payload) FROM audit_frame WHERE journal = {journal} AND seq = {cut}) \
         WHERE journal = {journal}"
    ));
    let (ok, text) = verify_postgres(&pg, &[]);
    assert!(ok, "a clean cut is invisible without a known head: {text}");
    let (ok, text) = verify_postgres(&pg, &["--node", "2", "--expect-head", &head]);
    assert!(!ok && text.contains("MISSING"), "{text}");

    // A forged row past the head (a token "issued" that no chain holds), and the rows of a
    // journal no shipper ever shipped.
    let forge = |journal: &str, seq: &str| {
        format!(
            "INSERT INTO audit_record (tsa, journal, seq, gen_time, gen_time_ns, status, \
             http_status, service, cert_req, latency_us) \
             SELECT tsa, {journal}, {seq}, gen_time, gen_time_ns, 'rejection', 200, service, \
             false, 0 FROM audit_record ORDER BY seq DESC LIMIT 1"
        )
    };
    pg.sql(&forge(&journal.to_string(), "seq + 1000000"));
    let (ok, text) = verify_postgres(&pg, &[]);
    assert!(!ok && text.contains("past the chain's head"), "{text}");
    pg.sql(&format!(
        "DELETE FROM audit_record WHERE journal = {journal} AND seq > {cut}"
    ));
    pg.sql(&forge("42", "1"));
    let (ok, text) = verify_postgres(&pg, &[]);
    assert!(
        !ok && text.contains("no shipper recorded a position"),
        "{text}"
    );
    pg.sql("DELETE FROM audit_record WHERE journal = 42");

    // An edited record: its row no longer says what its frame says.
    pg.sql(
        "UPDATE audit_record SET status = 'rejection' \
         WHERE (journal, seq) = (SELECT journal, seq FROM audit_record \
                                 WHERE status = 'granted' ORDER BY journal, seq LIMIT 1)",
    );
    let (ok, text) = verify_postgres(&pg, &[]);
    assert!(
        !ok && text.contains("BROKEN: cluster node") && text.contains("differs from the frame"),
        "{text}"
    );
}
