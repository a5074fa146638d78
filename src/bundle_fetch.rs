//! Fetching bundles from SPIFFE bundle endpoints: what request to send through the host's HTTP
//! callout, how to judge the answer, when the next fetch is due, and which callouts this VM
//! has outstanding (requirements BEP-1 … BEP-7, BEP-10, BEP-13).
//!
//! Host-agnostic: the root context asks `fetch_lease` whether to fetch, sends
//! [`request_headers`], and feeds the answer to [`evaluate_response`]. Times are milliseconds
//! of host time.

use crate::bundle::{BundleError, TrustBundle};
use crate::config::{BundleEndpoint, RefreshPolicy};
use crate::spiffe_id::TrustDomain;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Largest bundle document accepted (BEP-13). Real bundles are a few KiB.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// Headers of the GET sent to a bundle endpoint: no credentials of any kind (BEP-4).
pub fn request_headers(endpoint: &BundleEndpoint) -> Vec<(&'static str, &str)> {
    vec![
        (":method", "GET"),
        (":path", endpoint.path.as_str()),
        (":authority", endpoint.authority.as_str()),
        ("accept", "application/json"),
    ]
}

/// Why a fetch did not produce a usable bundle. The last good bundle stays in use (BEP-6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The callout could not be dispatched (unknown cluster, missing header).
    Dispatch(String),
    /// No `:status` in the answer.
    NoStatus,
    /// Any status but 200, including Envoy's synthetic 503 (TLS or connection failure) and
    /// 504 (timeout). Redirects are failures: the callout does not follow them (BEP-9).
    Status(String),
    TooLarge(usize),
    /// The host did not hand over the announced body.
    BodyUnreadable,
    Invalid(BundleError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Dispatch(e) => write!(f, "callout not dispatched: {e}"),
            FetchError::NoStatus => f.write_str("answer has no :status"),
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::TooLarge(n) => write!(f, "body of {n} bytes is over {MAX_BUNDLE_BYTES}"),
            FetchError::BodyUnreadable => f.write_str("answer body could not be read"),
            FetchError::Invalid(e) => write!(f, "not a SPIFFE bundle: {e}"),
        }
    }
}

/// Judges a bundle endpoint's answer. `body_size` is checked before the body is read, so an
/// oversized body is never copied into the VM.
pub fn check_status_and_size(status: Option<&str>, body_size: usize) -> Result<(), FetchError> {
    match status {
        None => Err(FetchError::NoStatus),
        Some("200") if body_size > MAX_BUNDLE_BYTES => Err(FetchError::TooLarge(body_size)),
        Some("200") => Ok(()),
        Some(other) => Err(FetchError::Status(other.chars().take(16).collect())),
    }
}

/// Parses the body of a 200 answer.
pub fn evaluate_response(body: &[u8]) -> Result<TrustBundle, FetchError> {
    TrustBundle::parse(body).map_err(FetchError::Invalid)
}

/// How long until the next refresh after a good fetch: the bundle's hint, clamped (BEP-3).
pub fn refresh_delay(bundle: &TrustBundle, policy: &RefreshPolicy) -> Duration {
    let hint = match bundle.refresh_hint {
        Some(secs) => Duration::from_secs(u64::try_from(secs).unwrap_or(0)),
        None => policy.default_refresh,
    };
    hint.clamp(policy.min_refresh, policy.max_refresh)
}

/// The callouts this root context has outstanding, by trust domain. When fetches are due is
/// shared by all VMs (see `fetch_lease`); this only remembers which answer belongs to whom.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    /// Trust domain → callout token and the time it was sent.
    calls: BTreeMap<TrustDomain, (u32, u64)>,
}

/// A callout still unanswered this long after its own timeout is considered lost (the host
/// answers timeouts with a synthetic 504, so this only covers VMs whose callbacks never run).
pub const LOST_CALLOUT_GRACE: Duration = Duration::from_secs(5);

