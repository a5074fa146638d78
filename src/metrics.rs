//! The filter's metrics: their names, a fixed set known at configuration (so every series exists
//! from the start, at 0), and what each verdict and bundle event counts. Counts are kept per VM
//! in a [`Tally`] and handed to the host in one batch per timer tick, not one host call per
//! request; the host side sits behind the small [`MetricSink`] trait, so this is tested natively.
//!
//! Envoy shows proxy-wasm metrics under `wasmcustom.` in `/stats` and without that prefix in
//! `/stats/prometheus`, with dots as underscores. Trust domain names appear in metric names with
//! `.` and `-` as `_`.

use crate::authenticator::{Credential, Verdict};
use crate::bundle::TrustBundle;
use crate::config::Config;
use crate::deny_reason::DenyReason;
use crate::spiffe_id::TrustDomain;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// The first segment of every metric name.
pub const PREFIX: &str = "spiffe_oauth_filter";

/// Where metrics go (Envoy's stats in the filter).
pub trait MetricSink {
    /// Defines a counter (`gauge` false) or gauge; defining one twice is harmless.
    fn define(&self, name: &str, gauge: bool);
    fn add(&self, counter: &str, by: u64);
    fn set(&self, gauge: &str, value: u64);
}

/// A bundle event of one trust domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BundleEvent {
    /// A fetch whose bundle was stored.
    Fetched,
    /// A fetch that failed (the last good bundle is kept).
    FetchFailed,
    /// A fetched bundle not applied: its `spiffe_sequence` is lower than the one in use.
    NotApplied,
}

const BUNDLE_COUNTERS: [(BundleEvent, &str); 3] = [
    (BundleEvent::Fetched, "fetches_ok"),
    (BundleEvent::FetchFailed, "fetches_failed"),
    (BundleEvent::NotApplied, "fetches_not_applied"),
];

const BUNDLE_GAUGES: [&str; 5] = [
    "age_seconds",
    "sequence",
    "jwt_keys",
    "x509_authorities",
    "usable",
];

fn method_name(method: Option<Credential>) -> &'static str {
    match method {
        Some(Credential::JwtSvid) => "jwt_svid",
        Some(Credential::X509Svid) => "x509_svid",
        None => "request",
    }
}

/// `allowed.<method>`.
pub fn allowed(method: Credential) -> String {
    format!("{PREFIX}.allowed.{}", method_name(Some(method)))
}

/// `denied.<method or "request">.<reason>`.
fn denied_name(method: Option<Credential>, reason: DenyReason) -> String {
    format!(
        "{PREFIX}.denied.{}.{}",
        method_name(method),
        reason.as_str()
    )
}

pub fn passed_through() -> String {
    format!("{PREFIX}.passed_through")
}

/// Requests held for a bundle fetch before being decided.
pub fn held() -> String {
    format!("{PREFIX}.held_for_bundle")
}

/// Verified-credential cache hits and misses (`hits` true for hits).
pub fn cache(hits: bool) -> String {
    let what = if hits { "hits" } else { "misses" };
    format!("{PREFIX}.credential_cache.{what}")
}

/// A trust domain's name as a metric name segment (the configuration refuses two trust domains
/// with the same segment).
pub fn segment(trust_domain: &TrustDomain) -> String {
    trust_domain.as_str().replace(['.', '-'], "_")
}

pub fn bundle_counter(trust_domain: &TrustDomain, event: BundleEvent) -> String {
    let name = BUNDLE_COUNTERS
        .iter()
        .find(|(e, _)| *e == event)
        .map_or("events", |(_, n)| n);
    format!("{PREFIX}.bundle.{}.{name}", segment(trust_domain))
}

fn bundle_gauge(trust_domain: &TrustDomain, gauge: &str) -> String {
    format!("{PREFIX}.bundle.{}.{gauge}", segment(trust_domain))
}

/// Defines every metric of `config`, so each series exists (at 0) before its first event.
pub fn define_all(config: &Config, sink: &dyn MetricSink) {
    for method in [Credential::JwtSvid, Credential::X509Svid] {
        sink.define(&allowed(method), false);
    }
    for method in [None, Some(Credential::JwtSvid), Some(Credential::X509Svid)] {
        for reason in DenyReason::ALL {
            sink.define(&denied_name(method, reason), false);
        }
    }
    for name in [passed_through(), held(), cache(true), cache(false)] {
        sink.define(&name, false);
    }
    for td in config.trust_domains.keys() {
        for (event, _) in BUNDLE_COUNTERS {
            sink.define(&bundle_counter(td, event), false);
        }
        for gauge in BUNDLE_GAUGES {
            sink.define(&bundle_gauge(td, gauge), true);
        }
    }
}

/// What a trust domain's bundle looks like now, for its gauges.
pub struct BundleState<'a> {
    pub bundle: &'a TrustBundle,
    pub age_secs: u64,
    /// Within the maximum staleness.
    pub usable: bool,
}

/// Sets a trust domain's bundle gauges; without a bundle, all are 0.
pub fn record_bundle(sink: &dyn MetricSink, td: &TrustDomain, state: Option<BundleState<'_>>) {
    let values = match state {
        Some(s) => [
            s.age_secs,
            s.bundle.sequence.unwrap_or_default(),
            s.bundle.jwt_keys.len() as u64,
            s.bundle.x509_authorities.len() as u64,
            u64::from(s.usable),
        ],
        None => [0; 5],
    };
    for (gauge, value) in BUNDLE_GAUGES.iter().zip(values) {
        sink.set(&bundle_gauge(td, gauge), value);
    }
}

/// A counter, named only when the counts are handed over (no string per request).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    Allowed(Credential),
    Denied(Option<Credential>, DenyReason),
    PassedThrough,
    Held,
    /// Credential cache hits (true) or misses.
    Cache(bool),
    Bundle(TrustDomain, BundleEvent),
}

impl Counter {
    pub fn name(&self) -> String {
        match self {
            Counter::Allowed(method) => allowed(*method),
            Counter::Denied(method, reason) => denied_name(*method, *reason),
            Counter::PassedThrough => passed_through(),
            Counter::Held => held(),
            Counter::Cache(hits) => cache(*hits),
            Counter::Bundle(td, event) => bundle_counter(td, *event),
        }
    }

    /// The counter a decided request adds to.
    pub fn of(verdict: &Verdict) -> Counter {
        match verdict {
            Verdict::Authenticated { credential, .. } => Counter::Allowed(*credential),
            Verdict::PassThrough => Counter::PassedThrough,
            Verdict::Reject(rejection) => Counter::Denied(rejection.method, rejection.kind),
        }
    }
}

/// Counter increments of one VM since the last flush.
#[derive(Default)]
pub struct Tally {
    counts: RefCell<BTreeMap<Counter, u64>>,
}

impl Tally {
    pub fn add(&self, counter: Counter, by: u64) {
        if by == 0 {
            return;
        }
        if let Ok(mut counts) = self.counts.try_borrow_mut() {
            *counts.entry(counter).or_default() += by;
        }
    }

    /// Counts a decided request.
    pub fn verdict(&self, verdict: &Verdict) {
        self.add(Counter::of(verdict), 1);
    }

    /// Hands the counts to `sink` and starts again from zero.
    pub fn flush(&self, sink: &dyn MetricSink) {
        let counts = match self.counts.try_borrow_mut() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return,
        };
        for (counter, by) in counts {
            sink.add(&counter.name(), by);
        }
    }
}

#[cfg(test)]
mod tests;
