//! `sync = "kernel"`: the discipline state of the host's own NTP daemon, read from
//! `chronyc -c tracking`.
//!
//! Why chronyc and not `adjtimex(2)`: the crate forbids `unsafe`, and no maintained crate
//! offers a safe `adjtimex` (rustix and nix do not wrap it). chrony is the default NTP daemon
//! of Debian, RHEL and Ubuntu, and its tracking report carries more than the kernel's
//! STA_UNSYNC and maxerror: the measured offset, root delay and root dispersion, from which
//! chrony's documentation gives the bound |offset| + root dispersion + root delay / 2, and
//! the leap status. One short-lived process per poll (about a millisecond) is cheap at one
//! poll per second. Hosts running ntpd instead: use `sync = "sntp"` against it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::protocol::sntp::Leap;

/// What `chronyc -c tracking` reports, in the units the monitor uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    /// The reference chrony follows (name or address).
    pub reference: String,
    /// chrony's stratum.
    pub stratum: u8,
    /// chrony's "System time", ns: how far the system clock is behind NTP time (positive:
    /// slow), so server minus local, as the SNTP source reports it.
    pub offset_ns: i64,
    /// root dispersion + root delay / 2, ns: with |offset|, the clock's error bound.
    pub bound_ns: u64,
    /// chrony's leap status.
    pub leap: Leap,
    /// "Not synchronised": chrony has no usable source.
    pub unsynchronised: bool,
}

/// Parses one line of `chronyc -c tracking` (comma-separated: reference id, name, stratum,
/// reference time, system time, last offset, RMS offset, frequency, residual frequency,
/// skew, root delay, root dispersion, update interval, leap status).
pub fn parse(line: &str) -> Result<Tracking, String> {
    let f: Vec<&str> = line.trim().split(',').collect();
    if f.len() < 14 {
        return Err(format!(
            "`chronyc -c tracking` printed {} fields, expected 14: {line:?}",
            f.len()
        ));
    }
    let secs = |i: usize, what: &str| -> Result<f64, String> {
        f[i].trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("chronyc: {what} {:?} is not a number", f[i]))
    };
    let offset = secs(4, "system time")?;
    let delay = secs(10, "root delay")?.abs();
    let dispersion = secs(11, "root dispersion")?.abs();
    let (leap, unsynchronised) = match f[13].trim() {
        "Normal" => (Leap::None, false),
        "Insert second" => (Leap::Insert, false),
        "Delete second" => (Leap::Delete, false),
        "Not synchronised" => (Leap::None, true),
        other => return Err(format!("chronyc: unknown leap status {other:?}")),
    };
    Ok(Tracking {
        reference: f[1].trim().to_string(),
        stratum: f[2].trim().parse().map_err(|_| "chronyc: bad stratum")?,
        offset_ns: (offset * 1e9) as i64,
        bound_ns: ((dispersion + delay / 2.0) * 1e9) as u64,
        leap,
        unsynchronised,
    })
}

/// Runs `chronyc -c tracking` and parses it; a chronyc that does not answer within
/// `timeout` is killed.
pub fn tracking(chronyc: &Path, timeout: Duration) -> Result<Tracking, String> {
    let mut child = Command::new(chronyc)
        .args(["-c", "tracking"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", chronyc.display()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not answer within {timeout:?}",
                    chronyc.display()
                ));
            }
            Err(e) => return Err(format!("waiting for chronyc: {e}")),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if !status.success() {
        return Err(format!("chronyc failed ({status}): {}", err.trim()));
    }
    parse(out.lines().next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_synchronised_report() {
        let t = parse(
            "A29FC87B,ntp1.example,2,1795000000.123456789,-0.000012500,0.000001,0.000020,\
             -12.345,0.001,0.050,0.012000000,0.001000000,64.5,Normal\n",
        )
        .unwrap();
        assert_eq!(t.reference, "ntp1.example");
        assert_eq!(t.stratum, 2);
        assert_eq!(t.offset_ns, -12_500);
        // 1 ms dispersion + 12 ms / 2 delay.
        assert_eq!(t.bound_ns, 7_000_000);
        assert_eq!(t.leap, Leap::None);
        assert!(!t.unsynchronised);
    }

    #[test]
    fn reads_leap_and_unsynchronised_states_and_refuses_garbage() {
        let line = |leap: &str| format!("0,ref,1,0,0.5,0,0,0,0,0,0.002,0.001,16,{leap}");
        assert_eq!(parse(&line("Insert second")).unwrap().leap, Leap::Insert);
        assert_eq!(parse(&line("Delete second")).unwrap().leap, Leap::Delete);
        assert!(parse(&line("Not synchronised")).unwrap().unsynchronised);
        assert!(parse(&line("Sideways"))
            .unwrap_err()
            .contains("leap status"));
        assert!(parse("506 Cannot talk to daemon")
            .unwrap_err()
            .contains("fields"));
        assert!(parse(&line("Normal").replace("0.5", "NaN"))
            .unwrap_err()
            .contains("system time"));
    }

    #[test]
    fn runs_a_chronyc_and_kills_one_that_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            p
        };
        let good = script(
            "good",
            "echo '0,ref,1,0,0.001,0,0,0,0,0,0.002,0.001,16,Normal'",
        );
        assert_eq!(
            tracking(&good, Duration::from_secs(5)).unwrap().offset_ns,
            1_000_000
        );
        let hang = script("hang", "exec sleep 30");
        let started = Instant::now();
        let e = tracking(&hang, Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let failing = script("fail", "echo 'Cannot talk to daemon' >&2; exit 1");
        assert!(tracking(&failing, Duration::from_secs(5))
            .unwrap_err()
            .contains("Cannot talk to daemon"));
        assert!(
            tracking(&dir.path().join("missing"), Duration::from_secs(1))
                .unwrap_err()
                .starts_with("cannot run")
        );
    }
}
