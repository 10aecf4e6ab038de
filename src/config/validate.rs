//! [`Config`] → [`ValidatedConfig`]: every check that needs no file, socket or key, run once
//! per load. Each section checks its own keys (`SignerConfig::validate`,
//! `PolicyConfig::parse`, `ServiceConfig::check_endpoints`, `HttpConfig::validate`, `AuditConfig::validate`, the filters' and
//! pre-filters' `validate`); this file adds the checks that span sections (references between
//! services, policies, chains, filters and signers; endpoints used twice; the pre-processing
//! onion) and keeps what was parsed, so [`super::build`] never parses again.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::Config;
use crate::error::Error;
use crate::frontend::config::Listener;
use crate::policy::chain::{self, FilterKind};
use crate::policy::mapper::Rules;
use crate::policy::preprocess::PreprocessConfig;
use crate::policy::settings::Settings;
use crate::protocol::oid::Oid;
use crate::signer::config::SignerConfig;

/// A configuration that passed every check, with its values parsed and its paths resolved
/// against the data directory.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    /// The configuration as written (what `check-config` prints).
    pub config: Config,
    /// `server.data_dir`.
    pub data_dir: PathBuf,
    /// Every `[signer.NAME]`, its paths resolved.
    pub signers: BTreeMap<String, SignerConfig>,
    /// Every policy an enabled service uses, parsed, its chain compiled.
    pub policies: BTreeMap<String, ValidPolicy>,
    /// The enabled services, in file order (their index is the one [`Listener`] routes use).
    pub services: Vec<ValidService>,
    /// Every listening address and the paths it routes to services.
    pub listeners: Vec<Listener>,
    /// `[admin]`: the admin listener (its address and TLS), `None` when `"off"`.
    pub admin: Option<Listener>,
    /// `audit.journal.dir`, resolved.
    pub journal_dir: PathBuf,
    /// `audit.postgres_password_file`, resolved.
    pub postgres_password_file: Option<PathBuf>,
}

/// One policy, parsed and compiled from its chain.
#[derive(Debug, Clone)]
pub struct ValidPolicy {
    /// The policy OID stamped into tokens.
    pub oid: Oid,
    /// Which requests it takes.
    pub rules: Rules,
    /// Its chain's filter names, in order.
    pub chain: Vec<String>,
    /// What its chain's filters decided.
    pub settings: Settings,
}

/// One enabled service, its references checked.
#[derive(Debug, Clone)]
pub struct ValidService {
    /// `name`.
    pub name: String,
    /// The `[signer.NAME]` it signs with.
    pub signer: String,
    /// Its policies in order (`["default"]` when the file lists none).
    pub policies: Vec<String>,
    /// `fallback_policy`.
    pub fallback: Option<String>,
    /// Its pre-processing filters, outermost first: (name, configuration).
    pub preprocess: Vec<(String, PreprocessConfig)>,
    /// `status_text`.
    pub status_text: bool,
    /// `public_pages`.
    pub public_pages: bool,
    /// `protocol`.
    pub protocol: crate::policy::config::Protocol,
}

impl Config {
    /// Checks everything that can be checked without I/O. Each message names the key and
    /// says what to write instead.
    pub fn validate(&self) -> Result<ValidatedConfig, Error> {
        self.validate_as("configuration")
    }

