"""Test PKI and JWT-SVID minting.

* ``write_tls_pki``: a throw-away CA and a server certificate (DNS SANs) for the
  HTTPS bundle endpoints, written as PEM files.
* ``SigningKey``: a SPIFFE JWT signing key (EC P-256/P-384/P-521 or RSA) with a ``kid``.
* ``bundle_document``: a SPIFFE bundle (JWK Set with ``use: jwt-svid`` entries).
* ``mint_jwt`` / ``sign_compact``: compact JWS; the low-level form takes already
  encoded segments so tests can craft odd headers (``alg: none``, ``crit``, ``jku``,
  duplicate members written as raw JSON text).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the test TLS PKI."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_tls_pki(directory: str | Path, dns_names=("bundle.example.org",)) -> TlsFiles:
    """Create a CA and a server certificate for ``dns_names`` (DNS SANs) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("spiffe-oauth-filter test CA"))
        .issuer_name(_name("spiffe-oauth-filter test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(_pem_key(server_key))
    files.server_key.chmod(0o600)
    return files


# ------------------------------------------------------------------ JWT signing keys

_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
_CURVE_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_EC_SIZE = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}
_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64url(data: bytes | str) -> str:
    """Unpadded base64url."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj) -> str:
    """Compact JSON, then unpadded base64url."""
    return b64url(json.dumps(obj, separators=(",", ":")))


def _int_b64(n: int, length: int | None = None) -> str:
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64url(n.to_bytes(length, "big"))


@dataclass(frozen=True)
class SigningKey:
    """A JWT-SVID signing key: private key, ``kid`` (may be None) and default ``alg``."""

    kid: str | None
    alg: str
    private_key: object

    def public_jwk(self, use: str | None = "jwt-svid", with_kid: bool = True) -> dict:
        """Public JWK as it appears in a SPIFFE bundle."""
        jwk: dict = {} if use is None else {"use": use}
        pub = self.private_key.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            size = _EC_SIZE[pub.curve.name]
            crv = {32: "P-256", 48: "P-384", 66: "P-521"}[size]
            numbers = pub.public_numbers()
            jwk.update(kty="EC", crv=crv, x=_int_b64(numbers.x, size), y=_int_b64(numbers.y, size))
        else:
            numbers = pub.public_numbers()
            jwk.update(kty="RSA", n=_int_b64(numbers.n), e=_int_b64(numbers.e))
        if with_kid and self.kid is not None:
            jwk["kid"] = self.kid
        return jwk


def ec_key(kid: str | None, curve: str = "P-256") -> SigningKey:
    return SigningKey(kid, _CURVE_ALG[curve], ec.generate_private_key(_CURVES[curve]()))


def rsa_key(kid: str | None, bits: int = 2048, alg: str = "RS256") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=bits))


def bundle_document(keys, sequence: int | None = 1, refresh_hint: int | None = 300,
                    extra_entries=()) -> dict:
    """SPIFFE bundle: one ``jwt-svid`` JWK per key, then ``extra_entries`` verbatim."""
    doc: dict = {"keys": [k.public_jwk() for k in keys] + list(extra_entries)}
    if sequence is not None:
        doc["spiffe_sequence"] = sequence
    if refresh_hint is not None:
        doc["spiffe_refresh_hint"] = refresh_hint
    return doc


def bundle_bytes(keys, **kwargs) -> bytes:
    return json.dumps(bundle_document(keys, **kwargs)).encode()


# --------------------------------------------------------------------------- JWS


def raw_signature(alg: str, signing_input: bytes, key, ecdsa_der: bool = False) -> bytes:
    """JWS signature bytes for ``alg`` with ``key`` (SigningKey, private key, or bytes for HS*).

    The hash follows ``alg`` and the algorithm family follows the key, so a mismatched
    pair (``ES384`` header, P-256 key) yields a well-formed but wrong signature.
    ECDSA signatures are raw R||S of the key's fixed size unless ``ecdsa_der``.
    """
    if alg == "none":
        return b""
    if isinstance(key, SigningKey):
        key = key.private_key
    digest = _HASHES.get(alg[-3:], hashes.SHA256)
    if isinstance(key, (bytes, bytearray)):
        return hmac.new(bytes(key), signing_input, getattr(hashlib, digest.name)).digest()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        der = key.sign(signing_input, ec.ECDSA(digest()))
        if ecdsa_der:
            return der
        r, s = decode_dss_signature(der)
        size = _EC_SIZE[key.curve.name]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        if alg.startswith("PS"):
            pad = padding.PSS(mgf=padding.MGF1(digest()), salt_length=digest.digest_size)
        else:
            pad = padding.PKCS1v15()
        return key.sign(signing_input, pad, digest())
    raise TypeError(f"unsupported key type {type(key)!r}")


def sign_compact(header_b64: str, payload_b64: str, key, alg: str | None = None,
                 ecdsa_der: bool = False) -> str:
    """``header_b64.payload_b64.signature`` over the given (already encoded) segments.

    ``alg`` defaults to the key's default algorithm; pass ``"none"`` for an empty signature.
    """
    if alg is None:
        alg = key.alg if isinstance(key, SigningKey) else "ES256"
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    return f"{header_b64}.{payload_b64}.{b64url(raw_signature(alg, signing_input, key, ecdsa_der))}"


def mint_jwt(header: dict, claims: dict, key) -> str:
    """Compact JWS with ``header`` and ``claims``; signed per ``header['alg']``."""
    alg = header.get("alg")
    if alg is None:
        alg = key.alg if isinstance(key, SigningKey) else "ES256"
    return sign_compact(b64url_json(header), b64url_json(claims), key, alg=alg)


def svid_header(key: SigningKey, **overrides) -> dict:
    """The usual JWT-SVID header ``{"alg", "kid", "typ": "JWT"}``; ``None`` drops a member."""
    header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


def svid_claims(sub: str, aud, lifetime: int = 300, now: int | None = None, **extra) -> dict:
    """JWT-SVID claims ``sub``/``aud``/``exp``/``iat``; ``extra`` adds or overrides claims."""
    now = int(time.time()) if now is None else now
    claims = {"sub": sub, "aud": aud, "exp": now + lifetime, "iat": now}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def mint_svid(key: SigningKey, sub: str, aud, lifetime: int = 300, header: dict | None = None,
              **claims) -> str:
    """A JWT-SVID for ``sub``/``aud`` signed by ``key`` (header overrides in ``header``)."""
    return mint_jwt(svid_header(key, **(header or {})), svid_claims(sub, aud, lifetime, **claims), key)
