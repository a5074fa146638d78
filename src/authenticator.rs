//! The decision for one request: pass it through, read its body, or authenticate its JWT-SVID
//! client assertion and answer with the verified identity or an OAuth error.
//!
//! Pure logic: the request head, the body, the trust bundles and the time come in as arguments.

use crate::bundle::TrustBundle;
use crate::client_cert::PresentedChain;
use crate::config::{Config, TrustDomainConfig, X509ClientIdRule};
use crate::credential_cache::{CredentialCache, CredentialDigest, Hit};
use crate::deny_reason::DenyReason;
use crate::jwt_svid::JwtSvidError;
use crate::jwt_svid::{JwtSvid, JwtSvidPolicy};
use crate::log_text::quote;
use crate::oauth_error::ErrorCode::{self, InvalidClient, InvalidRequest};
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::token_request::{is_form_content_type, AuthParameters, Method};
use crate::trust_store::NoBundle;
use crate::x509_svid;
use std::sync::Arc;

/// What the filter knows about a request from its headers.
#[derive(Debug, Clone, Default)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// `:path`, query string included.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

/// A refusal: what to answer, and what to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    /// Operator-facing reason (log only, never sent to the client).
    pub reason: String,
    /// The SPIFFE ID the request claimed, when there was one (log only).
    pub claimed_id: Option<String>,
    /// Set when a fresher bundle of this trust domain could change the verdict: none fetched
    /// yet, the last one too old, or a JWT-SVID `kid` it does not have. The filter may hold the
    /// request for one refresh and decide again.
    pub awaits_bundle: Option<TrustDomain>,
    /// The reason class (metrics, logs).
    pub kind: DenyReason,
    /// The method whose credential was refused, once the request chose one.
    pub method: Option<Credential>,
}

impl Rejection {
    /// A rejection whose reason class follows from its code (malformed request, body too large);
    /// an `invalid_client` rejection names its class with [`Rejection::because`].
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        let kind = match code {
            ErrorCode::InvalidRequest => DenyReason::MalformedRequest,
            ErrorCode::BodyTooLarge => DenyReason::BodyTooLarge,
            ErrorCode::InvalidClient => DenyReason::MalformedAssertion,
        };
        Rejection {
            code,
            reason: reason.into(),
            claimed_id: None,
            awaits_bundle: None,
            kind,
            method: None,
        }
    }

    pub fn because(mut self, kind: DenyReason) -> Self {
        self.kind = kind;
        self
    }

    /// Records the method whose credential was refused (kept when already set).
    fn during(mut self, method: Credential) -> Self {
        self.method.get_or_insert(method);
        self
    }

    pub fn claiming(mut self, id: &SpiffeId) -> Self {
        self.claimed_id = Some(id.to_string());
        self
    }

    /// Marks the rejection as one a fresher bundle of `trust_domain` could cure, when the
    /// claimed ID is a registered client: a token naming anybody else could never be accepted,
    /// so it must not hold a request or bring a fetch forward.
    fn awaiting(mut self, config: &Config, claimed: &SpiffeId, trust_domain: &TrustDomain) -> Self {
        if config.is_registered(claimed) {
            self.awaits_bundle = Some(trust_domain.clone());
        }
        self
    }
}

/// What to do after the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadAction {
    /// Not a token request: forward it (after removing client-sent identity headers).
    PassThrough,
    /// A token request: hold the headers and read the whole body before deciding.
    ReadBody,
    Reject(Rejection),
}

/// The outcome of a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward to the AS with these identity headers.
    Authenticated {
        spiffe_id: SpiffeId,
        client_id: String,
        credential: Credential,
    },
    /// No SPIFFE credential: forward unchanged; the AS authenticates the client its own way.
    PassThrough,
    Reject(Rejection),
}

/// Which SVID authenticated the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Credential {
    JwtSvid,
    /// The presented certificate chain (it may be forwarded as RFC 9440 headers).
    X509Svid,
}

