#!/usr/bin/env python3
"""A PAdES signature whose signature timestamp comes from stampd, validated by pyHanko.

    pades.py TSA_URL TSA_CA.pem WORKDIR [DIGEST=sha256]

Makes a one-page PDF, a self-signed signer, signs with PAdES-B-T (the signature timestamp
from TSA_URL, message imprint DIGEST), then validates with the signer and TSA_CA as trust
roots. Prints a JSON summary; exits 1 unless the signature and its timestamp are intact,
valid and trusted.
"""
import datetime
import json
import os
import sys

from asn1crypto import pem, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.pdf_utils import generic
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko.keys import load_private_key_from_pemder


def signer_identity(work):
    key = ec.generate_private_key(ec.SECP256R1())
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "stampd test PDF signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(cx509.KeyUsage(True, True, False, False, False, True, False, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = os.path.join(work, "pdf-signer.key"), os.path.join(work, "pdf-signer.pem")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def load_cert(path):
    data = open(path, "rb").read()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def blank_pdf(path):
    w = PdfFileWriter()
    page = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject(
            [generic.NumberObject(0), generic.NumberObject(0), generic.NumberObject(595),
             generic.NumberObject(842)]),
    })
    w.insert_page(page)
    with open(path, "wb") as f:
        w.write(f)


def main():
    url, tsa_ca, work = sys.argv[1], sys.argv[2], sys.argv[3]
    digest = sys.argv[4] if len(sys.argv) > 4 else "sha256"
    key_path, cert_path = signer_identity(work)
    signer = signers.SimpleSigner(
        signing_cert=load_cert(cert_path),
        signing_key=load_private_key_from_pemder(key_path, passphrase=None),
        cert_registry=None)
    pdf = os.path.join(work, "doc.pdf")
    blank_pdf(pdf)
    out = os.path.join(work, f"signed-{digest}.pdf")
    timestamper = timestamps.HTTPTimeStamper(url, timeout=30)
    with open(pdf, "rb") as inf:
        w = IncrementalPdfFileWriter(inf)
        meta = signers.PdfSignatureMetadata(field_name="Signature", md_algorithm=digest,
                                            subfilter=fields.SigSeedSubFilter.PADES)
        with open(out, "wb") as outf:
            signers.PdfSigner(meta, signer=signer, timestamper=timestamper).sign_pdf(w, output=outf)
    roots = [load_cert(cert_path), load_cert(tsa_ca)]
    with open(out, "rb") as f:
        r = PdfFileReader(f)
        sig = r.embedded_signatures[0]
        vc = ValidationContext(trust_roots=roots, allow_fetching=False)
        status = validate_pdf_signature(sig, signer_validation_context=vc, ts_validation_context=vc)
        ts = status.timestamp_validity
        summary = {
            "intact": status.intact, "valid": status.valid, "trusted": status.trusted,
            "timestamp": None if ts is None else {
                "intact": ts.intact, "valid": ts.valid, "trusted": ts.trusted,
                "time": ts.timestamp.isoformat(),
                "md_algorithm": ts.md_algorithm,
            },
        }
    print(json.dumps(summary))
    ok = (status.intact and status.valid and status.trusted and ts is not None
          and ts.intact and ts.valid and ts.trusted)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
