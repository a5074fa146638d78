//! Fetching bundles from SPIFFE bundle endpoints: what request to send through the host's HTTP
//! callout, how to judge the answer, when the next fetch is due, and which callouts this VM
//! has outstanding (requirements BEP-1 … BEP-7, BEP-9, BEP-10, BEP-13).
//!
//! Host-agnostic: the root context asks `fetch_lease` whether to fetch, sends
//! [`request_headers`], judges the answer's head with [`judge_answer`] and its body with
//! [`evaluate_response`], and schedules the next fetch with [`refresh_delay`] or
//! [`retry_delay`]. Times are milliseconds of host time; randomness (jitter) comes in as an
//! argument.

use crate::bundle::{BundleError, TrustBundle};
use crate::config::{BundleEndpoint, RefreshPolicy};
use crate::spiffe_id::TrustDomain;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Redirects followed in a row before the fetch counts as failed (BEP-9).
pub const MAX_REDIRECTS: u8 = 3;

/// Headers of the GET sent to a bundle endpoint: no credentials of any kind (BEP-4). `path` is
/// the configured one, or a redirect's target on the same authority.
pub fn request_headers<'a>(
    endpoint: &'a BundleEndpoint,
    path: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        (":method", "GET"),
        (":path", path),
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
    /// Any status but 200 or a followed redirect, including Envoy's synthetic 503 (TLS or
    /// connection failure) and 504 (timeout).
    Status(String),
    /// A redirect that is not followed (BEP-9): to another host or scheme, or disabled.
    Redirect {
        location: String,
        why: &'static str,
    },
    TooManyRedirects,
    TooLarge {
        size: usize,
        limit: usize,
    },
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
            FetchError::Redirect { location, why } => {
                write!(f, "redirect to {location} not followed: {why}")
            }
            FetchError::TooManyRedirects => write!(f, "more than {MAX_REDIRECTS} redirects"),
            FetchError::TooLarge { size, limit } => write!(
                f,
                "body of {size} bytes is over limits.max_bundle_bytes ({limit})"
            ),
            FetchError::BodyUnreadable => f.write_str("answer body could not be read"),
            FetchError::Invalid(e) => write!(f, "not a SPIFFE bundle: {e}"),
        }
    }
}

/// What the head of a bundle endpoint's answer calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 200 of acceptable size: read and parse the body.
    ReadBody,
    /// Fetch this path on the same authority instead, this time only (BEP-9).
    Redirect(String),
}

/// Judges the head of a bundle endpoint's answer. `body_size` is checked before the body is
/// read, so an oversized body is never copied into the VM; `hops` is the number of redirects
/// already followed for this fetch.
pub fn judge_answer(
    status: Option<&str>,
    location: Option<&str>,
    body_size: usize,
    endpoint: &BundleEndpoint,
    max_bytes: usize,
    hops: u8,
) -> Result<Answer, FetchError> {
    match status {
        None => Err(FetchError::NoStatus),
        Some("200") if body_size > max_bytes => Err(FetchError::TooLarge {
            size: body_size,
            limit: max_bytes,
        }),
        Some("200") => Ok(Answer::ReadBody),
        Some("301" | "302" | "303" | "307" | "308") => {
            let shown = || location.map_or("nowhere".to_owned(), crate::log_text::quote);
            if !endpoint.follow_redirects {
                return Err(FetchError::Redirect {
                    location: shown(),
                    why: "bundle_endpoint.follow_redirects is false",
                });
            }
            if hops >= MAX_REDIRECTS {
                return Err(FetchError::TooManyRedirects);
            }
            let location = location.ok_or(FetchError::Redirect {
                location: shown(),
                why: "no Location header",
            })?;
            redirect_path(location, &endpoint.authority, &endpoint.path)
                .map(Answer::Redirect)
                .map_err(|why| FetchError::Redirect {
                    location: shown(),
                    why,
                })
        }
        Some(other) => Err(FetchError::Status(other.chars().take(16).collect())),
    }
}

/// Longest `Location` considered.
const MAX_LOCATION_BYTES: usize = 2048;

