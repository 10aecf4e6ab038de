//! The development PKI: a CA and a TSA certificate created on first start, so `stampd serve`
//! works with no configuration. Not for production: the CA key sits next to the TSA key.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};

use crate::error::Error;

/// Key types `stampd init` and `stampd hsm generate` can create (the command-line value is
/// the lower-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA on NIST P-256 (tokens signed with SHA-256).
    P256,
    /// ECDSA on NIST P-384 (tokens signed with SHA-384).
    P384,
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// RSA with a 2048-bit modulus.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
}

impl KeyType {
    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        let alg: &'static SignatureAlgorithm = match self {
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 | KeyType::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        };
        match self {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048),
            KeyType::Rsa3072 => KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_3072),
            // rcgen writes Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key), which
            // OpenSSL 3.0 cannot load; write v1 so every tool can read the dev key.
            KeyType::Ed25519 => {
                use aws_lc_rs::encoding::AsDer;
                let key = aws_lc_rs::signature::Ed25519KeyPair::generate()
                    .map_err(|_| rcgen::Error::RingUnspecified)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der =
                    key.as_der().map_err(|_| rcgen::Error::RingUnspecified)?;
                let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
                KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
            }
            _ => KeyPair::generate_for(alg),
        }
    }
}

/// Paths of the dev PKI inside a data directory. The CA is valid for 10 years and the TSA
/// certificate for 3, both from an hour before creation (to tolerate clock skew).
#[derive(Debug, Clone)]
pub struct DevPki {
    /// `DATA_DIR/pki/ca.pem`: the CA certificate, to give verifiers as their trust anchor.
    pub ca_cert: PathBuf,
    /// `DATA_DIR/pki/ca.key`: the CA's private key (PKCS#8 PEM, mode 0600).
    pub ca_key: PathBuf,
    /// `DATA_DIR/pki/tsa.pem`: the TSA certificate, then the CA certificate.
    pub tsa_cert: PathBuf,
    /// `DATA_DIR/pki/tsa.key`: the TSA's private key (PKCS#8 PEM, mode 0600).
    pub tsa_key: PathBuf,
}

impl DevPki {
    /// The paths under `data_dir/pki/`; nothing is read or created.
    pub fn in_dir(data_dir: &Path) -> Self {
        let pki = data_dir.join("pki");
        DevPki {
            ca_cert: pki.join("ca.pem"),
            ca_key: pki.join("ca.key"),
            tsa_cert: pki.join("tsa.pem"),
            tsa_key: pki.join("tsa.key"),
        }
    }

    /// Whether the TSA certificate and key are present (the CA files are not needed to
    /// serve).
    pub fn exists(&self) -> bool {
        self.tsa_cert.exists() && self.tsa_key.exists()
    }

    /// Creates the CA and the TSA certificate. Refuses to overwrite existing files.
    pub fn create(&self, key_type: KeyType) -> Result<(), Error> {
        let pki_err = |e: rcgen::Error| Error::Pki(e.to_string());
        for p in [&self.ca_cert, &self.ca_key, &self.tsa_cert, &self.tsa_key] {
            if p.exists() {
                return Err(Error::Pki(format!(
                    "{} already exists; not overwriting",
                    p.display()
                )));
            }
        }
        let now = time::OffsetDateTime::from(crate::clock::wall_now());

        let ca_key = key_type.generate().map_err(pki_err)?;
        let ca = ca_params(now);
        let ca_cert = ca.self_signed(&ca_key).map_err(pki_err)?;
        let issuer = Issuer::new(ca, &ca_key);

        let tsa_key = key_type.generate().map_err(pki_err)?;
        let tsa_cert = tsa_params(now)
            .signed_by(&tsa_key, &issuer)
            .map_err(pki_err)?;

        if let Some(dir) = self.tsa_cert.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        write_private(&self.ca_key, &ca_key.serialize_pem())?;
        write_private(&self.tsa_key, &tsa_key.serialize_pem())?;
        let ca_pem = ca_cert.pem();
        std::fs::write(&self.ca_cert, &ca_pem).map_err(|e| Error::io(&self.ca_cert, e))?;
        // The TSA file holds the leaf, then the chain.
        let chain = format!("{}{}", tsa_cert.pem(), ca_pem);
        std::fs::write(&self.tsa_cert, chain).map_err(|e| Error::io(&self.tsa_cert, e))?;
        Ok(())
    }
}

/// What a TSA certificate (and a request for one) asks for: keyUsage digitalSignature and,
/// RFC 3161 §2.3, extendedKeyUsage with only id-kp-timeStamping, marked critical (rcgen
/// writes EKU non-critical, so the extension is added by hand).
fn tsa_request_params(subject: DistinguishedName) -> CertificateParams {
    let mut tsa = CertificateParams::default();
    tsa.distinguished_name = subject;
    tsa.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let mut eku = CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        vec![
            0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08,
        ],
    );
    eku.set_criticality(true);
    tsa.custom_extensions = vec![eku];
    tsa
}

/// The dev TSA certificate's parameters.
fn tsa_params(now: time::OffsetDateTime) -> CertificateParams {
    let mut tsa = tsa_request_params(name("stampd development TSA"));
    tsa.use_authority_key_identifier_extension = true;
    tsa.not_before = now - time::Duration::hours(1);
    tsa.not_after = now + time::Duration::days(3 * 365);
    tsa
}

