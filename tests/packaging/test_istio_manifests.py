"""The Istio manifests in envoy/istio/ (README "Running in Istio"), which cannot be applied here
(no cluster): checked structurally, and their Envoy-side content run in a real Envoy.

Structurally: every YAML document parses; kinds, API versions, names and namespaces are the
expected ones; every field is one the Istio API defines (a misspelt field would be dropped or
refused by the cluster), enums hold valid values; and the pieces agree with each other (the
bundle endpoint clusters named in the plugin configuration are the ones the ServiceEntries make,
the selectors name one gateway, the WasmPlugin form says what the EnvoyFilter says).

In Envoy (the built .wasm in Envoy 1.40): a gateway configured as Istio would configure it from
these manifests, as far as that can be rebuilt without Istio:
- the wasm filter's configuration is the EnvoyFilter's ECDS resource, as the istio-agent hands
  it to Envoy (its oci:// module replaced by the local .wasm file), so Envoy itself checks every
  field of it (allow_on_headers_stop_iteration, failure_policy, vm_config) and the filter parses
  the embedded plugin configuration;
- the connection manager has Istio's gateway XFCC settings (read in Istio's source:
  SANITIZE_SET with Subject, Cert, URI and DNS) merged with the gateway.yaml patch;
- the TLS listener has the context Istio builds for an OPTIONAL_MUTUAL server with a
  credentialName (a combined validation context: the server's default one plus the CA from the
  "<credentialName>-cacert" secret, here a static secret holding an unrelated CA), merged with
  the gateway.yaml patch;
- the bundle endpoint clusters carry the names from the plugin configuration, with the test CA
  in place of the Web PKI roots the DestinationRules configure.
Requests then authenticate registered clients with JWT-SVIDs and an X509-SVID sent with its
intermediate, and controls show what each gateway.yaml patch is for. The WasmPlugin's
pluginConfig, rendered to JSON as istiod does, is run in Envoy too.

What this cannot show: that istiod, the istio-agent and a real gateway do what their source
reads as doing (README lists it). The .wasm is target/wasm32-wasip1/release/spiffe_oauth_filter.wasm
unless SPIFFE_FILTER_WASM names another file (./build.sh build first)."""

from __future__ import annotations

import copy
import json
import os
import re
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from harness import client, pki, svid  # noqa: E402
from harness.envoy import DEFAULT_WASM, Envoy, EnvoyProcess, render_config  # noqa: E402
from harness.servers import BundleServer, TokenEndpoint, free_port  # noqa: E402

ISTIO = REPO / "envoy" / "istio"
# The manifests an operator applies (kubectl apply -f envoy/istio/), and the WasmPlugin form
# kept apart (not applied with them).
NET, SEC, EXT = "networking.istio.io", "security.istio.io", "extensions.istio.io"
APPLIED = {
    "authorization-server.yaml": [(f"{SEC}/v1", "PeerAuthentication", "authorization-server"),
                                  (f"{SEC}/v1", "AuthorizationPolicy", "authorization-server")],
    "bundle-endpoints.yaml": [(f"{NET}/v1", "ServiceEntry", "spiffe-bundle-example-org"),
                              (f"{NET}/v1", "DestinationRule", "spiffe-bundle-example-org"),
                              (f"{NET}/v1", "ServiceEntry", "spiffe-bundle-partner-example"),
                              (f"{NET}/v1", "DestinationRule", "spiffe-bundle-partner-example")],
    "filter.yaml": [(f"{NET}/v1alpha3", "EnvoyFilter", "spiffe-oauth-filter")],
    "gateway.yaml": [(f"{NET}/v1", "Gateway", "authorization-server"),
                     (f"{NET}/v1", "VirtualService", "authorization-server"),
                     (f"{NET}/v1alpha3", "EnvoyFilter", "spiffe-oauth-filter-mtls")],
}
WASMPLUGIN = "wasmplugin/wasmplugin.yaml"
ALL_FILES = {**APPLIED, WASMPLUGIN: [(f"{EXT}/v1alpha1", "WasmPlugin", "spiffe-oauth-filter")]}

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
TLS_SOCKET = "envoy.transport_sockets.tls"
DOWNSTREAM_TLS_TYPE = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                       "DownstreamTlsContext")
# The XFCC settings of an Istio gateway's connection managers, as Istio's source builds them
# (pilot/pkg/networking/core, buildGatewayConnectionManager): SANITIZE_SET unless the
# gateway's ProxyConfig gatewayTopology.forwardClientCertDetails says otherwise.
ISTIO_GATEWAY_XFCC = {"forward_client_cert_details": "SANITIZE_SET",
                      "set_current_client_cert_details": {"subject": True, "cert": True,
                                                          "uri": True, "dns": True}}

