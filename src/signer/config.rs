//! `[signer.NAME]`: a signer's configuration and its pure checks. The assembler
//! (`crate::config`) resolves its paths and builds the signer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::software::RsaPadding;

/// `[signer.NAME]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerConfig {
    /// `file` (default): a PKCS#8 PEM key file signed in software.
    pub kind: SignerKind,
    /// Private key (PKCS#8 PEM), relative to the data directory. Default `pki/tsa.key`.
    pub key: PathBuf,
    /// Certificate chain (PEM, TSA certificate first), relative to the data directory.
    /// Default `pki/tsa.pem` for `kind = "file"`; for `kind = "pkcs11"` left out means the
    /// chain stored on the token with the key (`stampd hsm import-cert`).
    pub cert: Option<PathBuf>,
    /// RSA keys only: `pkcs1` (default) or `pss`.
    pub rsa_padding: RsaPadding,
    /// `kind = "pkcs11"`: the PKCS#11 module (shared library).
    pub module: Option<PathBuf>,
    /// `kind = "pkcs11"`: the label of the token holding the key.
    pub token_label: Option<String>,
    /// `kind = "pkcs11"`: the environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// `kind = "pkcs11"`: the file holding the user PIN (relative to the data directory).
    pub pin_file: Option<PathBuf>,
    /// `kind = "pkcs11"`: the systemd credential holding the user PIN, read from
    /// `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredential=NAME:FILE` in the unit).
    pub pin_credential: Option<String>,
    /// `kind = "pkcs11"`: the label of the key pair on the token.
    pub key_label: Option<String>,
    /// `kind = "pkcs11"`: sessions in the pool. Default 4.
    pub sessions: usize,
}

/// `kind` of a `[signer.NAME]`: where the private key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignerKind {
    /// A PKCS#8 key file, signed in software.
    File,
    /// A key in an HSM, signed through PKCS#11.
    Pkcs11,
}

impl Default for SignerConfig {
    fn default() -> Self {
        SignerConfig {
            kind: SignerKind::File,
            key: PathBuf::from("pki/tsa.key"),
            cert: None,
            rsa_padding: RsaPadding::Pkcs1,
            module: None,
            token_label: None,
            pin_env: None,
            pin_file: None,
            pin_credential: None,
            key_label: None,
            sessions: 4,
        }
    }
}
impl SignerConfig {
    /// The certificate file (for `kind = "pkcs11"` only meaningful when `cert` is set).
    pub fn cert_path(&self) -> &Path {
        self.cert.as_deref().unwrap_or(Path::new("pki/tsa.pem"))
    }

    /// Checks the keys a `kind` needs (pure). Every message starts with `signer.NAME`.
    pub fn validate(&self, name: &str) -> Vec<String> {
        let mut errors = Vec::new();
        if self.kind == SignerKind::Pkcs11 {
            for (key, missing) in [
                ("module", self.module.is_none()),
                ("token_label", self.token_label.is_none()),
                ("key_label", self.key_label.is_none()),
            ] {
                if missing {
                    errors.push(format!(
                        "signer.{name}.{key}: required for kind = \"pkcs11\""
                    ));
                }
            }
            let sources = [
                self.pin_env.is_some(),
                self.pin_file.is_some(),
                self.pin_credential.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                errors.push(format!(
                    "signer.{name}: set exactly one of pin_env, pin_file and pin_credential (the PIN never goes in this file)"
                ));
            }
            if let Some(Err(e)) = self
                .pin_credential
                .as_deref()
                .map(crate::secret::check_credential_name)
            {
                errors.push(format!("signer.{name}.pin_credential: {e}"));
            }
            if self.sessions == 0 || self.sessions > 1024 {
                errors.push(format!("signer.{name}.sessions: 1 to 1024"));
            }
        }
        errors
    }

    /// This config with its file paths resolved against the data directory (an absolute
    /// path stays as it is); `cert` is set to the effective certificate file for
    /// `kind = "file"`.
    pub fn resolved(&self, data_dir: &Path) -> SignerConfig {
        let cert = match (self.kind, &self.cert) {
            (SignerKind::File, _) => Some(data_dir.join(self.cert_path())),
            (SignerKind::Pkcs11, c) => c.as_deref().map(|c| data_dir.join(c)),
        };
        SignerConfig {
            key: data_dir.join(&self.key),
            cert,
            module: self.module.clone(),
            pin_file: self.pin_file.as_deref().map(|f| data_dir.join(f)),
            ..self.clone()
        }
    }
}