    /// [`Config::validate`], naming the file `origin` in chain messages.
    pub fn validate_as(&self, origin: &str) -> Result<ValidatedConfig, Error> {
        let mut errors = Vec::new();
        self.check_chains(origin, &mut errors);
        errors.extend(self.audit.validate());
        errors.extend(self.clock.validate());
        for (name, sc) in &self.signer {
            errors.extend(sc.validate(name));
        }
        for (name, p) in &self.preprocess {
            for e in p.validate() {
                errors.push(format!("preprocess.{name}: {e}"));
            }
        }
        self.check_filters(&mut errors);
        if self.server.cores > 1024 {
            errors.push("server.cores: at most 1024 (0 = all available cores)".to_string());
        }
        if !(3..=3600).contains(&self.server.node_lease_seconds) {
            errors.push("server.node_lease_seconds: 3 to 3600".into());
        }
        if self.server.queue_capacity == 0 {
            errors.push("server.queue_capacity: must be at least 1".into());
        }
        errors.extend(self.server.http.validate());
        errors.extend(self.admin.validate());
        let (services, mut listeners) = self.check_services(&mut errors);
        let admin = self.admin.addr().ok().flatten().map(|addr| Listener {
            addr,
            routes: Vec::new(),
            probes: crate::frontend::config::Probes::ALL,
            tls: self
                .admin
                .tls
                .as_ref()
                .map(|t| t.resolved(&self.server.data_dir)),
        });
        let admin_addr = admin.as_ref().map(|l| l.addr);
        if let Some(a) =
            admin_addr.filter(|a| a.port() != 0 && listeners.iter().any(|l| l.addr == *a))
        {
            // Both would bind with SO_REUSEPORT, and the kernel would share the connections.
            errors.push(format!(
                "admin.listen: {a} is also a service's listen address; give the admin listener \
                 its own port"
            ));
        }
        let public = self.admin.public().unwrap_or_default();
        for l in &mut listeners {
            l.probes = public;
        }
        let policies = self.check_policies(&services, &mut errors);
        if !errors.is_empty() {
            return Err(Error::Config(errors.join("\n")));
        }
        let data_dir = self.server.data_dir.clone();
        Ok(ValidatedConfig {
            signers: self
                .signer
                .iter()
                .map(|(name, sc)| (name.clone(), sc.resolved(&data_dir)))
                .collect(),
            journal_dir: data_dir.join(&self.audit.journal.dir),
            postgres_password_file: self
                .audit
                .postgres_password_file
                .as_deref()
                .map(|f| data_dir.join(f)),
            config: self.clone(),
            data_dir,
            policies,
            services,
            listeners,
            admin,
        })
    }

    /// `[chain.NAME]`: the name `standard` is taken, every filter name resolves and stands
    /// where the chain rules allow.
    fn check_chains(&self, origin: &str, errors: &mut Vec<String>) {
        if self.chain.contains_key("standard") {
            errors.push(
                "[chain.standard]: `standard` is the built-in chain; give yours another name"
                    .to_string(),
            );
        }
        for (name, c) in &self.chain {
            errors.extend(chain::validate_chain(
                origin,
                name,
                &c.filters,
                &self.filter,
            ));
        }
    }

    /// `[filter.NAME]`: its own options, the signer it names, and a name that is not a
    /// built-in kind.
    fn check_filters(&self, errors: &mut Vec<String>) {
        for (name, f) in &self.filter {
            for e in f.validate() {
                errors.push(format!("filter.{name}: {e}"));
            }
            if let Some(s) = f.signer() {
                if !self.signer.contains_key(s) {
                    errors.push(format!(
                        "filter.{name}.signer: `{s}` is not defined; add a [signer.{s}] table"
                    ));
                }
            }
            if FilterKind::from_name(name).is_some() {
                // Otherwise it would silently replace the built-in filter in every chain,
                // the standard chain included.
                errors.push(format!(
                    "filter.{name}: `{name}` is a built-in filter name; give this filter another name"
                ));
            }
        }
    }

