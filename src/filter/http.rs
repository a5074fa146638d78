//! HTTP context: holds a token request's headers until its whole form body is read, asks the
//! core for a verdict, then forwards it with the verified identity or answers with an OAuth error.
//! A request whose verdict a fresher bundle could change (none fetched yet, unknown `kid`) is
//! held for one refresh and decided again by the root context.

use super::host::{self, HostSharedData};
use super::metadata::MetadataResponse;
use crate::authenticator::{
    self, BundleSource, Checks, Credential, HeadAction, Rejection, RequestHead, Verdict,
};
use crate::bundle::TrustBundle;
use crate::bundle_fetch::duration_ms;
use crate::bundle_wait::Waiting;
use crate::client_cert::{self, PresentedChain};
use crate::config::{Config, TrustDomainConfig};
use crate::credential_cache::CredentialCache;
use crate::fetch_lease;
use crate::metrics::{Counter, Tally};
use crate::oauth_error::{error_response, ErrorCode};
use crate::presented_chains::{Presented, PresentedChains};
use crate::spiffe_id::TrustDomain;
use crate::trust_store::{BundleCache, NoBundle};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Request head fields, owned (read once in the headers phase).
#[derive(Default)]
struct Head {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
}

impl Head {
    fn view(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            path: &self.path,
            content_type: self.content_type.as_deref(),
            authorization: self.authorization.as_deref(),
        }
    }
}

/// A token request whose whole body has been read, kept until it is decided (possibly after
/// being held for a bundle refresh, then by the root context).
pub struct PendingRequest {
    config: Rc<Config>,
    caches: Rc<VmCaches>,
    head: Head,
    presented: Presented,
    body: Vec<u8>,
}

/// The requests this VM holds for a bundle refresh, shared by its root and HTTP contexts.
pub type HeldRequests = Rc<RefCell<Waiting<PendingRequest>>>;

impl PendingRequest {
    /// With `keep_xfcc`, Envoy's XFCC still describes the client certificate when the request
    /// is forwarded. The TLS listener accepts any certificate and only the filter validates
    /// SPIFFE ones, so a certificate claiming a SPIFFE ID that the filter did not validate as
    /// the request's credential must not reach the AS in XFCC: an AS reading `URI=` from it
    /// would take an unvalidated identity.
    fn drop_unvalidated_xfcc(&self) {
        let claims = self
            .presented
            .as_ref()
            .is_some_and(|chain| chain.claims_spiffe_id());
        if self.config.client_certificate.keep_xfcc && claims {
            host::set_request_header(XFCC, None);
        }
    }

    /// The verdict at this moment's bundles and time.
    pub fn verdict(&self) -> Verdict {
        let config = &self.config;
        let now_ms = host::now_ms();
        let bundles = SharedBundles {
            cache: &self.caches.bundles,
            now_ms: now_ms.unwrap_or_default(),
            max_staleness_ms: duration_ms(config.refresh.max_staleness),
        };
        let checks = Checks {
            bundles: &bundles,
            cache: &self.caches.credentials,
            now: now_ms.map(|ms| ms / 1000),
        };
        authenticator::authenticate(
            config,
            &self.head.view(),
            &self.body,
            self.presented.as_deref(),
            checks,
        )
    }

    /// Carries out `verdict`: sets the identity headers (the request headers are still held)
    /// and returns true when the request is to be forwarded; otherwise sends the error answer.
    /// In dry-run mode every request is forwarded unchanged but for the verdict header.
    pub fn conclude(&self, verdict: Verdict) -> bool {
        let config = &self.config;
        self.caches.tally.verdict(&verdict);
        if let Some(header) = &config.dry_run {
            if let Verdict::Reject(rejection) = &verdict {
                log_rejection(rejection, true);
            }
            host::set_request_header(header, Some(&verdict_text(&verdict)));
            // As in enforcing mode: an X509-SVID the filter validated keeps its XFCC (with
            // keep_xfcc); any other SPIFFE certificate's never reaches the AS.
            let validated_x509 = matches!(
                verdict,
                Verdict::Authenticated {
                    credential: Credential::X509Svid,
                    ..
                }
            );
            if !validated_x509 {
                self.drop_unvalidated_xfcc();
            }
            return true;
        }
        match verdict {
            Verdict::Authenticated {
                spiffe_id,
                client_id,
                credential,
            } => {
                let names = &config.identity_headers;
                host::set_request_header(&names.spiffe_id, Some(spiffe_id.as_str()));
                host::set_request_header(&names.client_id, Some(&client_id));
                if credential == Credential::X509Svid && config.client_certificate.rfc9440_headers {
                    if let Some(chain) = &self.presented {
                        forward_rfc9440(chain);
                    }
                }
                if credential != Credential::X509Svid {
                    self.drop_unvalidated_xfcc();
                }
                log::debug!("{spiffe_id} authenticated as client {client_id:?}");
                true
            }
            Verdict::PassThrough => {
                self.drop_unvalidated_xfcc();
                true
            }
            Verdict::Reject(rejection) => {
                answer_rejection(config, self.head.authorization.as_deref(), &rejection);
                false
            }
        }
    }
}

