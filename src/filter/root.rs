//! Root context: parses the plugin configuration once, then fetches every configured trust
//! domain's bundle from its bundle endpoint on a timer and publishes it in shared data.

use super::host::{self, HostSharedData};
use super::http::TokenFilter;
use crate::bundle::TrustBundle;
use crate::bundle_fetch::{self, duration_ms, FetchError, InFlight, LOST_CALLOUT_GRACE};
use crate::config::Config;
use crate::fetch_lease;
use crate::spiffe_id::TrustDomain;
use crate::trust_store::{self, BundleCache, StoredBundle};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;
use std::time::Duration;

/// Tick period once the first fetch has been dispatched; due times are checked on each tick.
const TICK: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct FilterRoot {
    /// `None` until a configuration is accepted; requests are refused meanwhile.
    config: Option<Rc<Config>>,
    /// Parsed bundles of this VM, shared with its HTTP contexts.
    cache: Rc<BundleCache>,
    /// Callouts this VM has outstanding.
    in_flight: InFlight,
    /// This VM's identity in the shared fetch lease.
    vm: u64,
    steady_tick: bool,
}

impl Context for FilterRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(td) = self.in_flight.answered(token) else {
            return;
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        let now = host::now_ms().unwrap_or_default();
        // A callout the host failed itself (e.g. a body over Envoy's buffer limit) has no
        // headers at all, and reading them would trap the VM.
        let status = if headers == 0 {
            None
        } else {
            host::call_response_header(":status")
        };
        let outcome =
            bundle_fetch::check_status_and_size(status.as_deref(), body_size).and_then(|()| {
                let body = host::buffer(BufferType::HttpCallResponseBody, body_size)
                    .ok_or(FetchError::BodyUnreadable)?;
                let bundle = bundle_fetch::evaluate_response(&body)?;
                // parse() accepted the body as UTF-8 JSON, so nothing is lost here.
                let document = String::from_utf8_lossy(&body).into_owned();
                Ok((bundle, document))
            });
        match outcome {
            Ok((bundle, document)) => {
                self.publish(&config, &td, &bundle, document, now);
                let delay = bundle_fetch::refresh_delay(&bundle, &config.refresh);
                self.release_lease(&config, &td, now.saturating_add(duration_ms(delay)));
            }
            Err(e) => self.fetch_failed(&config, &td, &e, now),
        }
    }
}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size).unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                log::info!(
                    "configured: issuer {}, token paths {:?}, {} trust domain(s), {} client(s)",
                    config.issuer,
                    config.token_paths,
                    config.trust_domains.len(),
                    config.clients.len()
                );
                // The first fetch happens on a tick: callouts from on_configure may never be
                // answered (they also run in Envoy's main-thread base VM).
                self.in_flight = InFlight::default();
                if self.vm == 0 {
                    self.vm = vm_identity();
                }
                host::set_tick_period(config.refresh.initial_delay);
                self.steady_tick = false;
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
            let hold = duration_ms(ep.timeout.saturating_add(LOST_CALLOUT_GRACE));
            if !fetch_lease::try_take(&HostSharedData, key, self.vm, now, hold) {
                continue;
            }
            match host::dispatch(&ep.cluster, bundle_fetch::request_headers(ep), ep.timeout) {
                Ok(token) => self.in_flight.dispatched(td, token, now),
                Err(status) => {
                    let e = FetchError::Dispatch(format!(
                        "{status:?} (is cluster {:?} defined?)",
                        ep.cluster
                    ));
                    self.fetch_failed(&config, td, &e, now);
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TokenFilter::new(
            self.config.clone(),
            Rc::clone(&self.cache),
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
    /// Frees `td`'s fetch lease and sets when any VM fetches next.
    fn release_lease(&self, config: &Config, td: &TrustDomain, next_due_ms: u64) {
        let Some(td_config) = config.trust_domains.get(td) else {
            return;
        };
        let key = &td_config.lease_key;
        if let Err(e) = fetch_lease::release(&HostSharedData, key, self.vm, next_due_ms) {
            log::warn!("releasing the fetch lease of {td} failed: {e:?}");
        }
    }

    fn publish(
        &self,
        config: &Config,
        td: &TrustDomain,
        bundle: &TrustBundle,
        document: String,
        now: u64,
    ) {
        let Some(td_config) = config.trust_domains.get(td) else {
            return;
        };
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
        match trust_store::publish(&HostSharedData, &td_config.bundle_key, &stored) {
            Ok(trust_store::Published::Applied) => log::info!(
                "bundle of {td} fetched: sequence {}, {} jwt-svid key(s), {} x509-svid authorit(ies), {} entr(ies) ignored, refresh hint {}",
                bundle.sequence.map_or("none".to_owned(), |s| s.to_string()),
                bundle.jwt_keys.len(),
                bundle.x509_authorities.len(),
                bundle.skipped.len(),
                bundle.refresh_hint.map_or("none".to_owned(), |s| format!("{s}s")),
            ),
            Ok(trust_store::Published::LowerSequence { in_use }) => log::warn!(
                "bundle of {td} not applied: its spiffe_sequence {} is lower than {in_use} in use",
                bundle.sequence.unwrap_or_default()
            ),
            Err(e) => log::error!("storing the bundle of {td} failed: {e:?}"),
        }
    }

    fn fetch_failed(&mut self, config: &Config, td: &TrustDomain, error: &FetchError, now: u64) {
        let kept = config
            .trust_domains
            .get(td)
            .and_then(|c| trust_store::read(&HostSharedData, &c.bundle_key))
            .map_or(
                "no bundle yet: its SVIDs are rejected".to_owned(),
                |(stored, _)| {
                    format!(
                        "keeping the bundle fetched {}s ago",
                        now.saturating_sub(stored.fetched_at_ms) / 1000
                    )
                },
            );
        log::warn!(
            "bundle fetch for {td} failed: {error}; {kept}; retry in {}s",
            config.refresh.retry.as_secs()
        );
        self.release_lease(
            config,
            td,
            now.saturating_add(duration_ms(config.refresh.retry)),
        );
    }
}
