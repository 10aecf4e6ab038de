#!/usr/bin/env python3
"""Independent (non-OpenSSL-CLI) verifier for RFC 3161 replies issued by stampd.

Usage:
    python verify.py --tsr RESP.tsr --data FILE --ca CA.pem
                     [--nonce INT] [--tsa-cert TSA.pem]
                     [--verifier rfc3161-client|pyhanko|all]

Exit status 0 only when every selected verifier accepted the token; otherwise
one line "FAIL [verifier]: reason" is printed and the exit status is 1.

Both verifiers first parse the TimeStampResp and require status == granted.
What each library then checks:

rfc3161-client (trailofbits, Rust + OpenSSL underneath)
  * PKCS#7/CMS signature of the single SignerInfo (signed attributes incl.
    messageDigest over the encapsulated TSTInfo), via OpenSSL PKCS7_verify,
    and the certificate chain from the signer certificate to a root given
    with --ca, evaluated at the token's genTime;
  * exactly one SignerInfo, whose sid (issuerAndSerialNumber) selects the
    signer certificate among the embedded ones (or the --tsa-cert one);
  * the signer certificate has a *critical* ExtendedKeyUsage containing
    id-kp-timeStamping;
  * nonce (when --nonce is given) and the message imprint: the hash algorithm
    is taken from the token (sha256/sha384/sha512 only) and compared with the
    hash of --data.
  Limitation: it cannot verify Ed25519 tokens.  Its PKCS7_verify path
  (OpenSSL 4.0.3 bundled in the wheel) pre-hashes the signed attributes and
  calls EVP_PKEY_verify, which pure Ed25519 refuses ("ed25519_verify: invalid
  eddsa instance for attempted operation"), although the token follows
  RFC 8419 (digestAlgorithm id-sha512, signatureAlgorithm id-Ed25519).
  Use --verifier pyhanko for Ed25519 signers.

pyHanko (pyhanko.sign.validation.validate_tst_signed_data + pyhanko-certvalidator)
  * the SignedData encapsulates a TSTInfo; signer identified by sid;
  * the ESS signing-certificate(-v2) attribute matches the signer certificate;
  * the messageDigest attribute matches the digest of the TSTInfo ("intact")
    and the signature over the signed attributes is valid ("valid");
  * the algorithms are allowed by pyHanko's default algorithm policy;
  * an RFC 5280 path from the signer certificate to a --ca root is built and
    validated (at the current time, no network fetching, revocation
    soft-fail), with the TSA key-usage constraints (extended key usage
    id-kp-timeStamping; pyHanko does not itself require it to be critical);
  * the message imprint equals the hash of --data under the token's
    algorithm.  pyHanko does not look at the nonce: this script compares the
    TSTInfo nonce with --nonce itself.

If the token carries no certificates (certReq=false), pass the TSA leaf with
--tsa-cert (the first certificate of the PEM file is the leaf; further
certificates that are not self-signed are used as intermediates; self-signed
ones are ignored, trust only ever comes from --ca).  For pyHanko the leaf is
placed into the SignedData's (unsigned) certificate set before validation: the
signer must still match the sid and the signed ESSCertIDv2 hash.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys

VERIFIERS = ("rfc3161-client", "pyhanko")

HASHES = {
    # OID -> (name, hashlib constructor)
    "2.16.840.1.101.3.4.2.1": ("sha256", hashlib.sha256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashlib.sha384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashlib.sha512),
}
HASH_BY_NAME = {name: fn for name, fn in HASHES.values()}


class VerifyFailure(Exception):
    """A verification failure with a one-line reason."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _load_pem_certs(path: str):
    from cryptography import x509

    with open(path, "rb") as fh:
        certs = x509.load_pem_x509_certificates(fh.read())
    if not certs:
        raise VerifyFailure(f"no certificate in {path}")
    return certs


def _is_self_signed(cert) -> bool:
    return cert.issuer == cert.subject


def _tsa_certs(path: str | None):
    """Return (leaf, intermediates) from --tsa-cert, ignoring self-signed ones."""
    if path is None:
        return None, []
    certs = _load_pem_certs(path)
    leaf, rest = certs[0], certs[1:]
    return leaf, [c for c in rest if not _is_self_signed(c)]


