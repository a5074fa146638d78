"""./build.sh check-config: plugin configurations checked outside Envoy with the filter's own
parser (the native check-config binary), from JSON files and from the WasmPlugin / EnvoyFilter
YAML that carries them (issue "Operating it for real": configuration validation)."""

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


def check(*files) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(BINARY), *map(str, files)],
                          capture_output=True, text=True)


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
