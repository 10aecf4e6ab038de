//! Configuration: TOML → [`Config`] (serde, unknown keys refused) → [`Config::validate`]
//! (pure: touches no file, socket or key, so `stampd check-config` runs anywhere) →
//! [`build`] (I/O: keys, certificates, state).
//!
//! Every field's default and unit is documented here and in `config/stampd.example.toml`.

pub mod build;
pub mod fuzzing;
pub mod locate;
pub mod node;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::frontend::config::{Dispatch, HttpConfig, IoDriver};
use crate::policy::chain;
use crate::policy::config::{ChainConfig, PolicyConfig, ServiceConfig};
use crate::policy::filters::FilterConfig;
use crate::policy::preprocess::PreprocessConfig;
use crate::signer::config::{SignerConfig, SignerKind};
pub use validate::{ValidPolicy, ValidService, ValidatedConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: data directory, cores, node id, dispatch, HTTP limits. Every key has a
    /// default, so the table may be left out.
    #[serde(default)]
    pub server: ServerConfig,
    /// Signers by name.
    #[serde(default = "default_signers")]
    pub signer: BTreeMap<String, SignerConfig>,
    /// Timestamp services (one HTTP endpoint each).
    #[serde(default = "default_services")]
    pub service: Vec<ServiceConfig>,
    /// Policies by name.
    #[serde(default = "default_policies")]
    pub policy: BTreeMap<String, PolicyConfig>,
    /// Filter chains by name (`standard` is built in).
    #[serde(default)]
    pub chain: BTreeMap<String, ChainConfig>,
    /// Configured filter instances by name (each kind is also available under its own name
    /// with the policy's settings).
    #[serde(default)]
    pub filter: BTreeMap<String, FilterConfig>,
    /// Configured pre-processing filters by name (`clock`, `rate-limit`,
    /// `transaction-monitor` and `audit` also exist under their own names with defaults).
    #[serde(default)]
    pub preprocess: BTreeMap<String, PreprocessConfig>,
    /// The audit trail: journal, batching, durability, PostgreSQL.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// `[clock]`: the sync monitor (SNTP quorum, chrony, or none for development).
    #[serde(default)]
    pub clock: crate::clock::config::ClockConfig,
    /// `[admin]`: the admin listener (`/metrics`, probes).
    #[serde(default)]
    pub admin: crate::admin::config::AdminConfig,
}

impl Default for Config {
    /// The embedded default: one service at `http://127.0.0.1:3180/tsa`, signed by the dev
    /// PKI's software key.
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            signer: default_signers(),
            service: default_services(),
            policy: default_policies(),
            chain: BTreeMap::new(),
            filter: BTreeMap::new(),
            preprocess: BTreeMap::new(),
            audit: Default::default(),
            clock: Default::default(),
            admin: Default::default(),
        }
    }
}

fn default_signers() -> BTreeMap<String, SignerConfig> {
    BTreeMap::from([("main".to_string(), SignerConfig::default())])
}

/// `/tsa` (RFC 3161) and, beside it, `/authenticode` (legacy Authenticode, for `signtool
/// /t` and `osslsigncode -t`), both signed by the same key.
fn default_services() -> Vec<ServiceConfig> {
    vec![
        ServiceConfig::default(),
        ServiceConfig {
            name: "authenticode".into(),
            path: crate::policy::config::OneOrMany::One("/authenticode".into()),
            protocol: crate::policy::config::Protocol::Authenticode,
            ..ServiceConfig::default()
        },
    ]
}