# Fields of the Istio API objects used here (istio/api: extensions/v1alpha1/wasm.proto,
# networking/v1alpha3/envoy_filter.proto, networking/v1 gateway, virtual service, service
# entry, destination rule, security/v1 peer authentication and authorization policy). A field
# outside these sets is a typo the cluster would drop or refuse.
SPEC_FIELDS = {
    "WasmPlugin": {"selector", "targetRef", "targetRefs", "url", "sha256", "imagePullPolicy",
                   "imagePullSecret", "verificationKey", "pluginConfig", "pluginName", "phase",
                   "priority", "failStrategy", "vmConfig", "match", "type"},
    "EnvoyFilter": {"workloadSelector", "configPatches", "priority", "targetRefs"},
    "Gateway": {"selector", "servers"},
    "VirtualService": {"hosts", "gateways", "http", "tls", "tcp", "exportTo"},
    "ServiceEntry": {"hosts", "addresses", "ports", "location", "resolution", "endpoints",
                     "workloadSelector", "exportTo", "subjectAltNames"},
    "DestinationRule": {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"},
    "PeerAuthentication": {"selector", "mtls", "portLevelMtls"},
    "AuthorizationPolicy": {"selector", "targetRef", "targetRefs", "rules", "action", "provider"},
}
CONFIG_PATCH_FIELDS = {"applyTo", "match", "patch"}
PATCH_MATCH_FIELDS = {"context", "proxy", "listener", "routeConfiguration", "cluster"}
LISTENER_MATCH_FIELDS = {"portNumber", "portName", "filterChain", "listenerFilter", "name"}
FILTER_CHAIN_MATCH_FIELDS = {"name", "sni", "transportProtocol", "applicationProtocols", "filter",
                             "destinationPort"}
PATCH_FIELDS = {"operation", "value", "filterClass"}
SERVER_FIELDS = {"port", "bind", "hosts", "tls", "defaultEndpoint", "name"}
PORT_FIELDS = {"number", "protocol", "name", "targetPort"}
SERVER_TLS_FIELDS = {"httpsRedirect", "mode", "serverCertificate", "privateKey", "caCertificates",
                     "caCrl", "credentialName", "credentialNames", "tlsCertificates",
                     "subjectAltNames", "verifyCertificateSpki", "verifyCertificateHash",
                     "minProtocolVersion", "maxProtocolVersion", "cipherSuites"}
CLIENT_TLS_FIELDS = {"mode", "clientCertificate", "privateKey", "caCertificates", "credentialName",
                     "subjectAltNames", "sni", "insecureSkipVerify", "caCrl"}
PORT_TRAFFIC_POLICY_FIELDS = {"port", "loadBalancer", "connectionPool", "outlierDetection", "tls"}
TRAFFIC_POLICY_FIELDS = {"loadBalancer", "connectionPool", "outlierDetection", "tls",
                         "portLevelSettings", "tunnel", "proxyProtocol", "retryBudget"}

AS_HOST = "as.example.com"
BILLING = "spiffe://example.org/ns/payments/sa/billing"
PARTNER_WORKLOAD = "spiffe://partner.example/workloads/etl"
ORG_KEY = pki.ec_key("org-1")
PARTNER_KEY = pki.ec_key("partner-1")
PARTNER_CA = svid.authority("partner.example")
PARTNER_MID = svid.intermediate(PARTNER_CA, "partner.example")


def wasm_path() -> Path:
    path = Path(os.environ.get("SPIFFE_FILTER_WASM", DEFAULT_WASM))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build the filter first (./build.sh build)", pytrace=False)
    return path


# -------------------------------------------------------------------- manifests


def load(name: str) -> list[dict]:
    return list(yaml.safe_load_all((ISTIO / name).read_text()))


def documents() -> list[dict]:
    return [doc for name in ALL_FILES for doc in load(name)]


def the(kind: str, name: str | None = None) -> dict:
    """The one document of ``kind`` (and ``name``) among all the manifests."""
    [doc] = [d for d in documents()
             if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


def patches(envoy_filter: dict, apply_to: str) -> list[dict]:
    return [p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == apply_to]


def extension_config() -> dict:
    [p] = patches(the("EnvoyFilter", "spiffe-oauth-filter"), "EXTENSION_CONFIG")
    return p["patch"]["value"]


def envoy_filter_plugin_config() -> str:
    """The plugin configuration in the EnvoyFilter, the string Envoy hands the filter."""
    configuration = extension_config()["typed_config"]["config"]["configuration"]
    assert configuration["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    return configuration["value"]


def struct_json(value) -> str:
    """A WasmPlugin's pluginConfig as istiod hands it to the filter: the YAML becomes a
    google.protobuf.Struct, where every number is a double, written out as JSON (a double without
    a fraction is printed without a decimal point). Integers must survive the trip exactly."""
    def convert(v):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)):
            assert float(v) == v and abs(v) < 2**53, f"{v} does not survive as a double"
            return int(v) if float(v).is_integer() else float(v)
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, list):
            return [convert(x) for x in v]
        raise TypeError(f"{v!r} has no google.protobuf.Value form")
    return json.dumps(convert(value), separators=(",", ":"), sort_keys=True)