# --------------------------------------------------------------------------
# rfc3161-client
# --------------------------------------------------------------------------
def verify_rfc3161_client(tsr: bytes, data: bytes, args) -> str:
    from rfc3161_client import (
        PKIStatus,
        VerificationError,
        VerifierBuilder,
        decode_timestamp_response,
    )

    try:
        resp = decode_timestamp_response(tsr)
    except Exception as exc:  # malformed DER, missing token, ...
        raise VerifyFailure(f"cannot parse TimeStampResp: {exc!r}")
    if PKIStatus(resp.status) != PKIStatus.GRANTED:
        raise VerifyFailure(
            f"status is {PKIStatus(resp.status).name}, not GRANTED "
            f"({'; '.join(resp.status_string)})"
        )

    builder = VerifierBuilder()
    for root in _load_pem_certs(args.ca):
        builder = builder.add_root_certificate(root)
    leaf, intermediates = _tsa_certs(args.tsa_cert)
    if leaf is not None:
        builder = builder.tsa_certificate(leaf)
    for cert in intermediates:
        builder = builder.add_intermediate_certificate(cert)
    if args.nonce is not None:
        builder = builder.nonce(args.nonce)
    verifier = builder.build()

    algo = resp.tst_info.message_imprint.hash_algorithm.dotted_string
    if algo not in HASHES:
        raise VerifyFailure(f"unsupported message imprint hash algorithm {algo}")
    try:
        ok = verifier.verify_message(resp, data)
    except VerificationError as exc:
        raise VerifyFailure(_one_line(exc))
    if ok is not True:
        raise VerifyFailure(f"verify_message returned {ok!r}")
    return f"{HASHES[algo][0]}, serial {resp.tst_info.serial_number:#x}, genTime {resp.tst_info.gen_time.isoformat()}"


