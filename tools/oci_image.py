#!/usr/bin/env python3
"""Write the built filter as an OCI image layout on disk, in Istio's wasm image format.

The image is the "compat" variant of the Wasm image specification that Istio's wasm image
fetcher reads (the istio-agent pulls the image of an oci:// module URL and hands Envoy the
module): an ordinary OCI image manifest whose one layer (media type
application/vnd.oci.image.layer.v1.tar+gzip) is a tar archive holding the module as
`plugin.wasm`, with the manifest annotation
`module.wasm.image/variant: compat`. Ordinary registries and copy tools (skopeo, crane, oras)
handle it like any image.

The output is reproducible: the same .wasm gives the same digests (fixed tar metadata, gzip
without a timestamp, no creation date in the image config). The manifest digest printed at the
end is what goes into a WasmPlugin's or the EnvoyFilter's sha256 (Istio compares it with the
digest of the manifest it pulls).

Layout written to OUT_DIR (replaced if it already holds an OCI image layout):
  oci-layout                      {"imageLayoutVersion": "1.0.0"}
  index.json                      the manifest's descriptor, tagged with --tag
  blobs/sha256/<digest>           manifest, image config, layer

Usage: tools/oci_image.py WASM OUT_DIR [--tag TAG]
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT_ANNOTATION = "module.wasm.image/variant"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
WASM_FILE = "plugin.wasm"
WASM_MAGIC = b"\0asm"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def layer_tar(wasm: bytes) -> bytes:
    """A tar archive holding only `plugin.wasm`, with fixed metadata (owner root, mode 0644,
    time 0), so that its bytes depend on the module alone."""
    info = tarfile.TarInfo(WASM_FILE)
    info.size = len(wasm)
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def descriptor(media_type: str, data: bytes, annotations: dict | None = None) -> dict:
    d = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def build_layout(wasm: bytes, out: Path, tag: str) -> str:
    """Write the image layout of `wasm` to `out`; return the manifest digest."""
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a WebAssembly module (no \\0asm header)")
    tar = layer_tar(wasm)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = canonical_json({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
    })
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(LAYER_TYPE, layer)],
        "annotations": {VARIANT_ANNOTATION: "compat"},
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [descriptor(MANIFEST_TYPE, manifest, {REF_NAME_ANNOTATION: tag})],
    })
    if out.exists():
        if not (out / "oci-layout").is_file():
            raise ValueError(f"{out} exists and is not an OCI image layout: not replacing it")
        shutil.rmtree(out)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(index)
    return sha256_digest(manifest)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wasm", type=Path, help="the built filter (.wasm)")
    ap.add_argument("out", type=Path, help="directory to write the OCI image layout to")
    ap.add_argument("--tag", default="latest", help="tag recorded in index.json (default: latest)")
    args = ap.parse_args(argv)
    try:
        digest = build_layout(args.wasm.read_bytes(), args.out, args.tag)
    except (OSError, ValueError) as e:
        print(f"oci_image: {e}", file=sys.stderr)
        return 1
    print(f"OCI image layout: {args.out} (tag {args.tag})")
    print(f"manifest digest: {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
