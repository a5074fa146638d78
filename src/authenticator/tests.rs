//! Requirements §4.5 token-request shapes and the CID rules, against the decision core.

use super::*;
use crate::test_support::*;
use crate::token_request::JWT_SPIFFE;
use crate::trust_store::NoBundle;
use std::collections::HashMap;

const TYPE_ENC: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-spiffe";

fn config_json(extra: &str) -> String {
    format!(
        r#"{{"issuer":"https://as.example.com","token_paths":["/token"],
        "trust_domains":{{
          "example.org":{{"bundle_endpoint":{{"cluster":"b_org","authority":"bundle.example.org","path":"/b"}}}},
          "example.net":{{"bundle_endpoint":{{"cluster":"b_net","authority":"bundle.example.net","path":"/b"}}}},
          "example.com":{{"bundle_endpoint":{{"cluster":"b_com","authority":"bundle.example.com","path":"/b"}}}}}},
        "clients":[{{"spiffe_id":"spiffe://example.org/my-oauth-client","client_id":"my-client"}},
                   {{"spiffe_id":"spiffe://example.org/x509-client"}},
                   {{"spiffe_id":"spiffe://example.net/my-oauth-client"}},
                   {{"spiffe_id":"spiffe://example.com/my-oauth-client"}}]{extra}}}"#
    )
}

fn config() -> Config {
    Config::parse(config_json("").as_bytes()).unwrap()
}

/// Bundles by trust domain name; example.com has none yet (cold start).
struct Bundles(HashMap<String, Arc<TrustBundle>>);

impl BundleSource for Bundles {
    fn bundle_for(&self, td: &TrustDomainConfig) -> Result<Arc<TrustBundle>, NoBundle> {
        self.0
            .get(td.name.as_str())
            .cloned()
            .ok_or(NoBundle::NotFetched)
    }
}

fn bundles() -> Bundles {
    let mut m = HashMap::new();
    m.insert(
        "example.org".to_owned(),
        Arc::new(bundle(&[EcKey::p256(1).jwk("k1")])),
    );
    m.insert(
        "example.net".to_owned(),
        Arc::new(bundle(&[EcKey::p256(7).jwk("k1")])),
    );
    Bundles(m)
}

fn post<'a>() -> RequestHead<'a> {
    RequestHead {
        method: "POST",
        path: "/token",
        content_type: Some("application/x-www-form-urlencoded"),
        authorization: None,
    }
}

fn good_token() -> String {
    EcKey::p256(1).sign(BASE_HEADER, BASE_CLAIMS)
}

fn body_with(assertion: &str, extra: &str) -> String {
    format!("grant_type=client_credentials&client_assertion_type={TYPE_ENC}&client_assertion={assertion}{extra}")
}

/// A verdict without a credential cache.
pub(super) fn checks(bundles: &dyn BundleSource, now: Option<u64>) -> Checks<'_> {
    thread_local! {
        static NO_CACHE: &'static CredentialCache = Box::leak(Box::new(CredentialCache::new(0)));
    }
    Checks {
        bundles,
        cache: NO_CACHE.with(|c| *c),
        now,
    }
}

/// Decides twice through one credential cache: a verdict reached from the cache must be the
/// verdict itself, whatever the request.
pub(super) fn decide_twice(
    config: &Config,
    head: &RequestHead<'_>,
    body: &str,
    presented: Option<&PresentedChain>,
    bundles: &dyn BundleSource,
    now: u64,
) -> Verdict {
    let cache = CredentialCache::new(16);
    let checks = Checks {
        bundles,
        cache: &cache,
        now: Some(now),
    };
    let first = authenticate(config, head, body.as_bytes(), presented, checks);
    let again = authenticate(config, head, body.as_bytes(), presented, checks);
    assert_eq!(first, again, "the cached verdict differs");
    first
}

fn decide(head: &RequestHead<'_>, body: &str) -> Verdict {
    decide_twice(&config(), head, body, None, &bundles(), NOW)
}

fn rejected(v: Verdict) -> (ErrorCode, String) {
    match v {
        Verdict::Reject(r) => (r.code, r.reason),
        other => panic!("not rejected: {other:?}"),
    }
}

