"""oidc-provider (interop/oidc-provider/server.mjs, Node.js) as the AS behind Envoy: started as a
process on a free port, ready once it says "listening"."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from harness.servers import free_port

INTEROP = Path(__file__).resolve().parents[1] / "interop" / "oidc-provider"


class OidcProvider:
    """One oidc-provider with one tls_client_auth client (``client_id`` = its SPIFFE ID)."""

    def __init__(self, issuer: str, client_id: str, log_path: Path):
        self.issuer = issuer
        self.client_id = client_id
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "OidcProvider":
        if not (INTEROP / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("oidc-provider is not installed: run ./build.sh test (npm ci)")
        env = dict(os.environ, PORT=str(self.port), ISSUER=self.issuer, CLIENT_ID=self.client_id)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(["node", "server.mjs"], cwd=INTEROP, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"listening on" in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"oidc-provider did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
