//! `kind = "rate-limit"`: token buckets per client IP and per service. Over the limit a
//! request gets `429 Too Many Requests` (Retry-After: 1) or, for clients that only accept
//! HTTP 200, a `systemFailure` rejection.
//!
//! Per-client buckets live in 64 shards (a mutex each) so cores rarely meet; a shard forgets
//! its idle clients when it grows past its share of `max_clients`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Exchange, PreFilter, Stop};
use crate::error::Error;

/// How a request over the limit is answered (`answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// HTTP 429 with Retry-After.
    #[default]
    #[serde(rename = "429")]
    TooManyRequests,
    /// HTTP 200 with a systemFailure rejection.
    SystemFailure,
}

/// `[preprocess.NAME]` with `kind = "rate-limit"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second per client IP; 0 = no per-client limit. Default 1000.
    pub per_client: u32,
    /// Burst per client IP, in requests. Default 2000.
    pub client_burst: u32,
    /// Requests per second for the whole service; 0 = no limit. Default 0.
    pub per_service: u32,
    /// Burst for the whole service, in requests. Default 0 (= per_service).
    pub service_burst: u32,
    /// `429` (default) or `system-failure`.
    pub answer: Answer,
    /// Clients tracked at most (memory bound). Default 100000.
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_client: 1000,
            client_burst: 2000,
            per_service: 0,
            service_burst: 0,
            answer: Answer::TooManyRequests,
            max_clients: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// Pure checks; each message names the key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.per_client > 0 && self.client_burst == 0 {
            e.push("client_burst: at least 1 when per_client is set".into());
        }
        if self.max_clients == 0 {
            e.push("max_clients: at least 1".into());
        }
        e
    }

    /// The filter `name` with full buckets.
    pub fn build(&self, name: &str) -> RateLimit {
        RateLimit {
            name: name.to_string(),
            config: self.clone(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            service: Mutex::new(Bucket::full(self.service_capacity(), Instant::now())),
        }
    }

    fn service_capacity(&self) -> f64 {
        f64::from(if self.service_burst == 0 {
            self.per_service
        } else {
            self.service_burst
        })
    }
}

