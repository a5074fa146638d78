"""Writes the fuzz fixtures (fuzz/fixtures/bundle.json, config.json) and the seed corpora
(fuzz/corpus/<target>/) from fresh keys and certificates, all valid at the fixture time NOW
(src/fuzz_targets.rs), so that seeds reach the signature and chain checks.

Run from the repository root with the project's venv: .venv/bin/python fuzz/make_seeds.py
(it replaces the fixtures and every seed named below; inputs fuzzing added are kept).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import pki, svid  # noqa: E402

NOW = 1_800_000_000
ISSUER = "https://as.example.com"
CLIENT = "spiffe://example.org/fuzz-client"
TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
FUZZ = REPO / "fuzz"

svid.NOW = dt.datetime.fromtimestamp(NOW, dt.timezone.utc)  # certificates valid around NOW


def write(target: str, name: str, data: bytes | str):
    path = FUZZ / "corpus" / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def token(key, sub=CLIENT, aud=ISSUER, header=None, **claims) -> str:
    return pki.mint_svid(key, sub, aud, lifetime=300, header=header, now=NOW, **claims)


def form(pairs) -> str:
    return urllib.parse.urlencode(pairs)


def length_prefixed(*ders: bytes) -> bytes:
    return b"".join(len(d).to_bytes(2, "big") + d for d in ders)


def main():
    es256, es384 = pki.ec_key("es256"), pki.ec_key("es384", curve="P-384")
    rs256, ps256 = pki.rsa_key("rs256"), pki.rsa_key("ps256", alg="PS256")
    root = svid.authority("example.org")
    inter = svid.intermediate(root, "example.org")
    leaf = svid.leaf(inter, [CLIENT])
    direct = svid.leaf(root, [CLIENT])
    other_root = svid.authority("example.net")
    foreign = svid.leaf(other_root, [CLIENT])

    bundle = pki.bundle_document([es256, es384, rs256, ps256], sequence=1, refresh_hint=300)
    bundle["keys"].append(svid.bundle_entry(root))
    (FUZZ / "fixtures").mkdir(parents=True, exist_ok=True)
    (FUZZ / "fixtures" / "bundle.json").write_text(json.dumps(bundle, indent=1) + "\n")
    config = {
        "issuer": ISSUER,
        "token_paths": ["/token", "/oauth2/token"],
        "trust_domains": {
            td: {"bundle_endpoint": {"cluster": f"bundle_{td.split('.')[1]}", "authority": f"bundle.{td}",
                                     "path": "/bundle.json"}}
            for td in ("example.org", "example.net")
        },
        "clients": [{"spiffe_id": CLIENT, "client_id": "fuzz-client"},
                    {"spiffe_id": "spiffe://example.net/other"}],
    }
    (FUZZ / "fixtures" / "config.json").write_text(json.dumps(config, indent=1) + "\n")

    # SPIFFE IDs (requirements §4.1 shapes).
    for i, text in enumerate([CLIENT, "spiffe://example.org", "spiffe://example.org/", "SPIFFE://example.org/a",
                              "spiffe://Example.org/a", "spiffe://example.org/a/../b", "spiffe://example.org//a",
                              "spiffe://exa mple.org/a", "spiffe://example.org/a%20b", "spiffe://a:8080/b",
                              "spiffe://u@example.org/a", "spiffe://example.org/a?q#f", "spiffe://" + "a" * 300]):
        write("spiffe_id", f"seed-{i}", text)

    # JWT-SVIDs.
    valid = token(es256)
    write("jwt_svid", "valid-es256", valid)
    write("jwt_svid", "valid-es384", token(es384))
    write("jwt_svid", "valid-rs256", token(rs256))
    write("jwt_svid", "valid-ps256", token(ps256))
    write("jwt_svid", "aud-array", token(es256, aud=[ISSUER]))
    write("jwt_svid", "two-audiences", token(es256, aud=[ISSUER, "https://other"]))
    write("jwt_svid", "expired", pki.mint_svid(es256, CLIENT, ISSUER, lifetime=-600, now=NOW))
    write("jwt_svid", "unknown-kid", token(pki.ec_key("nobody")))
    write("jwt_svid", "wrong-key", token(pki.ec_key("es256")))
    write("jwt_svid", "alg-none", pki.b64url_json({"alg": "none", "kid": "es256"}) + "."
          + pki.b64url_json({"sub": CLIENT, "aud": ISSUER, "exp": NOW + 300}) + ".")
    write("jwt_svid", "crit-header", token(es256, header={"crit": ["exp"]}))
    write("jwt_svid", "nbf-iat", token(es256, nbf=NOW - 10, jti="x"))
    write("jwt_svid", "other-td", token(es256, sub="spiffe://example.net/other"))
    head, payload, sig = valid.split(".")
    write("jwt_svid", "padded", f"{head}=.{payload}.{sig}")
    write("jwt_svid", "four-parts", f"{valid}.x")

    # Token request bodies.
    write("token_request", "valid-jwt-svid", form([("grant_type", "client_credentials"),
                                                   ("client_assertion_type", TYPE), ("client_assertion", valid)]))
    write("token_request", "with-client-id", form([("grant_type", "client_credentials"), ("client_id", "fuzz-client"),
                                                   ("client_assertion_type", TYPE), ("client_assertion", valid)]))
    write("token_request", "client-secret", "grant_type=client_credentials&client_id=a&client_secret=b")
    write("token_request", "mixed", form([("client_assertion_type", TYPE), ("client_assertion", valid),
                                          ("client_secret", "s")]))
    write("token_request", "repeated", form([("client_assertion_type", TYPE), ("client_assertion", valid),
                                             ("client_assertion", valid)]))
    write("token_request", "near-miss", form([("client_assertion_type", TYPE.upper()), ("client_assertion", valid)]))
    write("token_request", "encodings", "a=%ZZ&b=%00&c=+%2B&%E2%82%AC=%C3%28&d")
    write("token_request", "path-like", "/token;x/%2e%2e/TOKEN%0a")

    # Bundles.
    write("bundle", "fixture", json.dumps(bundle))
    write("bundle", "empty-keys", '{"keys":[],"spiffe_sequence":1}')
    write("bundle", "duplicate-member", '{"keys":[],"keys":[]}')
    write("bundle", "x509-only", json.dumps({"keys": [svid.bundle_entry(root)]}))
    write("bundle", "bad-entries", json.dumps({"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256", "x": "AA",
                                                         "y": "AA", "kid": "k"}, {"use": "wit-svid"}, 5],
                                               "spiffe_refresh_hint": "300"}))
    write("bundle", "deep", "[" * 200 + "]" * 200)

    # X.509 chains (length-prefixed DER: leaf, then intermediates).
    write("x509_svid", "valid-chain", length_prefixed(leaf.der, inter.der))
    write("x509_svid", "direct-leaf", length_prefixed(direct.der))
    write("x509_svid", "foreign", length_prefixed(foreign.der))
    write("x509_svid", "ca-leaf", length_prefixed(svid.leaf(inter, [CLIENT], ca=True).der, inter.der))
    write("x509_svid", "two-uris", length_prefixed(svid.leaf(inter, [CLIENT, CLIENT + "2"]).der, inter.der))
    write("x509_svid", "no-digital-signature",
          length_prefixed(svid.leaf(inter, [CLIENT], usage={"key_encipherment": True}).der, inter.der))
    write("x509_svid", "root-as-leaf", length_prefixed(root.der))

    # Presented chains: leaf PEM, NUL, digest, NUL, XFCC.
    digest = hashlib.sha256(leaf.der).hexdigest()
    chain_pem = urllib.parse.quote((leaf.pem + inter.pem).decode(), safe="")
    xfcc = f'By=spiffe://example.org/envoy;Hash={digest};Cert="{urllib.parse.quote(leaf.pem.decode(), safe="")}";' \
           f'Chain="{chain_pem}";URI={CLIENT}'
    write("client_cert", "valid", leaf.pem.decode() + "\0" + digest + "\0" + xfcc)
    write("client_cert", "digest-mismatch", leaf.pem.decode() + "\0" + "00" * 32 + "\0" + xfcc)
    write("client_cert", "two-elements", leaf.pem.decode() + "\0" + digest + "\0" + xfcc + "," + xfcc)

    # Plugin configurations.
    write("config", "fixture", json.dumps(config))
    write("config", "demo", (REPO / "envoy" / "plugin-config.demo.json").read_bytes())
    write("config", "bad-refresh", json.dumps({**config, "bundle_refresh": {"hint_fraction": 2}}))
    write("config", "unknown-field", json.dumps({**config, "audience": "x"}))
    write("config", "empty", "{}")
    metadata = {"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token",
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
                "grant_types_supported": ["client_credentials"]}
    write("as_metadata", "rfc8414", json.dumps(metadata))
    write("as_metadata", "complete",
          json.dumps({"token_endpoint_auth_methods_supported": ["spiffe_jwt", "spiffe_x509"]}))
    write("as_metadata", "absent", json.dumps({"issuer": ISSUER}))
    write("as_metadata", "not-strings",
          json.dumps({"token_endpoint_auth_methods_supported": ["a", 1]}))
    write("as_metadata", "duplicate-member", '{"a":1,"a":2}')
    write("as_metadata", "not-json", "<html>")
    print(f"fixtures and seeds written under {FUZZ}")


if __name__ == "__main__":
    main()
