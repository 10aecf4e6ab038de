//! Config → running parts. This is where files are read, the dev PKI is created, keys are
//! loaded and the serial epoch is advanced.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{parse_oid, Config, SignerKind};
use crate::audit::AuditSink;
use crate::clock::{SystemClock, TimeSource};
use crate::error::Error;
use crate::frontend::config::Listener;
use crate::pki::{DevPki, KeyType};
use crate::policy::chain;
use crate::policy::filters::timestamp_token::EssCertId;
use crate::policy::mapper::{Cidr, Rules, StringMatch};
use crate::policy::preprocess::{PreFilter, PreprocessConfig};
use crate::policy::{Policy, Service, Tsa};
use crate::protocol::cert::CertView;
use crate::protocol::token::SignerTemplate;
use crate::protocol::token::{PolicyTemplate, TsaName};
use crate::protocol::HashAlg;
use crate::serial::SerialSpace;
use crate::signer::software::SoftwareSigner;
use crate::signer::TokenSigner;
use regex::bytes::Regex;

/// Everything `serve` needs.
pub struct Built {
    pub tsa: Arc<Tsa>,
    /// The audit trail, to flush on shutdown.
    pub audit: Arc<dyn AuditSink>,
    pub listeners: Vec<Listener>,
    pub data_dir: PathBuf,
}

/// Resolves `p` against the data directory unless it is absolute.
pub fn resolve(data_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_dir.join(p)
    }
}

/// Builds the runtime parts from a configuration, with the system clock.
pub fn build(config: &Config) -> Result<Built, Error> {
    build_with_clock(config, Arc::new(SystemClock))
}