/// The path a redirect leads to, if it stays on the endpoint's own authority over https: the
/// callout can only reach the configured cluster, whose TLS settings check that authority's
/// certificate, so a redirect to another host cannot be followed with the same checks (BEP-9).
/// `base_path` is the configured path, against which a relative reference is resolved.
fn redirect_path(location: &str, authority: &str, base_path: &str) -> Result<String, &'static str> {
    if location.len() > MAX_LOCATION_BYTES {
        return Err("the location is too long");
    }
    if location.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err("the location has spaces, control or non-ASCII characters");
    }
    let lower = location.get(..8).map(str::to_ascii_lowercase);
    let after_scheme = match lower.as_deref() {
        Some("https://") => location.get(8..),
        _ if location.starts_with("//") => location.get(2..),
        _ => None,
    };
    let target = if let Some(rest) = after_scheme {
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(split);
        if host.contains('@') {
            return Err("the location has userinfo");
        }
        let host = host.strip_suffix(":443").unwrap_or(host);
        let configured = authority.strip_suffix(":443").unwrap_or(authority);
        if !host.eq_ignore_ascii_case(configured) {
            return Err("another host (no cluster is configured for it)");
        }
        path.to_owned()
    } else if location.starts_with('/') {
        location.to_owned()
    } else if location.contains(':') && !location.starts_with(['.', '?', '#']) {
        return Err("not https on the same host");
    } else {
        // A relative reference: resolved against the configured path's directory.
        let dir = base_path
            .rfind('/')
            .and_then(|at| base_path.get(..=at))
            .unwrap_or("/");
        if location.starts_with(['?', '#']) {
            format!(
                "{}{location}",
                base_path.split(['?', '#']).next().unwrap_or("/")
            )
        } else {
            format!("{dir}{location}")
        }
    };
    let path = target.split('#').next().unwrap_or_default();
    Ok(match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    })
}

/// Parses the body of a 200 answer.
pub fn evaluate_response(body: &[u8]) -> Result<TrustBundle, FetchError> {
    TrustBundle::parse(body).map_err(FetchError::Invalid)
}

/// How long until the next refresh after a good fetch (BEP-3): the configured fraction of the
/// bundle's hint (the default without one), clamped, then up to the jitter share taken off.
/// `random_permille` is uniform in `0..1000`.
pub fn refresh_delay(
    bundle: &TrustBundle,
    policy: &RefreshPolicy,
    random_permille: u64,
) -> Duration {
    let base = match bundle.refresh_hint {
        Some(secs) => {
            let hint_ms = u64::try_from(secs).unwrap_or(0).saturating_mul(1000);
            Duration::from_millis(share(hint_ms, policy.hint_permille))
        }
        None => policy.default_refresh,
    };
    jittered(
        base.clamp(policy.min_refresh, policy.max_refresh),
        policy,
        random_permille,
    )
}

/// How long until the next try after `failures` failed fetches in a row (at least 1): the
/// retry delay doubled per failure up to its ceiling, with jitter (BEP-6).
pub fn retry_delay(policy: &RefreshPolicy, failures: u32, random_permille: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let base = policy
        .retry
        .saturating_mul(1 << doublings)
        .min(policy.max_retry);
    jittered(base, policy, random_permille)
}

fn jittered(delay: Duration, policy: &RefreshPolicy, random_permille: u64) -> Duration {
    let ms = duration_ms(delay);
    let cut = share(share(ms, policy.jitter_permille), random_permille.min(999));
    Duration::from_millis(ms.saturating_sub(cut))
}

/// `permille` thousandths of `ms`.
fn share(ms: u64, permille: u64) -> u64 {
    let product = u128::from(ms) * u128::from(permille) / 1000;
    u64::try_from(product).unwrap_or(u64::MAX)
}

/// The callouts this root context has outstanding, by trust domain. When fetches are due is
/// shared by all VMs (see `fetch_lease`); this only remembers which answer belongs to whom.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    /// Trust domain → callout token, the time it was sent and the redirects followed so far.
    calls: BTreeMap<TrustDomain, Outstanding>,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    token: u32,
    sent_ms: u64,
    hops: u8,
}

/// A callout still unanswered this long after its own timeout is considered lost (the host
/// answers timeouts with a synthetic 504, so this only covers VMs whose callbacks never run).
pub const LOST_CALLOUT_GRACE: Duration = Duration::from_secs(5);

/// How long a fetch lease is held for one callout: after this its holder is presumed lost.
pub fn lease_hold_ms(endpoint: &BundleEndpoint) -> u64 {
    duration_ms(endpoint.timeout.saturating_add(LOST_CALLOUT_GRACE))
}

impl InFlight {
    /// Whether a callout for `td` sent by this VM may still be answered.
    pub fn is_live(&self, td: &TrustDomain, now_ms: u64, timeout: Duration) -> bool {
        let lost_after = duration_ms(timeout.saturating_add(LOST_CALLOUT_GRACE));
        self.calls
            .get(td)
            .is_some_and(|call| now_ms.saturating_sub(call.sent_ms) < lost_after)
    }

