//! `stampd hsm`: set up a TSA key on a PKCS#11 token (keygen, csr, import-cert), look at
//! the token (list), check the configured signer end to end (selftest) and measure the
//! token's raw signing rate (bench). Scripts rely on these commands and their output.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::session::Session;

use crate::pki::{ExternalKey, KeyType};
use crate::protocol::cert::CertView;
use crate::protocol::Timestamp;
use crate::signer::pkcs11::token::{self, KeyPair, Token};
use crate::signer::software::{pem_blocks, RsaPadding};
use crate::signer::TokenSigner;

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// `hsm list`: slots, tokens and the objects a session sees (private keys only with a
/// PIN). `pin` applies to the token labelled `token_label`, or to every token when no
/// label is given.
pub fn list(
    module: &Path,
    token_label: Option<&str>,
    pin: Option<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, String> {
    if pin.is_some() && token_label.is_none() {
        // A PIN tried on every token counts against each one's retry limit.
        return Err("a PIN needs --token-label (it is only tried on that token)".into());
    }
    let slots = token::list(module, token_label, pin)?;
    if let Some(l) = token_label {
        if slots.is_empty() {
            return Err(format!("no token labelled `{l}`"));
        }
    }
    if json {
        let text = serde_json::to_string_pretty(&slots).map_err(|e| e.to_string())?;
        writeln!(out, "{text}").map_err(io)?;
        return Ok(0);
    }
    for s in &slots {
        writeln!(out, "slot {}: {}", s.slot, s.description).map_err(io)?;
        let Some(t) = &s.token else {
            writeln!(out, "  no token").map_err(io)?;
            continue;
        };
        writeln!(
            out,
            "  token `{}` ({} {}, serial {}){}",
            t.label,
            t.manufacturer,
            t.model,
            t.serial,
            if t.initialized {
                ""
            } else {
                ", not initialised"
            }
        )
        .map_err(io)?;
        if let Some(e) = &t.error {
            writeln!(out, "    objects not listed: {e}").map_err(io)?;
        }
        for o in &t.objects {
            let kind = o
                .key_type
                .as_deref()
                .map(|k| format!(" {k}"))
                .unwrap_or_default();
            writeln!(out, "    {}{kind} `{}` id {}", o.class, o.label, o.id).map_err(io)?;
        }
    }
    Ok(0)
}

/// `hsm keygen`: a new key pair on the token; prints its public key (PEM) so it can be
/// recorded.
pub fn keygen(
    token: &Token,
    key_label: &str,
    key_type: KeyType,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let session = token.session(true)?;
    let key = token::generate(&session, key_label, key_type)?;
    let external = ExternalKey::from(&key.public);
    let spki = rcgen::PublicKeyData::subject_public_key_info(&external);
    writeln!(
        out,
        "generated {} key `{key_label}` (id {})\n{}",
        serde_json::to_value(key_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        crate::protocol::hex::hex(&key.id),
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki))
    )
    .map_err(io)?;
    Ok(0)
}

/// The token's key as rcgen sees it: the public key, and signing through the session.
struct TokenKey<'a> {
    session: &'a Session,
    pair: KeyPair,
    external: ExternalKey,
}

impl rcgen::PublicKeyData for TokenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.external.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.external.algorithm()
    }
}

