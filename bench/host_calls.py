"""``./build.sh bench --host-calls``: what each proxy-wasm host call of the filter's request path
costs in Envoy, measured with the do-nothing filter (feature ``noop-bench``) told to make just
those calls on every request.

One Envoy under test per probe set, all pinned to CPU 0, each with the do-nothing filter and a
plugin configuration naming the calls to make (cumulatively, in the order the filter makes
them); wrk on CPU 1 sends the "ES256 same token" request of ``bench.py`` to each in turn, round
after round. Prints the median CPU time of the Envoy per request for each set and what each
step added. A guide to where the filter's time outside its own code goes, not a target.

Run with the project's venv from the checkout: ``.venv/bin/python bench/host_calls.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import bench
from harness import pki
from harness.servers import BundleServer

# Each set adds one step to the one before, in the order the filter makes its calls.
STEPS = (
    ("do nothing", []),
    ("hold the headers for the body", ["pause"]),
    ("read the body", ["body"]),
    ("read every request header", ["headers"]),
    ("read connection.mtls", ["mtls"]),
    ("read host time", ["time"]),
    ("read a 4-byte shared-data entry", ["shared"]),
    ("set two request headers", ["set_headers"]),
    ("read connection.id", ["connection_id"]),
)


FILTER_ROW = "the filter itself (same token)"


def probe_sets() -> list[tuple[str, list[str]]]:
    sets, probes = [], []
    for label, added in STEPS:
        probes = probes + added
        sets.append((label, list(probes)))
    return sets


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="bench/host_calls.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--noop-wasm", type=Path, default=bench.NOOP_WASM)
    parser.add_argument("--wasm", type=Path, default=bench.DEFAULT_WASM,
                        help="the filter, measured last for comparison (skipped if absent)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    opts = parse_args(argv)
    if not opts.noop_wasm.is_file():
        print(f"{opts.noop_wasm} does not exist: run ./build.sh bench", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="spiffe-host-calls-"))
    stack: list = []
    try:
        tls = pki.write_tls_pki(workdir / "pki", [bench.AS_HOST, f"bundle.{bench.TRUST_DOMAIN}"])
        creds = bench.Credentials.generate()
        bundle = BundleServer(tls, creds.bundle()).start()
        stack.append(bundle)
        targets = []
        for i, (label, probes) in enumerate(probe_sets()):
            target = bench.under_test(
                bench.NOOP, workdir, name=f"probe-{i}", tls=tls, creds=creds,
                wasm=opts.noop_wasm, noop_wasm=opts.noop_wasm, bundle_port=bundle.port,
                noop_config={"probe": probes})
            stack.append(target.envoy)
            target.envoy.start()
            targets.append((label, target))
        if opts.wasm.is_file():
            target = bench.under_test(
                bench.FILTER, workdir, name="filter", tls=tls, creds=creds, wasm=opts.wasm,
                noop_wasm=opts.noop_wasm, bundle_port=bundle.port)
            stack.append(target.envoy)
            target.envoy.start()
            targets.append((FILTER_ROW, target))
        token = pki.mint_svid(creds.es256, bench.SPIFFE_ID, bench.ISSUER,
                              lifetime=bench.TOKEN_LIFETIME)
        workload = bench.fixed_workload("ES256 same token", bench.assertion_request(token),
                                        (bench.NOOP,))
        cpu = {label: [] for label, _ in targets}
        for r in range(opts.rounds):
            for label, target in bench.in_turn(tuple(targets), r):
                config = bench.FILTER if label == FILTER_ROW else bench.NOOP
                result = bench.measure(workload, config, target.port, target.envoy, opts)
                cpu[label].append(result.cpu_us)
                print(f"  round {r + 1}/{opts.rounds}  {label:<34} {result.rps:>8.0f} req/s "
                      f"{result.cpu_us:6.1f} µs CPU/req", flush=True)
    except bench.BenchError as err:
        print(f"aborted: {err}\nwork dir kept: {workdir}", file=sys.stderr)
        return 1
    finally:
        for item in reversed(stack):
            item.stop()
    print("\n| step (cumulative) | µs CPU a request | added |\n| --- | ---: | ---: |")
    before = None
    for label, _ in targets:
        median = statistics.median(cpu[label])
        added = "" if before is None or label == FILTER_ROW else f"{median - before:+.1f}"
        print(f"| {label} | {median:.1f} | {added} |")
        before = median
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