/// Where verified bundles come from (the shared-data trust store in the filter).
pub trait BundleSource {
    /// The current bundle of a configured trust domain, or why there is none.
    fn bundle_for(&self, trust_domain: &TrustDomainConfig) -> Result<Arc<TrustBundle>, NoBundle>;
}

/// Decides from the headers whether the body must be read (REQ-1, REQ-2, EDGE-4).
pub fn inspect_head(config: &Config, head: &RequestHead<'_>) -> HeadAction {
    // Only POSTs to a token path carry client credentials; credentials in a query string or in
    // another method are never read (REQ-1, REQ-2), and the AS refuses such requests itself.
    // HTTP/2 lets a client send `post`; Envoy forwards it and some frameworks upper-case it.
    if !config.is_token_path(head.path) || !head.method.eq_ignore_ascii_case("POST") {
        return HeadAction::PassThrough;
    }
    match head.content_type {
        Some(ct) if is_form_content_type(ct) => HeadAction::ReadBody,
        Some(ct) => HeadAction::Reject(Rejection::new(
            ErrorCode::InvalidRequest,
            format!(
                "content-type {} is not application/x-www-form-urlencoded",
                quote(ct)
            ),
        )),
        None => HeadAction::Reject(Rejection::new(
            ErrorCode::InvalidRequest,
            "token request without content-type",
        )),
    }
}

/// Where a request's credentials are checked: the trust domains' current bundles, the cache of
/// credentials that verified before, and host time in Unix seconds (`None` when the host cannot
/// tell: then no SVID is accepted).
#[derive(Clone, Copy)]
pub struct Checks<'a> {
    pub bundles: &'a dyn BundleSource,
    pub cache: &'a CredentialCache,
    pub now: Option<u64>,
}

/// Authenticates a token request from its complete form body and, on an mTLS connection, the
/// client certificate chain it presented.
pub fn authenticate(
    config: &Config,
    head: &RequestHead<'_>,
    body: &[u8],
    presented: Option<&PresentedChain>,
    checks: Checks<'_>,
) -> Verdict {
    match authenticate_inner(config, head, body, presented, checks) {
        Ok(Some((spiffe_id, client_id, credential))) => Verdict::Authenticated {
            spiffe_id,
            client_id,
            credential,
        },
        Ok(None) => Verdict::PassThrough,
        Err(rejection) => Verdict::Reject(rejection),
    }
}

type Identity = (SpiffeId, String);

fn authenticate_inner(
    config: &Config,
    head: &RequestHead<'_>,
    body: &[u8],
    presented: Option<&PresentedChain>,
    checks: Checks<'_>,
) -> Result<Option<(SpiffeId, String, Credential)>, Rejection> {
    if body.len() > config.limits.max_body_bytes {
        return Err(Rejection::new(
            ErrorCode::BodyTooLarge,
            "body over limits.max_body_bytes",
        ));
    }
    let params = AuthParameters::from_form(body)
        .map_err(|e| Rejection::new(InvalidRequest, format!("form body: {e}")))?;
    // Any other credential in the request makes a client certificate incidental (one method
    // per request, RFC 6749 §2.3): secrets, and assertions of any type.
    let other_credential = head.authorization.is_some()
        || params.client_secret.is_some()
        || params.client_assertion.is_some()
        || params.client_assertion_type.is_some();
    match params.method() {
        Method::NearMissAssertionType => Err(Rejection::new(
            InvalidRequest,
            "client_assertion_type is a case, space or encoding variant of the jwt-spiffe URN",
        )),
        Method::JwtSvid => {
            let (spiffe_id, client_id) =
                authenticate_jwt_svid(config, head, &params, presented, checks)
                    .map_err(|r| r.during(Credential::JwtSvid))?;
            Ok(Some((spiffe_id, client_id, Credential::JwtSvid)))
        }
        // A certificate that claims a SPIFFE ID, with no other credential, is the X509-SVID
        // method; any other certificate is incidental (optional mTLS) and left to the AS.
        Method::NotSpiffe => match presented {
            Some(chain) if !other_credential && chain.claims_spiffe_id() => {
                authenticate_x509_svid(config, &params, chain, checks)
                    .map(|(spiffe_id, client_id)| {
                        Some((spiffe_id, client_id, Credential::X509Svid))
                    })
                    .map_err(|r| r.during(Credential::X509Svid))
            }
            // A certificate as the only credential of a client registered here is an X509-SVID
            // attempt even without a SPIFFE URI SAN (a DNS-only certificate, FC-23 c): refused,
            // not left to an AS that may accept the certificate on other grounds.
            Some(_)
                if !other_credential
                    && params
                        .client_id
                        .as_deref()
                        .is_some_and(|id| config.names_registered_client(id)) =>
            {
                Err(Rejection::new(
                    InvalidClient,
                    "client certificate of a registered SPIFFE client has no spiffe URI SAN",
                )
                .because(DenyReason::InvalidCertificate)
                .during(Credential::X509Svid))
            }
            _ => Ok(None),
        },
    }
}

