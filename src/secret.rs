//! Secrets (PINs, passwords) come from an environment variable, a file, or a systemd
//! credential, never from the configuration text or the command line, and never appear in
//! messages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where one secret may come from; at most one is given (validation sees to it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Source<'a> {
    /// An environment variable.
    pub env: Option<&'a str>,
    /// A file (resolved against the data directory by the caller).
    pub file: Option<&'a Path>,
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`, as `LoadCredential=NAME:...`
    /// places it (systemd.exec(5), "Credentials").
    pub credential: Option<&'a str>,
}

/// The secret from `source` (one trailing newline removed from a file or credential).
/// `what` names it in errors ("the PIN"). Nothing given: `None`.
pub fn read(what: &str, source: Source<'_>) -> Result<Option<String>, String> {
    if let Some(var) = source.env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "the environment variable {var} ({what}) is not set"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "the environment variable {var} ({what}) is not valid UTF-8"
            )),
        };
    }
    let path = match (source.file, source.credential) {
        (Some(file), _) => file.to_path_buf(),
        (None, Some(name)) => {
            credential_path(std::env::var_os("CREDENTIALS_DIRECTORY"), name, what)?
        }
        (None, None) => return Ok(None),
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("{} ({what}): {e}", path.display()))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Checks a credential name (pure): a plain file name.
pub fn check_credential_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!(
            "`{name}` is not a credential name; use the NAME of LoadCredential=NAME:PATH"
        ));
    }
    Ok(())
}

/// `$CREDENTIALS_DIRECTORY/NAME`; the directory is `dir` (the variable's value).
fn credential_path(dir: Option<OsString>, name: &str, what: &str) -> Result<PathBuf, String> {
    check_credential_name(name)?;
    match dir {
        Some(dir) if !dir.is_empty() => Ok(Path::new(&dir).join(name)),
        _ => Err(format!(
            "credential `{name}` ({what}): $CREDENTIALS_DIRECTORY is not set; systemd sets it \
             for a unit with LoadCredential={name}:FILE"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_a_file_without_the_newline_or_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::write(&file, "12 34\n").unwrap();
        let from_file = Source {
            file: Some(&file),
            ..Source::default()
        };
        assert_eq!(
            read("the PIN", from_file).unwrap().as_deref(),
            Some("12 34")
        );
        assert_eq!(read("the PIN", Source::default()).unwrap(), None);
        let unset = Source {
            env: Some("STAMPD_TEST_SURELY_UNSET_VAR"),
            ..Source::default()
        };
        let err = read("the PIN", unset).unwrap_err();
        assert!(
            err.contains("STAMPD_TEST_SURELY_UNSET_VAR") && err.contains("PIN"),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let err = read(
            "the PIN",
            Source {
                file: Some(&missing),
                ..Source::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn credentials_are_plain_names_in_the_credentials_directory() {
        let dir = Some(OsString::from("/run/credentials/stampd.service"));
        assert_eq!(
            credential_path(dir.clone(), "hsm-pin", "the PIN").unwrap(),
            Path::new("/run/credentials/stampd.service/hsm-pin")
        );
        for bad in ["", "..", "../etc/shadow", "a/b"] {
            assert!(
                credential_path(dir.clone(), bad, "the PIN").is_err(),
                "{bad}"
            );
        }
        let err = credential_path(None, "hsm-pin", "the PIN").unwrap_err();
        assert!(
            err.contains("$CREDENTIALS_DIRECTORY is not set")
                && err.contains("LoadCredential=hsm-pin"),
            "{err}"
        );
    }
}