fn authenticated(spiffe_id: &str, client_id: &str) -> Verdict {
    Verdict::Authenticated {
        spiffe_id: SpiffeId::parse(spiffe_id).unwrap(),
        client_id: client_id.to_owned(),
        credential: Credential::JwtSvid,
    }
}

/// §4.5 accept shape, with and without a matching client_id (CID-1, CID-2); an empty client_id
/// is absent (REQ-4), an unknown parameter is ignored (REQ-5).
#[test]
fn accept_shape() {
    assert_eq!(
        decide(&post(), &body_with(&good_token(), "")),
        authenticated(CLIENT, "my-client")
    );
    assert_eq!(
        decide(&post(), &body_with(&good_token(), "&client_id=my-client")),
        authenticated(CLIENT, "my-client")
    );
    // REQ-4: empty client_id counts as absent. REQ-5: unknown parameters are fine.
    assert_eq!(
        decide(&post(), &body_with(&good_token(), "&client_id=&foo=bar")),
        authenticated(CLIENT, "my-client")
    );
}

#[test]
fn head_inspection() {
    let c = config();
    assert_eq!(inspect_head(&c, &post()), HeadAction::ReadBody);
    let with_query = RequestHead {
        path: "/token?x=1",
        ..post()
    };
    assert_eq!(inspect_head(&c, &with_query), HeadAction::ReadBody);
    // Q4 / REQ-1: a GET to the token path is not authenticated by the filter.
    let get = RequestHead {
        method: "GET",
        content_type: None,
        ..post()
    };
    assert_eq!(inspect_head(&c, &get), HeadAction::PassThrough);
    let other = RequestHead {
        path: "/authorize",
        ..post()
    };
    assert_eq!(inspect_head(&c, &other), HeadAction::PassThrough);
    let charset = RequestHead {
        content_type: Some("application/x-www-form-urlencoded; charset=UTF-8"),
        ..post()
    };
    assert_eq!(inspect_head(&c, &charset), HeadAction::ReadBody);
    // FC-13 c / d: JSON bodies or no content-type on the token path are malformed requests.
    for ct in [Some("application/json"), None] {
        let h = RequestHead {
            content_type: ct,
            ..post()
        };
        match inspect_head(&c, &h) {
            HeadAction::Reject(r) => assert_eq!(r.code, ErrorCode::InvalidRequest),
            other => panic!("{ct:?}: {other:?}"),
        }
    }
}

/// REQ-2: an assertion in the query string of a POST is never read.
#[test]
fn req_2_query_string_ignored() {
    let head = RequestHead {
        path: "/token?client_assertion_type=x&client_assertion=y",
        ..post()
    };
    assert_eq!(
        decide(&head, "grant_type=client_credentials"),
        Verdict::PassThrough
    );
}

/// Q1 / REQ-3: repeated client_assertion → invalid_request.
#[test]
fn q1_repeated_assertion() {
    let t = good_token();
    let (code, _) = rejected(decide(
        &post(),
        &body_with(&t, &format!("&client_assertion={t}")),
    ));
    assert_eq!(code, ErrorCode::InvalidRequest);
}

/// Q2, Q3 / REQ-9 / OPEN-6 / FC-12 a b: mixed methods → invalid_request (RFC 6749 §5.2).
#[test]
fn q2_q3_mixed_methods() {
    let basic = RequestHead {
        authorization: Some("Basic czZCaGRSa3F0Mzo="),
        ..post()
    };
    let (code, reason) = rejected(decide(&basic, &body_with(&good_token(), "")));
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert!(reason.contains("Authorization"));
    let (code, reason) = rejected(decide(
        &post(),
        &body_with(&good_token(), "&client_secret=x"),
    ));
    assert_eq!(code, ErrorCode::InvalidRequest);
    assert!(reason.contains("client_secret"));
}

/// Q5 / REQ-6: a case variant of the assertion type is refused, not passed on.
#[test]
fn q5_near_miss_assertion_type() {
    let body = format!(
        "client_assertion_type={}&client_assertion={}",
        JWT_SPIFFE.to_uppercase(),
        good_token()
    );
    assert_eq!(
        rejected(decide(&post(), &body)).0,
        ErrorCode::InvalidRequest
    );
}