    /// `[[service]]`: unique names, addresses and paths, endpoints served once, the
    /// pre-processing onion (one clock, one audit before any rate limit), and the signer and
    /// policies it names. Gives the enabled services and the listeners they need.
    fn check_services(&self, errors: &mut Vec<String>) -> (Vec<ValidService>, Vec<Listener>) {
        if self.service.is_empty() {
            errors.push("[[service]]: at least one service is needed".into());
        }
        let mut endpoints = HashSet::new();
        let mut names = HashSet::new();
        let mut services = Vec::new();
        let mut listeners: Vec<Listener> = Vec::new();
        for (i, s) in self.service.iter().enumerate() {
            let at = format!("service[{i}] ({})", s.name);
            if !names.insert(&s.name) {
                errors.push(format!(
                    "{at}: name `{}` is used twice; names must be unique",
                    s.name
                ));
            }
            let addrs = s.check_endpoints(&at, errors);
            for path in s.path.values() {
                for (listen, addr) in s.listen.values().iter().zip(&addrs) {
                    if s.enabled && addr.is_some() && !endpoints.insert((*addr, path.clone())) {
                        errors.push(format!(
                            "{at}: {listen}{path} is already served by another service"
                        ));
                    }
                }
            }
            let preprocess = self.check_preprocess(&at, &s.preprocess, errors);
            if let Some(f) = &s.fallback_policy {
                if self.policy_config(f).is_none() {
                    errors.push(format!(
                        "{at}: fallback_policy `{f}` is not defined; add a [policy.{f}] table"
                    ));
                }
            }
            if !self.signer.contains_key(&s.signer) {
                errors.push(format!(
                    "{at}: signer `{}` is not defined; add a [signer.{}] table or use one of: {}",
                    s.signer,
                    s.signer,
                    self.signer.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            for p in &s.policies {
                if self.policy_config(p).is_none() {
                    errors.push(format!(
                        "{at}: policy `{p}` is not defined; add a [policy.{p}] table or use one of: {}",
                        self.policy.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            let client_auth = s.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
            for p in self
                .policies_of(s)
                .into_iter()
                .chain(s.fallback_policy.as_deref())
            {
                let by_subject = self.policy_config(p).is_some_and(|c| {
                    c.match_.client_subject.is_some() || c.match_.client_subject_regex.is_some()
                });
                if by_subject && !client_auth {
                    errors.push(format!(
                        "{at}: policy `{p}` matches on client_subject, but this service asks for \
                         no client certificate; add client_ca to its tls table"
                    ));
                }
            }
            if !s.enabled {
                continue;
            }
            let index = services.len();
            let tls = s.tls.as_ref().map(|t| t.resolved(&self.server.data_dir));
            for addr in addrs.into_iter().flatten() {
                let routes = s.path.values().iter().map(|p| (p.clone(), index));
                match listeners.iter_mut().find(|l| l.addr == addr) {
                    Some(l) => {
                        if l.tls != tls {
                            errors.push(format!(
                                "{at}: tls differs from another service's on {addr}; services \
                                 sharing an address share its TLS"
                            ));
                        }
                        l.routes.extend(routes)
                    }
                    None => listeners.push(Listener {
                        addr,
                        routes: routes.collect(),
                        probes: Default::default(),
                        tls: tls.clone(),
                    }),
                }
            }
            services.push(ValidService {
                name: s.name.clone(),
                signer: s.signer.clone(),
                policies: self.policies_of(s).into_iter().map(String::from).collect(),
                fallback: s.fallback_policy.clone(),
                preprocess,
                status_text: s.status_text,
                public_pages: s.public_pages,
                protocol: s.protocol,
            });
        }
        (services, listeners)
    }

    /// A service's `preprocess` list: every name defined, exactly one clock filter, exactly
    /// one audit filter (unless the trail is off), and the audit filter before any rate limit.
    fn check_preprocess(
        &self,
        at: &str,
        list: &[String],
        errors: &mut Vec<String>,
    ) -> Vec<(String, PreprocessConfig)> {
        let (mut clocks, mut audits) = (0, 0);
        let mut limited_before_audit = false;
        let mut found = Vec::new();
        for (pos, name) in list.iter().enumerate() {
            match self.preprocess_config(name) {
                None => errors.push(format!(
                    "{at}.preprocess[{pos}]: `{name}` is not defined; add a [preprocess.{name}] table or use clock, rate-limit, transaction-monitor, audit"
                )),
                Some(p) => {
                    clocks += usize::from(p.is_clock());
                    audits += usize::from(p.is_audit());
                    limited_before_audit |= audits == 0 && p.is_rate_limit();
                    found.push((name.clone(), p));
                }
            }
        }
        if limited_before_audit && audits > 0 {
            errors.push(format!(
                "{at}.preprocess: put `audit` before every rate-limit filter, so the requests it refuses are recorded too"
            ));
        }
        if clocks != 1 {
            errors.push(format!(
                "{at}.preprocess: needs exactly one clock filter (the source of genTime), has {clocks}"
            ));
        }
        let audit_off = self.audit.store == crate::audit::StoreKind::None;
        if audits > 1 || (audits == 0 && !audit_off) {
            errors.push(format!(
                "{at}.preprocess: needs exactly one audit filter (every issued token is recorded in the audit trail), has {audits}"
            ));
        }
        found
    }

    /// Every `[policy.NAME]` (and the built-in `default` when a service uses it): its own
    /// keys, then its chain: defined, qualified exactly when the policy is, and an accuracy
    /// in effect that is at most an hour and no finer than the genTime precision in effect.
    fn check_policies(
        &self,
        services: &[ValidService],
        errors: &mut Vec<String>,
    ) -> BTreeMap<String, ValidPolicy> {
        let mut names: Vec<&str> = self.policy.keys().map(String::as_str).collect();
        for s in services {
            names.extend(s.policies.iter().chain(&s.fallback).map(String::as_str));
        }
        names.sort_unstable();
        names.dedup();
        let mut valid = BTreeMap::new();
        for name in names {
            let Some(p) = self.policy_config(name) else {
                continue; // reported with the service that names it
            };
            let at = format!("policy.{name}");
            let parsed = match p.parse(name) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            };
            if p.chain != "standard" && !self.chain.contains_key(&p.chain) {
                errors.push(format!(
                    "{at}.chain: `{}` is not defined; add a [chain.{}] table or use \"standard\"",
                    p.chain, p.chain
                ));
                continue;
            }
            let Some(parsed) = parsed else { continue };
            let filters = self.chain_of(&p);
            let has_qs = filters
                .iter()
                .any(|n| chain::kind_of(n, &self.filter) == Some(FilterKind::QualifiedStatement));
            if p.qualified && !has_qs {
                errors.push(format!(
                    "{at}.qualified: chain `{}` has no qualified-statement filter; add it before tst-info",
                    p.chain
                ));
            }
            if !p.qualified && has_qs {
                // A qualified statement has legal meaning: never by accident.
                errors.push(format!(
                    "{at}.qualified: chain `{}` marks tokens qualified but this policy is not; \
                     set qualified = true (only for a qualified TSA) or use another chain",
                    p.chain
                ));
            }
            // The accuracy and precision in effect, after the chain's filters.
            let settings = chain::compile(parsed.defaults, &filters, &self.filter);
            let acc = settings.accuracy.total_micros();
            if acc > 3_600_000_000 {
                errors.push(format!(
                    "{at}.accuracy: the accuracy in effect (chain `{}`) is over one hour",
                    p.chain
                ));
            }
            // genTime is truncated to its precision, so a finer accuracy would be a lie.
            if acc != 0 && acc < settings.precision.unit_us() {
                errors.push(format!(
                    "{at}.accuracy: the accuracy in effect ({acc} µs) is finer than the genTime \
                     precision `{}` in effect (chain `{}`); raise the accuracy or use a finer \
                     gen_time_precision",
                    settings.precision.name(),
                    p.chain
                ));
            }
            valid.insert(
                name.to_string(),
                ValidPolicy {
                    oid: parsed.oid,
                    rules: parsed.rules,
                    chain: filters,
                    settings,
                },
            );
        }
        valid
    }
}
