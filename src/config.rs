//! Plugin configuration: the JSON an operator puts in the Envoy wasm filter's `configuration`
//! (or an Istio `WasmPlugin.pluginConfig`), parsed and checked once, with every refusal naming
//! the offending field path.

use crate::fetch_lease;
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::strict_json;
use crate::token_request::canonical_path;
use crate::trust_store;
pub use clients::ClientPrefix;
use clients::{check_client_id_collisions, validate_clients, RawClient};
use refresh::RawRefresh;
pub use refresh::RefreshPolicy;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// A refused configuration: the field path (`trust_domains.example.org.bundle_endpoint.path`)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "configuration field {}: {}", self.field, self.message)
        }
    }
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Where a trust domain's SPIFFE bundle is fetched (an Envoy cluster doing Web PKI TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpoint {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout: Duration,
    /// Whether redirects to another path on the same authority are followed (BEP-9).
    pub follow_redirects: bool,
}

/// One configured trust domain (BEP-1: configured, never derived from a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainConfig {
    pub name: TrustDomain,
    pub endpoint: BundleEndpoint,
    /// Shared-data keys of its bundle and of its fetch lease (derived once, used per request).
    pub bundle_key: String,
    pub lease_key: String,
}

/// Names of the request headers that carry the verified identity to the AS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub spiffe_id: String,
    pub client_id: String,
    /// Every spelling of both names, and of the RFC 9440 headers, with `-` and `_` exchanged. CGI-style servers (WSGI, PHP,
    /// Rack) read `x_spiffe_id` and `x-spiffe-id` as the same variable, so a client-sent
    /// `x_spiffe_id` must be removed too (EDGE-1, FC-21).
    pub spellings: Vec<String>,
}

/// Most `-`/`_` in an identity header name (each doubles the spellings to remove).
const MAX_HEADER_SEPARATORS: usize = 6;

fn spellings(name: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in name.chars() {
        if c == '-' || c == '_' {
            out = out
                .into_iter()
                .flat_map(|p| [format!("{p}-"), format!("{p}_")])
                .collect();
        } else {
            out.iter_mut().for_each(|p| p.push(c));
        }
    }
    out
}

/// The `client_id` rule of the X509-SVID method (CID-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum X509ClientIdRule {
    /// draft-02 §3.2: `client_id` is the certificate's SPIFFE ID (and that ID is registered
    /// under itself).
    #[default]
    SpiffeId,
    /// The editor's copy after -02: `client_id` is the client the SPIFFE ID is registered for.
    Registered,
}

/// What the AS learns of a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientCertificate {
    /// Send the validated chain as RFC 9440 `Client-Cert` / `Client-Cert-Chain` headers after an
    /// X509-SVID authentication, so the AS can bind tokens to it (`cnf` `x5t#S256`).
    pub rfc9440_headers: bool,
    /// Leave Envoy's `x-forwarded-client-cert` on the request (removed by default).
    pub keep_xfcc: bool,
}

/// RFC 9440 header names; client-sent copies are always removed.
pub const CLIENT_CERT_HEADERS: [&str; 2] = ["client-cert", "client-cert-chain"];

/// Size bounds on client input (REQ-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_assertion_bytes: usize,
    /// Largest bundle document accepted from a bundle endpoint (BEP-13).
    pub max_bundle_bytes: usize,
    /// Most token requests one worker holds for a bundle refresh; more are decided at once.
    pub max_held_requests: usize,
    /// Most verified credentials one VM remembers (0: no cache).
    pub max_cached_credentials: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The AS issuer identifier, the only accepted `aud` (AUD-7).
    pub issuer: String,
    /// As configured (for logs).
    pub token_paths: Vec<String>,
    /// Their canonical forms, which requests are matched against.
    token_path_keys: Vec<String>,
    pub trust_domains: BTreeMap<TrustDomain, TrustDomainConfig>,
    /// Registered SPIFFE IDs and the client id each authenticates as (CID-1).
    pub clients: HashMap<SpiffeId, String>,
    /// Path-prefix registrations (`spiffe_id` ending in `/*`, draft-02 §5.1, CIMD-3), longest
    /// prefix first. An exact registration always wins over a prefix.
    pub client_prefixes: Vec<ClientPrefix>,
    pub identity_headers: IdentityHeaders,
    pub clock_skew: Duration,
    /// draft editor's copy after -02: `client_id` required with a JWT-SVID (CID-3).
    pub require_client_id: bool,
    /// How an X509-SVID's `client_id` binds to its SPIFFE ID (CID-5).
    pub x509_client_id: X509ClientIdRule,
    pub client_certificate: ClientCertificate,
    pub limits: Limits,
    pub refresh: RefreshPolicy,
    /// In dry-run mode, the header that carries the verdict to the AS (`None`: enforcing).
    pub dry_run: Option<String>,
    pub as_metadata: AsMetadata,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    token_paths: Vec<String>,
    trust_domains: BTreeMap<String, RawTrustDomain>,
    clients: Vec<RawClient>,
    #[serde(default)]
    identity_headers: RawIdentityHeaders,
    #[serde(default = "default_skew")]
    clock_skew_seconds: u64,
    #[serde(default)]
    require_client_id: bool,
    #[serde(default)]
    x509_client_id: X509ClientIdRule,
    #[serde(default)]
    client_certificate: ClientCertificate,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    bundle_refresh: RawRefresh,
    #[serde(default)]
    dry_run: RawDryRun,
    #[serde(default)]
    as_metadata: RawAsMetadata,
}