/// Q6 / CID-2 / FC-12 e: client_id naming another client.
#[test]
fn q6_cid_2_client_id_mismatch() {
    for other in [
        "spiffe%3A%2F%2Fexample.org%2Fother",
        "spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client",
        "My-Client",
    ] {
        let (code, _) = rejected(decide(
            &post(),
            &body_with(&good_token(), &format!("&client_id={other}")),
        ));
        assert_eq!(code, ErrorCode::InvalidClient, "{other}");
    }
}

/// CID-1 / FC-10 b: a validly signed SVID that is not registered.
#[test]
fn cid_1_unregistered_spiffe_id() {
    let claims = BASE_CLAIMS.replace("my-oauth-client", "not-registered");
    let t = EcKey::p256(1).sign(BASE_HEADER, &claims);
    let (code, reason) = rejected(decide(&post(), &body_with(&t, "")));
    assert_eq!(code, ErrorCode::InvalidClient);
    assert_eq!(reason, "SPIFFE ID is not a registered client");
}

/// CID-8 / JWT-12: the same path in another trust domain, signed by that domain's key, is that
/// domain's client — never example.org's.
#[test]
fn cid_8_association_is_per_trust_domain() {
    let claims = BASE_CLAIMS.replace("example.org", "example.net");
    let t = EcKey::p256(7).sign(BASE_HEADER, &claims);
    assert_eq!(
        decide(&post(), &body_with(&t, "")),
        authenticated(
            "spiffe://example.net/my-oauth-client",
            "spiffe://example.net/my-oauth-client"
        )
    );
    // example.net's key with an example.org subject (same kid in both bundles) → bad signature.
    let t = EcKey::p256(7).sign(BASE_HEADER, BASE_CLAIMS);
    let (code, reason) = rejected(decide(&post(), &body_with(&t, "")));
    assert_eq!(code, ErrorCode::InvalidClient);
    assert_eq!(reason, "JWT-SVID: signature does not verify");
}

/// J17 / BEP-7 / JWT-15 / FC-09: unconfigured trust domain, and a configured one without a bundle.
#[test]
fn j17_bep_7_no_bundle_fails_closed() {
    let claims = BASE_CLAIMS.replace("example.org", "unconfigured.example.net");
    let t = EcKey::p256(1).sign(BASE_HEADER, &claims);
    let (code, reason) = rejected(decide(&post(), &body_with(&t, "")));
    assert_eq!(
        (code, reason.as_str()),
        (
            ErrorCode::InvalidClient,
            "trust domain of the SPIFFE ID is not configured"
        )
    );
    let claims = BASE_CLAIMS.replace("example.org", "example.com");
    let t = EcKey::p256(1).sign(BASE_HEADER, &claims);
    let (code, reason) = rejected(decide(&post(), &body_with(&t, "")));
    assert_eq!(
        (code, reason.as_str()),
        (
            ErrorCode::InvalidClient,
            "no bundle fetched yet for the trust domain"
        )
    );
}

fn awaited(v: Verdict) -> Option<String> {
    match v {
        Verdict::Reject(r) => r.awaits_bundle.map(|td| td.to_string()),
        other => panic!("not rejected: {other:?}"),
    }
}

/// A fresher bundle may cure exactly these rejections (the filter holds such a request for one
/// refresh): no bundle yet (BEP-7), and a `kid` the bundle lacks (rotation, JWT-11).
#[test]
fn rejections_a_refresh_may_cure() {
    let unknown_kid = EcKey::p256(2).sign(&BASE_HEADER.replace("k1", "k2"), BASE_CLAIMS);
    assert_eq!(
        awaited(decide(&post(), &body_with(&unknown_kid, ""))),
        Some("example.org".to_owned())
    );
    let cold = EcKey::p256(1).sign(
        BASE_HEADER,
        &BASE_CLAIMS.replace("example.org", "example.com"),
    );
    assert_eq!(
        awaited(decide(&post(), &body_with(&cold, ""))),
        Some("example.com".to_owned())
    );
    // Known kid, wrong key: no refresh can help (and must not be triggered by forgers at will).
    let forged = EcKey::p256(2).sign(BASE_HEADER, BASE_CLAIMS);
    assert_eq!(awaited(decide(&post(), &body_with(&forged, ""))), None);
    let unconfigured = EcKey::p256(1).sign(
        BASE_HEADER,
        &BASE_CLAIMS.replace("example.org", "unconfigured.example.net"),
    );
    assert_eq!(
        awaited(decide(&post(), &body_with(&unconfigured, ""))),
        None
    );
    let expired = EcKey::p256(2).sign(
        &BASE_HEADER.replace("k1", "k2"),
        &BASE_CLAIMS.replace("1747124600", "1"),
    );
    assert_eq!(
        awaited(decide(&post(), &body_with(&expired, ""))),
        None,
        "claims are judged before the key is looked up: an expired token never causes a fetch"
    );
}