pub struct TokenFilter {
    context_id: u32,
    config: Option<Rc<Config>>,
    caches: Rc<VmCaches>,
    held: HeldRequests,
    head: Head,
    /// The client certificate chain of an mTLS connection (read for token requests only).
    presented: Presented,
    /// Headers are held until the body is decided.
    holding: bool,
    body_size: usize,
    /// Where this request's response stands if it is an AS metadata document to complete.
    metadata: MetadataResponse,
}

impl TokenFilter {
    pub fn new(
        context_id: u32,
        config: Option<Rc<Config>>,
        caches: Rc<VmCaches>,
        held: HeldRequests,
    ) -> Self {
        TokenFilter {
            context_id,
            config,
            caches,
            held,
            head: Head::default(),
            presented: None,
            holding: false,
            body_size: 0,
            metadata: MetadataResponse::Off,
        }
    }

    /// Refuses the request before its body is decided (or, in dry-run mode, forwards it with
    /// the verdict header).
    fn reject(&mut self, config: &Config, rejection: &Rejection) -> Action {
        self.holding = false;
        let counter = Counter::Denied(rejection.method, rejection.kind);
        self.caches.tally.add(counter, 1);
        if let Some(header) = &config.dry_run {
            log_rejection(rejection, true);
            host::set_request_header(header, Some(&rejection_text(rejection)));
            // Refused before its certificate was looked at: a kept XFCC must not vouch for it.
            if config.client_certificate.keep_xfcc {
                host::set_request_header(XFCC, None);
            }
            return Action::Continue;
        }
        answer_rejection(config, self.head.authorization.as_deref(), rejection);
        Action::Pause
    }

    /// Decides on the complete body and releases, answers or holds the request.
    fn decide(&mut self) -> Action {
        let Some(config) = self.config.clone() else {
            return refuse_unconfigured();
        };
        let Some(body) = host::buffer(BufferType::HttpRequestBody, self.body_size) else {
            let reason = format!(
                "the {} byte body could not be read from the host",
                self.body_size
            );
            return self.reject(&config, &Rejection::new(ErrorCode::InvalidRequest, reason));
        };
        self.holding = false;
        let pending = PendingRequest {
            config,
            caches: Rc::clone(&self.caches),
            head: std::mem::take(&mut self.head),
            presented: self.presented.take(),
            body,
        };
        let verdict = pending.verdict();
        if let Verdict::Reject(Rejection {
            awaits_bundle: Some(td),
            ..
        }) = &verdict
        {
            return match self.hold_for_refresh(pending, td) {
                Hold::Held => {
                    self.caches.tally.add(Counter::Held, 1);
                    Action::Pause
                }
                // Decided again: another worker may have published the bundle meanwhile.
                Hold::DecideNow(pending) => {
                    let verdict = pending.verdict();
                    finish(&pending, verdict)
                }
            };
        }
        finish(&pending, verdict)
    }

    /// Holds the request until the next fetch of `td`'s bundle completes, if one can start
    /// before the wait is over; otherwise gives the request back to be decided now.
    fn hold_for_refresh(&self, pending: PendingRequest, td: &TrustDomain) -> Hold {
        let policy = &pending.config.refresh;
        let Some(td_config) = pending.config.trust_domains.get(td) else {
            return Hold::DecideNow(pending);
        };
        let Ok(mut held) = self.held.try_borrow_mut() else {
            return Hold::DecideNow(pending);
        };
        if held.len() >= pending.config.limits.max_held_requests {
            log::debug!(
                "{} token requests already held for bundle fetches; deciding this one now",
                held.len()
            );
            return Hold::DecideNow(pending);
        }
        // Without host time there is no deadline: decide now.
        let Some(now) = host::now_ms() else {
            return Hold::DecideNow(pending);
        };
        let deadline = now.saturating_add(duration_ms(policy.request_wait));
        let min_interval = duration_ms(policy.on_demand_min_interval);
        let lease_key = td_config.lease_key.clone();
        match fetch_lease::demand(&HostSharedData, &lease_key, now, min_interval) {
            Some(demand) if demand.starts_by_ms < deadline => {
                log::debug!(
                    "token request held for a refresh of the bundle of {td} (fetch {})",
                    demand.completed_target
                );
                held.hold(
                    self.context_id,
                    &lease_key,
                    demand.completed_target,
                    deadline,
                    pending,
                );
                Hold::Held
            }
            _ => Hold::DecideNow(pending),
        }
    }
}

