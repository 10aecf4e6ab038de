//! Config → running parts. This is where files are read, the dev PKI is created, keys are
//! loaded and the serial epoch is advanced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ValidatedConfig;
use crate::audit::{AuditSink, Event};
use crate::clock::monitor::{EventSink, Monitor, Taken, Thresholds};
use crate::clock::{SystemClock, TimeSource};
use crate::error::Error;
use crate::frontend::config::Listener;
use crate::pki::{DevPki, KeyType};
use crate::policy::chain;
use crate::policy::preprocess::{PreFilter, PreprocessConfig};
use crate::policy::{Policy, Service, Tsa};
use crate::protocol::cert::CertView;
use crate::protocol::token::EssCertId;
use crate::protocol::token::SignerTemplate;
use crate::protocol::token::{PolicyTemplate, TsaName};
use crate::protocol::HashAlg;
use crate::serial::SerialSpace;
use crate::signer::config::{SignerConfig, SignerKind};
use crate::signer::software::SoftwareSigner;
use crate::signer::TokenSigner;

/// Everything `serve` needs.
pub struct Built {
    /// The enabled services with their compiled policies, signers, clock and serial
    /// space: what every frontend core and backend worker issues tokens from.
    pub tsa: Arc<Tsa>,
    /// The audit trail, to flush on shutdown.
    pub audit: Arc<dyn AuditSink>,
    /// The sockets to bind, each with the paths it routes to services.
    pub listeners: Vec<Listener>,
    /// `server.data_dir`, created if it was missing; holds the dev PKI and the state.
    pub data_dir: PathBuf,
    /// What a reload keeps: the serial space, the audit trail and the clock.
    pub kept: Kept,
    /// This node's claim of its node id (with `audit.postgres`), for `serve` to hold with a
    /// heartbeat once it runs.
    pub claim: Option<super::node::Claimed>,
    /// The journals' checkpoint anchor, to set once the TSA serves (`[audit.journal]
    /// anchor`); `None` when checkpoints are not anchored.
    pub anchor: Option<crate::audit::journal::anchor::Anchor>,
}

/// The parts of a running server that a reload does not rebuild (changing what they were
/// built from needs a restart).
#[derive(Clone)]
pub struct Kept {
    serials: Arc<SerialSpace>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn TimeSource>,
    clock_thresholds: Arc<Thresholds>,
    switches: Arc<crate::policy::switch::Switches>,
}

impl Kept {
    /// The audit trail (a reload records itself there).
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    /// The sync monitor's `max_offset_ms` and `warn_offset_ms` (a reload sets them).
    pub fn clock_thresholds(&self) -> &Thresholds {
        &self.clock_thresholds
    }
}

/// Builds the runtime parts from a validated configuration, and starts the audit writer
/// and the clock's sync monitor (its first poll runs here, so a server whose time sources
/// answer is in sync from its first request).
pub fn build(valid: &ValidatedConfig) -> Result<Built, Error> {
    let config = &valid.config;
    let data_dir = valid.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
    let now = wall_time()?;
    let password = postgres_password(&config.audit, valid.postgres_password_file.as_deref())?;
    // The serial space's lock file also keeps a second process off this data directory's
    // journal (and its node claim): taken first.
    let (serials, claim) = super::node::open(
        config,
        &data_dir.join("state"),
        password.as_deref(),
        u64::try_from(now.unix_secs).unwrap_or(0),
    )?;
    let serials = Arc::new(serials);
    // One audit shard per frontend core; their committers run on the cores' io_uring, or on
    // threads of their own under epoll (a core must not wait for the disk).
    let placement = if crate::frontend::uses_uring(config.server.io_driver) {
        crate::audit::Placement::Cores
    } else {
        crate::audit::Placement::Threads
    };
    let shards = crate::frontend::core_count(config.server.cores);
    let anchor = crate::audit::journal::anchor::Anchor::default();
    let audit = config.audit.start(
        &valid.journal_dir,
        password,
        shards,
        placement,
        config.server.node_id,
        &anchor,
    )?;
    let mut monitor = Monitor::new(&config.clock, clock_events(audit.clone()));
    monitor.announce();
    monitor.poll();
    let clock: Arc<dyn TimeSource> = Arc::new(monitor.clock());
    let clock_thresholds = monitor.thresholds();
    monitor
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start the clock monitor: {e}")))?;
    let kept = Kept {
        serials,
        audit: audit.clone(),
        clock,
        clock_thresholds,
        switches: Default::default(),
    };
    Ok(Built {
        tsa: Arc::new(assemble(valid, &kept)?),
        audit,
        listeners: valid.listeners.clone(),
        data_dir,
        kept,
        claim,
        anchor: config.audit.journal.anchor.then_some(anchor),
    })
}

