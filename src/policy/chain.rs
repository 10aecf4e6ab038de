//! Filter chains: named, ordered lists of filters, validated when the configuration loads and
//! compiled once per policy into a flat [`Settings`] → [`super::Policy`].
//!
//! A filter is one step of building the response. At run time nothing iterates over the
//! filters: each one contributed its part (a check, a constant DER part, a token option) to
//! the compiled policy, and the issuing path runs those parts in RFC 3161 order. The one
//! exception is a filter with a per-request part ([`super::filters::RequestFilter`], e.g.
//! `imprint-list`): [`request_filters`] builds those in chain order, and they run at one fixed
//! point of the issuing path, whatever their position before `tst-info`.
//!
//! Placement rules, checked with messages naming the file, the chain and the position:
//! * every filter is defined (a built-in kind name, or a `[filter.NAME]`);
//! * no filter kind appears twice;
//! * `tst-info`, `timestamp-token`, `timestamp-response` close the chain in that order;
//!   only `storage` may follow them, and it must come after the response;
//! * the filters RFC 3161 requires are present (request validation, message imprint,
//!   policy, genTime, nonce echo, serial number, and the three closing ones).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::protocol::token::{Accuracy, TsaName};

pub use super::filters::FilterKind;
use super::filters::{FilterConfig, RequestFilter};
use super::settings::Settings;

/// The built-in standard chain. `qualified` adds the qualified statement.
pub fn standard_chain(qualified: bool) -> Vec<String> {
    FilterKind::ALL
        .iter()
        .copied()
        .filter(|k| k.is_builtin() && (qualified || *k != FilterKind::QualifiedStatement))
        .map(|k| k.name().to_string())
        .collect()
}

/// A chain that failed validation; the message names the chain and the position.
fn at(origin: &str, chain: &str, pos: Option<usize>) -> String {
    match pos {
        Some(p) => format!("{origin}: chain `{chain}`, position {} ", p + 1),
        None => format!("{origin}: chain `{chain}` "),
    }
}

/// Resolves a filter name to its kind: a `[filter.NAME]` or a built-in kind name.
pub fn kind_of(name: &str, filters: &BTreeMap<String, FilterConfig>) -> Option<FilterKind> {
    resolve(name, filters).map(|c| c.kind())
}

/// The filter a chain names: a `[filter.NAME]`, or a built-in kind with default options.
fn resolve<'f>(
    name: &str,
    filters: &'f BTreeMap<String, FilterConfig>,
) -> Option<Cow<'f, FilterConfig>> {
    match filters.get(name) {
        Some(c) => Some(Cow::Borrowed(c)),
        None => FilterKind::from_name(name).map(|k| Cow::Owned(FilterConfig::builtin(k))),
    }
}

/// Checks one chain (pure). `origin` is the configuration file's name.
pub fn validate_chain(
    origin: &str,
    chain: &str,
    names: &[String],
    filters: &BTreeMap<String, FilterConfig>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut kinds: Vec<FilterKind> = Vec::new();
    for (pos, name) in names.iter().enumerate() {
        let Some(kind) = kind_of(name, filters) else {
            let builtins: Vec<_> = FilterKind::ALL
                .iter()
                .filter(|k| k.is_builtin())
                .map(|k| k.name())
                .collect();
            errors.push(format!(
                "{}`{name}` is not defined: add a [filter.{name}] table or use a built-in filter: {}",
                at(origin, chain, Some(pos)),
                builtins.join(", ")
            ));
            continue;
        };
        if let Some(first) = kinds.iter().position(|k| *k == kind) {
            errors.push(format!(
                "{}`{name}` repeats the {} filter already at position {}: keep one",
                at(origin, chain, Some(pos)),
                kind.name(),
                first + 1
            ));
        }
        kinds.push(kind);
    }
    // The closing filters: tst-info → timestamp-token → timestamp-response, then storage.
    let pos_of = |k: FilterKind| kinds.iter().position(|x| *x == k);
    let closing = [
        FilterKind::TstInfo,
        FilterKind::TimestampToken,
        FilterKind::TimestampResponse,
    ];
    if let (Some(t), Some(k), Some(r)) =
        (pos_of(closing[0]), pos_of(closing[1]), pos_of(closing[2]))
    {
        if !(t < k && k < r) {
            errors.push(format!(
                "{}must end with tst-info, timestamp-token, timestamp-response in that order",
                at(origin, chain, None)
            ));
        }
        for (pos, kind) in kinds.iter().enumerate() {
            let misplaced = match kind {
                FilterKind::Storage => pos < r,
                k if closing.contains(k) => false,
                _ => pos > t,
            };
            if misplaced {
                let hint = if *kind == FilterKind::Storage {
                    "storage archives the issued token, so it must come after timestamp-response"
                } else {
                    "it contributes to TSTInfo, so it must come before tst-info"
                };
                errors.push(format!(
                    "{}`{}` is misplaced: {hint}",
                    at(origin, chain, Some(pos)),
                    names[pos]
                ));
            }
        }
    }
    for &kind in FilterKind::ALL {
        if let (None, Some(why)) = (pos_of(kind), kind.required_because()) {
            errors.push(format!(
                "{}lacks `{}`: {why}",
                at(origin, chain, None),
                kind.name()
            ));
        }
    }
    errors
}

