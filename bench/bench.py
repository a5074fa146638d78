"""``./build.sh bench``: Envoy with no authentication filter, with Envoy's own ``jwt_authn`` and
with spiffe-oauth-filter, measured side by side with wrk on loopback.

Starts one Envoy under test per configuration (``--concurrency 1``, all pinned to CPU 0), the
filter's HTTPS bundle endpoint, and, for the X509-SVID workload, one client-side Envoy per mTLS
target (CPU 1, beside wrk). Checks that every configuration answers every workload's request
with 200 and that jwt_authn and the filter answer a forged token with 401. Then, round after
round, for each workload, runs wrk (CPU 1) against each configuration in turn: a warm-up, then
the measured run. Prints one markdown table (medians over the rounds of req/s, p50, p99 and the
Envoy under test's CPU time per request, and the medians of the filter's per-round ratios to
the references), the .wasm size, the filter's cold start and the Envoys' memory across rounds;
writes the same to bench/results/latest.json.

Run with the project's venv from the checkout: ``.venv/bin/python bench/bench.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from string import Template

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from harness import client, crypto_bench, pki, svid  # noqa: E402
from harness.envoy import DEFAULT_WASM, EnvoyProcess, render_bundle_clusters  # noqa: E402
from harness.servers import HOST, BundleServer, free_port  # noqa: E402

ISSUER = "https://as.example.com"
AS_HOST = "as.example.com"  # the name on the TLS listener's certificate
TRUST_DOMAIN = "example.org"
CLIENT_ID = "bench-client"
SPIFFE_ID = f"spiffe://{TRUST_DOMAIN}/{CLIENT_ID}"
TOKEN_PATH = "/token"
TOKEN_LIFETIME = 3600  # seconds: longer than any bench run
JWT_HEADER = "x-jwt-svid"  # the JWT-SVID again, for jwt_authn (not Authorization: see README)
ASSERTION_PREFIX = ("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams"
                    "%3Aoauth%3Aclient-assertion-type%3Ajwt-spiffe&client_assertion=")
X509_BODY = f"grant_type=client_credentials&client_id={CLIENT_ID}"
ENVOY_CPU, CLIENT_CPU = "0", "1"

NONE, NOOP, JWT_AUTHN, FILTER = "none", "wasm-noop", "jwt_authn", "spiffe-oauth-filter"
JWT_CONFIGS = (NONE, NOOP, JWT_AUTHN, FILTER)
MTLS_CONFIGS = (NONE, NOOP, FILTER)
TEMPLATE = BENCH / "envoy-bench.yaml.tmpl"
CLIENT_TEMPLATE = BENCH / "envoy-client.yaml.tmpl"
AUTH_BLOCK = re.compile(r"^[ \t]*# >>> auth:(\S+).*?^[ \t]*# <<< auth:\1[^\n]*\n", re.M | re.S)
RESULTS = BENCH / "results" / "latest.json"
NOOP_WASM = (BENCH.parent / "target" / "noop-bench" / "wasm32-wasip1" / "release"
             / "spiffe_oauth_filter.wasm")
CRYPTO_WASM = (BENCH.parent / "target" / "crypto-bench" / "wasm32-wasip1" / "release"
               / "spiffe_oauth_filter.wasm")


class BenchError(RuntimeError):
    """A check failed: the figures would not mean what they say."""


# ------------------------------------------------------------------ requests and tokens


@dataclass(frozen=True)
class Request:
    """A workload's request: the form body and the one extra header (if any)."""

    body: str
    header: tuple[str, str] | None = None


def assertion_request(token: str) -> Request:
    """The JWT-SVID token request: the assertion in the body, the same token in x-jwt-svid."""
    return Request(ASSERTION_PREFIX + token, (JWT_HEADER, token))


X509_REQUEST = Request(X509_BODY)

_mint_key: pki.SigningKey | None = None


def _set_mint_key(key: pki.SigningKey):
    global _mint_key
    _mint_key = key


def _mint_one(index: int, now: int) -> str:
    return pki.mint_svid(_mint_key, SPIFFE_ID, ISSUER, lifetime=TOKEN_LIFETIME, now=now,
                         jti=f"bench-{index}")