/// Wall time, not genTime: for the signers' start-up validity checks and the serial
/// epoch, which must work while the clock is not (yet) trusted.
fn wall_time() -> Result<crate::protocol::Timestamp, Error> {
    Ok(SystemClock.now().map_err(|_| Error::TimeUnavailable)?.time)
}

/// The signers, policies, chains and services of `valid` over the `kept` parts: at start,
/// and beside the running set at a reload (nothing running is touched; an error leaves it
/// as it was).
pub fn assemble(valid: &ValidatedConfig, kept: &Kept) -> Result<Tsa, Error> {
    let config = &valid.config;
    let data_dir = &valid.data_dir;
    let now = wall_time()?;
    let mut signers: BTreeMap<&str, Arc<dyn TokenSigner>> = BTreeMap::new();
    for (name, sc) in &valid.signers {
        if !config.signer_in_use(name) {
            continue;
        }
        let signer = signer(name, sc, data_dir, now)?;
        tracing::info!(signer = %name, key_id = %signer.key_id(), scheme = signer.template().scheme.name(), "signer ready");
        signers.insert(name, signer);
    }
    let (audit, clock) = (&kept.audit, &kept.clock);
    let mut services = Vec::new();
    for sc in &valid.services {
        let signer = signers
            .get(sc.signer.as_str())
            .cloned()
            .ok_or_else(|| Error::Config(format!("signer `{}` is not defined", sc.signer)))?;
        let policy = |name: &String| build_policy(name, valid, &signers, &signer);
        let policies = sc
            .policies
            .iter()
            .map(policy)
            .collect::<Result<Vec<_>, _>>()?;
        let fallback = sc.fallback.as_ref().map(policy).transpose()?;
        let preprocess = sc
            .preprocess
            .iter()
            .map(|(name, pc)| match pc {
                PreprocessConfig::Clock(c) => {
                    Arc::new(c.build(name, clock.clone())) as Arc<dyn PreFilter>
                }
                PreprocessConfig::RateLimit(c) => Arc::new(c.build(name)),
                PreprocessConfig::TransactionMonitor(c) => Arc::new(c.build(name, &sc.name)),
                PreprocessConfig::Audit(c) => Arc::new(c.build(
                    name,
                    &sc.name,
                    signer.key_id(),
                    sc.protocol == crate::policy::config::Protocol::Authenticode,
                    config.audit.durability,
                    audit.clone(),
                )),
            })
            .collect();
        services.push(Service {
            name: sc.name.clone(),
            preprocess,
            signer: signer.clone(),
            policies,
            fallback,
            status_text: sc.status_text,
            switch: kept.switches.of(&sc.name),
            // The public pages stamp and verify RFC 3161 tokens.
            public_pages: sc.public_pages
                && sc.protocol == crate::policy::config::Protocol::Rfc3161,
            protocol: sc.protocol,
        });
    }
    if services.is_empty() {
        return Err(Error::Config(
            "every service is disabled: nothing to serve".into(),
        ));
    }
    Ok(Tsa {
        services,
        clock: clock.clone(),
        serials: kept.serials.clone(),
        audit: audit.clone(),
        signers: signers
            .iter()
            .map(|(n, s)| (n.to_string(), Arc::clone(s)))
            .collect(),
    })
}

/// The monitor's events as audit [`Event`]s (`kind = "clock"`), in the trail's hash chain.
fn clock_events(audit: Arc<dyn AuditSink>) -> EventSink {
    Box::new(move |e| {
        let time = crate::clock::unix_time(e.time).unwrap_or(crate::protocol::Timestamp {
            unix_secs: 0,
            nanos: 0,
        });
        let event = Event {
            time,
            kind: "clock".into(),
            name: e.name.into(),
            message: e.message.clone(),
            detail: e.detail.to_string(),
        };
        match audit.event(event) {
            Ok(Some(committed)) => Taken::Queued(committed),
            Ok(None) => Taken::Done,
            Err(_) => Taken::Refused,
        }
    })
}

/// The PostgreSQL password of `[audit]`, from its env variable or `password_file` (resolved);
/// `None` without `audit.postgres` (nothing is read then).
fn postgres_password(
    audit: &crate::audit::AuditConfig,
    password_file: Option<&Path>,
) -> Result<Option<String>, Error> {
    if audit.postgres.is_none() {
        return Ok(None);
    }
    crate::secret::read(
        "the password",
        crate::secret::Source {
            env: audit.postgres_password_env.as_deref(),
            file: password_file,
            credential: audit.postgres_password_credential.as_deref(),
        },
    )
    .map_err(|e| Error::Config(format!("audit.postgres: {e}")))
}

