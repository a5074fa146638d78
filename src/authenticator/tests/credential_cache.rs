//! The verified-credential cache inside the decision: a credential is verified once per bundle
//! version, and a key removed, a bundle revoked or a credential expired takes effect for cached
//! credentials exactly as for new ones (issue "Performance": cache correctness).

use super::*;
use crate::client_cert::PresentedChain;
use crate::test_support::pki;

fn decide_cached(
    cache: &CredentialCache,
    b: &Bundles,
    body: &str,
    head: &RequestHead<'_>,
    now: u64,
) -> Verdict {
    let checks = Checks {
        bundles: b,
        cache,
        now: Some(now),
    };
    authenticate(&config(), head, body.as_bytes(), None, checks)
}

/// Replaces example.org's bundle, keeping the old one alive (as the filter's bundle cache does
/// until it reads the new version), so only the identity check can tell them apart.
fn replace_org(b: &mut Bundles, new: TrustBundle) -> Option<Arc<TrustBundle>> {
    b.0.insert("example.org".to_owned(), Arc::new(new))
}

fn reason(v: Verdict) -> String {
    rejected(v).1
}

#[test]
fn a_repeated_jwt_svid_is_verified_once() {
    let (cache, b) = (CredentialCache::new(8), bundles());
    let body = body_with(&good_token(), "");
    for _ in 0..3 {
        let v = decide_cached(&cache, &b, &body, &post(), NOW);
        assert_eq!(v, authenticated(CLIENT, "my-client"));
    }
    assert_eq!(cache.counts(), (2, 1), "one verification, two hits");
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_removed_key_takes_effect_at_the_next_bundle_change() {
    let (cache, mut b) = (CredentialCache::new(8), bundles());
    let body = body_with(&good_token(), "");
    assert_eq!(
        decide_cached(&cache, &b, &body, &post(), NOW),
        authenticated(CLIENT, "my-client")
    );
    // The trust domain rotated: k1 is gone, k2 published.
    let _old = replace_org(&mut b, bundle(&[EcKey::p256(2).jwk("k2")]));
    let v = decide_cached(&cache, &b, &body, &post(), NOW);
    let Verdict::Reject(r) = v else {
        panic!("accepted from the cache: {v:?}")
    };
    assert_eq!(r.code, ErrorCode::InvalidClient);
    assert!(r.reason.contains("kid"), "{}", r.reason);
    assert_eq!(cache.counts().0, 0, "never answered from the cache");
    assert!(cache.is_empty());
}

#[test]
fn a_revoking_bundle_takes_effect_at_once() {
    let (cache, mut b) = (CredentialCache::new(8), bundles());
    let body = body_with(&good_token(), "");
    decide_cached(&cache, &b, &body, &post(), NOW);
    let _old = replace_org(&mut b, bundle(&[]));
    let v = decide_cached(&cache, &b, &body, &post(), NOW);
    assert_eq!(rejected(v).0, ErrorCode::InvalidClient);
}

#[test]
fn a_new_bundle_version_with_the_same_key_verifies_again() {
    let (cache, mut b) = (CredentialCache::new(8), bundles());
    let body = body_with(&good_token(), "");
    decide_cached(&cache, &b, &body, &post(), NOW);
    let _old = replace_org(&mut b, bundle(&[EcKey::p256(1).jwk("k1")]));
    for _ in 0..2 {
        let v = decide_cached(&cache, &b, &body, &post(), NOW);
        assert_eq!(v, authenticated(CLIENT, "my-client"));
    }
    // Verified at first, verified again after the change, then one hit.
    assert_eq!(cache.counts(), (1, 2));
}

#[test]
fn a_cached_jwt_svid_expires_with_its_exp_and_the_leeway() {
    let (cache, b) = (CredentialCache::new(8), bundles());
    let body = body_with(&good_token(), "");
    decide_cached(&cache, &b, &body, &post(), NOW);
    let exp = 1_747_124_600;
    let leeway = config().clock_skew.as_secs();
    let last_good = exp + leeway - 1;
    assert_eq!(
        decide_cached(&cache, &b, &body, &post(), last_good),
        authenticated(CLIENT, "my-client")
    );
    assert_eq!(cache.counts().0, 1);
    let v = decide_cached(&cache, &b, &body, &post(), last_good + 1);
    assert_eq!(
        reason(v),
        format!("JWT-SVID: {}", crate::jwt_svid::JwtSvidError::Expired)
    );
}

#[test]
fn the_request_around_a_cached_credential_is_checked_every_time() {
    let (cache, b) = (CredentialCache::new(8), bundles());
    let token = good_token();
    decide_cached(&cache, &b, &body_with(&token, ""), &post(), NOW);
    // Another client's client_id (CID-2) and a second credential (REQ-9) are refused.
    let v = decide_cached(
        &cache,
        &b,
        &body_with(&token, "&client_id=other"),
        &post(),
        NOW,
    );
    assert_eq!(rejected(v).0, ErrorCode::InvalidClient);
    let v = decide_cached(
        &cache,
        &b,
        &body_with(&token, "&client_secret=s"),
        &post(),
        NOW,
    );
    assert_eq!(rejected(v).0, ErrorCode::InvalidRequest);
    let basic = RequestHead {
        authorization: Some("Basic bXk6cw=="),
        ..post()
    };
    let v = decide_cached(&cache, &b, &body_with(&token, ""), &basic, NOW);
    assert_eq!(rejected(v).0, ErrorCode::InvalidRequest);
}

#[test]
fn a_cached_credential_of_a_trust_domain_without_a_usable_bundle_waits_like_any_other() {
    let (cache, mut b) = (CredentialCache::new(8), bundles());
    let body = body_with(&good_token(), "");
    decide_cached(&cache, &b, &body, &post(), NOW);
    b.0.remove("example.org");
    let Verdict::Reject(r) = decide_cached(&cache, &b, &body, &post(), NOW) else {
        panic!("accepted without a bundle")
    };
    assert_eq!(r.code, ErrorCode::InvalidClient);
    assert_eq!(
        r.awaits_bundle.map(|td| td.to_string()),
        Some("example.org".into())
    );
}

#[test]
fn failures_are_never_cached() {
    let (cache, b) = (CredentialCache::new(8), bundles());
    let forged = EcKey::p256(2).sign(BASE_HEADER, BASE_CLAIMS);
    for _ in 0..2 {
        let v = decide_cached(&cache, &b, &body_with(&forged, ""), &post(), NOW);
        assert_eq!(rejected(v).0, ErrorCode::InvalidClient);
    }
    assert!(cache.is_empty());
    assert_eq!(cache.counts(), (0, 2));
}

mod x509 {
    use super::*;

    const X509_CLIENT: &str = "spiffe://example.org/x509-client";
    const BODY: &str =
        "grant_type=client_credentials&client_id=spiffe%3A%2F%2Fexample.org%2Fx509-client";

    fn with_authority(b: &mut Bundles, root: &pki::Ca) -> Option<Arc<TrustBundle>> {
        let mut org = bundle(&[EcKey::p256(1).jwk("k1")]);
        org.x509_authorities.push(root.der.clone());
        replace_org(b, org)
    }

    fn decide_chain(
        cache: &CredentialCache,
        b: &Bundles,
        chain: &PresentedChain,
        now: u64,
    ) -> Verdict {
        let checks = Checks {
            bundles: b,
            cache,
            now: Some(now),
        };
        authenticate(&config(), &post(), BODY.as_bytes(), Some(chain), checks)
    }

    /// A leaf of a fresh example.org root, an empty cache, and bundles naming that root.
    fn x509_setup() -> (PresentedChain, CredentialCache, Bundles) {
        let root = pki::root("example.org");
        let chain = PresentedChain::new(pki::leaf(&root, &[X509_CLIENT], |_| {}), vec![]);
        let mut b = bundles();
        with_authority(&mut b, &root);
        (chain, CredentialCache::new(8), b)
    }

    fn x509_ok() -> Verdict {
        Verdict::Authenticated {
            spiffe_id: SpiffeId::parse(X509_CLIENT).unwrap(),
            client_id: X509_CLIENT.to_owned(),
            credential: Credential::X509Svid,
        }
    }

    #[test]
    fn a_repeated_chain_is_validated_once_and_a_removed_authority_takes_effect() {
        let (chain, cache, mut b) = x509_setup();
        for _ in 0..2 {
            assert_eq!(decide_chain(&cache, &b, &chain, pki::NOW), x509_ok());
        }
        assert_eq!(cache.counts(), (1, 1));
        // The authority is rotated out: the cached chain is refused at the next bundle change.
        let _old = with_authority(&mut b, &pki::root("example.org"));
        let v = decide_chain(&cache, &b, &chain, pki::NOW);
        assert_eq!(rejected(v).0, ErrorCode::InvalidClient);
    }

    /// One SVID sent with ever new unused CAs beside its path is accepted every time but never
    /// cached, so it cannot fill the cache with spellings of itself; the path as sent is cached.
    #[test]
    fn a_chain_with_intermediates_off_its_path_is_accepted_but_not_cached() {
        let root = pki::root("example.org");
        let mid = pki::intermediate(&root, "example.org", |_| {});
        let leaf = pki::leaf(&mid, &[X509_CLIENT], |_| {});
        let (cache, mut b) = (CredentialCache::new(8), bundles());
        with_authority(&mut b, &root);
        for _ in 0..3 {
            let unused = pki::intermediate(&root, "example.org", |_| {});
            let padded =
                PresentedChain::new(leaf.clone(), vec![mid.der.clone(), unused.der.clone()]);
            assert_eq!(decide_chain(&cache, &b, &padded, pki::NOW), x509_ok());
        }
        let repeated = PresentedChain::new(leaf.clone(), vec![mid.der.clone(), mid.der.clone()]);
        assert_eq!(decide_chain(&cache, &b, &repeated, pki::NOW), x509_ok());
        assert_eq!((cache.len(), cache.counts()), (0, (0, 4)));
        let path = PresentedChain::new(leaf, vec![mid.der.clone()]);
        for _ in 0..2 {
            assert_eq!(decide_chain(&cache, &b, &path, pki::NOW), x509_ok());
        }
        assert_eq!((cache.len(), cache.counts()), (1, (1, 5)));
    }

    /// A client that sends its trust domain's root along with its path is cached like one that
    /// does not (the root is the anchor, not an unused certificate).
    #[test]
    fn a_chain_sent_with_its_root_is_cached() {
        let root = pki::root("example.org");
        let mid = pki::intermediate(&root, "example.org", |_| {});
        let chain = PresentedChain::new(
            pki::leaf(&mid, &[X509_CLIENT], |_| {}),
            vec![mid.der.clone(), root.der.clone()],
        );
        let (cache, mut b) = (CredentialCache::new(8), bundles());
        with_authority(&mut b, &root);
        for _ in 0..2 {
            assert_eq!(decide_chain(&cache, &b, &chain, pki::NOW), x509_ok());
        }
        assert_eq!((cache.len(), cache.counts()), (1, (1, 1)));
    }

    #[test]
    fn a_cached_chain_expires_with_its_earliest_not_after() {
        let (chain, cache, b) = x509_setup();
        decide_chain(&cache, &b, &chain, pki::NOW);
        // The leaf's notAfter (2026-09-01T00:00:00Z) is the earliest in the chain.
        let leaf_not_after = 1_788_220_800;
        assert_eq!(decide_chain(&cache, &b, &chain, leaf_not_after), x509_ok());
        assert_eq!(cache.counts().0, 1);
        let v = decide_chain(&cache, &b, &chain, leaf_not_after + 1);
        assert_eq!(rejected(v).0, ErrorCode::InvalidClient);
        assert_eq!(cache.counts().0, 1);
    }
}