/// ERR-2 choice: a jwt-spiffe type without client_assertion is a missing parameter (REQ-8:
/// the assertion must be present).
#[test]
fn err_2_missing_assertion_is_invalid_request() {
    let body = format!("client_assertion_type={TYPE_ENC}");
    assert_eq!(
        rejected(decide(&post(), &body)).0,
        ErrorCode::InvalidRequest
    );
    let body = format!("client_assertion_type={TYPE_ENC}&client_assertion=");
    assert_eq!(
        rejected(decide(&post(), &body)).0,
        ErrorCode::InvalidRequest
    );
}

/// CID-3: require_client_id (draft editor's copy mode).
#[test]
fn cid_3_require_client_id() {
    let c = Config::parse(config_json(r#","require_client_id":true"#).as_bytes()).unwrap();
    let missing = authenticate(
        &c,
        &post(),
        body_with(&good_token(), "").as_bytes(),
        None,
        checks(&bundles(), Some(NOW)),
    );
    assert_eq!(rejected(missing).0, ErrorCode::InvalidRequest);
    let sent = authenticate(
        &c,
        &post(),
        body_with(&good_token(), "&client_id=my-client").as_bytes(),
        None,
        checks(&bundles(), Some(NOW)),
    );
    assert_eq!(sent, authenticated(CLIENT, "my-client"));
}

/// REQ-8: two JWTs in one client_assertion.
#[test]
fn req_8_exactly_one_jwt() {
    let t = good_token();
    for joined in [format!("{t}+{t}"), format!("{t}%2C{t}")] {
        assert_eq!(
            rejected(decide(&post(), &body_with(&joined, ""))).0,
            ErrorCode::InvalidClient
        );
    }
}

/// REQ-12 / J30: oversized assertion and oversized body.
#[test]
fn req_12_size_limits() {
    let big = "A".repeat(20_000);
    assert_eq!(
        rejected(decide(&post(), &body_with(&big, ""))).0,
        ErrorCode::InvalidClient
    );
    let huge = format!("x={}", "a".repeat(70_000));
    assert_eq!(rejected(decide(&post(), &huge)).0, ErrorCode::BodyTooLarge);
}

/// Requests without SPIFFE credentials pass through (EDGE-5, FC-21 a).
#[test]
fn edge_5_other_methods_pass_through() {
    assert_eq!(
        decide(
            &post(),
            "grant_type=client_credentials&client_id=a&client_secret=b"
        ),
        Verdict::PassThrough
    );
    let basic = RequestHead {
        authorization: Some("Basic abc"),
        ..post()
    };
    assert_eq!(
        decide(&basic, "grant_type=client_credentials"),
        Verdict::PassThrough
    );
    let bearer = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=x";
    assert_eq!(decide(&post(), bearer), Verdict::PassThrough);
    assert_eq!(decide(&post(), ""), Verdict::PassThrough);
}

/// FC-13 j: malformed form encoding is invalid_request.
#[test]
fn fc_13_bad_form_is_invalid_request() {
    assert_eq!(
        rejected(decide(&post(), "client_assertion=ab%zz")).0,
        ErrorCode::InvalidRequest
    );
}

/// FC-10 a, JWT-16, ISS-1, ISS-2: an `iss` claim is ignored: it neither is required nor names
/// a key source.
#[test]
fn fc_10_iss_ignored() {
    let claims = BASE_CLAIMS.replacen('{', r#"{"iss":"https://oidc.example.org","#, 1);
    let t = EcKey::p256(1).sign(BASE_HEADER, &claims);
    assert_eq!(
        decide(&post(), &body_with(&t, "")),
        authenticated(CLIENT, "my-client")
    );
}

/// Rejections after the subject is known carry it for the log.
#[test]
fn claimed_id_is_logged() {
    let expired = BASE_CLAIMS.replace("1747124600", "1747124000");
    let t = EcKey::p256(1).sign(BASE_HEADER, &expired);
    match decide(&post(), &body_with(&t, "")) {
        Verdict::Reject(r) => {
            assert_eq!(r.code, ErrorCode::InvalidClient);
            assert_eq!(r.reason, "JWT-SVID: expired");
            assert_eq!(r.claimed_id.as_deref(), Some(CLIENT));
        }
        other => panic!("{other:?}"),
    }
}

/// Without host time a JWT-SVID is refused, while requests that are not SPIFFE pass.
#[test]
fn no_host_time_fails_closed_for_svids_only() {
    let c = config();
    let v = authenticate(
        &c,
        &post(),
        body_with(&good_token(), "").as_bytes(),
        None,
        checks(&bundles(), None),
    );
    assert_eq!(
        rejected(v),
        (ErrorCode::InvalidClient, "host time unavailable".to_owned())
    );
    let other = authenticate(
        &c,
        &post(),
        b"grant_type=client_credentials",
        None,
        checks(&bundles(), None),
    );
    assert_eq!(other, Verdict::PassThrough);
}

// ------------------------------------------------------------------ X509-SVID method

mod x509 {
    use super::*;
    use crate::client_cert::PresentedChain;
    use crate::test_support::pki::{self, Ca};

    const X509_CLIENT: &str = "spiffe://example.org/x509-client";

    /// example.org's bundle with the JWT key k1 and `root` as its x509-svid authority.
    fn bundles_with(root: &Ca) -> Bundles {
        let mut b = bundles();
        let mut org = bundle(&[EcKey::p256(1).jwk("k1")]);
        org.x509_authorities.push(root.der.clone());
        b.0.insert("example.org".to_owned(), Arc::new(org));
        b
    }

    fn by_certificate(spiffe_id: &str, client_id: &str) -> Verdict {
        Verdict::Authenticated {
            spiffe_id: SpiffeId::parse(spiffe_id).unwrap(),
            client_id: client_id.to_owned(),
            credential: Credential::X509Svid,
        }
    }

    fn chain(leaf: Vec<u8>) -> PresentedChain {
        PresentedChain::new(leaf, vec![])
    }

    fn decide_with(c: &Config, body: &str, presented: &PresentedChain, b: &Bundles) -> Verdict {
        decide_twice(c, &post(), body, Some(presented), b, pki::NOW)
    }

    #[test]
    fn x509_svid_with_client_id_equal_to_its_spiffe_id() {
        let org = pki::root("example.org");
        let leaf = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let body =
            "grant_type=client_credentials&client_id=spiffe%3A%2F%2Fexample.org%2Fx509-client";
        assert_eq!(
            decide_with(&config(), body, &leaf, &bundles_with(&org)),
            by_certificate(X509_CLIENT, X509_CLIENT)
        );
    }

    /// CID-6: client_id is compared byte for byte with the SAN after form decoding: the
    /// percent-encoded ID matches, a path differing in case does not.
    #[test]
    fn cid_6_client_id_compared_byte_for_byte() {
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let leaf = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let encoded = "client_id=spiffe%3A%2F%2Fexample.org%2Fx509-client";
        assert_eq!(
            decide_with(&config(), encoded, &leaf, &b),
            by_certificate(X509_CLIENT, X509_CLIENT)
        );
        let upper = "client_id=spiffe%3A%2F%2Fexample.org%2FX509-client";
        assert_eq!(
            rejected(decide_with(&config(), upper, &leaf, &b)).0,
            ErrorCode::InvalidClient
        );
    }

    /// CIMD-1, CIMD-5 (not implemented): an X509-SVID with a CIMD URL as client_id is refused.
    #[test]
    fn cimd_url_client_id_with_a_certificate() {
        let org = pki::root("example.org");
        let leaf = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let body = "client_id=https%3A%2F%2Fclient.example.com%2Fmeta.json";
        assert_eq!(
            rejected(decide_with(&config(), body, &leaf, &bundles_with(&org))).0,
            ErrorCode::InvalidClient
        );
    }

    /// C18 / Q7 / CID-4: no client_id with a client certificate.
    #[test]
    fn c18_client_id_required() {
        let org = pki::root("example.org");
        let leaf = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let v = decide_with(
            &config(),
            "grant_type=client_credentials",
            &leaf,
            &bundles_with(&org),
        );
        assert_eq!(rejected(v).0, ErrorCode::InvalidRequest);
    }

    /// C17 / Q8 / CID-5 (draft-02): client_id must be the certificate's SPIFFE ID.
    #[test]
    fn c17_client_id_must_equal_san() {
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let leaf = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let other =
            "grant_type=client_credentials&client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client";
        assert_eq!(
            rejected(decide_with(&config(), other, &leaf, &b)).0,
            ErrorCode::InvalidClient
        );
        // A SPIFFE ID registered under another client id cannot use draft-02 equality.
        let mine = chain(pki::leaf(&org, &[CLIENT], |_| {}));
        let body = "client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client";
        assert_eq!(
            rejected(decide_with(&config(), body, &mine, &b)).0,
            ErrorCode::InvalidClient
        );
    }

    /// CID-5 (post-02 switch): client_id names the client the SPIFFE ID is registered for.
    #[test]
    fn cid_5_registered_rule() {
        let c = Config::parse(config_json(r#","x509_client_id":"registered""#).as_bytes()).unwrap();
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let mine = chain(pki::leaf(&org, &[CLIENT], |_| {}));
        assert_eq!(
            decide_with(&c, "client_id=my-client", &mine, &b),
            by_certificate(CLIENT, "my-client")
        );
        let by_id = "client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client";
        assert_eq!(
            rejected(decide_with(&c, by_id, &mine, &b)).0,
            ErrorCode::InvalidClient
        );
    }

    /// C11 / EDGE-3, BEP-7: another trust domain's root, and a trust domain without a bundle.
    #[test]
    fn c11_foreign_root_and_missing_bundle() {
        let org = pki::root("example.org");
        let net = pki::root("example.net");
        let forged = chain(pki::leaf(&net, &[X509_CLIENT], |_| {}));
        let body = "client_id=spiffe%3A%2F%2Fexample.org%2Fx509-client";
        let (code, reason) = rejected(decide_with(&config(), body, &forged, &bundles_with(&org)));
        assert_eq!(code, ErrorCode::InvalidClient);
        assert!(
            reason.starts_with("X509-SVID: path validation failed"),
            "{reason}"
        );
        let com = chain(pki::leaf(&org, &["spiffe://example.com/x"], |_| {}));
        let body = "client_id=spiffe%3A%2F%2Fexample.com%2Fx";
        let (code, reason) = rejected(decide_with(&config(), body, &com, &bundles_with(&org)));
        assert_eq!(
            (code, reason.as_str()),
            (
                ErrorCode::InvalidClient,
                "no bundle fetched yet for the trust domain"
            )
        );
    }

    /// A certificate that claims no SPIFFE ID, or one beside a secret, is incidental (RFC 8705
    /// §6.1 optional mTLS): the request passes to the AS.
    #[test]
    fn incidental_certificates_pass_through() {
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let dns_only = chain(pki::leaf(&org, &[], |p| {
            p.subject_alt_names = vec![rcgen::SanType::DnsName("w.example.org".try_into().unwrap())]
        }));
        assert_eq!(
            decide_with(&config(), "client_id=x", &dns_only, &b),
            Verdict::PassThrough
        );
        let svid = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let secret = "client_id=x&client_secret=y";
        assert_eq!(
            decide_with(&config(), secret, &svid, &b),
            Verdict::PassThrough
        );
        // A malformed SPIFFE URI still claims SPIFFE: it is validated and refused.
        let upper = chain(pki::leaf(&org, &["SPIFFE://example.org/x"], |_| {}));
        assert_eq!(
            rejected(decide_with(&config(), "client_id=x", &upper, &b)).0,
            ErrorCode::InvalidClient
        );
    }

    /// REQ-9: a SPIFFE certificate beside an assertion of another type (or none) is incidental:
    /// no identity headers, the AS decides.
    #[test]
    fn req_9_certificate_beside_another_assertion_passes_through() {
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let svid = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let id = "client_id=spiffe%3A%2F%2Fexample.org%2Fx509-client";
        let bearer = format!("{id}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c");
        assert_eq!(
            decide_with(&config(), &bearer, &svid, &b),
            Verdict::PassThrough
        );
        let untyped = format!("{id}&client_assertion=a.b.c");
        assert_eq!(
            decide_with(&config(), &untyped, &svid, &b),
            Verdict::PassThrough
        );
    }

    /// REQ-10: a certificate that claims SPIFFE but is no X509-SVID of the assertion's ID
    /// (a second URI SAN, or a CA certificate) is a conflict too.
    #[test]
    fn req_10_invalid_spiffe_certificate_beside_an_assertion() {
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let body = body_with(&good_token(), "");
        for leaf in [
            pki::leaf(&org, &["spiffe://example.org/other", CLIENT], |_| {}),
            pki::leaf(&org, &[CLIENT], |p| {
                p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
            }),
        ] {
            let v = authenticate(
                &config(),
                &post(),
                body.as_bytes(),
                Some(&chain(leaf)),
                checks(&b, Some(NOW)),
            );
            assert_eq!(rejected(v).0, ErrorCode::InvalidRequest);
        }
    }

    /// Q9 / REQ-10 / FC-12 c: certificate and assertion naming different SPIFFE IDs.
    #[test]
    fn q9_certificate_and_assertion_disagree() {
        let org = pki::root("example.org");
        let b = bundles_with(&org);
        let other = chain(pki::leaf(&org, &[X509_CLIENT], |_| {}));
        let body = body_with(&good_token(), "");
        let v = authenticate(
            &config(),
            &post(),
            body.as_bytes(),
            Some(&other),
            checks(&b, Some(NOW)),
        );
        assert_eq!(rejected(v).0, ErrorCode::InvalidRequest);
        let same = chain(pki::leaf(&org, &[CLIENT], |_| {}));
        let v = authenticate(
            &config(),
            &post(),
            body.as_bytes(),
            Some(&same),
            checks(&b, Some(NOW)),
        );
        assert_eq!(v, authenticated(CLIENT, "my-client"));
    }
}

/// CID-9: identity is decided only after the signature verifies: a forged token (signed by
/// another key under the registered client's kid) with a matching client_id is refused for its
/// signature, and nothing is held for a bundle refresh.
#[test]
fn cid_9_forged_token_decides_no_identity() {
    let forged = EcKey::p256(2).sign(BASE_HEADER, BASE_CLAIMS);
    let v = decide(&post(), &body_with(&forged, "&client_id=my-client"));
    let (code, reason) = rejected(v);
    assert_eq!(code, ErrorCode::InvalidClient);
    assert_eq!(
        reason,
        format!("JWT-SVID: {}", crate::jwt_svid::JwtSvidError::BadSignature)
    );
}

/// CIMD-1, CIMD-2, CIMD-3, CIMD-4, CIMD-5, CIMD-6 (not implemented, ignored safely): a Client
/// ID Metadata Document URL as client_id is just a client id no SPIFFE ID is registered for;
/// it is refused at once (no document is fetched, nothing is held) with either SVID.
#[test]
fn cimd_url_client_id_is_refused_without_fetching() {
    let url = "https%3A%2F%2Fclient.example.com%2Fmeta.json";
    let v = decide(
        &post(),
        &body_with(&good_token(), &format!("&client_id={url}")),
    );
    assert_eq!(
        rejected(v),
        (
            ErrorCode::InvalidClient,
            "client_id \"https://client.example.com/meta.json\" is not the client registered for the SPIFFE ID".to_owned()
        )
    );
}

mod credential_cache;
mod deny_reasons;
mod field_cases;