fn default_policies() -> BTreeMap<String, PolicyConfig> {
    BTreeMap::from([("default".to_string(), PolicyConfig::default())])
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Data directory: dev PKI, state. Relative paths in this file resolve against it.
    /// Default `./stampd-data`.
    pub data_dir: PathBuf,
    /// Frontend cores (one runtime thread each); 0 = all available. Default 0.
    pub cores: usize,
    /// Node id, distinct for every node that shares a TSA key (0..=65535); part of every
    /// serial number. Default 0. With `audit.postgres`, the node claims it there at start
    /// (a second live node with the same id is refused) and renews the claim.
    pub node_id: u16,
    /// The node's claim of `node_id` in PostgreSQL lapses this many seconds after its last
    /// heartbeat (one every third of it), so a crashed node's id may be taken over after
    /// that (3 to 3600). Default 30.
    pub node_lease_seconds: u64,
    /// `inline` or `queue`. Default: `queue` when a served signer is `kind = "pkcs11"` (a
    /// sign may wait for an HSM session, which must not stall an HTTP core), else `inline`.
    pub dispatch: Option<Dispatch>,
    /// Backend worker threads for `dispatch = "queue"`; 0 = one per core, and at least
    /// one per session of the PKCS#11 signers in use. Default 0.
    pub workers: usize,
    /// Capacity of the backend queue in requests; a full queue answers 503. Default 4096.
    pub queue_capacity: usize,
    /// I/O driver: `auto` (default: io_uring when the kernel allows it, else epoll) or
    /// `epoll`.
    pub io_driver: IoDriver,
    /// HTTP limits.
    pub http: HttpConfig,
    /// SIGTERM drains: listeners close, open connections answer what they were sent,
    /// then the audit queue commits. The drain waits at most this many ms for the
    /// connections. Default 30000.
    pub drain_timeout_ms: u64,
    /// A warning is logged at start and daily from this many days before a TSA
    /// certificate expires. Default 30.
    pub cert_expiry_warning_days: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./stampd-data"),
            cores: 0,
            node_id: 0,
            node_lease_seconds: 30,
            dispatch: None,
            workers: 0,
            queue_capacity: 4096,
            io_driver: IoDriver::Auto,
            http: HttpConfig::default(),
            drain_timeout_ms: 30_000,
            cert_expiry_warning_days: 30,
        }
    }
}

impl Config {
    /// Whether signer `name` is in use: by an enabled service, or by a filter that names it.
    pub fn signer_in_use(&self, name: &str) -> bool {
        self.service.iter().any(|s| s.enabled && s.signer == name)
            || self.filter.values().any(|f| f.signer() == Some(name))
    }

    /// The PKCS#11 signers in use.
    fn hsm_signers(&self) -> impl Iterator<Item = &SignerConfig> {
        self.signer.iter().filter_map(|(name, sc)| {
            (sc.kind == SignerKind::Pkcs11 && self.signer_in_use(name)).then_some(sc)
        })
    }

    /// `server.dispatch`, or its default for the signers in use.
    pub fn dispatch(&self) -> Dispatch {
        self.server.dispatch.unwrap_or_else(|| {
            if self.hsm_signers().next().is_some() {
                Dispatch::Queue
            } else {
                Dispatch::Inline
            }
        })
    }

    /// `server.workers`, or its default: one per frontend core, and at least one per HSM
    /// session, so every session can have a sign in flight (with a network HSM, more
    /// sessions than cores hide its latency).
    pub fn workers(&self) -> usize {
        if self.server.workers != 0 {
            return self.server.workers;
        }
        let cores = match self.server.cores {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        cores.max(self.hsm_signers().map(|sc| sc.sessions).sum())
    }
}

impl Config {
    /// Parses TOML text. Errors carry the line and column.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))
    }

