//! Serial numbers are unique over many requests on concurrent connections and cores, and
//! across a restart (including a kill -9).

mod common;

use std::collections::HashSet;
use std::io::Write;

use common::{post_bytes, read_response, Server};
use stampd::protocol::{request, response, HashAlg, PkiStatus};

fn collect_serials(server: &Server, connections: u64, per_connection: u64) -> Vec<Vec<u8>> {
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut pending = Vec::new();
                let mut serials = Vec::new();
                // Pipeline in small groups to keep both cores busy.
                for chunk in 0..per_connection / 10 {
                    let mut batch = Vec::new();
                    for i in 0..10 {
                        let nonce = (c << 32 | (chunk * 10 + i)).to_be_bytes();
                        let q =
                            request::encode(HashAlg::Sha256, &[7; 32], None, Some(&nonce), false);
                        batch.extend(post_bytes("/tsa", &q, ""));
                    }
                    s.write_all(&batch).unwrap();
                    for _ in 0..10 {
                        let resp = read_response(&mut s, &mut pending).unwrap();
                        let r = response::decode(&resp.body).unwrap();
                        assert_eq!(r.status, PkiStatus::Granted);
                        serials.push(r.token.unwrap().tst_info.serial.to_vec());
                    }
                }
                serials
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn serials_unique_over_10k_concurrent_requests_and_across_restarts() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("d");
    let mut seen = HashSet::new();

    let server = Server::start(&dir, None);
    let first = collect_serials(&server, 16, 700);
    assert_eq!(first.len(), 11_200);
    for s in first {
        assert!(
            s.len() <= 20 && s[0] & 0x80 == 0,
            "serial must be positive and ≤ 160 bits"
        );
        assert!(seen.insert(s), "duplicate serial before restart");
    }
    // A hard kill, then a restart within the same second.
    server.kill();
    let server = Server::start(&dir, None);
    for s in collect_serials(&server, 4, 500) {
        assert!(seen.insert(s), "serial repeated after kill -9 and restart");
    }
    drop(server);
    // And a clean restart.
    let server = Server::start(&dir, None);
    for s in collect_serials(&server, 2, 200) {
        assert!(seen.insert(s), "serial repeated after restart");
    }
    assert_eq!(seen.len(), 11_200 + 2_000 + 400);
}
