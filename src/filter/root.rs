//! Root context: parses the plugin configuration once, then fetches every configured trust
//! domain's bundle from its bundle endpoint on a timer and publishes it in shared data, and
//! decides the token requests of its worker that were held for a bundle refresh.

use super::host::{self, HostMetrics, HostSharedData};
use super::http::{HeldRequests, TokenFilter, VmCaches};
use crate::bundle::TrustBundle;
use crate::bundle_fetch::{self, duration_ms, Answer, FetchError, InFlight};
use crate::config::Config;
use crate::fetch_lease;
use crate::metrics::{self, BundleEvent, BundleState, Counter};
use crate::spiffe_id::TrustDomain;
use crate::trust_store::{self, StoredBundle};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;
use std::time::Duration;

/// Tick period once the first fetch has been dispatched: due fetches and held requests whose
/// fetch another worker completed are noticed within one tick.
const TICK: Duration = Duration::from_millis(100);

pub struct FilterRoot {
    /// This root context's id, made effective again after deciding held requests.
    context_id: u32,
    /// `None` until a configuration is accepted; requests are refused meanwhile.
    config: Option<Rc<Config>>,
    /// Parsed bundles and verified credentials of this VM and configuration, shared with its
    /// HTTP contexts.
    caches: Rc<VmCaches>,
    /// Token requests of this worker held for a bundle refresh.
    held: HeldRequests,
    /// Callouts this VM has outstanding.
    in_flight: InFlight,
    /// This VM's identity in the shared fetch lease.
    vm: u64,
    steady_tick: bool,
    /// Envoy's stats, and the credential cache counts already handed to them.
    metrics: HostMetrics,
    cache_reported: (u64, u64),
}

impl FilterRoot {
    pub fn new(context_id: u32) -> Self {
        FilterRoot {
            context_id,
            config: None,
            caches: Rc::new(VmCaches::new(0)),
            held: Rc::default(),
            in_flight: InFlight::default(),
            vm: 0,
            steady_tick: false,
            metrics: HostMetrics::default(),
            cache_reported: (0, 0),
        }
    }
}