/// AS metadata documents whose `token_endpoint_auth_methods_supported` the filter completes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAsMetadata {
    paths: Vec<String>,
    auth_methods: Vec<String>,
    max_bytes: usize,
}

impl Default for RawAsMetadata {
    fn default() -> Self {
        RawAsMetadata {
            paths: Vec::new(),
            auth_methods: vec!["spiffe_jwt".into()],
            max_bytes: 8192,
        }
    }
}

/// Ceiling of `as_metadata.max_bytes`: half of the 32 KiB per-connection buffer limit Envoy
/// recommends for edge proxies, so a held document and its completion always fit.
const MAX_METADATA_BYTES: usize = 16384;

/// Which AS metadata responses are rewritten (none by default), and with which methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsMetadata {
    /// Exact request paths (without query) of the metadata documents.
    pub paths: Vec<String>,
    pub auth_methods: Vec<String>,
    /// Larger documents are passed on unchanged.
    pub max_bytes: usize,
}

impl RawAsMetadata {
    fn validate(self) -> Result<AsMetadata, Vec<ConfigError>> {
        let mut errors = Vec::new();
        check_request_paths("as_metadata.paths", &self.paths, &mut errors);
        if self.auth_methods.is_empty() {
            errors.push(refuse("as_metadata.auth_methods", "must list a method"));
        }
        for (i, m) in self.auth_methods.iter().enumerate() {
            if !crate::as_metadata::METHODS.contains(&m.as_str()) {
                errors.push(refuse(
                    format!("as_metadata.auth_methods[{i}]"),
                    format!(
                        "must be one of {:?} (the methods this filter enforces)",
                        crate::as_metadata::METHODS
                    ),
                ));
            }
            if self.auth_methods.iter().take(i).any(|earlier| earlier == m) {
                errors.push(refuse(
                    format!("as_metadata.auth_methods[{i}]"),
                    "listed twice",
                ));
            }
        }
        // Envoy fails a held response that outgrows its buffer limit (and a completed document
        // that did crashed Envoy in a review): keep well below edge proxies' 32 KiB limits.
        if !(1024..=MAX_METADATA_BYTES).contains(&self.max_bytes) {
            errors.push(refuse(
                "as_metadata.max_bytes",
                format!("must be 1024–{MAX_METADATA_BYTES}"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AsMetadata {
            paths: self.paths,
            auth_methods: self.auth_methods,
            max_bytes: self.max_bytes,
        })
    }
}

/// Dry-run mode: decide, count and log, but forward every request unchanged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDryRun {
    enabled: bool,
    verdict_header: String,
}

impl Default for RawDryRun {
    fn default() -> Self {
        RawDryRun {
            enabled: false,
            verdict_header: "x-spiffe-oauth-verdict".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustDomain {
    bundle_endpoint: RawEndpoint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    cluster: String,
    authority: String,
    path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_true")]
    follow_redirects: bool,
}

fn default_true() -> bool {
    true
}

impl Config {
    /// The client id registered for `id`: its exact registration, else the longest prefix
    /// registration that contains it (CID-1, FC-27). `None` for an unregistered ID.
    pub fn client_id_for(&self, id: &SpiffeId) -> Option<String> {
        if let Some(client_id) = self.clients.get(id) {
            return Some(client_id.clone());
        }
        // A valid SPIFFE ID never ends in `/`, so a match has at least one segment after the
        // prefix, and a trust domain ID (no path) matches no prefix.
        self.client_prefixes
            .iter()
            .find(|p| id.as_str().starts_with(&p.prefix))
            .map(|p| p.client_id.clone().unwrap_or_else(|| id.to_string()))
    }

    /// Whether a request's `client_id` names a client registered here: a registered SPIFFE ID,
    /// or a configured `client_id`.
    pub fn names_registered_client(&self, client_id: &str) -> bool {
        SpiffeId::parse(client_id).is_ok_and(|id| self.is_registered(&id))
            || self.clients.values().any(|c| c == client_id)
            || self
                .client_prefixes
                .iter()
                .any(|p| p.client_id.as_deref() == Some(client_id))
    }

    /// Whether `id` is a registered client.
    pub fn is_registered(&self, id: &SpiffeId) -> bool {
        self.client_id_for(id).is_some()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIdentityHeaders {
    spiffe_id: String,
    client_id: String,
}

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        RawIdentityHeaders {
            spiffe_id: "x-spiffe-id".into(),
            client_id: "x-oauth-client-id".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_body_bytes: usize,
    max_assertion_bytes: usize,
    max_bundle_bytes: usize,
    max_held_requests: usize,
    max_cached_credentials: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: 64 * 1024,
            max_assertion_bytes: 16 * 1024,
            max_bundle_bytes: 1024 * 1024,
            max_held_requests: 256,
            max_cached_credentials: 1024,
        }
    }
}

fn default_skew() -> u64 {
    60
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// Longest clock skew accepted: RFC 7519 speaks of "a few minutes" at most.
const MAX_SKEW_SECONDS: u64 = 300;

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::check(bytes).map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| refuse("", "refused"))
        })
    }

    /// [`Config::parse`], with every problem of a configuration that deserializes (a JSON or
    /// type error stops at the first), never an empty list.
    pub fn check(bytes: &[u8]) -> Result<Config, Vec<ConfigError>> {
        let value = strict_json::parse_value(bytes).map_err(|e| vec![refuse("", e.to_string())])?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            vec![refuse(path, e.into_inner().to_string())]
        })?;
        raw.validate().map_err(|errors| {
            if errors.is_empty() {
                vec![refuse("", "refused")]
            } else {
                errors
            }
        })
    }

    /// The configuration of the trust domain named by `spiffe_id`, if it is configured.
    pub fn trust_domain_of(&self, spiffe_id: &SpiffeId) -> Option<&TrustDomainConfig> {
        self.trust_domains.get(spiffe_id.trust_domain_name())
    }

    /// Whether a GET of `path` (the raw `:path`) fetches an AS metadata document to complete.
    pub fn is_metadata_path(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or_default();
        self.as_metadata.paths.iter().any(|p| p == path)
    }

    /// Whether `path` (the raw `:path`) is, or could be normalised by the AS into, a token path.
    pub fn is_token_path(&self, path: &str) -> bool {
        let canonical = canonical_path(path);
        self.token_path_keys.contains(&canonical)
    }
}

