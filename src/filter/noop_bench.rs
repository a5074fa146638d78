//! Benchmark-only root context (cargo feature `noop-bench`, never in the shipped filter): an
//! HTTP filter that does nothing but return from its callbacks, built from the same SDK and
//! settings. `./build.sh bench` measures it as the floor a wasm filter costs in Envoy, against
//! which the "repeated JWT-SVID" target is set.
//!
//! With a plugin configuration naming host calls (`{"probe": ["headers", "time", ...]}`) it
//! makes those calls on every request and nothing else, so `bench/host_calls.py` can price
//! each host call the filter makes, one at a time, in the same Envoy.

use super::abi;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};
use std::rc::Rc;

/// One host call (or host behaviour) the filter's request path uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Every request header in one call (`proxy_get_header_map_pairs`).
    Headers,
    /// `connection.mtls`.
    Mtls,
    /// `connection.id`.
    ConnectionId,
    /// Host time.
    Time,
    /// A 4-byte shared-data entry (the bundle version entry).
    Shared,
    /// Hold the headers until the body is complete (what the filter does for a token request).
    Pause,
    /// Read the whole body (in the body phase).
    Body,
    /// Set two request headers (in the body phase, while the headers are held).
    SetHeaders,
}

impl Probe {
    fn parse(name: &str) -> Option<Probe> {
        Some(match name {
            "headers" => Probe::Headers,
            "mtls" => Probe::Mtls,
            "connection_id" => Probe::ConnectionId,
            "time" => Probe::Time,
            "shared" => Probe::Shared,
            "pause" => Probe::Pause,
            "body" => Probe::Body,
            "set_headers" => Probe::SetHeaders,
            _ => return None,
        })
    }
}

const SHARED_KEY: &str = "noop-bench/version";

#[derive(Default)]
pub struct NoopRoot {
    probes: Rc<Vec<Probe>>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = abi::buffer(BufferType::PluginConfiguration as u32, 0, 4096)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        let names = config
            .as_ref()
            .and_then(|c| c.get("probe"))
            .and_then(|p| p.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
            .unwrap_or_default();
        let probes: Option<Vec<Probe>> = names.iter().map(|n| Probe::parse(n)).collect();
        let Some(probes) = probes else {
            return false;
        };
        if probes.contains(&Probe::Shared) {
            let _ = abi::set_shared_data(SHARED_KEY, &7u32.to_le_bytes(), 0);
        }
        self.probes = Rc::new(probes);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp {
            probes: Rc::clone(&self.probes),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopHttp {
    probes: Rc<Vec<Probe>>,
}

impl NoopHttp {
    fn has(&self, probe: Probe) -> bool {
        self.probes.contains(&probe)
    }
}

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        for probe in self.probes.iter() {
            let _ = std::hint::black_box(match probe {
                Probe::Headers => abi::header_map(MapType::HttpRequestHeaders as u32).is_ok(),
                Probe::Mtls => abi::property(&["connection", "mtls"]).is_ok(),
                Probe::ConnectionId => abi::property(&["connection", "id"]).is_ok(),
                Probe::Time => abi::current_time_nanos().is_ok(),
                Probe::Shared => abi::shared_data(SHARED_KEY).is_ok(),
                Probe::Pause | Probe::Body | Probe::SetHeaders => true,
            });
        }
        if self.has(Probe::Pause) && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return if self.has(Probe::Pause) {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        if self.has(Probe::Body) {
            let body = abi::buffer(BufferType::HttpRequestBody as u32, 0, body_size);
            let _ = std::hint::black_box(body.is_ok());
        }
        if self.has(Probe::SetHeaders) {
            let map = MapType::HttpRequestHeaders as u32;
            let _ = abi::replace_header(map, "x-spiffe-id", "spiffe://example.org/bench-client");
            let _ = abi::replace_header(map, "x-client-id", "bench-client");
        }
        Action::Continue
    }
}