fn authenticate_jwt_svid(
    config: &Config,
    head: &RequestHead<'_>,
    params: &AuthParameters,
    presented: Option<&PresentedChain>,
    checks: Checks<'_>,
) -> Result<Identity, Rejection> {
    // One client authentication method per request (RFC 6749 §2.3). A request that "utilizes
    // more than one mechanism for authenticating the client" is `invalid_request` by RFC 6749
    // §5.2 (REQ-9, OPEN-6, FC-12 a/b): it is malformed whatever either credential is worth, so
    // it is refused before the assertion is looked at, and never gets a challenge.
    if head.authorization.is_some() {
        return Err(Rejection::new(
            InvalidRequest,
            "jwt-spiffe assertion together with an Authorization header",
        )
        .because(DenyReason::MixedMethods));
    }
    if params.client_secret.is_some() {
        return Err(Rejection::new(
            InvalidRequest,
            "jwt-spiffe assertion together with client_secret",
        )
        .because(DenyReason::MixedMethods));
    }
    let assertion = params
        .client_assertion
        .as_deref()
        .ok_or_else(|| Rejection::new(InvalidRequest, "client_assertion is missing"))?;
    if config.require_client_id && params.client_id.is_none() {
        return Err(Rejection::new(
            InvalidRequest,
            "client_id is missing (require_client_id)",
        ));
    }
    // A JWT-SVID that verified before against the current bundle, and is still within its
    // lifetime, is not verified again; everything about the request itself still is.
    let digest = checks
        .cache
        .enabled()
        .then(|| CredentialCache::jwt_digest(assertion));
    if let Some(hit) = cache_lookup(checks, digest.as_ref()) {
        check_certificate_identity(presented, &hit.spiffe_id)?;
        if let Some(spiffe_id) = confirm_hit(config, checks, digest.as_ref(), hit)? {
            let client_id = registered_client(config, &spiffe_id, params.client_id.as_deref())?;
            return Ok((spiffe_id, client_id));
        }
    }
    let svid = JwtSvid::decode(assertion, config.limits.max_assertion_bytes).map_err(|e| {
        Rejection::new(InvalidClient, format!("JWT-SVID: {e}")).because((&e).into())
    })?;
    let claimed = svid.subject();
    // The assertion selects the method; a client certificate that claims a SPIFFE identity
    // must be an X509-SVID of the same ID, or the request carries two identities: malformed
    // like any other second mechanism (REQ-10, FC-12 c), whatever either credential is worth,
    // so it is decided before the assertion is verified.
    check_certificate_identity(presented, claimed)?;
    // The bundle is chosen by the trust domain in `sub`, among configured ones only (JWT-12, ID-9).
    let (trust_domain, bundle) = bundle_of(config, checks.bundles, claimed)?;
    let now = host_time(checks.now)?;
    let policy = JwtSvidPolicy {
        audience: &config.issuer,
        leeway_secs: config.clock_skew.as_secs(),
    };
    let spiffe_id = svid.verify(&bundle, &policy, now).map_err(|e| {
        let rejection = Rejection::new(InvalidClient, format!("JWT-SVID: {e}"))
            .because((&e).into())
            .claiming(claimed);
        // A key the bundle does not have yet may have been published since it was fetched.
        match e {
            JwtSvidError::UnknownKid(_) => rejection.awaiting(config, claimed, trust_domain),
            _ => rejection,
        }
    })?;
    if let Some(digest) = digest {
        let valid_until = svid.valid_until(policy.leeway_secs);
        checks
            .cache
            .insert(digest, &spiffe_id, &bundle, now, valid_until);
    }
    // Client binding only after the signature verified (CID-9).
    let client_id = registered_client(config, &spiffe_id, params.client_id.as_deref())?;
    Ok((spiffe_id, client_id))
}