/// Whether a request was held for a bundle fetch.
enum Hold {
    Held,
    DecideNow(PendingRequest),
}

/// The filter action for a decided request.
fn finish(pending: &PendingRequest, verdict: Verdict) -> Action {
    if pending.conclude(verdict) {
        Action::Continue
    } else {
        Action::Pause
    }
}

/// Logs a rejection and sends its OAuth error answer.
fn answer_rejection(config: &Config, authorization: Option<&str>, rejection: &Rejection) {
    log_rejection(rejection, false);
    let response = error_response(rejection.code, authorization, &config.issuer);
    host::send_response(response.status, &response.headers, &response.body);
}

/// One line per refused request: the error code, the reason class and the details, and the
/// SPIFFE ID the request claimed (never the credential).
fn log_rejection(rejection: &Rejection, dry_run: bool) {
    log::info!(
        "token request {} with {} ({}): {}{}",
        if dry_run {
            "would be rejected (dry run: forwarded)"
        } else {
            "rejected"
        },
        rejection.code.as_str(),
        rejection.kind.as_str(),
        rejection.reason,
        rejection
            .claimed_id
            .as_deref()
            .map_or(String::new(), |id| format!(" (SPIFFE ID {id})"))
    );
}

/// The dry-run verdict header's value.
fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Authenticated {
            spiffe_id,
            credential,
            ..
        } => {
            let method = match credential {
                Credential::JwtSvid => "jwt_svid",
                Credential::X509Svid => "x509_svid",
            };
            format!("allowed; method={method}; spiffe_id={spiffe_id}")
        }
        Verdict::PassThrough => "passed_through".to_owned(),
        Verdict::Reject(rejection) => rejection_text(rejection),
    }
}

fn rejection_text(rejection: &Rejection) -> String {
    format!(
        "denied; error={}; reason={}",
        rejection.code.as_str(),
        rejection.kind.as_str()
    )
}

impl Drop for TokenFilter {
    fn drop(&mut self) {
        // A request still held when its stream ends (client gone) is never resumed.
        if let Ok(mut held) = self.held.try_borrow_mut() {
            held.forget(self.context_id);
        }
    }
}

impl Context for TokenFilter {}