impl rcgen::SigningKey for TokenKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // A request is signed as rcgen names the algorithm: PKCS#1 v1.5 for RSA.
        let scheme = self.pair.public.scheme(RsaPadding::Pkcs1);
        token::sign(self.session, self.pair.private, scheme, msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// `hsm csr`: a PKCS#10 request for the key, signed on the token, written as PEM.
pub fn csr(
    token: &Token,
    key_label: &str,
    subject: &str,
    out_file: &Path,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let session = token.session(false)?;
    let pair = token::find_key(&session, key_label)?;
    let external = ExternalKey::from(&pair.public);
    let key = TokenKey {
        session: &session,
        pair,
        external,
    };
    let pem = crate::pki::certificate_request(subject, &key).map_err(|e| e.to_string())?;
    std::fs::write(out_file, pem).map_err(|e| format!("{}: {e}", out_file.display()))?;
    writeln!(out, "wrote {}", out_file.display()).map_err(io)?;
    Ok(0)
}

/// `hsm import-cert`: stores the chain (PEM, leaf first) with the key, after checking the
/// leaf is a TSA certificate for this key (key match, critical EKU timeStamping only,
/// valid now). The signer reads it from there when its `cert` is left out.
pub fn import_cert(
    token: &Token,
    key_label: &str,
    cert_file: &Path,
    now: Timestamp,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let text = std::fs::read(cert_file).map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let chain =
        pem_blocks(&text, "CERTIFICATE").map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{}: no CERTIFICATE block", cert_file.display()))?;
    let leaf = CertView::parse(leaf).map_err(|_| {
        format!(
            "{}: the first certificate is not DER X.509",
            cert_file.display()
        )
    })?;
    let session = token.session(true)?;
    let pair = token::find_key(&session, key_label)?;
    crate::signer::checks::check_tsa_certificate(&leaf, &pair.public.bits, now)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    token::store_certificates(&session, key_label, &pair, &chain)?;
    writeln!(
        out,
        "stored {} certificate(s) with key `{key_label}`",
        chain.len()
    )
    .map_err(io)?;
    Ok(0)
}

/// `hsm selftest`: issues a token through `signer` for a random digest with a nonce and
/// certReq, and verifies it (imprint, nonce, ESS, signature, chain to `trusted`).
pub fn selftest(
    name: &str,
    signer: Arc<dyn TokenSigner>,
    trusted: &[Vec<u8>],
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let (verified, elapsed) = match crate::policy::selftest(name, signer, trusted) {
        Ok(v) => v,
        Err(e) => {
            // A failed test, not a usage error: exit 1.
            writeln!(out, "selftest of signer `{name}` FAILED: {e}").map_err(io)?;
            return Ok(1);
        }
    };
    if json {
        let text = serde_json::to_string(&verified).map_err(|e| e.to_string())?;
        writeln!(out, "{text}").map_err(io)?;
    } else {
        writeln!(
            out,
            "selftest of signer `{name}` passed: {} token signed in {:.1} ms, verified to a trusted CA ({} certificates in the path)",
            verified.signature_algorithm,
            elapsed.as_secs_f64() * 1e3,
            verified.chain_length
        )
        .map_err(io)?;
    }
    Ok(0)
}

/// One `hsm bench` measurement.
#[derive(Debug, serde::Serialize)]
pub struct BenchRow {
    pub sessions: usize,
    pub signs: u64,
    pub signs_per_second: f64,
}

/// `hsm bench`: the token's raw signing rate with 1..N sessions, one thread per session,
/// each signing a 200-byte message the way the signer does (ECDSA hashes in software).
/// The ceiling the signer's pool is measured against.
pub fn bench(
    token: &Token,
    key_label: &str,
    rsa_padding: RsaPadding,
    sessions: &[usize],
    duration: Duration,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let mut rows = Vec::new();
    for &n in sessions {
        let opened = (0..n)
            .map(|_| {
                let session = token.session(false)?;
                let pair = token::find_key(&session, key_label)?;
                Ok((session, pair))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let failed = std::thread::scope(|scope| {
            let workers: Vec<_> = opened
                .into_iter()
                .map(|(session, pair)| {
                    let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
                    scope.spawn(move || {
                        let scheme = pair.public.scheme(rsa_padding);
                        let message = [0x5a_u8; 200];
                        while !stop.load(Ordering::Relaxed) {
                            token::sign(&session, pair.private, scheme, &message)
                                .map_err(token::p11)?;
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
            workers
                .into_iter()
                .filter_map(|w| w.join().ok().and_then(Result::err))
                .next()
        });
        if let Some(e) = failed {
            return Err(format!("signing failed: {e}"));
        }
        let signs = count.load(Ordering::Relaxed);
        let row = BenchRow {
            sessions: n,
            signs,
            signs_per_second: signs as f64 / started.elapsed().as_secs_f64(),
        };
        if !json {
            writeln!(
                out,
                "{:>4} session(s): {:>10.0} signs/s",
                row.sessions, row.signs_per_second
            )
            .map_err(io)?;
        }
        rows.push(row);
    }
    if json {
        let text = serde_json::to_string(&rows).map_err(|e| e.to_string())?;
        writeln!(out, "{text}").map_err(io)?;
    }
    Ok(0)
}
