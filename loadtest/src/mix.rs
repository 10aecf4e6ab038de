//! The request mix: which hash algorithms, how often certReq, nonces or not, which
//! requested policies. Requests are made ahead of time (a pool per connection), each with
//! what its reply must show, so sending costs nothing but the write.

use stampd::protocol::oid::Oid;
use stampd::protocol::{request, HashAlg};

/// What to send.
#[derive(Debug, Clone)]
pub struct Mix {
    pub hashes: Vec<HashAlg>,
    /// Share of requests with certReq set, 0.0 to 1.0.
    pub cert_req: f64,
    pub nonce: bool,
    /// Requested policies, chosen in turn; empty: no reqPolicy.
    pub policies: Vec<Oid>,
}

impl Mix {
    /// `sha256,sha384`, `0.5`, `true`, `1.2.3,1.2.4` as the command line gives them.
    pub fn parse(
        hashes: &str,
        cert_req: f64,
        nonce: bool,
        policies: Option<&str>,
    ) -> Result<Mix, String> {
        let hashes = hashes
            .split(',')
            .map(|h| HashAlg::from_name(h.trim()).ok_or_else(|| format!("unknown hash `{h}`")))
            .collect::<Result<Vec<_>, _>>()?;
        if !(0.0..=1.0).contains(&cert_req) {
            return Err("--cert-req is a share between 0 and 1".into());
        }
        let policies = match policies {
            None => Vec::new(),
            Some(p) => p
                .split(',')
                .map(|o| Oid::parse(o.trim()).ok_or_else(|| format!("bad policy OID `{o}`")))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Mix {
            hashes,
            cert_req,
            nonce,
            policies,
        })
    }

    /// `count` requests for connection `conn`, spread over the mix.
    pub fn prepare(&self, conn: u64, count: usize) -> Vec<Prepared> {
        let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ conn.wrapping_mul(0x2545_f491));
        (0..count)
            .map(|i| {
                let hash = self.hashes[i % self.hashes.len()];
                let mut digest = vec![0u8; hash.digest_len()];
                rng.fill(&mut digest);
                let nonce = self.nonce.then(|| {
                    let mut n = [0u8; 8];
                    rng.fill(&mut n);
                    n[0] |= 0x01; // no leading zero octet: the magnitude is all 8 bytes
                    n[0] &= 0x7f;
                    n.to_vec()
                });
                // certReq on a deterministic share of the requests.
                let cert_req = ((i as f64 + 0.5) * self.cert_req).floor()
                    != ((i as f64 - 0.5) * self.cert_req).floor();
                let policy =
                    (!self.policies.is_empty()).then(|| &self.policies[i % self.policies.len()]);
                Prepared {
                    body: request::encode(hash, &digest, policy, nonce.as_deref(), cert_req),
                    hash,
                    digest,
                    nonce,
                    cert_req,
                }
            })
            .collect()
    }
}

/// One request and what its reply must carry.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Vec<u8>,
    pub hash: HashAlg,
    pub digest: Vec<u8>,
    pub nonce: Option<Vec<u8>>,
    pub cert_req: bool,
}

/// A small deterministic generator: request contents only need to differ, not be secret.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_spread_as_asked() {
        let mix = Mix::parse("sha256,sha512", 0.25, true, Some("1.2.3.4")).unwrap();
        let reqs = mix.prepare(7, 400);
        assert_eq!(reqs.iter().filter(|r| r.cert_req).count(), 100);
        assert_eq!(
            reqs.iter().filter(|r| r.hash == HashAlg::Sha512).count(),
            200
        );
        let nonces: std::collections::HashSet<_> = reqs.iter().map(|r| r.nonce.clone()).collect();
        assert_eq!(nonces.len(), 400, "every nonce differs");
        for r in &reqs {
            let q = request::decode(&r.body).unwrap();
            assert_eq!(q.cert_req, r.cert_req);
            assert!(q.req_policy.is_some());
        }
        assert!(Mix::parse("md5", 0.0, true, None).is_err());
        assert!(Mix::parse("sha256", 1.5, true, None).is_err());
        let none = Mix::parse("sha256", 0.0, false, None)
            .unwrap()
            .prepare(0, 3);
        assert!(none.iter().all(|r| !r.cert_req && r.nonce.is_none()));
    }
}