    /// The policies a service uses: its list, or `default` when the list is empty.
    pub fn policies_of<'a>(&self, s: &'a ServiceConfig) -> Vec<&'a str> {
        if s.policies.is_empty() {
            vec!["default"]
        } else {
            s.policies.iter().map(String::as_str).collect()
        }
    }

    /// A policy by name. `default` is built in (the embedded default policy) unless the
    /// file defines its own `[policy.default]`.
    pub fn policy_config(&self, name: &str) -> Option<PolicyConfig> {
        match self.policy.get(name) {
            Some(p) => Some(p.clone()),
            None if name == "default" => Some(PolicyConfig::default()),
            None => None,
        }
    }

    /// A pre-processing filter by name: configured, or built in.
    pub fn preprocess_config(&self, name: &str) -> Option<PreprocessConfig> {
        self.preprocess
            .get(name)
            .cloned()
            .or_else(|| PreprocessConfig::builtin(name))
    }

    /// The filter names of a policy's chain.
    pub fn chain_of(&self, p: &PolicyConfig) -> Vec<String> {
        match self.chain.get(&p.chain) {
            Some(c) => c.filters.clone(),
            None => chain::standard_chain(p.qualified),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validation errors of a configuration text, which must be invalid.
    fn errors(text: &str) -> String {
        Config::from_toml(text, "t")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn embedded_default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn every_service_is_audited_before_any_rate_limit() {
        let e = errors("[[service]]\npreprocess = [\"clock\"]\n");
        assert!(e.contains("needs exactly one audit filter"), "{e}");
        let e = errors("[[service]]\npreprocess = [\"rate-limit\", \"audit\", \"clock\"]\n");
        assert!(
            e.contains("put `audit` before every rate-limit filter"),
            "{e}"
        );
        // Only benchmarks run without an audit trail, and they say so.
        let c = Config::from_toml(
            "[audit]\nstore = \"none\"\n[[service]]\npreprocess = [\"clock\"]\n",
            "t",
        )
        .unwrap();
        c.validate().unwrap();
        let e = errors("[audit]\npostgres = \"host=/tmp password=secret\"\n");
        assert!(
            e.contains("holds a password") && !e.contains("secret"),
            "{e}"
        );
        let e = errors("[audit]\nstore = \"postgres\"\n");
        assert!(e.contains("needs audit.postgres"), "{e}");
        let e = errors("[audit.batch]\nmax_records = 0\n[audit.journal]\nsegment_mib = 9999\n");
        assert!(
            e.contains("max_records") && e.contains("segment_mib"),
            "{e}"
        );
        let e = errors("[audit.batch]\nmax_delay_us = 1000\n");
        assert!(e.contains("replaced by interval_us"), "{e}");
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = Config::from_toml("", "t").unwrap();
        c.validate().unwrap();
        assert_eq!(c.service[0].listen.values(), ["127.0.0.1:3180"]);
        assert_eq!(c.service[0].path.values(), ["/tsa"]);
    }

    #[test]
    fn unknown_keys_are_refused_with_a_line() {
        let err = Config::from_toml("[server]\ncors = 2\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.toml") && err.contains("line 2") && err.contains("cors"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_key_and_the_fix() {
        let text = r#"
            [signer.main]
            kind = "file"
            [[service]]
            name = "a"
            listen = "nowhere"
            path = "tsa"
            signer = "missing"
            policies = ["nope"]
            [policy.default]
            oid = "1.2.x"
            accuracy = "soon"
        "#;
        let err = errors(text);
        for needle in [
            "listen: `nowhere` is not an address",
            "path: `tsa` must start with `/`",
            "signer `missing` is not defined",
            "policy `nope` is not defined",
            "policy.default.oid",
            "policy.default.accuracy",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn client_subject_rules_need_client_certificates() {
        let text = r#"
            [[service]]
            policies = ["build"]
            [policy.build]
            oid = "2.999.1.7"
            match = { client_subject = ["CN=build-7,O=Acme"], client_subject_regex = "x" }
        "#;
        let err = errors(text);
        assert!(
            err.contains("give `client_subject` or `client_subject_regex`, not both"),
            "{err}"
        );
        let err = errors(&text.replace(", client_subject_regex = \"x\"", ""));
        assert!(
            err.contains("policy `build` matches on client_subject, but this service asks for no client certificate"),
            "{err}"
        );
    }

    #[test]
    fn requested_policy_must_be_the_policys_own_oid() {
        let text = r#"
            [policy.default]
            oid = "2.999.1.1"
            match = { requested_policy = ["absent", "2.999.1.1", "1.2.3"] }
        "#;
        let err = errors(text);
        assert!(
            err.contains("`1.2.3` differs from this policy's oid"),
            "{err}"
        );
    }

    #[test]
    fn accuracy_cannot_be_finer_than_gen_time_precision() {
        let text = r#"
            [policy.default]
            oid = "2.999.1.1"
            accuracy = "100us"
            gen_time_precision = "ms"
        "#;
        let err = errors(text);
        assert!(err.contains("finer than the genTime precision"), "{err}");
        let ok = text.replace("\"ms\"", "\"us\"");
        Config::from_toml(&ok, "t").unwrap().validate().unwrap();
    }

    #[test]
    fn chains_are_validated_with_file_chain_and_position() {
        let text = r#"
            [policy.default]
            oid = "2.999.1.1"
            chain = "mine"
            qualified = true

            [chain.mine]
            filters = ["request-validation", "message-imprint", "tsa-policy", "gen-time",
                       "half-second", "nonce", "serial-number", "no-such-filter",
                       "tst-info", "timestamp-token", "timestamp-response", "storage"]

            [filter.half-second]
            kind = "accuracy"
            accuracy = "500ms"

            [filter.nonce]
            kind = "storage"
        "#;
        let err = Config::from_toml(text, "t")
            .unwrap()
            .validate_as("site.toml")
            .unwrap_err()
            .to_string();
        for needle in [
            "site.toml: chain `mine`, position 8 `no-such-filter` is not defined",
            "policy.default.qualified: chain `mine` has no qualified-statement filter",
            "filter.nonce: `nonce` is a built-in filter name",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        let undefined = "[policy.default]\noid = \"2.999.1.1\"\nchain = \"nope\"\n";
        let err = errors(undefined);
        assert!(
            err.contains("policy.default.chain: `nope` is not defined"),
            "{err}"
        );
        let reserved = "[chain.standard]\nfilters = []\n";
        let err = errors(reserved);
        assert!(err.contains("built-in chain"), "{err}");
    }

    #[test]
    fn filter_kinds_refuse_unknown_options() {
        let text = "[filter.x]\nkind = \"accuracy\"\naccuracy = \"1s\"\nsurprise = 1\n";
        assert!(Config::from_toml(text, "t").is_err());
        let text = "[filter.x]\nkind = \"no-such-kind\"\n";
        assert!(Config::from_toml(text, "t").is_err());
    }

    #[test]
    fn a_service_without_policies_gets_the_default_policy() {
        let text = "[[service]]\nname = \"s\"\npolicies = []\n[policy.other]\noid = \"2.999.5\"\n";
        let c = Config::from_toml(text, "t").unwrap();
        c.validate().unwrap();
        assert_eq!(c.policies_of(&c.service[0]), ["default"]);
        assert_eq!(c.policy_config("default").unwrap().oid, "2.999.1.1");
        assert!(c.policy_config("nope").is_none());
    }

    #[test]
    fn qualified_chains_only_for_qualified_policies_and_no_builtin_filter_names() {
        let text = r#"
            [policy.default]
            oid = "2.999.1.1"
            chain = "q"
            [chain.q]
            filters = ["request-validation", "message-imprint", "tsa-policy", "gen-time",
                       "nonce", "serial-number", "qualified-statement", "tst-info",
                       "timestamp-token", "timestamp-response"]
            [filter.gen-time]
            kind = "gen-time"
            precision = "s"
        "#;
        let err = errors(text);
        assert!(
            err.contains("marks tokens qualified but this policy is not"),
            "{err}"
        );
        assert!(
            err.contains("`gen-time` is a built-in filter name"),
            "{err}"
        );
    }

    #[test]
    fn the_same_endpoint_written_twice_is_refused() {
        let text = r#"
            [[service]]
            name = "a"
            listen = "127.0.0.1:3180"
            [[service]]
            name = "b"
            listen = "127.0.0.1:03180"
        "#;
        let err = errors(text);
        assert!(err.contains("already served by another service"), "{err}");
    }

    #[test]
    fn hsm_signers_default_to_queue_dispatch_with_a_worker_per_session() {
        let file = Config::from_toml("[server]\ncores = 2\n", "t").unwrap();
        assert_eq!((file.dispatch(), file.workers()), (Dispatch::Inline, 2));
        let hsm = "[server]\ncores = 2\n[signer.main]\nkind = \"pkcs11\"\nmodule = \"m.so\"\n\
                   token_label = \"t\"\npin_env = \"P\"\nkey_label = \"k\"\nsessions = 6\n";
        let c = Config::from_toml(hsm, "t").unwrap();
        assert_eq!((c.dispatch(), c.workers()), (Dispatch::Queue, 6));
        let explicit = hsm.replace("cores = 2", "cores = 2\ndispatch = \"inline\"\nworkers = 3");
        let c = Config::from_toml(&explicit, "t").unwrap();
        assert_eq!((c.dispatch(), c.workers()), (Dispatch::Inline, 3));
        // A PIN in the configuration text is not a key the file can hold.
        let pin = hsm.replace("pin_env = \"P\"", "pin = \"1234\"");
        assert!(Config::from_toml(&pin, "t").is_err());
    }
}
