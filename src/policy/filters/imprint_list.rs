//! `kind = "imprint-list"`: refuses requests by their message imprint, against a list of
//! digests read from a file when the configuration is built (at start; an edit takes effect
//! at the next start). `mode = "deny"` (default) refuses the listed imprints, e.g. documents
//! known to be forged; `mode = "allow"` refuses every imprint not listed. The refusal is
//! `badRequest`: RFC 3161 §2.4.2 has no failInfo for "refused by policy", and `badRequest`
//! ("transaction not permitted or supported") is the one that says so.
//!
//! Only a `[filter.NAME]` brings it into a chain (it needs its `file`), before `tst-info`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ChainFilter, RequestContext, RequestFilter};
use crate::protocol::hex::unhex;
use crate::protocol::{FailureInfo, HashAlg, Rejection};

/// `kind = "imprint-list"`: the list file and what a listed imprint means.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImprintListConfig {
    /// The list, relative to the data directory unless absolute: one message imprint (the
    /// digest, in hex) per line; `#` starts a comment; blank lines are skipped. Required.
    pub file: Option<PathBuf>,
    /// `deny` (default) or `allow`.
    #[serde(default)]
    pub mode: Mode,
}

/// What a listed imprint means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse the listed imprints, take every other one.
    #[default]
    Deny,
    /// Take only the listed imprints.
    Allow,
}

impl ChainFilter for ImprintListConfig {
    // Without a file there is nothing to match: never by its kind name alone.
    const BUILTIN: bool = false;

    fn validate(&self) -> Vec<String> {
        match &self.file {
            Some(f) if !f.as_os_str().is_empty() => Vec::new(),
            _ => vec![
                "file: required, a file of hex message imprints, one per line (relative to the data directory)"
                    .into(),
            ],
        }
    }

    fn request_filter(&self, data_dir: &Path) -> Result<Option<Arc<dyn RequestFilter>>, String> {
        // `join` keeps an absolute `file` as it is.
        let path = data_dir.join(self.file.as_deref().unwrap_or(Path::new("")));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("file: cannot read {}: {e}", path.display()))?;
        let imprints = parse(&text)
            .map_err(|(line, why)| format!("file: {}:{line}: {why}", path.display()))?;
        Ok(Some(Arc::new(ImprintList {
            imprints,
            mode: self.mode,
        })))
    }
}

/// The runtime part: one hash-set lookup per request.
pub struct ImprintList {
    imprints: HashSet<Vec<u8>>,
    mode: Mode,
}

const REFUSED: Rejection =
    Rejection::new(FailureInfo::BadRequest, "message imprint refused by policy");

impl RequestFilter for ImprintList {
    fn on_request(&self, cx: &mut RequestContext<'_>) -> Result<(), Rejection> {
        let listed = self.imprints.contains(cx.request.digest);
        if listed == (self.mode == Mode::Deny) {
            Err(REFUSED)
        } else {
            Ok(())
        }
    }
}

