"""./build.sh check-config: plugin configurations checked outside Envoy with the filter's own
parser (the native check-config binary), from JSON files and from the WasmPlugin / EnvoyFilter
YAML that carries them (issue "Operating it for real": configuration validation).

Also (an adversarial review): every problem within each section is listed; odd inputs
(non-UTF-8, deep JSON, recursive YAML aliases, a huge file) end with a message and exit 1 or 2,
never a traceback or a hang; YAML aliases are refused (an alias bomb of a few hundred bytes
would expand without bound)."""

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


def demo_with(tmp_path, change) -> Path:
    config = json.loads(DEMO.read_text())
    change(config)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_the_shipped_configurations_are_accepted():
    done = check(DEMO, REPO / "envoy/istio/filter.yaml",
                 REPO / "envoy/istio/wasmplugin/wasmplugin.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(": accepted: ")[0] for line in lines] == [
        str(DEMO),
        f"{REPO}/envoy/istio/filter.yaml document 1 (EnvoyFilter spiffe-oauth-filter)"
        ".spec.configPatches[0].patch.value.typed_config",
        f"{REPO}/envoy/istio/wasmplugin/wasmplugin.yaml document 1 (WasmPlugin "
        "spiffe-oauth-filter) spec.pluginConfig",
    ]
    assert lines[0].endswith("trust domains [\"example.org\"], 1 client(s), 0 client prefix(es)")


@pytest.mark.parametrize("change, field", [
    (lambda c: c["trust_domains"]["example.org"]["bundle_endpoint"].update(timeout_ms=5),
     "trust_domains.example.org.bundle_endpoint.timeout_ms"),
    (lambda c: c.update(identity_headers={"spiffe_id": "x-id", "client_id": "x_id"}),
     "identity_headers.client_id"),
    (lambda c: c.update(dry_run={"enabled": True, "header": "x"}), "dry_run.header"),
    (lambda c: c["clients"].append({"spiffe_id": "spiffe://other.example/w"}),
     "clients[1].spiffe_id"),
])
def test_a_refused_configuration_names_its_field(tmp_path, change, field):
    path = demo_with(tmp_path, change)
    done = check(path)
    assert done.returncode == 1
    assert done.stdout.startswith(f"{path}: refused: configuration field {field}: "), done.stdout


def test_every_problem_is_listed(tmp_path):
    def break_three(c):
        c["trust_domains"]["example.org"]["bundle_endpoint"]["timeout_ms"] = 5
        c["clients"].append({"spiffe_id": "spiffe://example.org/*", "client_id": ""})
        c["dry_run"] = {"verdict_header": "x-spiffe-id"}
    path = demo_with(tmp_path, break_three)
    done = check(path)
    assert done.returncode == 1
    assert [line.split(": ")[2] for line in done.stdout.splitlines()] == [
        "configuration field trust_domains.example.org.bundle_endpoint.timeout_ms",
        "configuration field clients[1].client_id",
        "configuration field dry_run.verdict_header",
    ]


def test_dry_run_is_said(tmp_path):
    done = check(demo_with(tmp_path, lambda c: c.update(dry_run={"enabled": True})))
    assert done.returncode == 0 and done.stdout.rstrip().endswith(", dry run")


def test_a_file_without_a_configuration(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("kind: Gateway\nmetadata: {name: g}\n")
    done = check(path)
    assert done.returncode == 2
    assert done.stderr == f"{path}: no plugin configuration found\n"


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
