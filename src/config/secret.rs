//! Secrets (PINs, passwords) come from an environment variable or a file, never from the
//! configuration text or the command line, and never appear in messages.

use std::path::Path;

/// The secret in environment variable `env` or in `file` (one trailing newline removed).
/// `what` names it in errors ("the PIN"). Neither given: `None`.
pub fn read(what: &str, env: Option<&str>, file: Option<&Path>) -> Result<Option<String>, String> {
    if let Some(var) = env {
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
    match file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("{} ({what}): {e}", file.display()))?;
            Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
        }
        None => Ok(None),
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
        assert_eq!(
            read("the PIN", None, Some(&file)).unwrap().as_deref(),
            Some("12 34")
        );
        assert_eq!(read("the PIN", None, None).unwrap(), None);
        let err = read("the PIN", Some("STAMPD_TEST_SURELY_UNSET_VAR"), None).unwrap_err();
        assert!(
            err.contains("STAMPD_TEST_SURELY_UNSET_VAR") && err.contains("PIN"),
            "{err}"
        );
        let err = read("the PIN", None, Some(&dir.path().join("missing"))).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }
}
