//! The certificate chain stored on the token beside a key: written by `stampd hsm
//! import-cert`, read by the signer when its configuration names no certificate file.

use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::keys::KeyPair;
use super::p11;

/// Stores `chain` (leaf first) as certificate objects labelled like the key: the leaf with
/// the key's CKA_ID, the rest with that id and one more byte (their position), so they read
/// back in order. Certificates already stored under the label are replaced.
pub fn store_certificates(
    session: &Session,
    label: &str,
    key: &KeyPair,
    chain: &[Vec<u8>],
) -> Result<(), String> {
    let old = certificate_objects(session, label)?;
    let mut created = Vec::with_capacity(chain.len());
    let stored = chain.iter().enumerate().try_for_each(|(i, der_cert)| {
        let cert = crate::protocol::cert::CertView::parse(der_cert)
            .map_err(|_| format!("certificate {} is not DER X.509", i + 1))?;
        let mut id = key.id.clone();
        if i > 0 {
            id.push(u8::try_from(i).map_err(|_| "too many certificates")?);
        }
        let handle = session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id),
                Attribute::Subject(cert.subject.to_vec()),
                Attribute::Issuer(cert.issuer.to_vec()),
                Attribute::Value(der_cert.clone()),
            ])
            .map_err(|e| format!("storing certificate {}: {}", i + 1, p11(e)))?;
        created.push(handle);
        Ok::<(), String>(())
    });
    // Whichever set is not wanted goes: the new one on failure (the old chain stays), the
    // old one on success.
    let unwanted: Vec<ObjectHandle> = match &stored {
        Ok(()) => old.into_iter().map(|(_, h, _)| h).collect(),
        Err(_) => created,
    };
    for handle in unwanted {
        session.destroy_object(handle).map_err(p11)?;
    }
    stored
}

/// A certificate object: CKA_ID, handle, DER.
type StoredCert = (Vec<u8>, ObjectHandle, Vec<u8>);

/// The certificates labelled `label`.
fn certificate_objects(session: &Session, label: &str) -> Result<Vec<StoredCert>, String> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(p11)?;
    let mut out = Vec::new();
    for h in handles {
        let (mut id, mut value) = (Vec::new(), Vec::new());
        for a in session
            .get_attributes(h, &[AttributeType::Id, AttributeType::Value])
            .map_err(p11)?
        {
            match a {
                Attribute::Id(v) => id = v,
                Attribute::Value(v) => value = v,
                _ => {}
            }
        }
        out.push((id, h, value));
    }
    Ok(out)
}

/// The certificate chain stored with the key whose CKA_ID is `key_id` (see
/// [`store_certificates`]), leaf first.
pub fn read_certificates(
    session: &Session,
    label: &str,
    key_id: &[u8],
) -> Result<Vec<Vec<u8>>, String> {
    let mut certs: Vec<StoredCert> = certificate_objects(session, label)?
        .into_iter()
        .filter(|(id, _, _)| id.len() <= key_id.len() + 1 && id.starts_with(key_id))
        .collect();
    certs.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    if certs.first().is_none_or(|c| c.0 != key_id) {
        return Err(format!(
            "no certificate for key `{label}` on the token (store one with `stampd hsm import-cert`, or set `cert`)"
        ));
    }
    if certs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "two certificates with the same CKA_ID are stored with key `{label}`: run `stampd hsm import-cert` again"
        ));
    }
    Ok(certs.into_iter().map(|(_, _, der)| der).collect())
}
