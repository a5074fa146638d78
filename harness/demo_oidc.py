"""The demo with a real authorization server (``./build.sh run --as oidc-provider``):
oidc-provider (interop/oidc-provider) behind Envoy and the filter, the demo client registered
there with ``tls_client_auth`` and ``tls_client_auth_san_uri`` = its SPIFFE ID. The filter
validates the X509-SVID against example.org's authorities and forwards it as RFC 9440
``Client-Cert``; oidc-provider issues an access token bound to that certificate
(``cnf.x5t#S256``), which the demo decodes and checks."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from . import client, pki, svid
from .demo import AS_HOST, CLIENT_SPIFFE_ID, PLUGIN_CONFIG, TRUST_DOMAIN, _show_request, _show_response
from .envoy import Envoy
from .oidc_provider import OidcProvider
from .servers import BundleServer

PARAMS = [("grant_type", "client_credentials"), ("client_id", CLIENT_SPIFFE_ID)]


def _claims(jwt: str) -> dict:
    segment = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _thumbprint(issued: svid.Issued) -> str:
    digest = hashlib.sha256(issued.cert.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcDemo:
    def __init__(self, workdir: Path, wasm: Path):
        self.config = json.loads(PLUGIN_CONFIG.read_text())
        # oidc-provider's client id is the SPIFFE ID (draft-02's rule, x509_client_id
        # "spiffe_id"), and it reads the certificate from RFC 9440 Client-Cert.
        self.config.update(clients=[{"spiffe_id": CLIENT_SPIFFE_ID}], x509_client_id="spiffe_id",
                           client_certificate={"rfc9440_headers": True})
        self.issuer = self.config["issuer"]
        self.token_path = self.config["token_paths"][0]
        endpoint = self.config["trust_domains"][TRUST_DOMAIN]["bundle_endpoint"]
        self.workdir = workdir
        self.tls = pki.write_tls_pki(workdir / "pki", [AS_HOST, endpoint["authority"]])
        self.x509_ca = svid.authority(TRUST_DOMAIN)
        self.x509_mid = svid.intermediate(self.x509_ca, TRUST_DOMAIN)
        bundle = pki.bundle_bytes([pki.ec_key("demo-key-1")],
                                  extra_entries=[svid.bundle_entry(self.x509_ca)])
        self.bundle = BundleServer(self.tls, bundle, path=endpoint["path"]).start()
        self.provider = OidcProvider(self.issuer, CLIENT_SPIFFE_ID, workdir / "oidc-provider.log")
        self.provider.start()
        self.envoy = Envoy(workdir, self.config, wasm_path=wasm, ca_file=self.tls.ca_cert,
                           as_port=self.provider.port,
                           bundle_ports={TRUST_DOMAIN: self.bundle.port})
        self.failures: list[str] = []

    def stop(self):
        self.envoy.stop()
        self.provider.stop()
        self.bundle.stop()

    def check(self, ok: bool, what: str):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)

    def grants(self) -> list[str]:
        return [line for line in self.provider.log_text().splitlines()
                if line.startswith("grant.")]

    def post_mtls(self, leaf: svid.Issued, chain, name: str) -> client.Response:
        files = svid.client_files(self.workdir, leaf, chain, name=name)
        tls = client.mtls(self.tls.ca_cert, AS_HOST, *files)
        return client.post_form(self.envoy.mtls_port, self.token_path, PARAMS, tls=tls)

    def run(self) -> bool:
        print(f"authorization server: oidc-provider on http://127.0.0.1:{self.provider.port} "
              f"(issuer {self.issuer}, log {self.provider.log_path})")
        print(f"work dir: {self.workdir}")
        self.envoy.start()
        leaf = svid.leaf(self.x509_mid, [CLIENT_SPIFFE_ID])
        deadline = time.monotonic() + 10
        while self.post_mtls(leaf, [self.x509_mid], "demo-client").status != 200:
            if time.monotonic() > deadline:
                self.check(False, "filter loaded the trust bundle within 10 s")
                return False
            time.sleep(0.2)
        print(f"filter has the bundle of {TRUST_DOMAIN}; oidc-provider registers "
              f"{CLIENT_SPIFFE_ID} with tls_client_auth, tls_client_auth_san_uri = that ID\n")

        print(f"1. mTLS with the X509-SVID of {CLIENT_SPIFFE_ID} (leaf under an intermediate)")
        before = self.grants()
        _show_request(self.token_path, PARAMS)
        resp = self.post_mtls(leaf, [self.x509_mid], "demo-client")
        print(f"  <- HTTP {resp.status}")
        answer = resp.json() if resp.status == 200 else {}
        claims = _claims(answer["access_token"]) if "access_token" in answer else {}
        print(f"     access token claims: {json.dumps(claims, indent=None)}")
        self.check(resp.status == 200 and self.grants() == [*before, f"grant.success {CLIENT_SPIFFE_ID}"],
                   "oidc-provider issued a token to the client (tls_client_auth)")
        self.check(claims.get("cnf") == {"x5t#S256": _thumbprint(leaf)},
                   "the token is bound to the certificate: cnf.x5t#S256 = SHA-256 of the leaf")

        print(f"\n2. mTLS with an X509-SVID claiming {CLIENT_SPIFFE_ID}, issued by another CA")
        before = self.grants()
        _show_request(self.token_path, PARAMS)
        resp = self.post_mtls(svid.leaf(svid.authority(TRUST_DOMAIN), [CLIENT_SPIFFE_ID]), [],
                              "foreign-client")
        _show_response(resp)
        self.check(resp.status == 401, "rejected by the filter: 401 invalid_client")
        self.check(self.grants() == before,
                   "nothing reached oidc-provider (which checks only the SAN, not the CA)")
        return not self.failures

    def keep_running(self, workdir: Path):
        cert, key = workdir / "demo-client.crt", workdir / "demo-client.key"
        mtls_port = self.envoy.mtls_port
        print(f"""
Everything keeps running; Ctrl-C stops it.

  curl -s --cacert {self.tls.ca_cert} --resolve {AS_HOST}:{mtls_port}:127.0.0.1 \\
    --cert {cert} --key {key} https://{AS_HOST}:{mtls_port}{self.token_path} \\
    -d grant_type=client_credentials -d client_id={CLIENT_SPIFFE_ID}

  tail -f {self.provider.log_path} {self.envoy.log_path}
""")
        try:
            while True:
                time.sleep(60)
        except KeyboardInterrupt:
            print("stopping")