def mint_pool(key: pki.SigningKey, count: int, path: Path) -> float:
    """Write ``count`` distinct JWT-SVIDs (one per line) to ``path``, minted on every CPU;
    return the seconds it took. (Forked workers inherit the key; no pickling.)"""
    started = time.monotonic()
    now = int(time.time())
    with ProcessPoolExecutor(mp_context=get_context("fork"), initializer=_set_mint_key,
                             initargs=(key,)) as pool:
        tokens = list(pool.map(_mint_one, range(count), [now] * count, chunksize=250))
    path.write_text("\n".join(tokens) + "\n")
    return time.monotonic() - started


# ------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    """What wrk sends (a script and its arguments), to which configurations, and how."""

    name: str
    configs: tuple[str, ...]
    mtls: bool  # through a client-side Envoy to the mTLS listener
    sample: Request  # one of its requests, for the checks before each run
    script: tuple[str, ...]  # wrk -s SCRIPT ... -- ARGS

    def wrk_args(self, url: str) -> list[str]:
        return ["-s", str(BENCH / self.script[0]), url, "--", *self.script[1:]]


def fixed_workload(name: str, request: Request, configs, mtls: bool = False) -> Workload:
    return Workload(name, configs, mtls, request,
                    ("fixed.lua", request.body, *(request.header or ())))


def pool_workload(name: str, pool_file: Path) -> Workload:
    first = pool_file.read_text().split("\n", 1)[0]
    return Workload(name, JWT_CONFIGS, False, assertion_request(first),
                    ("pool.lua", str(pool_file), ASSERTION_PREFIX, JWT_HEADER))


# ---------------------------------------------------------------------------- Envoys


@dataclass
class Credentials:
    """The trust domain's keys and the workload's X509-SVID."""

    es256: pki.SigningKey
    rs256: pki.SigningKey
    x509_ca: svid.Issued
    x509_leaf: svid.Issued

    @classmethod
    def generate(cls) -> "Credentials":
        ca = svid.authority(TRUST_DOMAIN)
        return cls(pki.ec_key("bench-es256"), pki.rsa_key("bench-rs256", 2048), ca,
                   svid.leaf(ca, [SPIFFE_ID]))

    def bundle(self) -> bytes:
        return pki.bundle_bytes([self.es256, self.rs256], sequence=1, refresh_hint=300,
                                extra_entries=[svid.bundle_entry(self.x509_ca)])

    def jwks(self) -> dict:
        return {"keys": [self.es256.public_jwk(), self.rs256.public_jwk()]}


def plugin_config() -> dict:
    """The filter's configuration: one trust domain, one registered client."""
    return {
        "issuer": ISSUER,
        "token_paths": [TOKEN_PATH],
        "trust_domains": {TRUST_DOMAIN: {"bundle_endpoint": {
            "cluster": "bundle_example_org", "authority": f"bundle.{TRUST_DOMAIN}",
            "path": "/bundle.json"}}},
        "clients": [{"spiffe_id": SPIFFE_ID, "client_id": CLIENT_ID}],
        "x509_client_id": "registered",  # the X509-SVID request sends client_id=bench-client
    }


@dataclass
class UnderTest:
    """One Envoy under test: its process, plain listener and mTLS listener."""

    name: str
    envoy: EnvoyProcess
    port: int
    mtls_port: int


def render_under_test(config: str, *, ports: dict, tls: pki.TlsFiles, creds: Credentials,
                      wasm: Path, noop_wasm: Path, bundle_port: int,
                      noop_config: dict | None = None) -> str:
    """envoy-bench.yaml.tmpl with only ``config``'s authentication filter block."""
    text = TEMPLATE.read_text()
    if config != NONE and f"# >>> auth:{config}\n" not in text:
        raise ValueError(f"{TEMPLATE.name} has no block for {config}")
    text = AUTH_BLOCK.sub(lambda m: m.group(0) if m.group(1) == config else "", text)
    settings = plugin_config()
    return Template(text).substitute(
        **ports, SERVER_CERT=tls.server_cert.resolve(), SERVER_KEY=tls.server_key.resolve(),
        AUDIENCE=ISSUER, JWKS=json.dumps(json.dumps(creds.jwks())),
        WASM_PATH=wasm.resolve(), NOOP_WASM_PATH=noop_wasm.resolve(),
        NOOP_CONFIG=json.dumps(json.dumps(noop_config or {})),
        PLUGIN_CONFIG=json.dumps(json.dumps(settings)),
        BUNDLE_CLUSTERS=render_bundle_clusters(settings, {TRUST_DOMAIN: bundle_port},
                                               tls.ca_cert),
    )