    /// Records a callout for `td`; `hops` counts the redirects followed to get to it.
    pub fn dispatched(&mut self, td: &TrustDomain, token: u32, now_ms: u64, hops: u8) {
        let call = Outstanding {
            token,
            sent_ms: now_ms,
            hops,
        };
        self.calls.insert(td.clone(), call);
    }

    /// The trust domain a callout answer belongs to and the redirects followed before it,
    /// forgetting the callout.
    pub fn answered(&mut self, token: u32) -> Option<(TrustDomain, u8)> {
        let (td, hops) = self
            .calls
            .iter()
            .find(|(_, call)| call.token == token)
            .map(|(td, call)| (td.clone(), call.hops))?;
        self.calls.remove(&td);
        Some((td, hops))
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
            hint_permille: 250,
            jitter_permille: 100,
            retry: Duration::from_secs(10),
            max_retry: Duration::from_secs(300),
            max_staleness: Duration::from_secs(86_400),
            request_wait: Duration::from_secs(3),
            on_demand_min_interval: Duration::from_secs(10),
        }
    }

    fn with_hint(hint: Option<i64>) -> TrustBundle {
        TrustBundle {
            refresh_hint: hint,
            ..TrustBundle::default()
        }
    }

    fn endpoint() -> BundleEndpoint {
        BundleEndpoint {
            cluster: "c".into(),
            authority: "bundle.example.org".into(),
            path: "/bundle.json".into(),
            timeout: Duration::from_secs(5),
            follow_redirects: true,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// BEP-3: a quarter of the hint by default (SPIRE), the default without a hint (B2), clamped
    /// at both ends; no jitter when the random draw is 0.
    #[test]
    fn bep_3_refresh_delay() {
        let p = policy();
        assert_eq!(refresh_delay(&with_hint(Some(1200)), &p, 0), secs(300));
        assert_eq!(refresh_delay(&with_hint(None), &p, 0), secs(300));
        assert_eq!(refresh_delay(&with_hint(Some(0)), &p, 0), secs(60));
        assert_eq!(refresh_delay(&with_hint(Some(-5)), &p, 0), secs(60));
        assert_eq!(
            refresh_delay(&with_hint(Some(i64::MAX)), &p, 0),
            secs(86_400)
        );
        let whole_hint = RefreshPolicy {
            hint_permille: 1000,
            ..p
        };
        assert_eq!(
            refresh_delay(&with_hint(Some(300)), &whole_hint, 0),
            secs(300)
        );
    }

    /// BEP-3: jitter only ever shortens a delay, by at most the configured share.
    #[test]
    fn bep_3_jitter_shortens_by_at_most_its_share() {
        let p = policy();
        let hinted = with_hint(Some(1200));
        assert_eq!(
            refresh_delay(&hinted, &p, 500),
            Duration::from_millis(285_000)
        );
        assert_eq!(
            refresh_delay(&hinted, &p, 999),
            Duration::from_millis(270_030)
        );
        assert_eq!(
            refresh_delay(&hinted, &p, 5_000),
            Duration::from_millis(270_030)
        );
        let none = RefreshPolicy {
            jitter_permille: 0,
            ..p
        };
        assert_eq!(refresh_delay(&hinted, &none, 999), secs(300));
    }

    /// BEP-6: failed fetches back off exponentially from retry_seconds to max_retry_seconds.
    #[test]
    fn bep_6_retry_backoff() {
        let p = policy();
        let delays: Vec<Duration> = (1..=7).map(|n| retry_delay(&p, n, 0)).collect();
        let expected = [10, 20, 40, 80, 160, 300, 300].map(secs);
        assert_eq!(delays, expected);
        assert_eq!(retry_delay(&p, u32::MAX, 0), secs(300));
        assert_eq!(retry_delay(&p, 0, 0), secs(10));
        assert_eq!(retry_delay(&p, 1, 500), Duration::from_millis(9_500));
    }

    /// BEP-6 / BEP-13 / R5 / R6: non-200 answers and oversized bodies are failures.
    #[test]
    fn bep_6_status_and_size() {
        let ep = endpoint();
        let judge = |status, size| judge_answer(status, None, size, &ep, 1000, 0);
        assert_eq!(judge(Some("200"), 1000), Ok(Answer::ReadBody));
        for s in ["500", "404", "503", "504", "204", "200 "] {
            assert_eq!(judge(Some(s), 10), Err(FetchError::Status(s.into())));
        }
        assert_eq!(judge(None, 10), Err(FetchError::NoStatus));
        assert_eq!(
            judge(Some("200"), 1001),
            Err(FetchError::TooLarge {
                size: 1001,
                limit: 1000
            })
        );
        assert!(matches!(
            evaluate_response(b"<html>"),
            Err(FetchError::Invalid(_))
        ));
        assert!(evaluate_response(br#"{"keys":[]}"#).is_ok());
    }

    /// BEP-10: the answer's content type is not consulted (a valid bundle served as text/plain
    /// is used); a body that is not UTF-8 JSON is an invalid document.
    #[test]
    fn bep_10_content_type_ignored_utf8_required() {
        let ep = endpoint();
        assert_eq!(
            judge_answer(Some("200"), None, 11, &ep, 1000, 0),
            Ok(Answer::ReadBody)
        );
        assert!(evaluate_response(br#"{"keys":[]}"#).is_ok());
        assert!(matches!(
            evaluate_response(b"{\"keys\":[],\"x\":\"\xff\"}"),
            Err(FetchError::Invalid(_))
        ));
    }

    /// BEP-9 / R5: redirects on the same authority over https are followed (bounded); anything
    /// else (a 302 to http too) fails the fetch.
    #[test]
    fn bep_9_redirects() {
        let ep = endpoint();
        let judge = |status, location, hops| judge_answer(status, location, 0, &ep, 1000, hops);
        let to = |p: &str| Ok(Answer::Redirect(p.to_owned()));
        assert_eq!(
            judge(Some("302"), Some("/v2/bundle.json"), 0),
            to("/v2/bundle.json")
        );
        assert_eq!(
            judge(Some("301"), Some("https://BUNDLE.example.org/b?x=1#f"), 2),
            to("/b?x=1")
        );
        assert_eq!(
            judge(Some("308"), Some("https://bundle.example.org"), 0),
            to("/")
        );
        assert_eq!(
            judge(Some("307"), Some("//bundle.example.org/x"), 0),
            to("/x")
        );
        assert_eq!(
            judge(Some("302"), Some("HTTPS://bundle.example.org:443/y"), 0),
            to("/y")
        );
        assert_eq!(judge(Some("302"), Some("v2.json"), 0), to("/v2.json"));
        assert_eq!(judge(Some("302"), Some("?v=2"), 0), to("/bundle.json?v=2"));
        let nested = BundleEndpoint {
            path: "/spiffe/bundle.json".into(),
            ..endpoint()
        };
        assert_eq!(
            judge_answer(Some("302"), Some("v2.json"), 0, &nested, 1000, 0),
            Ok(Answer::Redirect("/spiffe/v2.json".into()))
        );
        let long = format!("/{}", "a".repeat(MAX_LOCATION_BYTES));
        for bad in [
            "http://bundle.example.org/b",
            "https://cdn.example.net/b",
            "https://bundle.example.org:8443/b",
            "https://evil@bundle.example.org/b",
            "https://bundle.example.org.evil/b",
            "ftp://bundle.example.org/b",
            "/a b",
            "/a\n",
            "/caf\u{e9}",
            &long,
        ] {
            assert!(
                matches!(
                    judge(Some("302"), Some(bad), 0),
                    Err(FetchError::Redirect { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            judge(Some("302"), None, 0),
            Err(FetchError::Redirect { .. })
        ));
        assert_eq!(
            judge(Some("302"), Some("/b"), MAX_REDIRECTS),
            Err(FetchError::TooManyRedirects)
        );
        let no_follow = BundleEndpoint {
            follow_redirects: false,
            ..endpoint()
        };
        assert!(matches!(
            judge_answer(Some("302"), Some("/b"), 0, &no_follow, 1000, 0),
            Err(FetchError::Redirect { .. })
        ));
    }

    /// BEP-4: a plain GET with no credentials.
    #[test]
    fn bep_4_plain_get() {
        let ep = endpoint();
        let h = request_headers(&ep, &ep.path);
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
        f.dispatched(&org, 7, 1_000, 2);
        assert!(f.is_live(&org, 1_000, timeout));
        assert!(!f.is_live(&net, 1_000, timeout));
        // Lost after its timeout plus the grace period.
        assert!(f.is_live(&org, 10_999, timeout));
        assert!(!f.is_live(&org, 11_000, timeout));
        assert_eq!(f.answered(99), None);
        assert_eq!(f.answered(7), Some((org.clone(), 2)));
        assert!(!f.is_live(&org, 1_000, timeout));
    }
}