impl Context for FilterRoot {
    /// The plugin goes (configuration replaced, listener drained, Envoy stopping): its trust
    /// domains' bundle gauges read 0 rather than the last value for ever (a configuration that
    /// still has them sets them again on its next tick).
    fn on_done(&mut self) -> bool {
        if let Some(config) = &self.config {
            for td in config.trust_domains.keys() {
                metrics::record_bundle(&self.metrics, td, None);
            }
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some((td, hops)) = self.in_flight.answered(token) else {
            return;
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        let now = host::now_ms().unwrap_or_default();
        match self.read_answer(&config, &td, headers, body_size, hops) {
            Ok(Some((bundle, document))) => {
                let delay =
                    bundle_fetch::refresh_delay(&bundle, &config.refresh, host::random_permille());
                self.publish(&config, &td, &bundle, document, now, delay);
                self.release_fetched(&config, &td, now.saturating_add(duration_ms(delay)));
            }
            // A redirect being followed: the lease stays held.
            Ok(None) => {}
            Err(e) => self.fetch_failed(&config, &td, &e, now),
        }
        // Requests of this worker waiting for this fetch are decided at once.
        self.decide_held(now);
    }
}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        host::sync_log_level();
        let bytes = host::buffer(BufferType::PluginConfiguration, size).unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "configured: issuer {}, token paths {:?}, {} trust domain(s), {} client(s), {} client prefix(es)",
                    config.issuer,
                    config.token_paths,
                    config.trust_domains.len(),
                    config.clients.len(),
                    config.client_prefixes.len()
                );
                let r = &config.refresh;
                log::info!(
                    "bundle refresh: every {}‰ of the hint ({}s without one), within {}s … {}s, less up to {}‰ jitter; retry after {}s doubling to {}s; a bundle older than {}s is not used; requests wait up to {}ms for a fetch, at most one every {}ms",
                    r.hint_permille,
                    r.default_refresh.as_secs(),
                    r.min_refresh.as_secs(),
                    r.max_refresh.as_secs(),
                    r.jitter_permille,
                    r.retry.as_secs(),
                    r.max_retry.as_secs(),
                    r.max_staleness.as_secs(),
                    r.request_wait.as_millis(),
                    r.on_demand_min_interval.as_millis()
                );
                // The first fetch happens on a tick: callouts from on_configure may never be
                // answered (they also run in Envoy's main-thread base VM).
                self.in_flight = InFlight::default();
                if self.vm == 0 {
                    self.vm = vm_identity();
                }
                host::set_tick_period(config.refresh.initial_delay);
                self.steady_tick = false;
                if let Some(header) = &config.dry_run {
                    log::warn!(
                        "dry run: every request is forwarded unchanged, with its verdict in {header}"
                    );
                }
                metrics::define_all(&config, &self.metrics);
                // Cached verdicts hold for one configuration only (audience, leeway, limits).
                self.caches = Rc::new(VmCaches::new(config.limits.max_cached_credentials));
                self.cache_reported = (0, 0);
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("{e}; the configuration is refused");
                self.config = None;
                false
            }
        }
    }

    fn on_tick(&mut self) {
        host::sync_log_level();
        if !self.steady_tick {
            host::set_tick_period(TICK);
            self.steady_tick = true;
        }
        let Some(config) = self.config.clone() else {
            return;
        };
        let now = host::now_ms().unwrap_or_default();
        for (td, td_config) in &config.trust_domains {
            let ep = &td_config.endpoint;
            if self.in_flight.is_live(td, now, ep.timeout) {
                continue;
            }
            // One VM per due fetch, process-wide (BEP-12, FC-20).
            let key = &td_config.lease_key;
            let hold = bundle_fetch::lease_hold_ms(ep);
            if !fetch_lease::try_take(&HostSharedData, key, self.vm, now, hold) {
                continue;
            }
            if let Err(e) = self.dispatch(&config, td, &ep.path, 0, now) {
                self.fetch_failed(&config, td, &e, now);
            }
        }
        self.report_metrics(&config, now);
        // Last: deciding held requests switches the effective context.
        self.decide_held(now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TokenFilter::new(
            context_id,
            self.config.clone(),
            Rc::clone(&self.caches),
            Rc::clone(&self.held),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// A random identity for this VM's root context in the shared fetch lease (never 0).
fn vm_identity() -> u64 {
    use std::hash::BuildHasher;
    let id = std::collections::hash_map::RandomState::new().hash_one(host::now_ms());
    id.max(1)
}

impl FilterRoot {
    /// Sends the GET for `td`'s bundle to `path` (the configured one, or a redirect's target
    /// after `hops` redirects).
    fn dispatch(
        &mut self,
        config: &Config,
        td: &TrustDomain,
        path: &str,
        hops: u8,
        now: u64,
    ) -> Result<(), FetchError> {
        let Some(td_config) = config.trust_domains.get(td) else {
            return Ok(());
        };
        let ep = &td_config.endpoint;
        match host::dispatch(
            &ep.cluster,
            bundle_fetch::request_headers(ep, path),
            ep.timeout,
        ) {
            Ok(token) => {
                self.in_flight.dispatched(td, token, now, hops);
                Ok(())
            }
            Err(status) => Err(FetchError::Dispatch(format!(
                "{status:?} (is cluster {:?} defined?)",
                ep.cluster
            ))),
        }
    }

    /// Reads a bundle endpoint's answer: the bundle and its document, or `None` when a
    /// redirect was followed (a new callout is out).
    fn read_answer(
        &mut self,
        config: &Config,
        td: &TrustDomain,
        headers: usize,
        body_size: usize,
        hops: u8,
    ) -> Result<Option<(TrustBundle, String)>, FetchError> {
        let Some(td_config) = config.trust_domains.get(td) else {
            return Err(FetchError::Dispatch(
                "trust domain no longer configured".into(),
            ));
        };
        // A callout the host failed itself (e.g. a body over Envoy's buffer limit) has no
        // headers at all, and reading them would trap the VM.
        let (status, location) = if headers == 0 {
            (None, None)
        } else {
            (
                host::call_response_header(":status"),
                host::call_response_header("location"),
            )
        };
        let answer = bundle_fetch::judge_answer(
            status.as_deref(),
            location.as_deref(),
            body_size,
            &td_config.endpoint,
            config.limits.max_bundle_bytes,
            hops,
        )?;
        match answer {
            Answer::Redirect(path) => {
                log::info!(
                    "bundle endpoint of {td} redirects to {}; following it this time",
                    crate::log_text::quote(&path)
                );
                let now = host::now_ms().unwrap_or_default();
                let ep = &td_config.endpoint;
                let hold = bundle_fetch::lease_hold_ms(ep);
                let key = &td_config.lease_key;
                if !fetch_lease::renew(&HostSharedData, key, self.vm, now.saturating_add(hold)) {
                    return Err(FetchError::Dispatch("the fetch lease lapsed".into()));
                }
                self.dispatch(config, td, &path, hops.saturating_add(1), now)?;
                Ok(None)
            }
            Answer::ReadBody => {
                let body = host::buffer(BufferType::HttpCallResponseBody, body_size)
                    .ok_or(FetchError::BodyUnreadable)?;
                let bundle = bundle_fetch::evaluate_response(&body)?;
                // parse() accepted the body as UTF-8 JSON, so nothing is lost here.
                let document = String::from_utf8_lossy(&body).into_owned();
                Ok(Some((bundle, document)))
            }
        }
    }

    /// Hands this VM's counts to Envoy and sets the bundle gauges (every tick).
    fn report_metrics(&mut self, config: &Config, now: u64) {
        let tally = &self.caches.tally;
        let (hits, misses) = self.caches.credentials.counts();
        tally.add(
            Counter::Cache(true),
            hits.saturating_sub(self.cache_reported.0),
        );
        tally.add(
            Counter::Cache(false),
            misses.saturating_sub(self.cache_reported.1),
        );
        self.cache_reported = (hits, misses);
        tally.flush(&self.metrics);
        let max_staleness = duration_ms(config.refresh.max_staleness);
        for (td, td_config) in &config.trust_domains {
            let found = self
                .caches
                .bundles
                .fetched(&HostSharedData, &td_config.bundle_key, now);
            let state = found.as_ref().ok().map(|(fetched_at, bundle)| {
                let age_ms = now.saturating_sub(*fetched_at);
                BundleState {
                    bundle,
                    age_secs: age_ms / 1000,
                    usable: age_ms <= max_staleness,
                }
            });
            metrics::record_bundle(&self.metrics, td, state);
        }
    }

    /// Frees `td`'s fetch lease after a good fetch and sets when any VM fetches next.
    fn release_fetched(&self, config: &Config, td: &TrustDomain, next_due_ms: u64) {
        let Some(td_config) = config.trust_domains.get(td) else {
            return;
        };
        let key = &td_config.lease_key;
        if let Err(e) = fetch_lease::release_fetched(&HostSharedData, key, self.vm, next_due_ms) {
            log::warn!("releasing the fetch lease of {td} failed: {e:?}");
        }
    }

    /// Decides this worker's held requests whose fetch completed or whose wait is over.
    fn decide_held(&self, now: u64) {
        let ready = {
            let Ok(mut held) = self.held.try_borrow_mut() else {
                return;
            };
            held.take_ready(
                |key| fetch_lease::current(&HostSharedData, key).map(|l| l.completed),
                now,
            )
        };
        if ready.is_empty() {
            return;
        }
        for (context_id, pending) in ready {
            // An ended request is unknown to the host by now; nothing to answer.
            if !host::set_effective_context(context_id) {
                continue;
            }
            // Decided once more, now without waiting.
            if pending.conclude(pending.verdict()) {
                host::resume_request();
            }
        }
        host::set_effective_context(self.context_id);
    }

    fn publish(
        &self,
        config: &Config,
        td: &TrustDomain,
        bundle: &TrustBundle,
        document: String,
        now: u64,
        next_in: Duration,
    ) {
        let Some(td_config) = config.trust_domains.get(td) else {
            return;
        };
        let replaced_age = trust_store::read(&HostSharedData, &td_config.bundle_key).map_or(
            "first bundle".to_owned(),
            |(old, _)| {
                format!(
                    "replaces one fetched {}s ago",
                    now.saturating_sub(old.fetched_at_ms) / 1000
                )
            },
        );
        for skipped in &bundle.skipped {
            log::warn!(
                "bundle of {td}: key entry {} ignored: {}",
                skipped.index,
                skipped.reason
            );
        }
        let stored = StoredBundle {
            fetched_at_ms: now,
            sequence: bundle.sequence,
            document,
        };
        let published = trust_store::publish(&HostSharedData, &td_config.bundle_key, &stored);
        let event = match published {
            Ok(trust_store::Published::LowerSequence { .. }) => BundleEvent::NotApplied,
            Ok(trust_store::Published::Applied) => BundleEvent::Fetched,
            Err(_) => BundleEvent::FetchFailed,
        };
        self.caches.tally.add(Counter::Bundle(td.clone(), event), 1);
        match published {
            Ok(trust_store::Published::Applied) => log::info!(
                "bundle of {td} fetched: sequence {}, {} jwt-svid key(s), {} x509-svid authorit(ies), {} entr(ies) ignored, refresh hint {}, {replaced_age}; next fetch in {}ms",
                bundle.sequence.map_or("none".to_owned(), |s| s.to_string()),
                bundle.jwt_keys.len(),
                bundle.x509_authorities.len(),
                bundle.skipped.len(),
                bundle.refresh_hint.map_or("none".to_owned(), |s| format!("{s}s")),
                next_in.as_millis(),
            ),
            Ok(trust_store::Published::LowerSequence { in_use }) => log::warn!(
                "bundle of {td} not applied: its spiffe_sequence {} is lower than {in_use} in use",
                bundle.sequence.unwrap_or_default()
            ),
            Err(e) => log::error!("storing the bundle of {td} failed: {e:?}"),
        }
    }

    fn fetch_failed(&mut self, config: &Config, td: &TrustDomain, error: &FetchError, now: u64) {
        let Some(td_config) = config.trust_domains.get(td) else {
            return;
        };
        let kept = trust_store::read(&HostSharedData, &td_config.bundle_key).map_or(
            "no bundle yet: its SVIDs are rejected".to_owned(),
            |(stored, _)| {
                let age = Duration::from_millis(now.saturating_sub(stored.fetched_at_ms));
                let sequence = stored.sequence.map_or("none".to_owned(), |s| s.to_string());
                if age > config.refresh.max_staleness {
                    format!(
                        "the last good bundle (sequence {sequence}, fetched {}s ago) is over bundle_refresh.max_staleness_seconds: its SVIDs are rejected",
                        age.as_secs()
                    )
                } else {
                    format!(
                        "keeping the bundle of sequence {sequence} fetched {}s ago",
                        age.as_secs()
                    )
                }
            },
        );
        let random = host::random_permille();
        let next_due = |failures: u32| {
            let delay = bundle_fetch::retry_delay(&config.refresh, failures, random);
            now.saturating_add(duration_ms(delay))
        };
        let released =
            fetch_lease::release_failed(&HostSharedData, &td_config.lease_key, self.vm, next_due);
        let retry = match released {
            Ok(Some(failures)) => format!(
                "failure {failures} in a row; retry in {}ms",
                next_due(failures).saturating_sub(now)
            ),
            Ok(None) => "the fetch lease had lapsed".to_owned(),
            Err(e) => format!("releasing the fetch lease failed: {e:?}"),
        };
        log::warn!("bundle fetch for {td} failed: {error}; {kept}; {retry}");
        let failed = Counter::Bundle(td.clone(), BundleEvent::FetchFailed);
        self.caches.tally.add(failed, 1);
    }
}