impl RawConfig {
    /// The configuration, or every problem found in it (in field order; [`Config::parse`]
    /// reports the first, `check-config` all).
    fn validate(self) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        collect(&mut errors, check_issuer(&self.issuer));
        check_token_paths(&self.token_paths, &mut errors);
        // Clients are checked against every configured name, valid or not (one problem, once).
        let configured: Vec<String> = self.trust_domains.keys().cloned().collect();
        let trust_domains = validate_trust_domains(self.trust_domains, &mut errors);
        let (clients, client_prefixes) = validate_clients(&self.clients, &configured, &mut errors);
        if errors.is_empty() {
            let collisions = check_client_id_collisions(&self.clients, &clients, &client_prefixes);
            collect(&mut errors, collisions);
        }
        let headers = collect_all(
            &mut errors,
            identity_headers(&self.identity_headers, &self.dry_run.verdict_header),
        );
        if self.clock_skew_seconds > MAX_SKEW_SECONDS {
            errors.push(refuse(
                "clock_skew_seconds",
                format!("must be at most {MAX_SKEW_SECONDS}"),
            ));
        }
        let limits = collect_all(&mut errors, self.limits.validate());
        let refresh = collect_all(&mut errors, self.bundle_refresh.validate());
        let as_metadata = collect_all(&mut errors, self.as_metadata.validate());
        let (
            Some((identity_headers, verdict_header)),
            Some(limits),
            Some(refresh),
            Some(as_metadata),
        ) = (headers, limits, refresh, as_metadata)
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let token_path_keys = self.token_paths.iter().map(|p| canonical_path(p)).collect();
        Ok(Config {
            issuer: self.issuer,
            token_paths: self.token_paths,
            token_path_keys,
            trust_domains,
            clients,
            client_prefixes,
            identity_headers,
            clock_skew: Duration::from_secs(self.clock_skew_seconds),
            require_client_id: self.require_client_id,
            x509_client_id: self.x509_client_id,
            client_certificate: self.client_certificate,
            limits,
            refresh,
            dry_run: self.dry_run.enabled.then_some(verdict_header),
            as_metadata,
        })
    }
}

