"""X509-SVID test PKI: per-trust-domain SPIFFE CAs, intermediates and leaves with every knob the
tests turn, their SPIFFE bundle entries, and the files an mTLS client presents."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from .pki import _int_b64, _pem_key

NOW = dt.datetime.now(dt.timezone.utc)


def _usage(**on) -> x509.KeyUsage:
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False,
                 crl_sign=False, encipher_only=False, decipher_only=False)
    flags.update(on)
    return x509.KeyUsage(**flags)


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _build(subject: str, issuer: Issued | None, key, *, ca: bool, uris=(), dns=(),
           usage: x509.KeyUsage, eku=None, not_before=None, not_after=None,
           path_length=None) -> Issued:
    # X509-SVID leaves may have an empty subject (then the SAN is critical).
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)] if subject else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    sans = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not subject)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    signer = issuer.key if issuer else key
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def authority(trust_domain: str) -> Issued:
    """A self-signed X509-SVID authority of ``trust_domain``."""
    return _build(f"{trust_domain} root", None, ec.generate_private_key(ec.SECP256R1()), ca=True,
                  uris=[f"spiffe://{trust_domain}"], usage=_usage(key_cert_sign=True, crl_sign=True))


def intermediate(parent: Issued, trust_domain: str, *, ca: bool = True,
                 key_cert_sign: bool = True, not_after=None) -> Issued:
    return _build(f"{trust_domain} intermediate", parent, ec.generate_private_key(ec.SECP256R1()),
                  ca=ca, uris=[f"spiffe://{trust_domain}"], not_after=not_after,
                  usage=_usage(key_cert_sign=key_cert_sign, crl_sign=True))


def leaf(parent: Issued, uris, *, ca: bool = False, usage: dict | None = None, dns=(),
         not_before=None, not_after=None) -> Issued:
    """An X509-SVID (by default valid now, digitalSignature, serverAuth+clientAuth EKU)."""
    return _build("", parent, ec.generate_private_key(ec.SECP256R1()), ca=ca, uris=uris, dns=dns,
                  usage=_usage(**(usage if usage is not None else {"digital_signature": True})),
                  eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                  not_before=not_before, not_after=not_after)


def bundle_entry(ca: Issued) -> dict:
    """The ``x509-svid`` entry of a SPIFFE bundle for ``ca`` (key members match the x5c)."""
    numbers = ca.key.public_key().public_numbers()
    return {"use": "x509-svid", "kty": "EC", "crv": "P-256",
            "x": _int_b64(numbers.x, 32), "y": _int_b64(numbers.y, 32),
            "x5c": [base64.b64encode(ca.der).decode()]}


def client_files(directory: str | Path, svid: Issued, chain=(), name: str | None = None
                 ) -> tuple[Path, Path]:
    """Write the client's certificate file (leaf, then ``chain``) and key as ``<name>.crt`` /
    ``<name>.key`` (default: named after the serial number); return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = name or f"client-{svid.cert.serial_number:x}"
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(svid.pem + b"".join(c.pem for c in chain))
    key_path.write_bytes(_pem_key(svid.key))
    return cert_path, key_path


def _der_tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def san_with_x400(uris) -> bytes:
    """A subjectAltName value: the URIs, then an empty ``x400Address`` ([3]), a GeneralName
    form that TLS stacks accept and some certificate parsers cannot read."""
    names = b"".join(_der_tlv(0x86, u.encode()) for u in uris) + _der_tlv(0xA3, b"")
    return _der_tlv(0x30, names)


def leaf_with_raw_san(parent: Issued | None, san: bytes) -> Issued:
    """An X509-SVID-shaped leaf whose subjectAltName is ``san`` as given (DER), issued by
    ``parent``, or self-signed when ``parent`` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(parent.cert.subject if parent else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True), critical=True)
        .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False)
    return Issued(builder.sign(parent.key if parent else key, hashes.SHA256()), key)