pub fn build_with_clock(config: &Config, clock: Arc<dyn TimeSource>) -> Result<Built, Error> {
    config.validate()?;
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
    let now = clock.now().map_err(|_| Error::TimeUnavailable)?;

    let mut signers: BTreeMap<&str, Arc<dyn TokenSigner>> = BTreeMap::new();
    for (name, sc) in &config.signer {
        if !config.signer_in_use(name) {
            continue;
        }
        let signer = signer(name, sc, &data_dir, now)?;
        tracing::info!(signer = %name, key_id = %signer.key_id(), scheme = signer.template().scheme.name(), "signer ready");
        signers.insert(name, signer);
    }

    // The serial space's lock file also keeps a second process off this data directory's
    // journal: take it first.
    let serials = SerialSpace::open(
        &data_dir.join("state"),
        config.server.node_id,
        u64::try_from(now.unix_secs).unwrap_or(0),
    )?;
    let audit = config
        .audit
        .start(&data_dir, postgres_password(&config.audit, &data_dir)?)?;
    let mut services = Vec::new();
    let mut listeners: Vec<Listener> = Vec::new();
    for sc in config.service.iter().filter(|s| s.enabled) {
        let index = services.len();
        let signer = signers
            .get(sc.signer.as_str())
            .cloned()
            .ok_or_else(|| Error::Config(format!("signer `{}` is not defined", sc.signer)))?;
        let policies = config
            .policies_of(sc)
            .into_iter()
            .map(|name| build_policy(name, config, &signers, &signer))
            .collect::<Result<Vec<_>, _>>()?;
        let fallback = sc
            .fallback_policy
            .as_ref()
            .map(|name| build_policy(name, config, &signers, &signer))
            .transpose()?;
        let preprocess = sc
            .preprocess
            .iter()
            .map(|name| {
                let pc = config
                    .preprocess_config(name)
                    .ok_or_else(|| Error::Config(format!("preprocess `{name}` is not defined")))?;
                Ok(match pc {
                    PreprocessConfig::Clock(c) => {
                        Arc::new(c.build(name, clock.clone())) as Arc<dyn PreFilter>
                    }
                    PreprocessConfig::RateLimit(c) => Arc::new(c.build(name)),
                    PreprocessConfig::TransactionMonitor(c) => Arc::new(c.build(name, &sc.name)),
                    PreprocessConfig::Audit(c) => Arc::new(c.build(
                        name,
                        &sc.name,
                        signer.key_id(),
                        config.audit.durability,
                        audit.clone(),
                    )),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        services.push(Service {
            name: sc.name.clone(),
            preprocess,
            signer: signer.clone(),
            policies,
            fallback,
            status_text: sc.status_text,
        });
        for listen in sc.listen.values() {
            let addr: SocketAddr = listen
                .parse()
                .map_err(|_| Error::Config(format!("listen `{listen}` is not an address")))?;
            let routes = sc.path.values().iter().map(|p| (p.clone(), index));
            match listeners.iter_mut().find(|l| l.addr == addr) {
                Some(l) => l.routes.extend(routes),
                None => listeners.push(Listener {
                    addr,
                    routes: routes.collect(),
                }),
            }
        }
    }
    if services.is_empty() {
        return Err(Error::Config(
            "every service is disabled: nothing to serve".into(),
        ));
    }

    Ok(Built {
        tsa: Arc::new(Tsa {
            services,
            clock,
            serials,
            audit: audit.clone(),
            signers: signers
                .iter()
                .map(|(n, s)| (n.to_string(), Arc::clone(s)))
                .collect(),
        }),
        audit,
        listeners,
        data_dir,
    })
}

/// The PostgreSQL password of `[audit]`, from its env variable or file; `None` without
/// `audit.postgres` (nothing is read then).
pub fn postgres_password(
    audit: &crate::audit::AuditSettings,
    data_dir: &Path,
) -> Result<Option<String>, Error> {
    if audit.postgres.is_none() {
        return Ok(None);
    }
    let file = audit
        .postgres_password_file
        .as_deref()
        .map(|f| resolve(data_dir, f));
    super::secret::read(
        "the password",
        audit.postgres_password_env.as_deref(),
        file.as_deref(),
    )
    .map_err(|e| Error::Config(format!("audit.postgres: {e}")))
}

/// A signer from its validated config. The embedded default's dev PKI is created on first
/// start when a file signer points at its (missing) files.
pub fn signer(
    name: &str,
    sc: &super::SignerConfig,
    data_dir: &Path,
    now: crate::protocol::Timestamp,
) -> Result<Arc<dyn TokenSigner>, Error> {
    let cert = resolve(data_dir, sc.cert_path());
    if sc.kind == SignerKind::File {
        let key = resolve(data_dir, &sc.key);
        let dev = DevPki::in_dir(data_dir);
        if key == dev.tsa_key && cert == dev.tsa_cert && !key.exists() && !cert.exists() {
            dev.create(KeyType::P256)?;
            tracing::info!(dir = %data_dir.join("pki").display(), "created development PKI (not for production)");
        }
        return Ok(Arc::new(SoftwareSigner::load(
            name,
            &key,
            &cert,
            sc.rsa_padding,
            now,
        )?));
    }
    let fail = |reason: String| Error::Signer {
        name: name.to_string(),
        reason,
    };
    let pin_file = sc.pin_file.as_deref().map(|f| resolve(data_dir, f));
    let pin = super::secret::read("the PIN", sc.pin_env.as_deref(), pin_file.as_deref())
        .map_err(fail)?
        .ok_or_else(|| fail("no PIN: set pin_env or pin_file".into()))?;
    // No `cert`: the chain stored on the token with the key (`stampd hsm import-cert`).
    let chain = match &sc.cert {
        Some(_) => {
            let pem = std::fs::read(&cert).map_err(|e| Error::io(&cert, e))?;
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
    config: &Config,
    signers: &BTreeMap<&str, Arc<dyn TokenSigner>>,
    service_signer: &Arc<dyn TokenSigner>,
) -> Result<Policy, Error> {
    let name_of_policy = name;
    let pc = &config
        .policy_config(name)
        .ok_or_else(|| Error::Config(format!("policy `{name}` is not defined")))?;
    let bad = |what: &str| Error::Config(format!("policy.{name}: invalid {what}"));
    let oid = parse_oid(&pc.oid).ok_or_else(|| bad("oid"))?;
    let m = &pc.match_;
    let requested_policy = match &m.requested_policy {
        None => (true, vec![oid.clone()]),
        Some(list) => {
            let oids = list
                .iter()
                .filter(|s| s.as_str() != "absent")
                .map(|s| parse_oid(s).ok_or_else(|| bad("match.requested_policy")))
                .collect::<Result<Vec<_>, _>>()?;
            (list.iter().any(|s| s == "absent"), oids)
        }
    };
    let regex = |r: &str| Regex::new(r).map_err(|_| bad("regular expression"));
    let path = match (&m.path, &m.path_regex) {
        (Some(list), _) => Some(StringMatch::Exact(list.clone())),
        (None, Some(r)) => Some(StringMatch::Regex(regex(r)?)),
        (None, None) => None,
    };
    let header = match &m.header {
        None => None,
        Some(h) => Some((
            h.name.clone(),
            match (&h.value, &h.regex) {
                (Some(v), _) => StringMatch::Exact(v.clone()),
                (None, Some(r)) => StringMatch::Regex(regex(r)?),
                (None, None) => return Err(bad("match.header")),
            },
        )),
    };
    let client = match &m.client {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|c| Cidr::parse(c).ok_or_else(|| bad("match.client")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let rules = Rules {
        requested_policy: Some(requested_policy),
        hash_algorithm: m.hash_algorithm.clone(),
        client,
        path,
        header,
    };
    let defaults = config.policy_defaults(pc).ok_or_else(|| bad("settings"))?;
    let names = config.chain_of(pc);
    let s = chain::compile(defaults, &names, &config.filter);
    let request_filters = chain::request_filters(&names, &config.filter, &config.server.data_dir)
        .map_err(Error::Config)?;
    let template = PolicyTemplate::new(
        &s.oid,
        s.accuracy,
        s.precision,
        s.tsa_name.clone(),
        s.certs,
        s.qualified,
    );
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
        oid_text: oid.to_string().into(),
        oid,
        rules,
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
        status_text: s.status_text,
        archive: s.archive,
        request_filters,
    })
}
