//! Every rejection names its reason class and the method whose credential was refused, which
//! the metrics count (issue "Operating it": denials by method and by reason).

use super::*;
use crate::deny_reason::DenyReason::{self, *};
use crate::test_support::pki;

fn class(v: Verdict) -> (DenyReason, Option<Credential>) {
    match v {
        Verdict::Reject(r) => (r.kind, r.method),
        other => panic!("not rejected: {other:?}"),
    }
}

fn jwt(claims: &str) -> String {
    body_with(&EcKey::p256(1).sign(BASE_HEADER, claims), "")
}

#[test]
fn jwt_svid_rejections_by_reason() {
    let jwt_svid = Some(Credential::JwtSvid);
    let expired = BASE_CLAIMS.replace("1747124600", "1747000000");
    assert_eq!(class(decide(&post(), &jwt(&expired))), (Expired, jwt_svid));
    let future = BASE_CLAIMS.replace("1747124243", "1747999999");
    assert_eq!(
        class(decide(&post(), &jwt(&future))),
        (NotYetValid, jwt_svid)
    );
    let other_aud = BASE_CLAIMS.replace("https://as.example.com", "https://other");
    assert_eq!(
        class(decide(&post(), &jwt(&other_aud))),
        (Audience, jwt_svid)
    );
    let unknown_kid = EcKey::p256(1).sign(&BASE_HEADER.replace("k1", "k9"), BASE_CLAIMS);
    let v = decide(&post(), &body_with(&unknown_kid, ""));
    assert_eq!(class(v), (UnknownKey, jwt_svid));
    let forged = EcKey::p256(2).sign(BASE_HEADER, BASE_CLAIMS);
    let v = decide(&post(), &body_with(&forged, ""));
    assert_eq!(class(v), (Signature, jwt_svid));
    let v = decide(&post(), &body_with("not.a.jwt", ""));
    assert_eq!(class(v), (MalformedAssertion, jwt_svid));
    let foreign = BASE_CLAIMS.replace("example.org", "example.edu");
    assert_eq!(
        class(decide(&post(), &jwt(&foreign))),
        (UnknownTrustDomain, jwt_svid)
    );
    let unregistered = BASE_CLAIMS.replace("my-oauth-client", "nobody");
    assert_eq!(
        class(decide(&post(), &jwt(&unregistered))),
        (UnregisteredClient, jwt_svid)
    );
    let v = decide(&post(), &body_with(&good_token(), "&client_id=other"));
    assert_eq!(class(v), (ClientIdMismatch, jwt_svid));
    let com = BASE_CLAIMS.replace("example.org", "example.com");
    assert_eq!(class(decide(&post(), &jwt(&com))), (NoBundle, jwt_svid));
    let v = decide(&post(), &body_with(&good_token(), "&client_secret=s"));
    assert_eq!(class(v), (MixedMethods, jwt_svid));
    let v = authenticate(
        &config(),
        &post(),
        body_with(&good_token(), "").as_bytes(),
        None,
        checks(&bundles(), None),
    );
    assert_eq!(class(v), (NoHostTime, jwt_svid));
}

#[test]
fn request_rejections_before_a_method_is_chosen() {
    let v = decide(&post(), "client_assertion=a&client_assertion=b");
    assert_eq!(class(v), (MalformedRequest, None));
    let HeadAction::Reject(r) = inspect_head(
        &config(),
        &RequestHead {
            content_type: Some("application/json"),
            ..post()
        },
    ) else {
        panic!("not rejected")
    };
    assert_eq!((r.kind, r.method), (MalformedRequest, None));
    let big = "a".repeat(config().limits.max_body_bytes + 1);
    assert_eq!(class(decide(&post(), &big)), (BodyTooLarge, None));
}

#[test]
fn x509_svid_rejections_by_reason() {
    let org = pki::root("example.org");
    let mut b = bundles();
    let mut with_root = bundle(&[EcKey::p256(1).jwk("k1")]);
    with_root.x509_authorities.push(org.der.clone());
    b.0.insert("example.org".to_owned(), Arc::new(with_root));
    let x509 = Some(Credential::X509Svid);
    let decide_chain = |leaf: Vec<u8>, body: &str| {
        let chain = PresentedChain::new(leaf, vec![]);
        class(decide_twice(
            &config(),
            &post(),
            body,
            Some(&chain),
            &b,
            pki::NOW,
        ))
    };
    let id = "spiffe://example.org/x509-client";
    let body = "client_id=spiffe%3A%2F%2Fexample.org%2Fx509-client";
    let foreign = pki::leaf(&pki::root("example.org"), &[id], |_| {});
    assert_eq!(decide_chain(foreign, body), (InvalidCertificate, x509));
    let good = pki::leaf(&org, &[id], |_| {});
    assert_eq!(
        decide_chain(good, "client_id=other"),
        (ClientIdMismatch, x509)
    );
}