/// Applies a valid chain to the policy-level defaults.
pub fn compile(
    defaults: Settings,
    names: &[String],
    filters: &BTreeMap<String, FilterConfig>,
) -> Settings {
    let mut s = defaults;
    // Switched on only by their filter's presence.
    s.qualified = false;
    s.check_validity = false;
    s.archive = false;
    let mut has_accuracy = false;
    let mut has_tsa_name = false;
    for config in names.iter().filter_map(|name| resolve(name, filters)) {
        has_accuracy |= config.kind() == FilterKind::Accuracy;
        has_tsa_name |= config.kind() == FilterKind::TsaName;
        config.apply(&mut s);
    }
    if !has_accuracy {
        s.accuracy = Accuracy::default();
    }
    if !has_tsa_name {
        s.tsa_name = TsaName::Omit;
    }
    s
}

/// Builds the per-request parts of a valid chain, in chain order (empty for the standard
/// chain). This is I/O: a filter may read its files, relative paths resolving against
/// `data_dir`. `Err` names the filter.
pub fn request_filters(
    names: &[String],
    filters: &BTreeMap<String, FilterConfig>,
    data_dir: &Path,
) -> Result<Vec<Arc<dyn RequestFilter>>, String> {
    names
        .iter()
        .filter_map(|name| {
            let config = resolve(name, filters)?;
            config
                .request_filter(data_dir)
                .map_err(|e| format!("filter.{name}: {e}"))
                .transpose()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn check(list: &[&str]) -> Vec<String> {
        validate_chain("f.toml", "c", &names(list), &BTreeMap::new())
    }

    #[test]
    fn the_standard_chain_is_valid() {
        for q in [false, true] {
            assert!(
                validate_chain("f", "standard", &standard_chain(q), &BTreeMap::new()).is_empty()
            );
        }
    }

    #[test]
    fn unknown_filters_name_the_file_chain_and_position() {
        let mut list = standard_chain(false);
        list.insert(2, "frobnicate".into());
        let errs = validate_chain("f.toml", "c", &list, &BTreeMap::new());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("f.toml: chain `c`, position 3 `frobnicate` is not defined"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let mut list = standard_chain(false);
        list.insert(1, "nonce".into());
        let errs = validate_chain("f.toml", "c", &list, &BTreeMap::new());
        assert!(
            errs.iter().any(|e| e.contains("repeats the nonce filter")),
            "{errs:?}"
        );
    }

    #[test]
    fn closing_filters_and_storage_are_placed() {
        let base = [
            "request-validation",
            "message-imprint",
            "tsa-policy",
            "gen-time",
            "nonce",
            "serial-number",
        ];
        let mut wrong_order = base.to_vec();
        wrong_order.extend(["timestamp-token", "tst-info", "timestamp-response"]);
        assert!(check(&wrong_order)
            .iter()
            .any(|e| e.contains("in that order")));

        let mut storage_early = base.to_vec();
        storage_early.extend([
            "storage",
            "tst-info",
            "timestamp-token",
            "timestamp-response",
        ]);
        assert!(check(&storage_early)
            .iter()
            .any(|e| e.contains("`storage` is misplaced")));

        let mut late = base.to_vec();
        late.extend([
            "tst-info",
            "accuracy",
            "timestamp-token",
            "timestamp-response",
        ]);
        assert!(check(&late)
            .iter()
            .any(|e| e.contains("position 8 `accuracy` is misplaced")));

        let mut ok = base.to_vec();
        ok.extend([
            "tst-info",
            "timestamp-token",
            "timestamp-response",
            "storage",
        ]);
        assert!(check(&ok).is_empty(), "{:?}", check(&ok));
    }

    #[test]
    fn imprint_list_only_as_a_filter_table_before_tst_info() {
        assert!(!standard_chain(true).contains(&"imprint-list".to_string()));
        let mut list = standard_chain(false);
        list.insert(2, "imprint-list".into());
        let errs = validate_chain("f.toml", "c", &list, &BTreeMap::new());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("`imprint-list` is not defined: add a [filter.imprint-list]"));
        let builtins = errs[0].split("use a built-in filter: ").nth(1).unwrap();
        assert!(!builtins.contains("imprint-list"), "{builtins}");

        let filters = BTreeMap::from([(
            "deny".to_string(),
            toml::from_str("kind = \"imprint-list\"\nfile = \"revoked.txt\"").unwrap(),
        )]);
        let mut list = standard_chain(false);
        list.insert(2, "deny".into());
        assert!(validate_chain("f", "c", &list, &filters).is_empty());
        let late = list.iter().position(|n| n == "timestamp-token").unwrap();
        list.retain(|n| n != "deny");
        list.insert(late, "deny".into());
        let errs = validate_chain("f", "c", &list, &filters);
        assert!(
            errs.iter().any(|e| e.contains("`deny` is misplaced")),
            "{errs:?}"
        );
    }

    #[test]
    fn required_filters_must_be_present() {
        let list: Vec<String> = standard_chain(false)
            .into_iter()
            .filter(|n| n != "nonce")
            .collect();
        let errs = validate_chain("f", "c", &list, &BTreeMap::new());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("lacks `nonce`") && errs[0].contains("MUST be echoed"));
    }
}