def istio_cluster_name(host: str, port: int, subset: str = "") -> str:
    """The name Istio gives the outbound cluster of a service host and port."""
    return f"outbound|{port}|{subset}|{host}"


def assert_fields(obj: dict, allowed: set[str], where: str):
    assert isinstance(obj, dict), where
    unknown = set(obj) - allowed
    assert not unknown, f"{where}: fields the Istio API does not define: {sorted(unknown)}"


def test_every_manifest_is_listed():
    """envoy/istio holds exactly the files these tests know (a new one gets tests too)."""
    found = {p.relative_to(ISTIO).as_posix() for p in ISTIO.rglob("*") if p.is_file()}
    assert found == set(ALL_FILES)


@pytest.mark.parametrize("name", sorted(ALL_FILES))
def test_documents_parse_with_expected_kinds(name):
    """Each file parses into the expected documents (API version, kind, name), each with a
    namespace and a spec whose fields the Istio API defines."""
    docs = load(name)
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs] == ALL_FILES[name]
    for doc in docs:
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        assert set(doc["metadata"]) == {"name", "namespace"}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["namespace"])
        assert_fields(doc["spec"], SPEC_FIELDS[doc["kind"]], f"{name} {doc['kind']}")


def test_one_gateway_is_meant_everywhere():
    """The EnvoyFilters, the WasmPlugin and the Gateway select the same gateway pods, and
    everything of the gateway lives in its namespace."""
    gateway = the("Gateway")
    labels = gateway["spec"]["selector"]
    namespace = gateway["metadata"]["namespace"]
    for doc in documents():
        if doc["kind"] == "EnvoyFilter":
            assert doc["spec"]["workloadSelector"] == {"labels": labels}
        elif doc["kind"] == "WasmPlugin":
            assert doc["spec"]["selector"] == {"matchLabels": labels}
        if doc["kind"] not in ("PeerAuthentication", "AuthorizationPolicy"):
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]


# ------------------------------------------------------------- the filter itself


