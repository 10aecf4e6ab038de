//! What the filters of one policy's chain decide: the chain compiler (`super::chain`) starts
//! from the policy-level defaults and each filter (`super::filters`) overrides or switches on
//! its part. Its own file so that filters and the chain compiler both stand on it.

use crate::protocol::oid::Oid;
use crate::protocol::token::{Accuracy, EssCertId, IncludeCerts, TsaName};
use crate::protocol::{HashAlg, Precision};

/// Everything the filters of one policy's chain decide, before it becomes a runtime policy.
/// Policy-level settings are the defaults; filters in the chain override or switch parts on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The policy OID every token carries (TSTInfo.policy, RFC 3161 §2.4.2): the policy's
    /// `oid`. No filter changes it; `tsa-policy` only has to be present.
    pub oid: Oid,
    /// message-imprint: the hash algorithms accepted in messageImprint, any other answered
    /// `badAlg`. Default: the policy's `hash_algorithms`.
    pub hash_algorithms: Vec<HashAlg>,
    /// Request extensions the TSA recognises: (OID, may it be critical?).
    pub allowed_extensions: Vec<(Oid, bool)>,
    /// gen-time: how many digits of a second genTime keeps. Default: the policy's
    /// `gen_time_precision`.
    pub precision: Precision,
    /// accuracy: the declared accuracy of genTime. Default: the policy's `accuracy`;
    /// [`compile`](super::chain::compile) clears it when the chain has no `accuracy` filter, and TSTInfo then
    /// carries none.
    pub accuracy: Accuracy,
    /// tsa-name: TSTInfo's `tsa` field. Default: the certificate subject when the policy's
    /// `tsa_name` is true; [`compile`](super::chain::compile) sets [`TsaName::Omit`] when the chain has no
    /// `tsa-name` filter.
    pub tsa_name: TsaName,
    /// qualified-statement: every token carries qcStatements with esi4-qtstStatement-1
    /// (ETSI EN 319 422 §9.1). Set only by the filter's presence: the policy's `qualified`
    /// picks the standard chain's filters, and validation insists the two agree.
    pub qualified: bool,
    /// certificate-verifier: refuse to sign (`systemFailure`) when genTime ± accuracy falls
    /// outside the TSA certificate's validity. Set only by the filter's presence.
    pub check_validity: bool,
    /// A signer other than the service's, by name.
    pub signer: Option<String>,
    /// timestamp-token: which certificates a token carries with certReq. Default: the
    /// policy's `certs`.
    pub certs: IncludeCerts,
    /// timestamp-token: the ESS signing-certificate attribute. Default: ESSCertIDv2 with
    /// SHA-256 (RFC 5816; RFC 5035 §5.4.1).
    pub ess: EssCertId,
    /// statusString on rejections; `None` = the service's setting.
    pub status_text: Option<bool>,
    /// storage: keep every issued token (the response DER) in its audit record. Set only
    /// by the filter's presence.
    pub archive: bool,
}