/// A signer from its validated config (paths resolved, see `SignerConfig::resolved`). The
/// embedded default's dev PKI is created in `data_dir` on first start when a file signer
/// points at its (missing) files.
pub fn signer(
    name: &str,
    sc: &SignerConfig,
    data_dir: &Path,
    now: crate::protocol::Timestamp,
) -> Result<Arc<dyn TokenSigner>, Error> {
    let cert = sc.cert_path();
    if sc.kind == SignerKind::File {
        let key = &sc.key;
        let dev = DevPki::in_dir(data_dir);
        if *key == dev.tsa_key && cert == dev.tsa_cert && !key.exists() && !cert.exists() {
            dev.create(KeyType::P256)?;
            tracing::info!(dir = %data_dir.join("pki").display(), "created development PKI (not for production)");
        }
        return Ok(Arc::new(SoftwareSigner::load(
            name,
            key,
            cert,
            sc.rsa_padding,
            now,
        )?));
    }
    let fail = |reason: String| Error::Signer {
        name: name.to_string(),
        reason,
    };
    let source = crate::secret::Source {
        env: sc.pin_env.as_deref(),
        file: sc.pin_file.as_deref(),
        credential: sc.pin_credential.as_deref(),
    };
    let pin = crate::secret::read("the PIN", source)
        .map_err(fail)?
        .ok_or_else(|| fail("no PIN: set pin_env, pin_file or pin_credential".into()))?;
    // No `cert`: the chain stored on the token with the key (`stampd hsm import-cert`).
    let chain = match &sc.cert {
        Some(_) => {
            let pem = std::fs::read(cert).map_err(|e| Error::io(cert, e))?;
            Some(
                crate::signer::software::pem_blocks(&pem, "CERTIFICATE")
                    .map_err(|e| fail(format!("{}: {e}", cert.display())))?,
            )
        }
        None => None,
    };
    let config = crate::signer::pkcs11::Pkcs11Config {
        module: sc.module.as_deref().unwrap_or(Path::new("")),
        rsa_padding: sc.rsa_padding,
        token_label: sc.token_label.as_deref().unwrap_or_default(),
        pin,
        key_label: sc.key_label.as_deref().unwrap_or_default(),
        chain,
        sessions: sc.sessions,
    };
    Ok(Arc::new(
        crate::signer::pkcs11::Pkcs11Signer::open(config, name, now).map_err(fail)?,
    ))
}

fn build_policy(
    name: &str,
    valid: &ValidatedConfig,
    signers: &BTreeMap<&str, Arc<dyn TokenSigner>>,
    service_signer: &Arc<dyn TokenSigner>,
) -> Result<Policy, Error> {
    let name_of_policy = name;
    let vp = valid
        .policies
        .get(name)
        .ok_or_else(|| Error::Config(format!("policy `{name}` is not defined")))?;
    let bad = |what: &str| Error::Config(format!("policy.{name}: invalid {what}"));
    let s = vp.settings.clone();
    let request_filters = chain::request_filters(&vp.chain, &valid.config.filter, &valid.data_dir)
        .map_err(Error::Config)?;
    let template = PolicyTemplate::new(
        &s.oid,
        s.accuracy,
        s.precision,
        s.tsa_name.clone(),
        s.certs,
        s.qualified,
    )
    .map_err(|e| bad(&format!("TSTInfo template ({e})")))?;
    let signer = match &s.signer {
        Some(n) => Some(
            signers
                .get(n.as_str())
                .cloned()
                .ok_or_else(|| bad("signer"))?,
        ),
        None => None,
    };
    let effective = signer.as_ref().unwrap_or(service_signer);
    if let TsaName::Explicit(name) = &s.tsa_name {
        let leaf = effective
            .chain()
            .first()
            .and_then(|c| CertView::parse(c).ok());
        if !leaf.is_some_and(|c| c.has_directory_name(name)) {
            return Err(Error::Config(format!(
                "policy.{name_}: the explicit TSA name is neither the TSA certificate's subject \
                 nor a directoryName in its subjectAltName; verifiers (openssl ts -verify) \
                 would refuse the tokens",
                name_ = name_of_policy
            )));
        }
    }
    // Token constants of their own when the chain asks for another signer or ESS variant.
    let signer_template = if signer.is_some() || s.ess != EssCertId::V2(HashAlg::Sha256) {
        let scheme = effective.template().scheme;
        Some(
            SignerTemplate::new(scheme, effective.chain(), s.ess)
                .map_err(|_| bad("TSA certificate"))?,
        )
    } else {
        None
    };
    Ok(Policy {
        name: name.into(),
        oid_text: vp.oid.to_string().into(),
        oid: vp.oid.clone(),
        rules: vp.rules.clone(),
        hash_algorithms: s.hash_algorithms,
        allowed_extensions: s.allowed_extensions,
        template,
        validity_margin_us: if s.check_validity {
            s.accuracy.total_micros()
        } else {
            0
        },
        signer,
        signer_template,
        status_text_override: s.status_text,
        archive: s.archive,
        request_filters,
    })
}