/// A client certificate that claims a SPIFFE identity beside a JWT-SVID must be an X509-SVID
/// of the same ID (REQ-10, FC-12 c).
fn check_certificate_identity(
    presented: Option<&PresentedChain>,
    claimed: &SpiffeId,
) -> Result<(), Rejection> {
    if let Some(chain) = presented.filter(|c| c.claims_spiffe_id()) {
        if x509_svid::leaf_spiffe_id(chain.leaf()).ok().as_ref() != Some(claimed) {
            return Err(Rejection::new(
                InvalidRequest,
                "client certificate claims another SPIFFE identity than the assertion (or cannot be read)",
            )
            .because(DenyReason::MixedMethods)
            .claiming(claimed));
        }
    }
    Ok(())
}

/// The cached verdict of a credential, if it is still within its validity window.
fn cache_lookup(checks: Checks<'_>, digest: Option<&CredentialDigest>) -> Option<Hit> {
    checks.cache.get(digest?, checks.now?)
}

/// Confirms a cached verdict against the trust domain's current bundle: the verified SPIFFE ID,
/// or `None` when the bundle changed since (the credential is then verified again), or why the
/// trust domain has no usable bundle now (the same answer an uncached credential gets).
fn confirm_hit(
    config: &Config,
    checks: Checks<'_>,
    digest: Option<&CredentialDigest>,
    hit: Hit,
) -> Result<Option<SpiffeId>, Rejection> {
    let (_, bundle) = bundle_of(config, checks.bundles, &hit.spiffe_id)?;
    if hit.verified_against(&bundle) {
        checks.cache.confirm_hit();
        return Ok(Some(hit.spiffe_id));
    }
    if let Some(digest) = digest {
        checks.cache.forget(digest);
    }
    Ok(None)
}

/// RFC 8705 §2 with the SPIFFE profile (draft-02 §3.2; CID-4, CID-5).
fn authenticate_x509_svid(
    config: &Config,
    params: &AuthParameters,
    chain: &PresentedChain,
    checks: Checks<'_>,
) -> Result<Identity, Rejection> {
    let sent = params.client_id.as_deref().ok_or_else(|| {
        Rejection::new(
            InvalidRequest,
            "client_id is missing with a client certificate",
        )
    })?;
    // A chain that validated before against the current bundle, and is still within every
    // certificate's validity, is not validated again.
    let digest = checks.cache.enabled().then(|| *chain.cache_key());
    if let Some(hit) = cache_lookup(checks, digest.as_ref()) {
        if let Some(spiffe_id) = confirm_hit(config, checks, digest.as_ref(), hit)? {
            return bind_x509_client(config, spiffe_id, sent);
        }
    }
    let claimed = x509_svid::leaf_spiffe_id(chain.leaf()).map_err(|e| {
        Rejection::new(InvalidClient, format!("X509-SVID: {e}"))
            .because(DenyReason::InvalidCertificate)
    })?;
    // Authorities of the SAN's own trust domain only (X509-1, EDGE-3).
    let (_, bundle) = bundle_of(config, checks.bundles, &claimed)?;
    let now = host_time(checks.now)?;
    let authorities = &bundle.x509_authorities;
    let verified = x509_svid::verify_path(chain.leaf(), chain.intermediates(), authorities, now)
        .map_err(|e| {
            Rejection::new(InvalidClient, format!("X509-SVID: {e}"))
                .because(DenyReason::InvalidCertificate)
                .claiming(&claimed)
        })?;
    let spiffe_id = verified.spiffe_id;
    // A chain padded with certificates off the path is valid but not cached: otherwise one
    // SVID, sent with ever new unused self-made CAs, could fill the cache with itself.
    if let Some(digest) = digest.filter(|_| verified.every_intermediate_used) {
        let valid_until =
            x509_svid::valid_until(chain.leaf(), chain.intermediates(), authorities, now);
        checks
            .cache
            .insert(digest, &spiffe_id, &bundle, now, valid_until);
    }
    bind_x509_client(config, spiffe_id, sent)
}