def under_test(config: str, workdir: Path, name: str | None = None, **render) -> UnderTest:
    """An Envoy under test for ``config`` (not started), pinned to ENVOY_CPU."""
    ports = dict(ADMIN_PORT=free_port(), LISTENER_PORT=free_port(), MTLS_PORT=free_port())
    text = render_under_test(config, ports=ports, **render)
    envoy = EnvoyProcess(workdir, text, ports["ADMIN_PORT"], name=name or config,
                         cpus=ENVOY_CPU, component_log_level="wasm:info")
    return UnderTest(name or config, envoy, ports["LISTENER_PORT"], ports["MTLS_PORT"])


def client_envoy(target: UnderTest, workdir: Path, tls: pki.TlsFiles,
                 svid_files: tuple[Path, Path]) -> tuple[EnvoyProcess, int]:
    """A started client-side Envoy (CPU 1) that forwards plain HTTP to ``target``'s mTLS
    listener, presenting the X509-SVID; returns it and its listener port."""
    admin, port = free_port(), free_port()
    text = Template(CLIENT_TEMPLATE.read_text()).substitute(
        ADMIN_PORT=admin, LISTENER_PORT=port, TARGET_PORT=target.mtls_port, SERVER_NAME=AS_HOST,
        CA_FILE=tls.ca_cert.resolve(), CLIENT_CERT=svid_files[0].resolve(),
        CLIENT_KEY=svid_files[1].resolve())
    envoy = EnvoyProcess(workdir, text, admin, name=f"client-{target.name}", cpus=CLIENT_CPU,
                         log_level="warning", component_log_level="upstream:warning")
    return envoy.start(), port


# ---------------------------------------------------------------------------- checks


def post(port: int, request: Request, tls: client.Tls | None = None) -> client.Response:
    headers = [request.header] if request.header else []
    return client.post_form(port, TOKEN_PATH, request.body.encode(), headers, tls=tls)


def expect(resp: client.Response, status: int, what: str):
    if resp.status != status:
        raise BenchError(f"{what}: HTTP {resp.status} (expected {status}): {resp.body[:200]!r}")


def expect_authenticated(resp: client.Response, what: str):
    """200 with the identity the filter verified (echoed by the route)."""
    expect(resp, 200, what)
    if resp.header("x-bench-spiffe-id") != SPIFFE_ID:
        raise BenchError(f"{what}: 200 without the filter's identity header: {resp.headers}")


def forged(key: pki.SigningKey) -> str:
    """A well-formed JWT-SVID under ``key``'s kid, signed by another key of the same type."""
    other = pki.ec_key(key.kid) if key.alg == "ES256" else pki.rsa_key(key.kid, 2048)
    return pki.mint_svid(other, SPIFFE_ID, ISSUER, lifetime=TOKEN_LIFETIME)


def check_workload(workload: Workload, config: str, port: int):
    """The workload's sample request gets 200 from ``config`` (the filter's with its identity)."""
    resp = post(port, workload.sample)
    what = f"{workload.name} on {config}"
    if config == FILTER:
        expect_authenticated(resp, what)
    else:
        expect(resp, 200, what)


def smoke_check(targets: dict[str, UnderTest], ports: dict[tuple[str, str], int],
                workloads: list[Workload], creds: Credentials, tls: pki.TlsFiles, workdir: Path):
    """Every workload's request gets 200 from every configuration (the filter's with its
    identity header); a forged signature gets 401 from jwt_authn and the filter, and an
    X509-SVID of a foreign CA gets 401 from the filter: neither filter is a no-op."""
    for w in workloads:
        for config in w.configs:
            check_workload(w, config, ports[w.name, config])
    for key in (creds.es256, creds.rs256):
        for config in (JWT_AUTHN, FILTER):
            expect(post(targets[config].port, assertion_request(forged(key))), 401,
                   f"forged {key.alg} token on {config}")
    foreign = svid.leaf(svid.authority(TRUST_DOMAIN), [SPIFFE_ID])
    cert, key = svid.client_files(workdir, foreign, name="foreign-svid")
    foreign_tls = client.mtls(tls.ca_cert, AS_HOST, cert, key)
    expect(post(targets[FILTER].mtls_port, X509_REQUEST, foreign_tls), 401,
           "X509-SVID of a foreign CA on the filter")