/// The value of `result`, or `None` with its error added to `errors`.
fn collect<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// The value of `result`, or `None` with all its errors added to `errors`.
fn collect_all<T>(errors: &mut Vec<ConfigError>, result: Result<T, Vec<ConfigError>>) -> Option<T> {
    result.map_err(|e| errors.extend(e)).ok()
}

fn check_token_paths(token_paths: &[String], errors: &mut Vec<ConfigError>) {
    if token_paths.is_empty() {
        errors.push(refuse("token_paths", "must list at least one path"));
    }
    check_request_paths("token_paths", token_paths, errors);
}

/// Request paths the filter matches (`token_paths`, `as_metadata.paths`): absolute, without
/// query, fragment or whitespace.
fn check_request_paths(field: &str, paths: &[String], errors: &mut Vec<ConfigError>) {
    for (i, p) in paths.iter().enumerate() {
        if !p.starts_with('/') || p.contains(['?', '#']) || p.chars().any(char::is_whitespace) {
            errors.push(refuse(
                format!("{field}[{i}]"),
                "must be an absolute path without query or fragment",
            ));
        }
    }
}

/// The configured trust domains that are valid; the others' problems go to `errors`.
fn validate_trust_domains(
    raw: BTreeMap<String, RawTrustDomain>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<TrustDomain, TrustDomainConfig> {
    if raw.is_empty() {
        errors.push(refuse(
            "trust_domains",
            "must configure at least one trust domain",
        ));
    }
    let mut trust_domains = BTreeMap::new();
    for (name, td) in raw {
        let field = format!("trust_domains.{name}");
        let parsed = TrustDomain::parse(&name)
            .map_err(|e| refuse(&field, format!("not a trust domain name: {e}")));
        let parsed = collect(errors, parsed);
        let endpoint = td
            .bundle_endpoint
            .validate(&format!("{field}.bundle_endpoint"));
        let (Some(parsed), Some(endpoint)) = (parsed, collect_all(errors, endpoint)) else {
            continue;
        };
        let segment = crate::metrics::segment(&parsed);
        if let Some(other) = trust_domains
            .keys()
            .find(|td: &&TrustDomain| crate::metrics::segment(td) == segment)
        {
            errors.push(refuse(
                &field,
                format!("its metric names would be those of trust domain {other} ({segment})"),
            ));
            continue;
        }
        let bundle_key = trust_store::bundle_key(&parsed, &endpoint);
        let lease_key = fetch_lease::lease_key(&bundle_key);
        trust_domains.insert(
            parsed.clone(),
            TrustDomainConfig {
                name: parsed,
                endpoint,
                bundle_key,
                lease_key,
            },
        );
    }
    trust_domains
}

/// The identity headers (with every spelling to remove) and the verdict header's name.
fn identity_headers(
    raw: &RawIdentityHeaders,
    verdict_header: &str,
) -> Result<(IdentityHeaders, String), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let spiffe_id = check_header_name("identity_headers.spiffe_id", &raw.spiffe_id);
    let client_id = check_header_name("identity_headers.client_id", &raw.client_id);
    let verdict = check_header_name("dry_run.verdict_header", verdict_header);
    let (Some(spiffe_id_header), Some(client_id_header), Some(verdict_header)) = (
        collect(&mut errors, spiffe_id),
        collect(&mut errors, client_id),
        collect(&mut errors, verdict),
    ) else {
        return Err(errors);
    };
    let folded = |name: &str| name.replace('_', "-");
    if folded(&spiffe_id_header) == folded(&client_id_header) {
        return Err(vec![refuse(
            "identity_headers.client_id",
            "must differ from identity_headers.spiffe_id",
        )]);
    }
    if [&spiffe_id_header, &client_id_header]
        .iter()
        .any(|h| folded(h) == folded(&verdict_header))
    {
        return Err(vec![refuse(
            "dry_run.verdict_header",
            "must differ from the identity headers",
        )]);
    }
    let headers = IdentityHeaders {
        // The verdict header is never taken from a client, dry run or not.
        spellings: [
            spiffe_id_header.as_str(),
            client_id_header.as_str(),
            verdict_header.as_str(),
        ]
        .into_iter()
        .chain(CLIENT_CERT_HEADERS)
        .flat_map(spellings)
        .collect(),
        spiffe_id: spiffe_id_header,
        client_id: client_id_header,
    };
    Ok((headers, verdict_header))
}

