//! `stampd request` and `stampd verify`: the client pair.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{say, CmdResult};
use crate::client::{http, verify};
use crate::protocol::{request, response, HashAlg, PkiStatus};

fn parse_hash(name: &str) -> Result<HashAlg, String> {
    HashAlg::from_name(name).ok_or_else(|| {
        let names: Vec<_> = HashAlg::ALL.iter().map(|h| h.name()).collect();
        format!("unknown hash `{name}`; use one of {}", names.join(", "))
    })
}

fn hash_file(path: &Path, alg: HashAlg) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
    };
    let mut ctx = alg.hasher();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().to_vec())
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per command-line flag, passed straight from clap"
)]
pub(super) fn request_cmd(
    file: &Path,
    url: &str,
    hash: &str,
    cert: bool,
    no_nonce: bool,
    policy: Option<&str>,
    out: &Path,
    json: bool,
) -> CmdResult {
    let alg = parse_hash(hash)?;
    let digest = hash_file(file, alg)?;
    let policy = policy
        .map(|p| {
            crate::protocol::oid::Oid::parse(p).ok_or_else(|| format!("`{p}` is not a dotted OID"))
        })
        .transpose()?;
    let nonce = if no_nonce {
        None
    } else {
        let mut n = [0u8; 8];
        aws_lc_rs::rand::fill(&mut n).map_err(|_| "no randomness for the nonce")?;
        Some(n.to_vec())
    };
    let body = request::encode(alg, &digest, policy.as_ref(), nonce.as_deref(), cert);
    let reply = http::post_query(url, &body, Duration::from_secs(30))?;
    if reply.status != 200 {
        return Err(format!(
            "HTTP {} from {url}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        ));
    }
    if reply.content_type != "application/timestamp-reply" {
        return Err(format!(
            "unexpected Content-Type `{}` from {url}",
            reply.content_type
        ));
    }
    std::fs::write(out, &reply.body).map_err(|e| format!("{}: {e}", out.display()))?;
    let resp = response::decode(&reply.body).map_err(|e| format!("malformed reply: {e}"))?;
    let fails: Vec<&str> = resp.fail_info.iter().map(|f| f.name()).collect();
    let mut summary = serde_json::json!({
        "status": resp.status.name(),
        "fail_info": fails,
        "status_text": resp.status_text,
        "out": out.display().to_string(),
    });
    if let Some(t) = &resp.token {
        let tst = &t.tst_info;
        if tst.digest != digest.as_slice() {
            return Err("the token's message imprint does not match the request".into());
        }
        if let Some(n) = &nonce {
            let want = crate::protocol::der::unsigned_integer_content(n);
            if tst.nonce != Some(want.as_slice()) {
                return Err("the token's nonce does not match the request".into());
            }
        }
        summary["serial"] =
            crate::protocol::hex::hex(tst.serial.strip_prefix(&[0]).unwrap_or(tst.serial)).into();
        summary["gen_time"] = tst.gen_time_text.into();
    }
    if json {
        say!("{summary}");
    } else if resp.status == PkiStatus::Granted {
        say!(
            "granted: serial {} at {} → {}",
            summary["serial"].as_str().unwrap_or(""),
            summary["gen_time"].as_str().unwrap_or(""),
            out.display()
        );
    } else {
        say!(
            "{}: {} {}",
            resp.status.name(),
            fails.join(","),
            resp.status_text.join(" / ")
        );
    }
    Ok(if resp.status == PkiStatus::Granted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn read_pem_certs(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = crate::signer::software::pem_blocks(&text, "CERTIFICATE")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE PEM block", path.display()));
    }
    Ok(certs)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per command-line flag, passed straight from clap"
)]
pub(super) fn verify_cmd(
    reply: &Path,
    data: Option<&Path>,
    digest: Option<&str>,
    hash: Option<&str>,
    ca: &Path,
    untrusted: Option<&Path>,
    bare: bool,
    json: bool,
) -> CmdResult {
    let input = std::fs::read(reply).map_err(|e| format!("{}: {e}", reply.display()))?;
    // The hash defaults to the one the token names.
    let token_hash = (|| {
        let t = if bare {
            response::decode_token(&input).ok()?
        } else {
            response::decode(&input).ok()?.token?
        };
        HashAlg::from_oid_bytes(t.tst_info.hash_oid)
    })();
    let alg = match hash {
        Some(h) => parse_hash(h)?,
        None => token_hash.unwrap_or(HashAlg::Sha256),
    };
    let digest = match (data, digest) {
        (Some(d), _) => hash_file(d, alg)?,
        (None, Some(hex)) => decode_hex(hex)?,
        (None, None) => return Err("give --data FILE or --digest HEX".into()),
    };
    let trusted = read_pem_certs(ca)?;
    let extra = untrusted
        .map(read_pem_certs)
        .transpose()?
        .unwrap_or_default();
    let expect = verify::Expectation {
        hash: alg,
        digest,
        nonce: None,
    };
    match verify::verify(&input, bare, &expect, &trusted, &extra) {
        Ok(v) => {
            if json {
                say!("{}", serde_json::to_string(&v).unwrap_or_default());
            } else {
                say!("Verification: OK");
                say!("  serial      {}", v.serial);
                say!("  genTime     {}", v.gen_time);
                say!("  policy      {}", v.policy);
                say!("  imprint     {} {}", v.hash_algorithm, v.digest);
                if let Some(n) = &v.nonce {
                    say!("  nonce       {n}");
                }
                if let Some(a) = v.accuracy_us {
                    say!("  accuracy    {}", duration_text(a));
                }
                say!(
                    "  signature   {} (chain of {})",
                    v.signature_algorithm,
                    v.chain_length
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                say!("{}", serde_json::json!({ "status": "invalid", "error": e }));
            } else {
                say!("Verification: FAILED: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    crate::protocol::hex::unhex(s.trim())
        .ok_or_else(|| "--digest must be an even number of hex digits".into())
}

/// A duration in µs as people write it: in the largest unit it reaches, with only the
/// decimals it needs (`1 s`, `500 ms`, `1.5 ms`, `100 µs`).
fn duration_text(us: u64) -> String {
    let (unit, per) = match us {
        1_000_000.. => ("s", 1_000_000),
        1_000.. => ("ms", 1_000),
        _ => ("µs", 1),
    };
    let whole = us / per;
    let frac = us % per;
    if frac == 0 {
        return format!("{whole} {unit}");
    }
    let digits = per.ilog10() as usize;
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{} {unit}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::duration_text;

    #[test]
    fn accuracy_reads_as_people_write_it() {
        assert_eq!(duration_text(1_000_000), "1 s");
        assert_eq!(duration_text(500_000), "500 ms");
        assert_eq!(duration_text(1_500_000), "1.5 s");
        assert_eq!(duration_text(1_500), "1.5 ms");
        assert_eq!(duration_text(100), "100 µs");
        assert_eq!(duration_text(0), "0 µs");
        assert_eq!(duration_text(2_000_001), "2.000001 s");
    }
}
