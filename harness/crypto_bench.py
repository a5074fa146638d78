"""Times the filter core's per-request work inside Envoy's V8: starts Envoy once with the
benchmark-only build of the filter (cargo feature ``crypto-bench``), whose root context runs
each case in ``on_configure`` and logs one line per case, and returns those figures.

Cases: bundle parsing; per algorithm (ES256, ES384, RS256, PS256): form decoding plus JWT-SVID
decoding, the credential cache's SHA-256 key, and decoding plus verification; X509-SVID chain
validation (leaf, one intermediate, root). Run ``python -m harness.crypto_bench WASM``.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from . import pki, svid
from .envoy import envoy_binary
from .servers import free_port

AUDIENCE = "https://as.example.com"
CLIENT = "spiffe://example.org/bench-client"
_LINE = re.compile(r"crypto-bench (?P<case>.+?): best (?P<best>[\d.]+) µs, median (?P<median>[\d.]+) µs")

_ENVOY_YAML = """
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, direct_response: {{ status: 200 }} }}]
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: crypto_bench
                root_id: crypto_bench
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def bench_config(iterations: int) -> dict:
    """Keys, tokens and a chain of one trust domain, as the benchmark root context reads them."""
    keys = {"ES256": pki.ec_key("es256"), "ES384": pki.ec_key("es384", "P-384"),
            "RS256": pki.rsa_key("rs256"), "PS256": pki.rsa_key("ps256", alg="PS256")}
    root = svid.authority("example.org")
    mid = svid.intermediate(root, "example.org")
    leaf = svid.leaf(mid, [CLIENT])
    bundle = pki.bundle_document(list(keys.values()), extra_entries=[svid.bundle_entry(root)])
    now = int(time.time())
    return {
        "iterations": iterations,
        "audience": AUDIENCE,
        "bundle": json.dumps(bundle),
        "tokens": {alg: pki.mint_svid(key, CLIENT, AUDIENCE, lifetime=3600)
                   for alg, key in keys.items()},
        "chain": {"leaf": base64.b64encode(leaf.der).decode(),
                  "intermediates": [base64.b64encode(mid.der).decode()]},
        "now": now,
    }


def run(wasm: Path, iterations: int = 200, timeout: float = 300.0) -> dict[str, dict[str, float]]:
    """{case: {"best": µs, "median": µs}} over every VM that ran the cases (the main thread's
    and the worker's): the best of the bests and the median of the medians."""
    with tempfile.TemporaryDirectory(prefix="crypto-bench-") as tmp:
        config = json.dumps(bench_config(iterations))
        yaml = _ENVOY_YAML.format(admin=free_port(), port=free_port(), wasm=Path(wasm).resolve(),
                                  config=json.dumps(config))
        (Path(tmp) / "envoy.yaml").write_text(yaml)
        log = Path(tmp) / "envoy.log"
        cmd = ["taskset", "-c", "0", envoy_binary(), "-c", str(Path(tmp) / "envoy.yaml"),
               "--concurrency", "1", "-l", "info", "--log-path", str(log),
               "--base-id", str(free_port())]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                if text.count("crypto-bench done") >= 2 or "crypto-bench: " in text:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"Envoy exited: {text[-2000:]}")
                time.sleep(0.2)
            else:
                raise RuntimeError("crypto bench timed out")
        finally:
            proc.terminate()
            proc.wait(10)
        found: dict[str, list[tuple[float, float]]] = {}
        for m in _LINE.finditer(text):
            found.setdefault(m["case"], []).append((float(m["best"]), float(m["median"])))
        if "crypto-bench: " in text or "failed" in text.split("crypto-bench done")[0]:
            raise RuntimeError("a crypto-bench case failed:\n" + "\n".join(
                line for line in text.splitlines() if "crypto-bench" in line))
        return {case: {"best": min(b for b, _ in runs), "median": median(m for _, m in runs)}
                for case, runs in found.items()}


def table(results: dict[str, dict[str, float]]) -> str:
    rows = ["| case (inside Envoy's V8) | best µs | median µs |", "| --- | ---: | ---: |"]
    rows += [f"| {case} | {r['best']:.1f} | {r['median']:.1f} |" for case, r in results.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(run(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 200)))
