//! Anchored checkpoints: a checkpoint frame that carries a timestamp token of the TSA's own
//! over the chain's hash at that point, so the chain's state is proven by a signature and a
//! trusted time, not only logged. Truncating the newest frames of a hash chain leaves every
//! link intact; a head an auditor holds from an anchored checkpoint shows it (`stampd audit
//! verify --expect-head SEQ:HASH`).
//!
//! The checkpoint body is `time (u64 LE, wall-clock Unix seconds)`, then, when anchored,
//! `seq (u64 LE)` of the frame whose hash was stamped and the DER `TimeStampResp` whose
//! token's messageImprint is SHA-256 with that hash as its hashedMessage. The token is issued
//! inside the commit that writes the checkpoint, and its own audit record is written in the
//! same batch, between the stamped frame and the checkpoint (so the two are durable
//! together). Bodies of 8 bytes are checkpoints without an anchor (older journals, or a time
//! the clock could not vouch for).

use std::sync::{Arc, OnceLock};

use super::{Frame, Hash, Kind};
use crate::client::verify::{checks, Expectation};
use crate::protocol::response;
use crate::protocol::HashAlg;

/// Stamps a chain hash: the DER `TimeStampResp` of a token over it (SHA-256 imprint), or
/// why there is none (clock out of sync, every service disabled, the signer down); and the
/// audit records issuing it made (the token's own), for the journal to write with it.
pub type AnchorFn =
    Box<dyn Fn(&Hash) -> (Result<Vec<u8>, String>, Vec<crate::audit::Record>) + Send + Sync>;

/// Where the journals find the anchor: set once the TSA that signs it is assembled (the
/// trail starts before it); until then, and without one, checkpoints are not anchored.
#[derive(Clone, Default)]
pub struct Anchor(Arc<OnceLock<AnchorFn>>);

impl Anchor {
    /// Sets the stamp (once; a second call changes nothing and says false).
    pub fn set(&self, stamp: AnchorFn) -> bool {
        self.0.set(stamp).is_ok()
    }

    /// The stamp, once set.
    pub fn get(&self) -> Option<&AnchorFn> {
        self.0.get()
    }
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Anchor(set)"
        } else {
            "Anchor(unset)"
        })
    }
}

/// A checkpoint's anchor: the stamped frame's seq and the `TimeStampResp`.
pub type Stamp<'a> = (u64, &'a [u8]);

/// A checkpoint body: its time, and its anchor, if any.
pub fn parse(body: &[u8]) -> Option<(u64, Option<Stamp<'_>>)> {
    let time = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    if body.len() == 8 {
        return Some((time, None));
    }
    let seq = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    Some((time, Some((seq, body.get(16..).filter(|r| !r.is_empty())?))))
}

/// The body of a checkpoint at `time`, anchored by `anchor` (the stamped frame's seq and the
/// `TimeStampResp`) when there is one.
pub fn body(out: &mut Vec<u8>, time: u64, anchor: Option<Stamp<'_>>) {
    out.extend_from_slice(&time.to_le_bytes());
    if let Some((seq, der)) = anchor {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(der);
    }
}

/// What an anchored checkpoint proves: the chain's hash after frame `seq` existed at
/// `gen_time`, signed by the token's TSA.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Anchored {
    /// The frame whose hash was stamped: `--expect-head`'s SEQ.
    pub seq: u64,
    /// That hash, hex: `--expect-head`'s HASH.
    pub hash: String,
    /// The token's genTime.
    pub gen_time: String,
    /// The token's serial number, hex.
    pub serial: String,
}

/// Checks a checkpoint frame's anchor: a granted response whose token is over the hash
/// after the frame it names (`hash_at` gives the hashes of the frames just before) with a
/// SHA-256 imprint, and whose signature holds with the TSA certificate the token carries
/// (and, with `trusted` CA certificates, chains to one of them). `Ok(None)`: not anchored.
pub fn check(
    frame: &Frame,
    hash_at: impl Fn(u64) -> Option<Hash>,
    trusted: &[Vec<u8>],
) -> Result<Option<Anchored>, String> {
    if frame.kind != Kind::Checkpoint {
        return Ok(None);
    }
    let (_, Some((seq, der))) = parse(&frame.body).ok_or("checkpoint body malformed")? else {
        return Ok(None);
    };
    let stamped = hash_at(seq).ok_or_else(|| {
        format!("anchor: it stamps frame {seq}, not one of the frames just before it")
    })?;
    let resp = response::decode(der).map_err(|e| format!("anchor: not a TimeStampResp: {e}"))?;
    let token = resp
        .token
        .as_ref()
        .ok_or("anchor: the response carries no token")?;
    let expect = Expectation {
        hash: HashAlg::Sha256,
        digest: stamped.to_vec(),
        nonce: None,
    };
    let (results, _) = checks(token, &expect, trusted, &[]);
    // Without trust anchors, the chain to a CA is the auditor's to check (`--ca`).
    let failed: Vec<_> = results
        .iter()
        .filter(|c| !c.passed && (!trusted.is_empty() || c.check != "chain"))
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    if !failed.is_empty() {
        return Err(format!("anchor does not verify ({})", failed.join("; ")));
    }
    let tst = &token.tst_info;
    Ok(Some(Anchored {
        seq,
        hash: crate::protocol::hex::hex(&stamped),
        gen_time: tst.gen_time_text.to_string(),
        serial: crate::protocol::hex::hex(crate::client::verify::magnitude(tst.serial)),
    }))
}
