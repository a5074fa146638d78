//! Metric names and counts against a recording sink (issue "Operating it": metrics).

use super::*;
use crate::authenticator::Rejection;
use crate::oauth_error::ErrorCode;
use crate::spiffe_id::SpiffeId;
use crate::test_support::{bundle, EcKey};
use std::collections::BTreeMap;

/// Records what the filter would hand to Envoy.
#[derive(Default)]
struct Recorder {
    defined: RefCell<BTreeMap<String, bool>>,
    counters: RefCell<BTreeMap<String, u64>>,
    gauges: RefCell<BTreeMap<String, u64>>,
}

impl MetricSink for Recorder {
    fn define(&self, name: &str, gauge: bool) {
        self.defined.borrow_mut().insert(name.to_owned(), gauge);
    }
    fn add(&self, counter: &str, by: u64) {
        *self
            .counters
            .borrow_mut()
            .entry(counter.to_owned())
            .or_default() += by;
    }
    fn set(&self, gauge: &str, value: u64) {
        self.gauges.borrow_mut().insert(gauge.to_owned(), value);
    }
}

fn config() -> Config {
    Config::parse(
        br#"{"issuer":"https://as.example.com","token_paths":["/token"],
        "trust_domains":{"example.org":{"bundle_endpoint":{"cluster":"c","authority":"a","path":"/b"}},
                         "my-td.example":{"bundle_endpoint":{"cluster":"c","authority":"a","path":"/b"}}},
        "clients":[{"spiffe_id":"spiffe://example.org/w"}]}"#,
    )
    .unwrap()
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

#[test]
fn every_series_is_defined_at_configuration() {
    let sink = Recorder::default();
    define_all(&config(), &sink);
    let defined = sink.defined.borrow();
    // 2 allowed, 3 × 16 denied, passed through, held, cache hits and misses; per trust domain
    // 3 counters and 5 gauges.
    assert_eq!(defined.len(), 2 + 3 * 16 + 4 + 2 * (3 + 5));
    assert_eq!(
        defined.get("spiffe_oauth_filter.allowed.jwt_svid"),
        Some(&false)
    );
    assert_eq!(
        defined.get("spiffe_oauth_filter.denied.x509_svid.invalid_certificate"),
        Some(&false)
    );
    assert_eq!(
        defined.get("spiffe_oauth_filter.bundle.my_td_example.age_seconds"),
        Some(&true)
    );
    assert_eq!(
        defined.get("spiffe_oauth_filter.bundle.example_org.fetches_failed"),
        Some(&false)
    );
    for name in defined.keys() {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'),
            "{name}"
        );
    }
}

#[test]
fn verdicts_are_counted_by_method_and_reason_and_flushed_once() {
    let tally = Tally::default();
    let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
    let allowed = Verdict::Authenticated {
        spiffe_id: id,
        client_id: "w".into(),
        credential: Credential::X509Svid,
    };
    tally.verdict(&allowed);
    tally.verdict(&allowed);
    tally.verdict(&Verdict::PassThrough);
    let expired = Rejection::new(ErrorCode::InvalidClient, "x").because(DenyReason::Expired);
    let expired = Rejection {
        method: Some(Credential::JwtSvid),
        ..expired
    };
    tally.verdict(&Verdict::Reject(expired));
    tally.verdict(&Verdict::Reject(Rejection::new(
        ErrorCode::InvalidRequest,
        "y",
    )));
    tally.add(Counter::Cache(true), 0);
    let sink = Recorder::default();
    tally.flush(&sink);
    let want: BTreeMap<String, u64> = [
        ("spiffe_oauth_filter.allowed.x509_svid", 2),
        ("spiffe_oauth_filter.passed_through", 1),
        ("spiffe_oauth_filter.denied.jwt_svid.expired", 1),
        ("spiffe_oauth_filter.denied.request.malformed_request", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(*sink.counters.borrow(), want);
    tally.flush(&sink);
    assert_eq!(*sink.counters.borrow(), want, "a second flush adds nothing");
}

#[test]
fn bundle_gauges_and_counters() {
    let sink = Recorder::default();
    let mut b = bundle(&[EcKey::p256(1).jwk("k1"), EcKey::p256(2).jwk("k2")]);
    b.sequence = Some(42);
    let org = td("example.org");
    let state = BundleState {
        bundle: &b,
        age_secs: 17,
        usable: true,
    };
    record_bundle(&sink, &org, Some(state));
    let gauges = |prefix: &str| -> Vec<(String, u64)> {
        sink.gauges
            .borrow()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let p = "spiffe_oauth_filter.bundle.example_org.";
    assert_eq!(
        gauges(p),
        vec![
            (format!("{p}age_seconds"), 17),
            (format!("{p}jwt_keys"), 2),
            (format!("{p}sequence"), 42),
            (format!("{p}usable"), 1),
            (format!("{p}x509_authorities"), 0),
        ]
    );
    record_bundle(&sink, &org, None);
    assert!(gauges(p).iter().all(|(_, v)| *v == 0));
    assert_eq!(
        bundle_counter(&td("my-td.example"), BundleEvent::NotApplied),
        "spiffe_oauth_filter.bundle.my_td_example.fetches_not_applied"
    );
}

/// Two trust domains whose names differ only in `.`/`-`/`_` would share their series (and each
/// gauge would end at whichever is recorded last, hiding a stale bundle behind the other's
/// `usable` 1; found by a review): the configuration refuses the second.
#[test]
fn colliding_trust_domain_names_are_refused() {
    let refused = Config::parse(
        br#"{"issuer":"https://as.example.com","token_paths":["/token"],
        "trust_domains":{"example-org":{"bundle_endpoint":{"cluster":"c1","authority":"a","path":"/b"}},
                         "example.org":{"bundle_endpoint":{"cluster":"c2","authority":"a","path":"/b"}}},
        "clients":[]}"#,
    )
    .unwrap_err();
    assert_eq!(refused.field, "trust_domains.example.org");
    assert_eq!(
        refused.message,
        "its metric names would be those of trust domain example-org (example_org)"
    );
}