def cold_start(target: UnderTest, request: Request, poll: float = 0.02,
               timeout: float = 30.0) -> float:
    """Spawn the filter's Envoy; seconds until its first authenticated 200 (the first
    bundle fetch included), polling every ``poll`` seconds."""
    started = time.monotonic()
    target.envoy.spawn()
    while time.monotonic() - started < timeout:
        if target.envoy.proc.poll() is not None:
            raise BenchError(f"{target.name}: Envoy exited:\n{target.envoy.log_tail()}")
        try:
            if post(target.port, request).header("x-bench-spiffe-id") == SPIFFE_ID:
                elapsed = time.monotonic() - started
                target.envoy.wait_ready()
                return elapsed
        except OSError:
            pass  # not listening yet
        time.sleep(poll)
    raise BenchError(f"{target.name}: no authenticated 200 within {timeout}s")


# ------------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_us: float = 0.0  # CPU time of the Envoy under test per request (set after the run)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """req/s, p50, p99 and request count of ``wrk --latency`` output; a BenchError for any
    non-2xx/3xx response or socket error."""
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if bad:
        raise BenchError(f"{bad.group(1)} responses were not 2xx/3xx:\n{output}")
    errors = re.search(r"Socket errors: (.*)", output)
    if errors:
        raise BenchError(f"socket errors ({errors.group(1)}):\n{output}")
    percentile = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=_ms(percentile["50"]), p99_ms=_ms(percentile["99"]),
        requests=int(re.search(r"(\d+) requests in", output).group(1)))


def run_wrk(workload: Workload, port: int, seconds: int, connections: int) -> WrkResult:
    """One wrk run on CLIENT_CPU: one thread, ``connections`` keep-alive connections."""
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "--latency", *workload.wrk_args(f"http://{HOST}:{port}{TOKEN_PATH}")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


# ------------------------------------------------------------------- rounds and memory


def cpu_seconds(envoy: EnvoyProcess) -> float:
    """User + system CPU time the Envoy process has used so far (all its threads)."""
    fields = Path(f"/proc/{envoy.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def memory_sample(envoy: EnvoyProcess) -> dict:
    """VmRSS (KiB, /proc) and the admin /memory ``allocated`` bytes of a running Envoy."""
    status = Path(f"/proc/{envoy.proc.pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))
    return {"rss_kib": rss, "allocated": int(json.loads(envoy.admin_get("/memory"))["allocated"])}


def in_turn(configs: tuple[str, ...], round_index: int) -> tuple[str, ...]:
    """The configurations rotated by the round number, so none is always measured first."""
    shift = round_index % len(configs)
    return configs[shift:] + configs[:shift]


def measure(workload: Workload, config: str, port: int, envoy: EnvoyProcess, opts) -> WrkResult:
    """One measurement: the request check, the warm-up, the measured run with the CPU time
    the Envoy under test spent on it."""
    check_workload(workload, config, port)
    run_wrk(workload, port, opts.warmup, opts.connections)
    cpu_before = cpu_seconds(envoy)
    result = run_wrk(workload, port, opts.duration, opts.connections)
    cpu_us = (cpu_seconds(envoy) - cpu_before) * 1e6 / result.requests
    return replace(result, cpu_us=cpu_us)


def run_rounds(workloads: list[Workload], ports: dict, targets: dict[str, UnderTest],
               opts) -> tuple[dict, dict]:
    """All rounds: {workload: {config: [WrkResult per round]}} and {config: [memory samples]}
    (one at start, one after each round)."""
    results = {w.name: {c: [] for c in w.configs} for w in workloads}
    memory = {name: [memory_sample(t.envoy)] for name, t in targets.items()}
    for r in range(opts.rounds):
        for w in workloads:
            for config in in_turn(w.configs, r):
                result = measure(w, config, ports[w.name, config], targets[config].envoy, opts)
                results[w.name][config].append(result)
                print(f"  round {r + 1}/{opts.rounds}  {w.name:<18} {config:<20} "
                      f"{result.rps:>9.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                      f"p99 {result.p99_ms:7.2f} ms  {result.cpu_us:6.0f} µs CPU/req",
                      flush=True)
        for name, t in targets.items():
            memory[name].append(memory_sample(t.envoy))
    return results, memory


# --------------------------------------------------------------------------- summary


METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us")


def summarize(results: dict) -> dict:
    """Per workload and configuration: the median of each metric over the rounds; for the
    filter also ``vs <reference>``: the median over rounds of filter / reference per metric."""
    summary = {}
    for workload, by_config in results.items():
        rows = {c: {m: statistics.median(getattr(r, m) for r in runs) for m in METRICS}
                for c, runs in by_config.items()}
        for ref in (c for c in by_config if c != FILTER):
            pairs = list(zip(by_config[FILTER], by_config[ref]))
            rows[FILTER][f"vs {ref}"] = {
                m: statistics.median(getattr(f, m) / getattr(x, m) for f, x in pairs)
                for m in METRICS}
        summary[workload] = rows
    return summary


def table(summary: dict) -> str:
    """The markdown table: one row per workload and configuration, then the filter's ratios."""
    lines = ["| workload | configuration | req/s | p50 (ms) | p99 (ms) | Envoy CPU/req (µs) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for workload, rows in summary.items():
        for config, row in rows.items():
            lines.append(f"| {workload} | {config} | {row['rps']:,.0f} | {row['p50_ms']:.2f} "
                         f"| {row['p99_ms']:.2f} | {row['cpu_us']:,.0f} |")
        for key, ratio in rows[FILTER].items():
            if key.startswith("vs "):
                lines.append(f"| {workload} | filter ÷ {key[3:]} | {ratio['rps']:.3f}× "
                             f"| {ratio['p50_ms']:.2f}× | {ratio['p99_ms']:.2f}× "
                             f"| {ratio['cpu_us']:.1f}× |")
    return "\n".join(lines)


def memory_table(memory: dict) -> str:
    lines = ["| Envoy under test | RSS at start (MiB) | RSS after last round | max RSS "
             "| allocated at start (MiB) | allocated after last round |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, samples in memory.items():
        rss = [s["rss_kib"] / 1024 for s in samples]
        alloc = [s["allocated"] / 2**20 for s in samples]
        lines.append(f"| {name} | {rss[0]:.1f} | {rss[-1]:.1f} | {max(rss):.1f} "
                     f"| {alloc[0]:.1f} | {alloc[-1]:.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- driver


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="./build.sh bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--pool", type=int, default=None,
                        help="fresh tokens per algorithm (default 20000; 5000 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round of 2 s runs")
    parser.add_argument("--wasm", type=Path, default=DEFAULT_WASM)
    parser.add_argument("--noop-wasm", type=Path, default=NOOP_WASM,
                        help="do-nothing wasm filter (feature noop-bench), measured as the floor")
    parser.add_argument("--crypto-wasm", type=Path, default=CRYPTO_WASM,
                        help="benchmark build of the filter (feature crypto-bench) that times "
                             "the core inside V8; skipped if absent")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.rounds, opts.duration = 1, 2
    if opts.pool is None:
        opts.pool = 5000 if opts.quick else 20000
    return opts


def make_workloads(creds: Credentials, workdir: Path, pool: int) -> tuple:
    """The five workloads, minting the token pools; returns (workloads, per-pool mint seconds)."""
    minted = {}
    pools = {}
    for key in (creds.es256, creds.rs256):
        pools[key.alg] = workdir / f"pool-{key.alg}.txt"
        minted[key.alg] = mint_pool(key, pool, pools[key.alg])
        print(f"minted {pool} {key.alg} tokens in {minted[key.alg]:.1f}s", flush=True)
    same = {key.alg: assertion_request(pki.mint_svid(key, SPIFFE_ID, ISSUER,
                                                     lifetime=TOKEN_LIFETIME))
            for key in (creds.es256, creds.rs256)}
    workloads = [
        fixed_workload("ES256 same token", same["ES256"], JWT_CONFIGS),
        pool_workload("ES256 fresh tokens", pools["ES256"]),
        fixed_workload("RS256 same token", same["RS256"], JWT_CONFIGS),
        pool_workload("RS256 fresh tokens", pools["RS256"]),
        fixed_workload("X509-SVID mTLS", X509_REQUEST, MTLS_CONFIGS, mtls=True),
    ]
    return workloads, minted


def target_ports(workloads, targets: dict[str, UnderTest], client_ports: dict) -> dict:
    """(workload, config) -> the port wrk sends to: the plain listener, or the client Envoy."""
    return {(w.name, c): client_ports[c] if w.mtls else targets[c].port
            for w in workloads for c in w.configs}


def start_targets(workdir: Path, stack: list, **render) -> tuple[dict[str, UnderTest], float]:
    """Start the Envoys under test, the filter's last and timed (see ``cold_start``); return
    them by configuration and the cold start in seconds."""
    targets = {c: under_test(c, workdir, **render) for c in JWT_CONFIGS}
    stack.extend(t.envoy for t in targets.values())
    for config in (NONE, NOOP, JWT_AUTHN):
        targets[config].envoy.start()
    creds = render["creds"]
    cold = cold_start(targets[FILTER], assertion_request(
        pki.mint_svid(creds.es256, SPIFFE_ID, ISSUER)))
    print(f"filter cold start: {cold * 1000:.0f} ms from Envoy spawn to the first "
          "authenticated 200", flush=True)
    return targets, cold


def start_clients(targets: dict[str, UnderTest], workdir: Path, stack: list,
                  tls: pki.TlsFiles, creds: Credentials) -> dict[str, int]:
    """One client-side Envoy per mTLS configuration; returns their ports by configuration."""
    svid_files = svid.client_files(workdir, creds.x509_leaf, name="bench-svid")
    ports = {}
    for config in MTLS_CONFIGS:
        envoy, ports[config] = client_envoy(targets[config], workdir, tls, svid_files)
        stack.append(envoy)
    return ports


def run(opts, workdir: Path, stack: list) -> dict:
    """Everything between start and report; ``stack`` collects what must be stopped."""
    wall = time.monotonic()
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.2f} (other work on the machine skews the figures)")
    tls = pki.write_tls_pki(workdir / "pki", [AS_HOST, f"bundle.{TRUST_DOMAIN}"])
    creds = Credentials.generate()
    bundle = BundleServer(tls, creds.bundle()).start()
    stack.append(bundle)
    targets, cold = start_targets(workdir, stack, tls=tls, creds=creds, wasm=opts.wasm,
                                  noop_wasm=opts.noop_wasm, bundle_port=bundle.port)
    client_ports = start_clients(targets, workdir, stack, tls, creds)
    workloads, minted = make_workloads(creds, workdir, opts.pool)
    ports = target_ports(workloads, targets, client_ports)
    smoke_check(targets, ports, workloads, creds, tls, workdir)
    print("smoke check passed: 200 for every workload and configuration, 401 for forgeries")
    results, memory = run_rounds(workloads, ports, targets, opts)
    for item in reversed(stack):
        item.stop()
    stack.clear()
    crypto = {}
    if opts.crypto_wasm.is_file():
        print("timing the core inside V8 (benchmark build)", flush=True)
        crypto = crypto_bench.run(opts.crypto_wasm, iterations=50 if opts.quick else 200)
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "load_average_at_start": load,
        "wasm_bytes": opts.wasm.stat().st_size,
        "cold_start_ms": cold * 1000,
        "mint_seconds": minted,
        "summary": summarize(results),
        "runs": {w: {c: [asdict(r) for r in runs] for c, runs in by.items()}
                 for w, by in results.items()},
        "memory": memory,
        "crypto_us": crypto,
        "wall_seconds": time.monotonic() - wall,
    }