# --------------------------------------------------------------------------
# pyHanko
# --------------------------------------------------------------------------
def verify_pyhanko(tsr: bytes, data: bytes, args) -> str:
    from asn1crypto import cms, core, tsp, x509 as a_x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko.sign.validation.status import TimestampSignatureStatus
    from pyhanko_certvalidator import ValidationContext

    def to_asn1(cert):
        return a_x509.Certificate.load(cert.public_bytes(Encoding.DER))

    class TimeStampResp(core.Sequence):
        # asn1crypto 1.5.1's tsp.TimeStampResp wrongly makes timeStampToken
        # mandatory (RFC 3161 2.4.2: OPTIONAL), so it cannot load rejections.
        _fields = [
            ("status", tsp.PKIStatusInfo),
            ("time_stamp_token", cms.ContentInfo, {"optional": True}),
        ]

    try:
        resp = TimeStampResp.load(tsr, strict=True)
        status = resp["status"]["status"].native
        status_text = resp["status"]["status_string"].native
    except Exception as exc:
        raise VerifyFailure(f"cannot parse TimeStampResp: {_one_line(exc)}")
    if status != "granted":
        raise VerifyFailure(f"status is {status!r}, not 'granted' ({'; '.join(status_text or [])})")
    token = resp["time_stamp_token"]
    if token.native is None or token["content_type"].native != "signed_data":
        raise VerifyFailure("timeStampToken missing or not a SignedData ContentInfo")
    # Work on a private copy: we may add the --tsa-cert leaf to it below.
    signed_data = cms.SignedData.load(token["content"].untag().dump())
    tst_info = signed_data["encap_content_info"]["content"].parsed
    if not isinstance(tst_info, tsp.TSTInfo):
        raise VerifyFailure("SignedData does not encapsulate a TSTInfo")
    if len(signed_data["signer_infos"]) != 1:
        raise VerifyFailure(f"expected exactly one SignerInfo, got {len(signed_data['signer_infos'])}")

    leaf, intermediates = _tsa_certs(args.tsa_cert)
    embedded = signed_data["certificates"]
    if leaf is not None:
        leaf_a = to_asn1(leaf)
        if embedded.native is None or len(embedded) == 0:
            signed_data["certificates"] = cms.CertificateSet(
                [cms.CertificateChoices(name="certificate", value=leaf_a)]
            )
            signed_data = cms.SignedData.load(signed_data.dump(force=True))
        else:
            sid = signed_data["signer_infos"][0]["sid"]
            if sid.name == "issuer_and_serial_number":
                ias = sid.chosen
                match = [
                    c.chosen for c in embedded
                    if c.name == "certificate"
                    and c.chosen.issuer == ias["issuer"]
                    and c.chosen.serial_number == ias["serial_number"].native
                ]
                if match and match[0].dump() != leaf_a.dump():
                    raise VerifyFailure("embedded signer certificate differs from --tsa-cert")

    def expected_imprint(algo_name: str) -> bytes:
        fn = HASH_BY_NAME.get(algo_name)
        if fn is None:
            raise VerifyFailure(f"unsupported message imprint hash algorithm {algo_name}")
        return fn(data).digest()

    vc = ValidationContext(
        trust_roots=[to_asn1(c) for c in _load_pem_certs(args.ca)],
        other_certs=[to_asn1(c) for c in intermediates],
        allow_fetching=False,
        revocation_mode="soft-fail",
    )
    try:
        kwargs = asyncio.run(validate_tst_signed_data(signed_data, vc, expected_imprint))
    except SignatureValidationError as exc:
        raise VerifyFailure(_one_line(exc.failure_message if hasattr(exc, "failure_message") else exc))
    st = TimestampSignatureStatus(**kwargs)
    if not st.intact:
        algo = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
        if tst_info["message_imprint"]["hashed_message"].native != expected_imprint(algo):
            raise VerifyFailure("not intact: message imprint does not match --data")
        raise VerifyFailure("signature not intact (messageDigest attribute does not match TSTInfo)")
    if not st.valid:
        raise VerifyFailure("signature is not valid")
    if not st.trusted:
        raise VerifyFailure(
            f"signer certificate not trusted: {st.trust_problem_indic}"
            + ("" if st.validation_path is not None else " (no validation path to --ca)")
        )

    if args.nonce is not None:
        got = tst_info["nonce"].native
        if got is None:
            raise VerifyFailure(f"nonce expected {args.nonce:#x}, token has none")
        if got != args.nonce:
            raise VerifyFailure(f"nonce mismatch: token {got:#x}, expected {args.nonce:#x}")
    return (
        f"{tst_info['message_imprint']['hash_algorithm']['algorithm'].native}, "
        f"{kwargs['pkcs7_signature_mechanism']}, serial {tst_info['serial_number'].native:#x}, "
        f"genTime {st.timestamp.isoformat()}"
    )


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return int(text, 10)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tsr", required=True, help="DER TimeStampResp file")
    p.add_argument("--data", required=True, help="the time-stamped data")
    p.add_argument("--ca", required=True, help="PEM file with the trusted root(s)")
    p.add_argument("--nonce", type=_int, help="expected nonce (decimal or 0x-hex)")
    p.add_argument("--tsa-cert", help="PEM with the TSA certificate first (for certReq=false tokens)")
    p.add_argument("--verifier", choices=VERIFIERS + ("all",), default="all")
    p.add_argument("--debug", action="store_true", help="show the libraries' log output")
    args = p.parse_args(argv)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG)
    else:  # pyHanko logs tracebacks for expected failures; keep the output one line
        logging.getLogger().addHandler(logging.NullHandler())

    funcs = {"rfc3161-client": verify_rfc3161_client, "pyhanko": verify_pyhanko}
    chosen = VERIFIERS if args.verifier == "all" else (args.verifier,)
    try:
        with open(args.tsr, "rb") as fh:
            tsr = fh.read()
        with open(args.data, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        print(f"FAIL: {_one_line(exc)}")
        return 1

    lines = []
    for name in chosen:
        try:
            detail = funcs[name](tsr, data, args)
        except VerifyFailure as exc:
            print(f"FAIL [{name}]: {exc}")
            return 1
        except ImportError as exc:
            print(f"FAIL [{name}]: library not installed: {_one_line(exc)}")
            return 1
        except Exception as exc:  # library crashed on our token: that is a failure too
            print(f"FAIL [{name}]: {type(exc).__name__}: {_one_line(exc)}")
            return 1
        lines.append(f"OK [{name}]: {detail}")
    print("; ".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
