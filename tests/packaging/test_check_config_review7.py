"""Review 7 attacks on ./build.sh check-config (tools/check_config.py + the native binary).

Regressions of its defects (now fixed):
* "one refused line per problem" (README "Configuration") held only across groups: within
  identity_headers/dry_run, limits, bundle_refresh, as_metadata and each bundle_endpoint only
  the first problem was listed;
* a YAML file of a few hundred bytes using aliases made the tool run for ever (exponential
  walk of the alias graph); aliases are now refused.

Coverage (pass): odd inputs (non-UTF-8, deep JSON, recursive YAML aliases, a huge file) end
with a message and exit 1 or 2, never a traceback or a hang."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "check_config.py"
BINARY = REPO / "target" / "debug" / "check-config"
DEMO = REPO / "envoy" / "plugin-config.demo.json"


@pytest.fixture(scope="module", autouse=True)
def built():
    subprocess.run(["cargo", "build", "--quiet", "--bin", "check-config"], cwd=REPO, check=True)


def check(*files, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(BINARY), *map(str, files)],
                          capture_output=True, text=True, timeout=timeout)


def fields(stdout: str) -> list[str]:
    return [line.split("configuration field ", 1)[1].split(": ", 1)[0]
            for line in stdout.splitlines() if "configuration field " in line]


def test_every_problem_is_listed_within_a_group(tmp_path):
    config = json.loads(DEMO.read_text())
    config["trust_domains"]["example.org"]["bundle_endpoint"].update(cluster="", timeout_ms=5)
    config["identity_headers"] = {"spiffe_id": "X-Upper", "client_id": "authorization"}
    config["limits"] = {"max_body_bytes": 10, "max_held_requests": 10**6}
    config["bundle_refresh"] = {"min_refresh_seconds": 0, "retry_seconds": 0}
    config["as_metadata"] = {"paths": ["relative"], "max_bytes": 1}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = check(path)
    assert done.returncode == 1
    listed = fields(done.stdout)
    for want in ["trust_domains.example.org.bundle_endpoint.cluster",
                 "trust_domains.example.org.bundle_endpoint.timeout_ms",
                 "identity_headers.spiffe_id", "identity_headers.client_id",
                 "limits.max_body_bytes", "limits.max_held_requests",
                 "bundle_refresh.min_refresh_seconds", "bundle_refresh.retry_seconds",
                 "as_metadata.paths[0]", "as_metadata.max_bytes"]:
        assert want in listed, (want, listed)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["apiVersion: networking.istio.io/v1alpha3", "kind: EnvoyFilter",
             "metadata: {name: bomb}", "spec:",
             "  a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 1000
    done = check(path, timeout=15)
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.parametrize("name, content", [
    ("latin1.json", b'{"issuer": "https://as.example.com/\xe9"}'),
    ("deep.json", b"[" * 100000 + b"]" * 100000),
    ("recursive.yaml", b"kind: EnvoyFilter\nmetadata: {name: r}\nspec: &s {self: *s}\n"),
    ("bad.yaml", b"kind: [unclosed\n"),
    ("nonutf8.yaml", b"kind: WasmPlugin\nspec: {pluginConfig: {issuer: \"\xff\"}}\n"),
])
def test_odd_inputs_end_with_a_message(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    done = check(path, timeout=60)
    assert done.returncode in (1, 2), (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stdout or done.stderr


def test_a_huge_json_file(tmp_path):
    """16 MiB of padding in an unknown member: refused by field name, in reasonable time."""
    config = json.loads(DEMO.read_text())
    config["padding"] = "x" * (16 << 20)
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(config))
    done = check(path, timeout=60)
    assert done.returncode == 1 and "configuration field padding: unknown field" in done.stdout