impl InFlight {
    /// Whether a callout for `td` sent by this VM may still be answered.
    pub fn is_live(&self, td: &TrustDomain, now_ms: u64, timeout: Duration) -> bool {
        let lost_after = duration_ms(timeout.saturating_add(LOST_CALLOUT_GRACE));
        self.calls
            .get(td)
            .is_some_and(|(_, sent)| now_ms.saturating_sub(*sent) < lost_after)
    }

    pub fn dispatched(&mut self, td: &TrustDomain, token: u32, now_ms: u64) {
        self.calls.insert(td.clone(), (token, now_ms));
    }

    /// The trust domain a callout answer belongs to, forgetting the callout.
    pub fn answered(&mut self, token: u32) -> Option<TrustDomain> {
        let td = self
            .calls
            .iter()
            .find(|(_, (t, _))| *t == token)
            .map(|(td, _)| td.clone())?;
        self.calls.remove(&td);
        Some(td)
    }
}

/// Milliseconds, saturating.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            initial_delay: Duration::from_millis(200),
            default_refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(86_400),
            retry: Duration::from_secs(10),
            max_staleness: Duration::from_secs(86_400),
        }
    }

    fn with_hint(hint: Option<i64>) -> TrustBundle {
        TrustBundle {
            refresh_hint: hint,
            ..TrustBundle::default()
        }
    }

    /// BEP-3: hint followed, default without one, clamped at both ends.
    #[test]
    fn bep_3_refresh_delay() {
        let p = policy();
        assert_eq!(
            refresh_delay(&with_hint(Some(300)), &p),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_delay(&with_hint(None), &p),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_delay(&with_hint(Some(0)), &p),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_delay(&with_hint(Some(-5)), &p),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_delay(&with_hint(Some(1_000_000_000)), &p),
            Duration::from_secs(86_400)
        );
    }

    /// BEP-6 / R5 / R6: non-200 answers, oversized and unparsable bodies are failures.
    #[test]
    fn bep_6_status_and_size() {
        assert_eq!(check_status_and_size(Some("200"), 10), Ok(()));
        for s in ["500", "404", "302", "301", "503", "504", "204"] {
            assert_eq!(
                check_status_and_size(Some(s), 10),
                Err(FetchError::Status(s.into()))
            );
        }
        assert_eq!(check_status_and_size(None, 10), Err(FetchError::NoStatus));
        assert_eq!(
            check_status_and_size(Some("200"), MAX_BUNDLE_BYTES + 1),
            Err(FetchError::TooLarge(MAX_BUNDLE_BYTES + 1))
        );
        assert!(matches!(
            evaluate_response(b"<html>"),
            Err(FetchError::Invalid(_))
        ));
        assert!(evaluate_response(br#"{"keys":[]}"#).is_ok());
    }

    /// BEP-4: a plain GET with no credentials.
    #[test]
    fn bep_4_plain_get() {
        let ep = BundleEndpoint {
            cluster: "c".into(),
            authority: "bundle.example.org".into(),
            path: "/bundle.json".into(),
            timeout: Duration::from_secs(5),
        };
        let h = request_headers(&ep);
        assert_eq!(h[0], (":method", "GET"));
        assert!(h.contains(&(":path", "/bundle.json")));
        assert!(h.contains(&(":authority", "bundle.example.org")));
        assert!(!h
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization")));
    }

    #[test]
    fn in_flight_callouts() {
        let org = TrustDomain::parse("example.org").unwrap();
        let net = TrustDomain::parse("example.net").unwrap();
        let timeout = Duration::from_secs(5);
        let mut f = InFlight::default();
        assert!(!f.is_live(&org, 0, timeout));
        f.dispatched(&org, 7, 1_000);
        assert!(f.is_live(&org, 1_000, timeout));
        assert!(!f.is_live(&net, 1_000, timeout));
        // Lost after its timeout plus the grace period.
        assert!(f.is_live(&org, 10_999, timeout));
        assert!(!f.is_live(&org, 11_000, timeout));
        assert_eq!(f.answered(99), None);
        assert_eq!(f.answered(7), Some(org.clone()));
        assert!(!f.is_live(&org, 1_000, timeout));
    }
}