/// Parses a list file. `Err` is (line number from 1, what is wrong with it).
fn parse(text: &str) -> Result<HashSet<Vec<u8>>, (usize, String)> {
    let mut imprints = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let digest = unhex(entry)
            .ok_or_else(|| (i + 1, format!("`{entry}` is not a hex message imprint")))?;
        // A digest no hash algorithm produces could never match: a truncated or mistyped line.
        if !HashAlg::ALL.iter().any(|h| h.digest_len() == digest.len()) {
            return Err((
                i + 1,
                format!(
                    "`{entry}` is {} bytes; no hash algorithm has digests of that length",
                    digest.len()
                ),
            ));
        }
        imprints.insert(digest);
    }
    Ok(imprints)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::filter;
    use super::super::{filter_request, FilterConfig};
    use super::*;
    use crate::policy::{Policy, RequestMeta};
    use crate::protocol::oid::Oid;
    use crate::protocol::request;
    use crate::protocol::token::{Accuracy, IncludeCerts, PolicyTemplate, TsaName};
    use crate::protocol::Precision;

    const LISTED: [u8; 32] = [0xab; 32];

    fn list_file(dir: &Path, text: &str) -> FilterConfig {
        std::fs::write(dir.join("list.txt"), text).unwrap();
        filter("kind = \"imprint-list\"\nfile = \"list.txt\"")
    }

    /// What a policy with `f` as its only request filter answers for `digest`.
    fn answer(f: Arc<dyn RequestFilter>, digest: &[u8]) -> Result<(), FailureInfo> {
        let oid = Oid::parse("2.999.1.1").unwrap();
        let template = PolicyTemplate::new(
            &oid,
            Accuracy::default(),
            Precision::Seconds,
            TsaName::Omit,
            IncludeCerts::Chain,
            false,
        )
        .unwrap();
        let mut policy = Policy::simple("p", oid, vec![HashAlg::Sha256], template);
        policy.request_filters.push(f);
        let body = request::encode(HashAlg::Sha256, digest, None, None, false);
        let req = request::decode(&body).unwrap();
        filter_request(&policy, &req, &RequestMeta::local("/tsa"))
            .map(|extensions| assert_eq!(extensions, Default::default()))
            .map_err(|r| {
                assert_eq!(r.text, "message imprint refused by policy");
                r.fail
            })
    }

    #[test]
    fn the_list_parses_hex_lines_with_comments_and_blanks() {
        let sha256 = "ab".repeat(32);
        let sha1 = "CD".repeat(20);
        let text = format!("# revoked\n\n{sha256}  # forged contract\r\n  {sha1}\n");
        let set = parse(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&LISTED[..]) && set.contains(&[0xcd; 20][..]));
        assert_eq!(parse("# nothing\n\n").unwrap().len(), 0);
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let sha256 = "ab".repeat(32);
        let (line, why) = parse(&format!("{sha256}\n\nnot-hex\n")).unwrap_err();
        assert_eq!(
            (line, why.as_str()),
            (3, "`not-hex` is not a hex message imprint")
        );
        let (line, why) = parse("# x\nabcdef\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(why.contains("is 3 bytes"), "{why}");
    }

    #[test]
    fn deny_refuses_listed_imprints_and_allow_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let deny = list_file(dir.path(), &"ab".repeat(32))
            .request_filter(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(answer(deny.clone(), &LISTED), Err(FailureInfo::BadRequest));
        assert_eq!(answer(deny, &[0x01; 32]), Ok(()));

        let allow: FilterConfig =
            filter("kind = \"imprint-list\"\nfile = \"list.txt\"\nmode = \"allow\"");
        let allow = allow.request_filter(dir.path()).unwrap().unwrap();
        assert_eq!(answer(allow.clone(), &LISTED), Ok(()));
        assert_eq!(answer(allow, &[0x01; 32]), Err(FailureInfo::BadRequest));
    }

    #[test]
    fn validation_needs_a_file_and_the_build_reads_it() {
        let none = filter("kind = \"imprint-list\"");
        assert!(none.validate()[0].starts_with("file: required"));
        let empty = filter("kind = \"imprint-list\"\nfile = \"\"");
        assert!(empty.validate()[0].starts_with("file: required"));
        assert!(toml::from_str::<FilterConfig>(
            "kind = \"imprint-list\"\nfile = \"x\"\nmode = \"block\""
        )
        .is_err());
        assert!(toml::from_str::<FilterConfig>(
            "kind = \"imprint-list\"\nfile = \"x\"\nsurprise = 1"
        )
        .is_err());

        let dir = tempfile::tempdir().unwrap();
        let missing = filter("kind = \"imprint-list\"\nfile = \"missing.txt\"");
        assert!(missing.validate().is_empty(), "validation reads no file");
        let e = missing.request_filter(dir.path()).err().unwrap();
        let path = dir.path().join("missing.txt");
        assert!(
            e.starts_with(&format!("file: cannot read {}: ", path.display())),
            "{e}"
        );

        let bad = list_file(dir.path(), "# ok\nzz\n");
        let e = bad.request_filter(dir.path()).err().unwrap();
        let path = dir.path().join("list.txt");
        assert!(
            e.starts_with(&format!("file: {}:2: `zz`", path.display())),
            "{e}"
        );
    }
}