def report(data: dict) -> str:
    s = data["settings"]
    size = data["wasm_bytes"]
    return "\n".join([
        f"Rounds: {s['rounds']} × {s['duration']:g} s per run (after {s['warmup']:g} s warm-up), "
        f"wrk -t1 -c{s['connections']}; fresh-token pools of {s['pool']} per algorithm.",
        "",
        table(data["summary"]),
        "",
        f".wasm: {size:,} bytes ({size / 2**20:.2f} MiB)",
        "filter cold start (Envoy spawn to first authenticated 200): "
        f"{data['cold_start_ms']:.0f} ms",
        "",
        memory_table(data["memory"]),
        "",
        crypto_bench.table(data["crypto_us"]) if data["crypto_us"] else "(no crypto timings)",
        "",
        f"wall time: {data['wall_seconds']:.0f} s",
    ])


def main(argv=None) -> int:
    opts = parse_args(argv)
    for wasm in (opts.wasm, opts.noop_wasm):
        if not wasm.is_file():
            print(f"{wasm} does not exist: run ./build.sh bench", file=sys.stderr)
            return 1
    workdir = Path(tempfile.mkdtemp(prefix="spiffe-bench-"))
    print(f"work dir: {workdir} (removed at the end, kept with the Envoy logs on failure)")
    stack: list = []
    try:
        data = run(opts, workdir, stack)
    except BenchError as err:
        print(f"bench aborted: {err}\nwork dir kept: {workdir}", file=sys.stderr)
        return 1
    finally:
        for item in reversed(stack):
            item.stop()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print("\n" + report(data) + f"\n\n(also in {RESULTS.relative_to(BENCH.parent)})")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
