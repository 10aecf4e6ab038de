//! `stampd init`: create the development PKI.

use std::path::Path;
use std::process::ExitCode;

use super::{say, CmdResult};
use crate::pki::{DevPki, KeyType};

pub(super) fn init(data_dir: &Path, key_type: KeyType) -> CmdResult {
    let pki = DevPki::in_dir(data_dir);
    pki.create(key_type).map_err(|e| e.to_string())?;
    say!(
        "created {} (CA) and {} / {} (TSA, {key_type:?})",
        pki.ca_cert.display(),
        pki.tsa_cert.display(),
        pki.tsa_key.display()
    );
    Ok(ExitCode::SUCCESS)
}