impl HttpContext for TokenFilter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return refuse_unconfigured();
        };
        // One host call for every header this filter reads or may have to remove.
        let headers = host::RequestHeaders::read();
        let read = |name: &str| match &headers {
            Some(all) => all.get(name).map(Cow::into_owned),
            None => host::request_header(name),
        };
        // Only the filter speaks for the client's identity (EDGE-1, FC-21): every spelling of
        // the identity headers goes (only those present, when the headers could be listed).
        let spellings = &config.identity_headers.spellings;
        match &headers {
            Some(all) => {
                let present: Vec<String> = spellings
                    .iter()
                    .filter(|name| all.contains(name))
                    .cloned()
                    .collect();
                host::remove_all(MapType::HttpRequestHeaders, &present);
            }
            None => host::remove_all(MapType::HttpRequestHeaders, spellings),
        }
        // Envoy's XFCC (client copies are replaced by the connection manager) is read, then
        // removed unless the operator keeps it.
        let xfcc = read(XFCC);
        if xfcc.is_some() && !config.client_certificate.keep_xfcc {
            host::remove_all(MapType::HttpRequestHeaders, &[XFCC.to_owned()]);
        }
        self.head = Head {
            method: read(":method").unwrap_or_default(),
            path: read(":path").unwrap_or_default(),
            content_type: read("content-type"),
            authorization: read("authorization"),
        };
        self.metadata = MetadataResponse::for_request(&config, &self.head.method, &self.head.path);
        match authenticator::inspect_head(&config, &self.head.view()) {
            HeadAction::PassThrough => Action::Continue,
            HeadAction::Reject(rejection) => self.reject(&config, &rejection),
            HeadAction::ReadBody => {
                self.presented = presented_chain(&self.caches.chains, xfcc.as_deref());
                if end_of_stream {
                    return self.decide();
                }
                // Requires the plugin option allow_on_headers_stop_iteration: body callbacks
                // then keep coming while the headers wait for our verdict.
                self.holding = true;
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.holding {
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else {
            return refuse_unconfigured();
        };
        // `body_size` is everything buffered so far, not this chunk.
        self.body_size = body_size;
        if body_size > config.limits.max_body_bytes {
            let limit = config.limits.max_body_bytes;
            let reason = format!("body over limits.max_body_bytes ({limit})");
            return self.reject(&config, &Rejection::new(ErrorCode::BodyTooLarge, reason));
        }
        if end_of_stream {
            self.decide()
        } else {
            Action::Pause
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.metadata.on_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let config = self.config.as_deref();
        self.metadata
            .on_body(config, &self.head.path, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.metadata
            .on_trailers(self.config.as_deref(), &self.head.path)
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        // Identity headers smuggled in as trailers go too (an HTTP/2 upstream would see them).
        if let Some(config) = &self.config {
            host::remove_all(
                MapType::HttpRequestTrailers,
                &config.identity_headers.spellings,
            );
        }
        // A body that ends with trailers never reports end_of_stream in the body callback.
        if self.holding {
            self.decide()
        } else {
            Action::Continue
        }
    }
}

const XFCC: &str = "x-forwarded-client-cert";

/// The client certificate chain, when the connection is mTLS (REQ-11: never from headers alone):
/// remembered from an earlier request with the same leaf digest and XFCC, or read.
fn presented_chain(chains: &PresentedChains, xfcc: Option<&str>) -> Presented {
    let mtls = host::property(&["connection", "mtls"]).is_some_and(|v| v == [1]);
    if !mtls {
        return None;
    }
    let text =
        |path: &[&str]| host::property(path).map(|v| String::from_utf8_lossy(&v).into_owned());
    let digest = text(&["connection", "sha256_peer_certificate_digest"]).filter(|d| !d.is_empty());
    if let Some(known) = digest.as_deref().and_then(|d| chains.get(d, xfcc)) {
        return Some(known);
    }
    let leaf = text(&["connection", "peer_certificate"]);
    let chain = match client_cert::presented_chain(true, leaf.as_deref(), digest.as_deref(), xfcc) {
        Ok(chain) => chain.map(Rc::new),
        Err(e) => {
            log::warn!("client certificate not usable: {e}");
            None
        }
    };
    log::debug!(
        "client certificate chain read (presented: {})",
        chain.is_some()
    );
    // Only a chain whose leaf was checked against the digest Envoy reports is remembered.
    if let (Some(chain), Some(digest)) = (&chain, &digest) {
        chains.insert(digest, xfcc, chain);
    }
    chain
}

/// RFC 9440: the validated leaf and intermediates as structured-field byte sequences.
fn forward_rfc9440(chain: &PresentedChain) {
    let sf = |der: &[u8]| format!(":{}:", crate::b64::encode_std(der));
    host::set_request_header("client-cert", Some(&sf(chain.leaf())));
    if !chain.intermediates().is_empty() {
        let list: Vec<String> = chain.intermediates().iter().map(|c| sf(c)).collect();
        host::set_request_header("client-cert-chain", Some(&list.join(", ")));
    }
}

/// Never lets a request through without a valid configuration.
fn refuse_unconfigured() -> Action {
    log::error!("no valid configuration; request refused");
    host::send_response(
        503,
        &[
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ],
        r#"{"error":"server_error","error_description":"authentication filter not configured"}"#,
    );
    Action::Pause
}

/// What one root context (one VM and plugin configuration) keeps between requests.
pub struct VmCaches {
    /// Parsed bundles, one per stored version.
    pub bundles: BundleCache,
    /// Credentials that verified, for this configuration only.
    pub credentials: CredentialCache,
    /// Client certificate chains recently read.
    pub chains: PresentedChains,
    /// Counts not yet handed to the host (flushed by the root context's timer).
    pub tally: Tally,
}

impl VmCaches {
    pub fn new(max_cached_credentials: usize) -> Self {
        VmCaches {
            bundles: BundleCache::default(),
            credentials: CredentialCache::new(max_cached_credentials),
            chains: PresentedChains::default(),
            tally: Tally::default(),
        }
    }
}

/// Bundles from shared data through this VM's parse cache, at host time.
struct SharedBundles<'a> {
    cache: &'a BundleCache,
    now_ms: u64,
    max_staleness_ms: u64,
}

impl BundleSource for SharedBundles<'_> {
    fn bundle_for(&self, trust_domain: &TrustDomainConfig) -> Result<Arc<TrustBundle>, NoBundle> {
        self.cache.get(
            &HostSharedData,
            &trust_domain.bundle_key,
            self.now_ms,
            self.max_staleness_ms,
        )
    }
}
