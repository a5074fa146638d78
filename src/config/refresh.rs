//! The bundle refresh policy of the plugin configuration (`bundle_refresh`): when bundles are
//! fetched, retried and given up on, and how long requests wait for them (README "Bundle
//! lifecycle").

use super::{refuse, ConfigError};
use serde::Deserialize;
use std::time::Duration;

/// When bundles are fetched (BEP-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Delay of the first fetch after the plugin starts.
    pub initial_delay: Duration,
    /// Used when a bundle carries no `spiffe_refresh_hint`.
    pub default_refresh: Duration,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Share of the bundle's `spiffe_refresh_hint` to wait between polls, in thousandths
    /// (SPIRE's federation client polls at a quarter of the hint).
    pub hint_permille: u64,
    /// Up to this share (thousandths) of a delay is taken off at random, so that many
    /// proxies started together do not poll in step.
    pub jitter_permille: u64,
    /// Delay before trying again after a failed fetch; doubled per consecutive failure.
    pub retry: Duration,
    /// Ceiling of the doubled retry delay.
    pub max_retry: Duration,
    /// Age after which a last good bundle is no longer used (BEP-8).
    pub max_staleness: Duration,
    /// How long a token request that needs a fresher bundle (none fetched yet, unknown `kid`)
    /// is held while one is fetched; zero decides at once.
    pub request_wait: Duration,
    /// Least time between two fetches of a trust domain's bundle that requests asked for.
    pub on_demand_min_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRefresh {
    initial_delay_ms: u64,
    default_refresh_seconds: u64,
    min_refresh_seconds: u64,
    max_refresh_seconds: u64,
    hint_fraction: f64,
    jitter_fraction: f64,
    retry_seconds: u64,
    max_retry_seconds: u64,
    max_staleness_seconds: u64,
    request_wait_ms: u64,
    on_demand_min_interval_ms: u64,
}

impl Default for RawRefresh {
    fn default() -> Self {
        RawRefresh {
            initial_delay_ms: 200,
            default_refresh_seconds: 300,
            min_refresh_seconds: 60,
            max_refresh_seconds: 21_600,
            hint_fraction: 0.25,
            jitter_fraction: 0.1,
            retry_seconds: 10,
            max_retry_seconds: 300,
            max_staleness_seconds: 86_400,
            request_wait_ms: 3_000,
            on_demand_min_interval_ms: 10_000,
        }
    }
}

impl RawRefresh {
    pub(super) fn validate(self) -> Result<RefreshPolicy, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let f = |name: &str| format!("bundle_refresh.{name}");
        if self.min_refresh_seconds == 0 {
            errors.push(refuse(f("min_refresh_seconds"), "must be at least 1"));
        }
        if self.max_refresh_seconds < self.min_refresh_seconds {
            errors.push(refuse(
                f("max_refresh_seconds"),
                format!(
                    "{} is less than min_refresh_seconds ({})",
                    self.max_refresh_seconds, self.min_refresh_seconds
                ),
            ));
        }
        if !(self.min_refresh_seconds..=self.max_refresh_seconds)
            .contains(&self.default_refresh_seconds)
        {
            errors.push(refuse(
                f("default_refresh_seconds"),
                format!(
                    "{} is outside min_refresh_seconds … max_refresh_seconds ({} … {})",
                    self.default_refresh_seconds,
                    self.min_refresh_seconds,
                    self.max_refresh_seconds
                ),
            ));
        }
        if self.retry_seconds == 0 {
            errors.push(refuse(f("retry_seconds"), "must be at least 1"));
        }
        if self.max_retry_seconds < self.retry_seconds {
            errors.push(refuse(
                f("max_retry_seconds"),
                format!(
                    "{} is less than retry_seconds ({}); raise it or lower retry_seconds",
                    self.max_retry_seconds, self.retry_seconds
                ),
            ));
        }
        // A bundle refreshed as late as allowed must survive a failed fetch and a retry.
        let margin = self
            .max_refresh_seconds
            .saturating_add(self.max_retry_seconds);
        if self.max_staleness_seconds < margin {
            errors.push(refuse(
                f("max_staleness_seconds"),
                format!(
                    "{} is less than max_refresh_seconds + max_retry_seconds ({margin}): one failed fetch would reject every SVID of a trust domain refreshed at the longest interval",
                    self.max_staleness_seconds
                ),
            ));
        }
        if self.initial_delay_ms == 0 || self.initial_delay_ms > 60_000 {
            errors.push(refuse(f("initial_delay_ms"), "must be between 1 and 60000"));
        }
        let hint_permille = permille(self.hint_fraction, 0.01, 1.0).unwrap_or_else(|| {
            errors.push(refuse(f("hint_fraction"), "must be between 0.01 and 1"));
            0
        });
        let jitter_permille = permille(self.jitter_fraction, 0.0, 0.5).unwrap_or_else(|| {
            errors.push(refuse(f("jitter_fraction"), "must be between 0 and 0.5"));
            0
        });
        if self.request_wait_ms > 30_000 {
            errors.push(refuse(f("request_wait_ms"), "must be at most 30000"));
        }
        if !(100..=3_600_000).contains(&self.on_demand_min_interval_ms) {
            errors.push(refuse(
                f("on_demand_min_interval_ms"),
                "must be between 100 and 3600000",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RefreshPolicy {
            initial_delay: Duration::from_millis(self.initial_delay_ms),
            default_refresh: Duration::from_secs(self.default_refresh_seconds),
            min_refresh: Duration::from_secs(self.min_refresh_seconds),
            max_refresh: Duration::from_secs(self.max_refresh_seconds),
            hint_permille,
            jitter_permille,
            retry: Duration::from_secs(self.retry_seconds),
            max_retry: Duration::from_secs(self.max_retry_seconds),
            max_staleness: Duration::from_secs(self.max_staleness_seconds),
            request_wait: Duration::from_millis(self.request_wait_ms),
            on_demand_min_interval: Duration::from_millis(self.on_demand_min_interval_ms),
        })
    }
}

/// A fraction within `[low, high]` in thousandths (rounded), or `None` outside it or NaN.
fn permille(fraction: f64, low: f64, high: f64) -> Option<u64> {
    if !(low..=high).contains(&fraction) {
        return None;
    }
    // In range, so the product lies in [0, 1000] and the conversion is exact enough.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((fraction * 1000.0).round() as u64)
}
