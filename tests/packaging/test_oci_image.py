"""The OCI image of the filter (tools/oci_image.py, ./build.sh oci), checked the way a registry
client and Istio's wasm image fetcher read it: index.json → manifest → config and layer blobs,
every digest and size against the blob's bytes, and the module taken out of the layer as the
fetcher's "compat" path does (OCI manifest, last layer tar+gzip, the entry named plugin.wasm),
byte for byte the built .wasm.

The .wasm is target/wasm32-wasip1/release/spiffe_oauth_filter.wasm unless SPIFFE_FILTER_WASM
names another file (./build.sh build first)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "oci_image.py"
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "spiffe_oauth_filter.wasm"

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def wasm_path() -> Path:
    path = Path(os.environ.get("SPIFFE_FILTER_WASM", DEFAULT_WASM))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build the filter first (./build.sh build)", pytrace=False)
    return path


def write_layout(wasm: Path, out: Path, tag: str = "0.1.0") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(wasm), str(out), "--tag", tag],
                          capture_output=True, text=True, timeout=60)


def blob(layout: Path, descriptor: dict) -> bytes:
    """The blob a descriptor names, after checking its digest and size against the bytes."""
    algorithm, _, hex_digest = descriptor["digest"].partition(":")
    assert algorithm == "sha256"
    data = (layout / "blobs" / "sha256" / hex_digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hex_digest
    assert len(data) == descriptor["size"]
    return data


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, str]:
    """The layout written for the built .wasm, and the tool's output."""
    out = tmp_path_factory.mktemp("oci") / "spiffe-oauth-filter"
    done = write_layout(wasm_path(), out)
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def test_layout_is_a_valid_oci_image_holding_the_wasm(layout):
    """index.json → manifest → config + layer: digests and sizes match the blobs, the media
    types are the OCI image ones, the layer is a tar+gzip with the module as plugin.wasm, and
    the config's diff_id is the digest of the uncompressed layer."""
    out, _ = layout
    assert json.loads((out / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((out / "index.json").read_bytes())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == INDEX_TYPE
    [entry] = index["manifests"]
    assert entry["mediaType"] == MANIFEST_TYPE
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "0.1.0"}

    manifest = json.loads(blob(out, entry))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["annotations"] == {"module.wasm.image/variant": "compat"}
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == LAYER_TYPE

    tar_bytes = gzip.decompress(blob(out, layer_desc))
    config = json.loads(blob(out, manifest["config"]))
    assert config == {
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
    }
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.isfile(), member.mode, member.uid, member.gid) == (
            "plugin.wasm", True, 0o644, 0, 0)
        assert tar.extractfile(member).read() == wasm_path().read_bytes()
    # Nothing else in the layout: three blobs (manifest, config, layer) and the two files.
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["oci-layout", "index.json"]
        + [f"blobs/sha256/{d['digest'][7:]}" for d in (entry, manifest["config"], layer_desc)])


def test_printed_digest_is_the_manifest_digest(layout):
    """The digest ./build.sh oci prints (what a WasmPlugin's or the EnvoyFilter's sha256 takes)
    is the digest of the manifest blob, which Istio compares with the pulled manifest's."""
    out, stdout = layout
    [entry] = json.loads((out / "index.json").read_bytes())["manifests"]
    manifest_hex = hashlib.sha256(blob(out, entry)).hexdigest()
    assert stdout.splitlines() == [f"OCI image layout: {out} (tag 0.1.0)",
                                   f"manifest digest: sha256:{manifest_hex}"]


def test_layout_is_reproducible(layout, tmp_path):
    """The same .wasm gives byte-identical blobs (and so the same digest) on every build."""
    out, stdout = layout
    again = tmp_path / "again"
    done = write_layout(wasm_path(), again)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == stdout.splitlines()[1]
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_rewriting_replaces_the_old_layout(tmp_path):
    """A second build into the same directory leaves only the new image's blobs."""
    out = tmp_path / "layout"
    module_a = tmp_path / "a.wasm"
    module_a.write_bytes(b"\0asm\x01\0\0\0")
    module_b = tmp_path / "b.wasm"
    module_b.write_bytes(b"\0asm\x01\0\0\0\0")
    assert write_layout(module_a, out).returncode == 0
    old = {p.name for p in (out / "blobs" / "sha256").iterdir()}
    assert write_layout(module_b, out).returncode == 0
    new = {p.name for p in (out / "blobs" / "sha256").iterdir()}
    assert len(old) == len(new) == 3
    assert old.isdisjoint(new)


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d / "x.wasm").write_bytes(b"not wasm"), "not a WebAssembly module"),
    (lambda d: ((d / "x.wasm").write_bytes(b"\0asm\x01\0\0\0"), (d / "out").mkdir(),
                (d / "out" / "keep.txt").write_text("x")), "is not an OCI image layout"),
], ids=["not-wasm", "foreign-directory"])
def test_refusals(tmp_path, setup, message):
    """A file that is not a wasm module, or an output directory that is not an image layout
    (it would be deleted), is refused with exit status 1 and nothing written."""
    setup(tmp_path)
    done = write_layout(tmp_path / "x.wasm", tmp_path / "out")
    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "out" / "index.json").exists()