const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, at: Instant) -> Self {
        Bucket {
            tokens: capacity,
            at,
        }
    }

    /// Refills at `rate` per second up to `capacity`, then takes one token if there is one.
    fn take(&mut self, now: Instant, rate: f64, capacity: f64) -> bool {
        // Requests reach the lock out of order: never move the clock back, or the interval
        // between would be credited twice.
        if now > self.at {
            let elapsed = now.duration_since(self.at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate).min(capacity);
            self.at = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A rate-limit filter: a token bucket per client IP (in 64 mutex-guarded shards) and one
/// for the whole service, each refilled continuously at its rate.
pub struct RateLimit {
    name: String,
    config: RateLimitConfig,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
    service: Mutex<Bucket>,
}

impl RateLimit {
    fn allow_client(&self, ip: IpAddr, now: Instant) -> bool {
        let c = &self.config;
        if c.per_client == 0 {
            return true;
        }
        let (rate, capacity) = (f64::from(c.per_client), f64::from(c.client_burst));
        let shard = &self.shards[shard_of(ip)];
        let Ok(mut map) = shard.lock() else {
            return true;
        };
        let share = (c.max_clients / SHARDS).max(1);
        if map.len() >= share && !map.contains_key(&ip) {
            // Forget clients whose bucket has refilled: they are indistinguishable from new.
            let full_after = capacity / rate;
            map.retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < full_after);
            if map.len() >= share {
                // Still full (many active clients, or addresses rotated by one): keep the
                // most recently seen half. Amortised over the half freed, so a flood of new
                // addresses costs O(log n) per request and the table never exceeds its bound.
                let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                map.retain(|_, b| b.at > cutoff);
            }
        }
        map.entry(ip)
            .or_insert_with(|| Bucket::full(capacity, now))
            .take(now, rate, capacity)
    }

    fn allow_service(&self, now: Instant) -> bool {
        let c = &self.config;
        if c.per_service == 0 {
            return true;
        }
        let Ok(mut b) = self.service.lock() else {
            return true;
        };
        b.take(now, f64::from(c.per_service), c.service_capacity())
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let bits: u128 = match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    };
    // Fibonacci hashing of the folded address.
    let folded = (bits ^ (bits >> 64)) as u64;
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
}

impl PreFilter for RateLimit {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> Option<String> {
        let c = &self.config;
        let mut parts = Vec::new();
        if c.per_client > 0 {
            parts.push(format!(
                "{} requests/s per client address (bursts of {})",
                c.per_client, c.client_burst
            ));
        }
        if c.per_service > 0 {
            let burst = if c.service_burst == 0 {
                c.per_service
            } else {
                c.service_burst
            };
            parts.push(format!(
                "{} requests/s for the whole service (bursts of {burst})",
                c.per_service
            ));
        }
        (!parts.is_empty()).then(|| format!("at most {}", parts.join(", and ")))
    }

    fn before(&self, x: &mut Exchange<'_>) -> Result<(), Stop> {
        let now = x.started;
        if self.allow_client(x.meta.client, now) && self.allow_service(now) {
            return Ok(());
        }
        Err(Stop::from(Error::RateLimited {
            http: match self.config.answer {
                Answer::TooManyRequests => true,
                Answer::SystemFailure => false,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::mapper::RequestMeta;
    use crate::protocol::FailureInfo;

    fn meta_for(ip: IpAddr) -> RequestMeta<'static> {
        RequestMeta {
            client: ip,
            path: "/",
            head: b"",
            client_subject: None,
        }
    }

    fn client(ip: &str) -> RequestMeta<'static> {
        meta_for(ip.parse().unwrap())
    }

    fn exchange<'a>(meta: &'a RequestMeta<'a>, started: Instant) -> Exchange<'a> {
        Exchange {
            meta,
            body: b"",
            started,
            time: None,
            policy: None,
            request: None,
            authenticode: None,
            http_refusal: false,
        }
    }

    #[test]
    fn per_client_buckets_refill_and_are_separate() {
        let rl = RateLimitConfig {
            per_client: 10,
            client_burst: 3,
            ..Default::default()
        }
        .build("rl");
        let a = client("10.0.0.1");
        let b = client("10.0.0.2");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.before(&mut exchange(&a, t0)).is_ok());
        }
        assert_eq!(rl.before(&mut exchange(&a, t0)), Err(Stop::Http(429)));
        // Another client is not affected.
        assert!(rl.before(&mut exchange(&b, t0)).is_ok());
        // 10/s: after 100 ms one more token.
        let t1 = t0 + std::time::Duration::from_millis(100);
        assert!(rl.before(&mut exchange(&a, t1)).is_ok());
        assert!(rl.before(&mut exchange(&a, t1)).is_err());
    }

    #[test]
    fn service_limit_and_system_failure_answer() {
        let rl = RateLimitConfig {
            per_client: 0,
            per_service: 2,
            answer: Answer::SystemFailure,
            ..Default::default()
        }
        .build("rl");
        let m = client("10.0.0.1");
        let t0 = Instant::now();
        assert!(rl.before(&mut exchange(&m, t0)).is_ok());
        assert!(rl.before(&mut exchange(&m, t0)).is_ok());
        match rl.before(&mut exchange(&m, t0)) {
            Err(Stop::Reject(r)) => assert_eq!(r.fail, FailureInfo::SystemFailure),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_table_stays_bounded_even_when_buckets_never_refill() {
        // One token per second, burst 60: no bucket refills during the test, so idle expiry
        // frees nothing and only the eviction bounds the table.
        let max_clients = 6_400;
        let rl = RateLimitConfig {
            per_client: 1,
            client_burst: 60,
            max_clients,
            ..Default::default()
        }
        .build("rl");
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let m = meta_for(IpAddr::from(i.to_be_bytes()));
            let _ = rl.before(&mut exchange(
                &m,
                t0 + std::time::Duration::from_micros(i as u64),
            ));
        }
        let total: usize = rl.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= max_clients, "{total}");
    }

    #[test]
    fn out_of_order_requests_are_not_credited_twice() {
        let rl = RateLimitConfig {
            per_client: 0,
            per_service: 10,
            service_burst: 1,
            ..Default::default()
        }
        .build("rl");
        let m = client("10.0.0.1");
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(100);
        assert!(rl.before(&mut exchange(&m, t1)).is_ok()); // refills to t1, takes the token
        assert!(rl.before(&mut exchange(&m, t0)).is_err()); // an older request: no refill
        assert!(rl.before(&mut exchange(&m, t1)).is_err()); // t0..t1 is not credited again
    }
}