/// A PKCS#10 certification request (RFC 2986), PEM, for a TSA certificate: `subject` in
/// OpenSSL's one-line form (`/CN=.../O=...`), signed by `key`. It asks for the TSA
/// extensions (critical EKU timeStamping, keyUsage digitalSignature), which a CA may copy.
pub fn certificate_request(subject: &str, key: &impl rcgen::SigningKey) -> Result<String, Error> {
    let params = tsa_request_params(parse_subject(subject)?);
    let csr = params
        .serialize_request(key)
        .map_err(|e| Error::Pki(format!("building the request: {e}")))?;
    csr.pem().map_err(|e| Error::Pki(e.to_string()))
}

/// `/CN=Example TSA/O=Example/C=DE` as a distinguished name, in the order given. A `/` or
/// `\` inside a value is escaped with `\`.
pub fn parse_subject(text: &str) -> Result<DistinguishedName, Error> {
    let bad = |why: &str| Error::Pki(format!("subject `{text}`: {why}"));
    let mut dn = DistinguishedName::new();
    for (key, value) in crate::protocol::slash_dn::split(text).map_err(|e| bad(&e))? {
        let kind = match key.as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "serialNumber" => DnType::CustomDnType(vec![2, 5, 4, 5]),
            // ETSI EN 319 412-1 §5.1.4 (qualified TSAs name their organisation this way).
            "organizationIdentifier" => DnType::CustomDnType(vec![2, 5, 4, 97]),
            other => {
                return Err(bad(&format!(
                    "unknown attribute `{other}` (CN, O, OU, C, L, ST, serialNumber, organizationIdentifier)"
                )))
            }
        };
        if dn.get(&kind).is_some() {
            // rcgen keeps one value per attribute type; a second would silently replace
            // the first.
            return Err(bad(&format!("{key} is given twice")));
        }
        if kind == DnType::CountryName && value.len() != 2 {
            return Err(bad("C is a two-letter country code"));
        }
        if kind == DnType::CountryName || kind == DnType::CustomDnType(vec![2, 5, 4, 5]) {
            // X.520: countryName and serialNumber are PrintableString.
            let printable = rcgen::string::PrintableString::try_from(value)
                .map_err(|_| bad(&format!("{key} must be printable ASCII")))?;
            dn.push(kind, rcgen::DnValue::PrintableString(printable));
        } else {
            dn.push(kind, value);
        }
    }
    Ok(dn)
}

impl DevPki {
    /// Issues a TSA certificate from the dev CA for an EC or RSA key held elsewhere (an
    /// HSM). Returns the PEM chain: leaf, then the CA.
    pub fn issue_tsa_certificate(&self, key: &ExternalKey) -> Result<String, Error> {
        let pki_err = |e: rcgen::Error| Error::Pki(e.to_string());
        let ca_pem =
            std::fs::read_to_string(&self.ca_cert).map_err(|e| Error::io(&self.ca_cert, e))?;
        let key_pem =
            std::fs::read_to_string(&self.ca_key).map_err(|e| Error::io(&self.ca_key, e))?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(pki_err)?;
        // Issuing needs the CA's name and key only (the authority key identifier comes from
        // the key): the dev CA's parameters are rebuilt rather than parsed.
        let issuer = Issuer::new(
            ca_params(time::OffsetDateTime::from(crate::clock::wall_now())),
            ca_key,
        );
        let cert = tsa_params(time::OffsetDateTime::from(crate::clock::wall_now()))
            .signed_by(key, &issuer)
            .map_err(pki_err)?;
        Ok(format!("{}{}", cert.pem(), ca_pem))
    }
}

/// A public key held outside this process (an HSM's).
pub struct ExternalKey {
    /// The subjectPublicKey bits: an EC point (04 ‖ X ‖ Y) or an RSAPublicKey (DER).
    pub point: Vec<u8>,
    /// The key's type, which picks the request's signature algorithm.
    pub key_type: KeyType,
}

impl rcgen::PublicKeyData for ExternalKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.key_type {
            KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Rsa2048 | KeyType::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

fn ca_params(now: time::OffsetDateTime) -> CertificateParams {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("stampd development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(3650);
    ca
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "stampd");
    dn
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_parse_in_order_with_escapes() {
        let dn =
            parse_subject("/CN=Example TSA/O=A\\/B/C=DE/organizationIdentifier=VATDE-1").unwrap();
        let parts: Vec<_> = dn.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].0, DnType::CommonName);
        assert_eq!(parts[1].1, rcgen::DnValue::Utf8String("A/B".into()));
        assert_eq!(parts[3].0, DnType::CustomDnType(vec![2, 5, 4, 97]));
        assert!(matches!(parts[2].1, rcgen::DnValue::PrintableString(_)));
        for bad in [
            "CN=x",
            "/CN",
            "/CN=",
            "/XX=y",
            "/CN=x\\",
            "/C=Ü",
            "/C=DEU",
            "/OU=a/OU=b",
        ] {
            assert!(parse_subject(bad).is_err(), "{bad}");
        }
    }
}