impl RawEndpoint {
    fn validate(self, field: &str) -> Result<BundleEndpoint, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.cluster.is_empty() {
            errors.push(refuse(
                format!("{field}.cluster"),
                "must name an Envoy cluster",
            ));
        }
        let authority_ok = !self.authority.is_empty()
            && self.authority.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !authority_ok {
            errors.push(refuse(
                format!("{field}.authority"),
                "must be a host name (optionally with :port), without userinfo (BEP-2)",
            ));
        }
        if !self.path.starts_with('/') || self.path.chars().any(|c| c.is_whitespace() || c == '#') {
            errors.push(refuse(format!("{field}.path"), "must be an absolute path"));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            errors.push(refuse(
                format!("{field}.timeout_ms"),
                "must be between 100 and 60000",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(BundleEndpoint {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            timeout: Duration::from_millis(self.timeout_ms),
            follow_redirects: self.follow_redirects,
        })
    }
}

impl RawLimits {
    fn validate(self) -> Result<Limits, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if !(1024..=1024 * 1024).contains(&self.max_body_bytes) {
            errors.push(refuse(
                "limits.max_body_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if !(256..=self.max_body_bytes).contains(&self.max_assertion_bytes) {
            errors.push(refuse(
                "limits.max_assertion_bytes",
                "must be between 256 and limits.max_body_bytes",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_bundle_bytes) {
            errors.push(refuse(
                "limits.max_bundle_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if self.max_held_requests > 100_000 {
            errors.push(refuse("limits.max_held_requests", "must be at most 100000"));
        }
        if self.max_cached_credentials > 100_000 {
            errors.push(refuse(
                "limits.max_cached_credentials",
                "must be at most 100000",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Limits {
            max_body_bytes: self.max_body_bytes,
            max_assertion_bytes: self.max_assertion_bytes,
            max_bundle_bytes: self.max_bundle_bytes,
            max_held_requests: self.max_held_requests,
            max_cached_credentials: self.max_cached_credentials,
        })
    }
}

/// The issuer identifier is an https URL without query or fragment (RFC 8414 §2; AUD-7).
fn check_issuer(issuer: &str) -> Result<(), ConfigError> {
    let Some(rest) = issuer.strip_prefix("https://") else {
        return Err(refuse(
            "issuer",
            "must be an https URL (the AS issuer identifier)",
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty()
        || host.contains('@')
        || issuer.contains(['?', '#'])
        || issuer.chars().any(char::is_whitespace)
    {
        return Err(refuse(
            "issuer",
            "must be an https URL with a host and no userinfo, query or fragment",
        ));
    }
    Ok(())
}

/// Header names are lowercase HTTP tokens (Envoy stores them lowercase) and not pseudo-headers.
fn check_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    let separators = name.bytes().filter(|b| matches!(b, b'-' | b'_')).count();
    if separators > MAX_HEADER_SEPARATORS {
        return Err(refuse(
            field,
            format!("must have at most {MAX_HEADER_SEPARATORS} '-' or '_'"),
        ));
    }
    let reserved = [
        "host",
        "authorization",
        "content-length",
        "content-type",
        "transfer-encoding",
    ];
    if !ok || reserved.contains(&name) {
        return Err(refuse(
            field,
            "must be a lowercase header name (a-z 0-9 - _ .) other than a standard request header",
        ));
    }
    Ok(name.to_owned())
}

mod clients;
mod refresh;
#[cfg(test)]
mod tests;