/// The client a verified X509-SVID authenticates, given the `client_id` the request sent.
fn bind_x509_client(
    config: &Config,
    spiffe_id: SpiffeId,
    sent: &str,
) -> Result<Identity, Rejection> {
    if config.x509_client_id == X509ClientIdRule::SpiffeId && sent != spiffe_id.as_str() {
        return Err(Rejection::new(
            InvalidClient,
            format!(
                "client_id {} is not the certificate's SPIFFE ID",
                quote(sent)
            ),
        )
        .because(DenyReason::ClientIdMismatch)
        .claiming(&spiffe_id));
    }
    let client_id = registered_client(config, &spiffe_id, Some(sent))?;
    Ok((spiffe_id, client_id))
}

/// The trust domain that `claimed` names and its current bundle, if that trust domain is
/// configured and its bundle has been fetched.
fn bundle_of<'c>(
    config: &'c Config,
    bundles: &dyn BundleSource,
    claimed: &SpiffeId,
) -> Result<(&'c TrustDomain, Arc<TrustBundle>), Rejection> {
    let trust_domain = config.trust_domain_of(claimed).ok_or_else(|| {
        Rejection::new(
            InvalidClient,
            "trust domain of the SPIFFE ID is not configured",
        )
        .because(DenyReason::UnknownTrustDomain)
        .claiming(claimed)
    })?;
    let bundle = bundles.bundle_for(trust_domain).map_err(|why| {
        let (kind, reason) = match why {
            NoBundle::NotFetched => (
                DenyReason::NoBundle,
                "no bundle fetched yet for the trust domain".to_owned(),
            ),
            NoBundle::Stale { age_secs } => (
                DenyReason::StaleBundle,
                format!(
                    "the trust domain's last good bundle is {age_secs}s old, over bundle_refresh.max_staleness_seconds"
                ),
            ),
        };
        Rejection::new(InvalidClient, reason)
            .because(kind)
            .claiming(claimed)
            .awaiting(config, claimed, &trust_domain.name)
    })?;
    Ok((&trust_domain.name, bundle))
}

/// Without host time no validity can be checked: fail closed.
fn host_time(now: Option<u64>) -> Result<u64, Rejection> {
    now.ok_or_else(|| {
        Rejection::new(InvalidClient, "host time unavailable").because(DenyReason::NoHostTime)
    })
}

/// The client id registered for a verified SPIFFE ID; a `client_id` the request sent must name
/// that same client (CID-1, CID-2, CID-8).
fn registered_client(
    config: &Config,
    spiffe_id: &SpiffeId,
    sent: Option<&str>,
) -> Result<String, Rejection> {
    let client_id = config.client_id_for(spiffe_id).ok_or_else(|| {
        Rejection::new(InvalidClient, "SPIFFE ID is not a registered client")
            .because(DenyReason::UnregisteredClient)
            .claiming(spiffe_id)
    })?;
    match sent {
        Some(sent) if sent != client_id => Err(Rejection::new(
            InvalidClient,
            format!(
                "client_id {} is not the client registered for the SPIFFE ID",
                quote(sent)
            ),
        )
        .because(DenyReason::ClientIdMismatch)
        .claiming(spiffe_id)),
        _ => Ok(client_id),
    }
}

#[cfg(test)]
mod tests;
