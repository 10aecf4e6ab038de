//! A fake SNTP server on 127.0.0.1 for the clock tests: answers every client packet with the
//! real time shifted by an offset the test sets, and a stratum, leap indicator, kiss code or
//! silence the test controls. Its packet encoder is written here, independently of stampd's
//! codec, from RFC 5905 §7.3.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the fake server answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Added to the real time in every reply, ms (positive: the server is ahead).
    pub offset_ms: i64,
    pub stratum: u8,
    /// Leap indicator: 0 none, 1 insert, 2 delete, 3 alarm.
    pub li: u8,
    /// Answer with a kiss-o'-death packet (stratum 0) carrying this code.
    pub kiss: Option<[u8; 4]>,
    /// Do not answer at all.
    pub silent: bool,
    /// Root dispersion, ms.
    pub root_dispersion_ms: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            offset_ms: 0,
            stratum: 1,
            li: 0,
            kiss: None,
            silent: false,
            root_dispersion_ms: 1,
        }
    }
}

pub struct FakeSntp {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: Arc<AtomicBool>,
}

impl FakeSntp {
    pub fn start() -> FakeSntp {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, st) = (behaviour.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let received = stampd::clock::wall_now();
                let how = b.lock().unwrap().clone();
                // Only client requests (mode 3) get a reply.
                if n < 48 || buf[0] & 7 != 3 || how.silent {
                    continue;
                }
                let mut origin = [0u8; 8];
                origin.copy_from_slice(&buf[40..48]);
                let reply = encode(&how, origin, received, stampd::clock::wall_now());
                let _ = sock.send_to(&reply, from);
            }
        });
        FakeSntp {
            addr,
            behaviour,
            stop,
        }
    }

    /// Changes how it answers from the next request on.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }
}

impl Drop for FakeSntp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// NTP timestamp (seconds since 1900, 32.32) of `t` shifted by `offset_ms`.
fn ntp(t: SystemTime, offset_ms: i64) -> [u8; 8] {
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    let ns = d.as_nanos() as i128 + i128::from(offset_ms) * 1_000_000;
    let secs = (ns.div_euclid(1_000_000_000) + 2_208_988_800) as u64;
    let frac = ((ns.rem_euclid(1_000_000_000) as u64) << 32) / 1_000_000_000;
    ((secs << 32) | frac).to_be_bytes()
}

fn encode(how: &Behaviour, origin: [u8; 8], received: SystemTime, sent: SystemTime) -> [u8; 48] {
    let mut p = [0u8; 48];
    let (li, stratum) = match how.kiss {
        Some(_) => (3, 0),
        None => (how.li, how.stratum),
    };
    p[0] = li << 6 | 4 << 3 | 4; // version 4, mode 4 (server)
    p[1] = stratum;
    p[2] = 6; // poll
    p[3] = 0xec; // precision 2^-20
                 // Root delay 0; root dispersion in 16.16 seconds.
    let disp = (u64::from(how.root_dispersion_ms) << 16) / 1000;
    p[8..12].copy_from_slice(&(disp as u32).to_be_bytes());
    p[12..16].copy_from_slice(&how.kiss.unwrap_or(*b"GPS\0"));
    p[16..24].copy_from_slice(&ntp(received, how.offset_ms));
    p[24..32].copy_from_slice(&origin);
    p[32..40].copy_from_slice(&ntp(received, how.offset_ms));
    p[40..48].copy_from_slice(&ntp(sent, how.offset_ms));
    p
}
