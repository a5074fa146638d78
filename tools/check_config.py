"""``./build.sh check-config FILE...``: checks plugin configurations with the filter's own
parser (the native ``check-config`` binary built from the same core).

A ``.json`` file is one plugin configuration. A ``.yaml``/``.yml`` file is searched for the
plugin configurations it holds: a ``WasmPlugin``'s ``spec.pluginConfig`` and every wasm filter
``configuration.value`` (a JSON string) in an ``EnvoyFilter`` or an Envoy configuration. Each is
checked on its own and reported with where it came from. Exit 0 when every configuration is
accepted, 1 when one is refused, 2 when a file holds none or cannot be read.

Usage: check_config.py CHECK_CONFIG_BINARY FILE...
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def wasm_configurations(node, where: str):
    """(where, JSON bytes) of every wasm filter plugin configuration below ``node``."""
    if isinstance(node, dict):
        if node.get("@type") == WASM_TYPE:
            value = (node.get("config") or {}).get("configuration", {}).get("value")
            if isinstance(value, str):
                yield where, value.encode()
        for key, child in node.items():
            yield from wasm_configurations(child, f"{where}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from wasm_configurations(child, f"{where}[{i}]")


MAX_FILE_BYTES = 4 << 20


def yaml_documents(text: str):
    """The documents of a YAML text, refusing anchors' aliases: a few hundred bytes of nested
    aliases expand exponentially (a review's alias bomb), and manifests do not need them."""
    import yaml  # the venv's PyYAML

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                mark = self.peek_event().start_mark
                raise ValueError(f"YAML alias at line {mark.line + 1}: aliases are not accepted")
            return super().compose_node(parent, index)

    return yaml.load_all(text, Loader=NoAliases)


def configurations(path: Path):
    """(where, JSON bytes) of every plugin configuration in ``path``: a JSON file's bytes as
    they are (the filter gets them so), or the configurations a YAML file carries."""
    if path.suffix not in (".yaml", ".yml"):
        yield str(path), path.read_bytes()
        return
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"a YAML file larger than {MAX_FILE_BYTES} bytes")
    for i, doc in enumerate(yaml_documents(path.read_text(errors="replace"))):
        if not isinstance(doc, dict):
            continue
        name = f"{path} document {i + 1} ({doc.get('kind', '?')} "
        name += f"{(doc.get('metadata') or {}).get('name', '?')})"
        if doc.get("kind") == "WasmPlugin" and "pluginConfig" in (doc.get("spec") or {}):
            yield f"{name} spec.pluginConfig", json.dumps(doc["spec"]["pluginConfig"]).encode()
        yield from wasm_configurations(doc, name)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    binary, files = argv[0], [Path(f) for f in argv[1:]]
    worst = 0
    for path in files:
        try:
            found = list(configurations(path))
        except Exception as err:  # noqa: BLE001 - unreadable file or YAML: reported, exit 2
            print(f"{path}: cannot read: {err}", file=sys.stderr)
            return 2
        if not found:
            print(f"{path}: no plugin configuration found", file=sys.stderr)
            worst = max(worst, 2)
        for where, text in found:
            done = subprocess.run([binary, "-"], input=text, capture_output=True)
            for line in done.stdout.decode().splitlines():
                print(f"{where}: {line.removeprefix('-: ')}")
            sys.stderr.write(done.stderr.decode())
            worst = max(worst, done.returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