def test_envoy_filter_delivers_the_wasm_filter_over_ecds():
    """filter.yaml: an ECDS resource with the wasm filter (allow_on_headers_stop_iteration,
    FAIL_RELOAD, V8, an oci:// module pinned by digest) and an HTTP filter in the gateway's
    connection managers that loads it by name, after Istio's authentication filters, holding the
    listeners until it arrives, and accepting the agent's deny-all RBAC stand-in. The HTTP
    filter is not narrowed to a port or SNI."""
    envoy_filter = the("EnvoyFilter", "spiffe-oauth-filter")
    for p in envoy_filter["spec"]["configPatches"]:
        assert_fields(p, CONFIG_PATCH_FIELDS, "configPatch")
        assert_fields(p["patch"], PATCH_FIELDS, "patch")
    assert [p["applyTo"] for p in envoy_filter["spec"]["configPatches"]] == ["EXTENSION_CONFIG",
                                                                            "HTTP_FILTER"]
    [ecds] = patches(envoy_filter, "EXTENSION_CONFIG")
    assert set(ecds) == {"applyTo", "patch"}  # EXTENSION_CONFIG takes no match
    assert ecds["patch"]["operation"] == "ADD"  # the only operation Istio applies to ECDS
    ext = ecds["patch"]["value"]
    assert set(ext) == {"name", "typed_config"}
    assert ext["typed_config"]["@type"] == WASM_TYPE
    config = ext["typed_config"]["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["failure_policy"] == "FAIL_RELOAD"
    assert config["root_id"] == config["name"] == config["vm_config"]["vm_id"] == "spiffe_oauth_filter"
    assert config["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    remote = config["vm_config"]["code"]["remote"]
    assert set(remote) == {"http_uri", "sha256"}
    assert remote["http_uri"]["uri"].startswith("oci://")
    assert re.fullmatch(r"[0-9a-f]{64}", remote["sha256"])

    [http] = patches(envoy_filter, "HTTP_FILTER")
    assert http["match"] == {"context": "GATEWAY",
                             "listener": {"filterChain": {"filter": {"name": HCM}}}}
    assert http["patch"]["operation"] == "ADD"
    assert http["patch"]["filterClass"] == "AUTHN"
    assert http["patch"]["value"] == {
        "name": ext["name"],
        "config_discovery": {
            "config_source": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
            "type_urls": [WASM_TYPE, RBAC_TYPE],
        },
    }


def test_wasmplugin_form():
    """wasmplugin.yaml: phase AUTHN, failStrategy FAIL_CLOSE, the gateway's listeners (mode
    CLIENT; no port, no path: WasmPlugin cannot match on a path), an oci:// image pinned by
    digest, the filter's root id."""
    spec = the("WasmPlugin")["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["match"] == [{"mode": "CLIENT"}]
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["pluginName"] == "spiffe_oauth_filter"
    assert spec["url"].startswith("oci://")
    assert re.fullmatch(r"[0-9a-f]{64}", spec["sha256"])


def test_wasmplugin_and_envoy_filter_agree():
    """Same image, same digest, same root id, same plugin configuration (the WasmPlugin's as
    istiod renders it): the WasmPlugin form can replace the EnvoyFilter one day unchanged."""
    spec = the("WasmPlugin")["spec"]
    config = extension_config()["typed_config"]["config"]
    assert spec["url"] == config["vm_config"]["code"]["remote"]["http_uri"]["uri"]
    assert spec["sha256"] == config["vm_config"]["code"]["remote"]["sha256"]
    assert spec["pluginName"] == config["root_id"]
    assert json.loads(struct_json(spec["pluginConfig"])) == json.loads(envoy_filter_plugin_config())


# ------------------------------------------------------------ bundle endpoints


def test_bundle_clusters_are_the_service_entries():
    """Each trust domain's bundle endpoint cluster is the one a ServiceEntry of its authority
    makes on port 443, and a DestinationRule makes that cluster do TLS (SIMPLE) with the Web PKI
    roots, the host as SNI and as the only accepted SAN; no other ServiceEntry or
    DestinationRule."""
    plugin = json.loads(envoy_filter_plugin_config())
    entries = {d["spec"]["hosts"][0]: d for d in documents() if d["kind"] == "ServiceEntry"}
    rules = {d["spec"]["host"]: d for d in documents() if d["kind"] == "DestinationRule"}
    authorities = [td["bundle_endpoint"]["authority"] for td in plugin["trust_domains"].values()]
    assert sorted(entries) == sorted(rules) == sorted(authorities)
    for td in plugin["trust_domains"].values():
        endpoint = td["bundle_endpoint"]
        host = endpoint["authority"]
        entry = entries[host]["spec"]
        assert entry["hosts"] == [host]
        assert (entry["location"], entry["resolution"], entry["exportTo"]) == (
            "MESH_EXTERNAL", "DNS", ["."])
        [port] = entry["ports"]
        assert_fields(port, PORT_FIELDS, f"ServiceEntry {host} port")
        assert (port["number"], port["protocol"]) == (443, "HTTP")
        assert endpoint["cluster"] == istio_cluster_name(host, port["number"])

        rule = rules[host]["spec"]
        assert rule["exportTo"] == ["."]
        assert_fields(rule["trafficPolicy"], TRAFFIC_POLICY_FIELDS, f"DestinationRule {host}")
        [level] = rule["trafficPolicy"]["portLevelSettings"]
        assert_fields(level, PORT_TRAFFIC_POLICY_FIELDS, f"DestinationRule {host} port")
        assert level["port"] == {"number": port["number"]}
        assert_fields(level["tls"], CLIENT_TLS_FIELDS, f"DestinationRule {host} tls")
        assert level["tls"] == {"mode": "SIMPLE", "sni": host, "subjectAltNames": [host],
                                "caCertificates": "/etc/ssl/certs/ca-certificates.crt"}


# -------------------------------------------------------------- gateway and AS


def test_gateway_serves_the_issuer_host_with_optional_client_certificates():
    """gateway.yaml: HTTPS on 443 for the issuer's host, OPTIONAL_MUTUAL with a credential,
    routed to the AS by a VirtualService bound to this gateway."""
    gateway = the("Gateway")
    issuer_host = urlsplit(json.loads(envoy_filter_plugin_config())["issuer"]).hostname
    [server] = gateway["spec"]["servers"]
    assert_fields(server, SERVER_FIELDS, "Gateway server")
    assert_fields(server["port"], PORT_FIELDS, "Gateway server port")
    assert_fields(server["tls"], SERVER_TLS_FIELDS, "Gateway server tls")
    assert (server["port"]["number"], server["port"]["protocol"]) == (443, "HTTPS")
    assert server["hosts"] == [issuer_host] == [AS_HOST]
    assert server["tls"]["mode"] == "OPTIONAL_MUTUAL"
    assert server["tls"]["credentialName"]
    service = the("VirtualService")["spec"]
    assert service["hosts"] == server["hosts"]
    assert service["gateways"] == [f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"]
    [route] = service["http"]
    [destination] = route["route"]
    assert set(destination["destination"]) == {"host", "port"}


def test_gateway_patches_accept_any_client_certificate_and_forward_the_chain():
    """gateway.yaml's EnvoyFilter: on the AS host's filter chain (its SNI), the TLS socket's
    default validation context accepts untrusted chains; every connection manager of the gateway
    sanitises XFCC and adds the presented chain, and normalises paths."""
    envoy_filter = the("EnvoyFilter", "spiffe-oauth-filter-mtls")
    for p in envoy_filter["spec"]["configPatches"]:
        assert_fields(p, CONFIG_PATCH_FIELDS, "configPatch")
        assert_fields(p["match"], PATCH_MATCH_FIELDS, "match")
        assert_fields(p["match"]["listener"], LISTENER_MATCH_FIELDS, "listener match")
        assert_fields(p["match"]["listener"]["filterChain"], FILTER_CHAIN_MATCH_FIELDS, "filterChain")
        assert_fields(p["patch"], PATCH_FIELDS, "patch")
        assert p["match"]["context"] == "GATEWAY"
        assert p["patch"]["operation"] == "MERGE"
    [chain] = patches(envoy_filter, "FILTER_CHAIN")
    assert chain["match"]["listener"] == {"filterChain": {"sni": AS_HOST}}
    socket = chain["patch"]["value"]["transport_socket"]
    assert socket["name"] == TLS_SOCKET  # Istio merges only into a socket of the same name
    assert socket["typed_config"] == {
        "@type": DOWNSTREAM_TLS_TYPE,
        "common_tls_context": {"combined_validation_context": {
            "default_validation_context": {"trust_chain_verification": "ACCEPT_UNTRUSTED"}}},
    }
    [hcm] = patches(envoy_filter, "NETWORK_FILTER")
    assert hcm["match"]["listener"] == {"filterChain": {"filter": {"name": HCM}}}
    assert hcm["patch"]["value"]["typed_config"] == {
        "@type": HCM_TYPE,
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": {"cert": True, "chain": True, "uri": True},
        "normalize_path": True,
        "merge_slashes": True,
    }


def test_only_the_gateway_reaches_the_authorization_server():
    """authorization-server.yaml: the AS's pods take mutual TLS only, from the gateway's
    service account (in the gateway's namespace) only."""
    peer = the("PeerAuthentication")["spec"]
    policy = the("AuthorizationPolicy")["spec"]
    assert peer["mtls"] == {"mode": "STRICT"}
    assert peer["selector"] == policy["selector"]
    assert policy["action"] == "ALLOW"
    [rule] = policy["rules"]
    [source] = rule["from"]
    [principal] = source["source"]["principals"]
    gateway_namespace = the("Gateway")["metadata"]["namespace"]
    assert re.fullmatch(rf"cluster\.local/ns/{gateway_namespace}/sa/[a-z0-9-]+", principal)


# ------------------------------------------------------------------- in Envoy


def proto_merge(dst: dict, src: dict) -> dict:
    """Protobuf merge as Istio's MERGE patch does it: messages field by field, repeated fields
    appended, scalars replaced (``@type`` names the message and is not a field)."""
    for key, value in src.items():
        if key == "@type":
            continue
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            proto_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key] = dst[key] + copy.deepcopy(value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def agent_converted(typed_config: dict, wasm: Path) -> dict:
    """The ECDS wasm configuration as the istio-agent hands it to Envoy: the remote (oci://)
    module replaced by the local file it pulled."""
    converted = copy.deepcopy(typed_config)
    converted["config"]["vm_config"]["code"] = {"local": {"filename": str(wasm)}}
    return converted


class Servers:
    """The bundle endpoints of the manifests' trust domains and the AS, on 127.0.0.1."""

    def __init__(self, workdir: Path, plugin: dict):
        authorities = [td["bundle_endpoint"]["authority"] for td in plugin["trust_domains"].values()]
        self.tls = pki.write_tls_pki(workdir / "pki", [AS_HOST] + authorities)
        keys = {"example.org": ([ORG_KEY], []), "partner.example": ([PARTNER_KEY], [PARTNER_CA])}
        self.bundles = {
            td: BundleServer(self.tls, pki.bundle_bytes(
                keys[td][0], sequence=1, refresh_hint=300,
                extra_entries=[svid.bundle_entry(ca) for ca in keys[td][1]]),
                path=settings["bundle_endpoint"]["path"], port=free_port())
            for td, settings in plugin["trust_domains"].items()}
        [self.token_path] = plugin["token_paths"]
        self.issuer = plugin["issuer"]
        self.auth = TokenEndpoint(token_path=self.token_path,
                                  client_id_header=plugin["identity_headers"]["client_id"],
                                  spiffe_id_header=plugin["identity_headers"]["spiffe_id"])

    @property
    def bundle_ports(self) -> dict[str, int]:
        return {td: s.port for td, s in self.bundles.items()}

    def start(self):
        for server in self.bundles.values():
            server.start()
        self.auth.start()
        return self

    def stop(self):
        self.auth.stop()
        for server in self.bundles.values():
            server.stop()


class Gateway:
    """Envoy configured as an Istio gateway from the manifests (see the module docstring);
    ``mtls_patch`` / ``hcm_patch`` leave gateway.yaml's FILTER_CHAIN / NETWORK_FILTER patch
    out, for the controls."""

    def __init__(self, workdir: Path, servers: Servers, *, mtls_patch: bool = True,
                 hcm_patch: bool = True):
        self.servers = servers
        self.listener_port, self.mtls_port, admin_port = free_port(), free_port(), free_port()
        plugin_text = envoy_filter_plugin_config()
        config = yaml.safe_load(render_config(
            plugin_text, wasm_path=wasm_path(), ca_file=servers.tls.ca_cert,
            as_port=servers.auth.port, bundle_ports=servers.bundle_ports,
            listener_port=self.listener_port, admin_port=admin_port, mtls_port=self.mtls_port))
        mtls_filter = the("EnvoyFilter", "spiffe-oauth-filter-mtls")
        [chain_patch] = patches(mtls_filter, "FILTER_CHAIN")
        [hcm_patch_value] = [p["patch"]["value"] for p in patches(mtls_filter, "NETWORK_FILTER")]
        plain, tls_listener = config["static_resources"]["listeners"]
        [hcm] = [f for f in plain["filter_chains"][0]["filters"] if f["name"] == HCM]
        settings = hcm["typed_config"]  # shared by both listeners (a YAML anchor in the template)
        for key in ("forward_client_cert_details", "set_current_client_cert_details",
                    "normalize_path", "merge_slashes"):
            settings.pop(key, None)
        settings.update(copy.deepcopy(ISTIO_GATEWAY_XFCC))
        if hcm_patch:
            proto_merge(settings, hcm_patch_value["typed_config"])
        [wasm_filter] = [f for f in settings["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
        wasm_filter["typed_config"] = agent_converted(extension_config()["typed_config"], wasm_path())

        # The TLS context Istio builds for an OPTIONAL_MUTUAL server with a credentialName; the
        # CA of the "-cacert" secret is a static secret here (Istio serves it over SDS).
        [gateway_server] = the("Gateway")["spec"]["servers"]
        ca_secret = gateway_server["tls"]["credentialName"] + "-cacert"
        socket = tls_listener["filter_chains"][0]["transport_socket"]
        assert socket["name"] == chain_patch["patch"]["value"]["transport_socket"]["name"]
        context = socket["typed_config"]
        context["require_client_certificate"] = False
        context["common_tls_context"].pop("validation_context")
        context["common_tls_context"]["combined_validation_context"] = {
            "default_validation_context": {},
            "validation_context_sds_secret_config": {"name": ca_secret},
        }
        config["static_resources"]["secrets"] = [{
            "name": ca_secret,
            "validation_context": {"trusted_ca": {"filename": str(servers.tls.ca_cert)}},
        }]
        if mtls_patch:
            proto_merge(context, chain_patch["patch"]["value"]["transport_socket"]["typed_config"])
        self.config = config
        self.envoy = EnvoyProcess(workdir, json.dumps(config, indent=1), admin_port, name="gateway")

    def start(self) -> "Gateway":
        self.envoy.start()
        return self

    def stop(self):
        self.envoy.stop()

    def post(self, params, tls: client.Tls | None = None) -> client.Response:
        port = self.listener_port if tls is None else self.mtls_port
        return client.post_form(port, self.servers.token_path, params, tls=tls)

    def wait_until_accepted(self, assertion: str, timeout: float = 15.0) -> client.Response:
        """Poll until a valid assertion gets 200 (both bundles fetched); the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.post(client.assertion_params(assertion))
            if resp.status == 200 or time.monotonic() > deadline:
                return resp
            time.sleep(0.2)


def x509_files(workdir: Path, leaf: svid.Issued, chain=()) -> tuple[Path, Path]:
    return svid.client_files(workdir / "clients", leaf, chain)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("istio-servers"), json.loads(envoy_filter_plugin_config()))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, servers):
    g = Gateway(tmp_path_factory.mktemp("istio-gateway"), servers)
    try:
        g.start()
        resp = g.wait_until_accepted(pki.mint_svid(ORG_KEY, BILLING, servers.issuer))
        assert resp.status == 200, (resp.status, resp.body, g.envoy.log_tail(60))
        yield g
    finally:
        g.stop()


def test_envoy_accepts_the_ecds_resource_and_the_filter_its_configuration(gateway):
    """Envoy 1.40 took the EnvoyFilter's wasm configuration as the agent passes it on, and the
    filter accepted the plugin configuration in it (its own summary line, exactly)."""
    log = gateway.envoy.log_text()
    assert ('configured: issuer https://as.example.com, token paths ["/oauth2/token"], '
            '2 trust domain(s), 1 client(s), 1 client prefix(es)') in log
    assert "the configuration is refused" not in log


@pytest.mark.parametrize("spiffe_id, key, client_id", [
    (BILLING, ORG_KEY, "billing"),
    (PARTNER_WORKLOAD, PARTNER_KEY, PARTNER_WORKLOAD),
], ids=["registered-client-id", "path-prefix-registration"])
def test_jwt_svid_clients_authenticate(gateway, spiffe_id, key, client_id):
    """A JWT-SVID of each registration kind authenticates through the bundle clusters named as
    Istio names them; the AS gets the identity headers."""
    gateway.servers.auth.clear()
    resp = gateway.post(client.assertion_params(pki.mint_svid(key, spiffe_id, gateway.servers.issuer)))
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = gateway.servers.auth.requests
    assert seen.header_values("x-spiffe-id") == [spiffe_id]
    assert seen.header_values("x-oauth-client-id") == [client_id]


def test_x509_svid_with_intermediate_through_istio_tls_and_xfcc(gateway, tmp_path):
    """An X509-SVID whose issuer is not the gateway's CA, sent with its intermediate: the
    handshake succeeds (ACCEPT_UNTRUSTED merged into Istio's combined validation context: Envoy
    counts the failed verification against the gateway's CA and accepts the connection), the
    filter reads the intermediate from Istio's XFCC (with its Subject= and DNS= parts, plus the
    Chain= the patch adds) and authenticates the client; XFCC does not reach the AS."""
    gateway.servers.auth.clear()
    cert, key = x509_files(tmp_path, svid.leaf(PARTNER_MID, [PARTNER_WORKLOAD]), [PARTNER_MID])
    tls = client.mtls(gateway.servers.tls.ca_cert, AS_HOST, cert, key)
    resp = gateway.post([("grant_type", "client_credentials"), ("client_id", PARTNER_WORKLOAD)], tls)
    assert resp.status == 200, (resp.status, resp.body)
    [seen] = gateway.servers.auth.requests
    assert seen.header_values("x-spiffe-id") == [PARTNER_WORKLOAD]
    assert seen.header_values("x-oauth-client-id") == [PARTNER_WORKLOAD]
    assert seen.header_values("x-forwarded-client-cert") == []
    # The chain did not verify against the gateway's CA: counted, and accepted all the same.
    assert gateway.envoy.counter(f"listener.127.0.0.1_{gateway.mtls_port}.ssl.fail_verify_error") == 1


def test_forged_identity_headers_do_not_reach_the_as(gateway):
    """The smoke test the README gives operators: client-sent identity headers on a request
    without SPIFFE credentials are removed before the AS."""
    gateway.servers.auth.clear()
    resp = client.post_form(gateway.listener_port, gateway.servers.token_path,
                            [("grant_type", "client_credentials"), ("client_id", "billing")],
                            headers=[("x-spiffe-id", BILLING), ("x-oauth-client-id", "billing")])
    assert resp.status == 401  # the example AS: no identity headers, no token
    [seen] = gateway.servers.auth.requests
    assert seen.header_values("x-spiffe-id") == []
    assert seen.header_values("x-oauth-client-id") == []


def test_without_the_tls_patch_the_gateway_ca_decides(tmp_path, servers):
    """Control: with Istio's TLS context alone, a client certificate that does not chain to the
    credential's CA fails the handshake, before the filter (so the FILTER_CHAIN patch is what
    lets the filter judge X509-SVIDs per trust domain)."""
    g = Gateway(tmp_path / "gw", servers, mtls_patch=False)
    try:
        g.start()
        servers.auth.clear()
        cert, key = x509_files(tmp_path, svid.leaf(PARTNER_CA, [PARTNER_WORKLOAD]))
        tls = client.mtls(servers.tls.ca_cert, AS_HOST, cert, key)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            g.post([("grant_type", "client_credentials"), ("client_id", PARTNER_WORKLOAD)], tls)
        assert g.envoy.counter(f"listener.127.0.0.1_{g.mtls_port}.ssl.fail_verify_error") == 1
        assert servers.auth.requests == []
    finally:
        g.stop()


def test_without_the_connection_manager_patch_intermediates_are_missing(tmp_path, servers):
    """Control: with Istio's own XFCC settings (no Chain=), the filter does not get the
    intermediate and rejects the same X509-SVID (invalid_client), while a leaf issued by the
    authority itself still authenticates."""
    g = Gateway(tmp_path / "gw", servers, hcm_patch=False)
    try:
        g.start()
        resp = g.wait_until_accepted(pki.mint_svid(ORG_KEY, BILLING, servers.issuer))
        assert resp.status == 200, (resp.status, resp.body)
        params = [("grant_type", "client_credentials"), ("client_id", PARTNER_WORKLOAD)]
        cert, key = x509_files(tmp_path, svid.leaf(PARTNER_MID, [PARTNER_WORKLOAD]), [PARTNER_MID])
        servers.auth.clear()
        resp = g.post(params, client.mtls(servers.tls.ca_cert, AS_HOST, cert, key))
        assert (resp.status, resp.json()["error"]) == (401, "invalid_client")
        assert servers.auth.requests == []
        cert, key = x509_files(tmp_path, svid.leaf(PARTNER_CA, [PARTNER_WORKLOAD]))
        resp = g.post(params, client.mtls(servers.tls.ca_cert, AS_HOST, cert, key))
        assert resp.status == 200, (resp.status, resp.body)
    finally:
        g.stop()


def test_wasmplugin_config_as_istiod_renders_it_works(tmp_path, servers):
    """The WasmPlugin's pluginConfig, turned into the JSON text istiod passes on, in the shipped
    Envoy configuration: accepted, and a registered client authenticates."""
    text = struct_json(the("WasmPlugin")["spec"]["pluginConfig"])
    envoy = Envoy(tmp_path, text, wasm_path=wasm_path(), ca_file=servers.tls.ca_cert,
                  as_port=servers.auth.port, bundle_ports=servers.bundle_ports)
    try:
        envoy.start()
        assertion = pki.mint_svid(ORG_KEY, BILLING, servers.issuer)
        deadline = time.monotonic() + 15
        while True:
            resp = client.post_form(envoy.listener_port, servers.token_path,
                                    client.assertion_params(assertion))
            if resp.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert resp.status == 200, (resp.status, resp.body, envoy.log_tail(40))
        assert "the configuration is refused" not in envoy.log_text()
    finally:
        envoy.stop()


def test_a_broken_plugin_configuration_is_refused(tmp_path, servers):
    """Control for the checks above: the same configuration with one unknown field is refused
    by the filter, with the field named, and Envoy does not start serving."""
    broken = json.loads(envoy_filter_plugin_config())
    broken["token_path"] = "/oauth2/token"
    envoy = Envoy(tmp_path, json.dumps(broken), wasm_path=wasm_path(), ca_file=servers.tls.ca_cert,
                  as_port=servers.auth.port, bundle_ports=servers.bundle_ports)
    try:
        with pytest.raises(RuntimeError, match="Envoy exited"):
            envoy.start(timeout=20)
        assert "configuration field token_path: unknown field" in envoy.log_text()
    finally:
        envoy.stop()
