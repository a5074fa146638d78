//! Every call this filter makes to the proxy-wasm host, in one place.
//!
//! Calls on paths a client or a bundle endpoint controls go through [`abi`](super::abi), which
//! hands back any host status as an error instead of panicking like the SDK's wrappers (a
//! panic traps the VM: every request on that worker fails until Envoy reloads it). Header
//! values are read as bytes and decoded lossily; shared-data reads treat anything but a value
//! as absent. Only `dispatch_http_call` and `set_tick_period` still use the SDK (see `abi`).

use super::abi;
use crate::metrics::MetricSink;
use crate::trust_store::{SharedData, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

/// Host time in milliseconds since the Unix epoch, if the host can tell.
pub fn now_ms() -> Option<u64> {
    abi::current_time_nanos()
        .ok()
        .map(|nanos| nanos / 1_000_000)
        .filter(|ms| *ms > 0)
}

/// A request header, decoded lossily (a non-UTF-8 value never traps the VM).
pub fn request_header(name: &str) -> Option<String> {
    header(MapType::HttpRequestHeaders, name)
}

/// The request headers as read in one host call (names as Envoy holds them: lower case).
pub struct RequestHeaders {
    /// The header map as the host handed it over.
    bytes: Vec<u8>,
    /// Each header's name and value, as byte ranges of `bytes` (decoded only when read).
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl RequestHeaders {
    /// Every request header in one host call; `None` when the host cannot hand them over (then
    /// read them one by one).
    pub fn read() -> Option<Self> {
        let bytes = abi::header_map(MapType::HttpRequestHeaders as u32).ok()?;
        let base = bytes.as_ptr() as usize;
        let range = |part: &[u8]| {
            let start = (part.as_ptr() as usize).wrapping_sub(base);
            start..start.saturating_add(part.len())
        };
        let pairs = abi::decode_header_map(&bytes)?
            .into_iter()
            .map(|(name, value)| (range(name), range(value)))
            .collect();
        Some(RequestHeaders { bytes, pairs })
    }

    /// The first value of `name` (as the host's single-header read answers), decoded lossily
    /// (a non-UTF-8 value never traps the VM).
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.pairs
            .iter()
            .find(|(n, _)| {
                self.bytes
                    .get(n.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            })
            .and_then(|(_, v)| self.bytes.get(v.clone()))
            .map(String::from_utf8_lossy)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| {
            self.bytes
                .get(n.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        })
    }
}

/// A response header, decoded lossily.
pub fn response_header(name: &str) -> Option<String> {
    header(MapType::HttpResponseHeaders, name)
}

/// Replaces the whole response body buffered so far (`size` bytes) with `data`.
pub fn replace_response_body(size: usize, data: &[u8]) -> bool {
    abi::set_buffer(BufferType::HttpResponseBody as u32, 0, size, data).is_ok()
}

/// A header of an HTTP callout's answer.
pub fn call_response_header(name: &str) -> Option<String> {
    header(MapType::HttpCallResponseHeaders, name)
}

fn header(map: MapType, name: &str) -> Option<String> {
    match abi::header(map as u32, name) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Ok(None) => None,
        Err(status) => {
            log::debug!("reading header {name} of {map:?} failed with status {status}");
            None
        }
    }
}

/// Sets (or with `None` removes) a request header. Only valid in the headers phase, or later
/// while the headers are held (`allow_on_headers_stop_iteration`).
pub fn set_request_header(name: &str, value: Option<&str>) {
    let map = MapType::HttpRequestHeaders as u32;
    let result = match value {
        Some(value) => abi::replace_header(map, name, value),
        None => abi::remove_header(map, name),
    };
    if let Err(status) = result {
        log::warn!("setting request header {name} failed with status {status}");
    }
}

/// A connection or request property (e.g. `["connection", "mtls"]`); absent or unreadable
/// reads as `None`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(path).ok().flatten()
}

/// Removes every header (or trailer) of `map` named in `names`.
pub fn remove_all(map: MapType, names: &[String]) {
    for name in names {
        if let Err(status) = abi::remove_header(map as u32, name) {
            log::warn!("removing {name} from {map:?} failed with status {status}");
        }
    }
}

/// Bytes `[0, size)` of a host buffer; `None` unless exactly `size` bytes could be read.
pub fn buffer(kind: BufferType, size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    match abi::buffer(kind as u32, 0, size) {
        Ok(bytes) if bytes.len() == size => Some(bytes),
        _ => None,
    }
}

/// Sends a local reply.
pub fn send_response(status: u32, headers: &[(&str, String)], body: &str) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(code) = abi::send_local_response(status, &headers, body.as_bytes()) {
        log::error!("sending local reply failed with status {code}");
    }
}

/// Dispatches an HTTP callout to an Envoy cluster; the token identifies the answer.
pub fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers, None, vec![], timeout)
}

/// Makes `context_id` the context later calls act on (a paused request, from the root
/// context). False if the host does not know it (the request has ended).
pub fn set_effective_context(context_id: u32) -> bool {
    abi::set_effective_context(context_id).is_ok()
}

/// Resumes the effective context's paused request.
pub fn resume_request() {
    if let Err(status) = abi::continue_request() {
        log::warn!("resuming a held request failed with status {status}");
    }
}

/// Sends `log` records to the host's log at their level, never panicking.
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        let _ = abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Installs the logger (once per VM) and a panic hook that logs the panic before the VM
/// traps, so that a trap is never silent.
pub fn install_logger(level: log::LevelFilter) {
    static LOGGER: HostLogger = HostLogger;
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let _ = abi::log(5, &format!("panicked: {info}"));
        }));
    }
    log::set_max_level(level);
}

/// Follows the host's log level, so that lines Envoy would drop are not even formatted (the
/// level can change at run time through Envoy's admin `/logging`). Unknown: keep the level.
pub fn sync_log_level() {
    let filter = match abi::log_level() {
        Ok(0) => log::LevelFilter::Trace,
        Ok(1) => log::LevelFilter::Debug,
        Ok(2) => log::LevelFilter::Info,
        Ok(3) => log::LevelFilter::Warn,
        Ok(4) => log::LevelFilter::Error,
        Ok(_) => log::LevelFilter::Off,
        Err(_) => return,
    };
    log::set_max_level(filter);
}

/// A random number in `0..1000` for jitter (WASI randomness through the standard library's
/// hasher seeds, mixed with the time).
pub fn random_permille() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(now_ms()) % 1000
}

pub fn set_tick_period(period: Duration) {
    if let Err(e) = hostcalls::set_tick_period(period) {
        log::error!("set_tick_period failed: {e:?}");
    }
}

/// Proxy-wasm shared data (one store per VM id, shared by every worker's VM).
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match abi::shared_data(key) {
            // A CAS token of 0 would make a later write unconditional: never hand one out.
            Ok(Some((bytes, cas))) if cas != 0 => Some((bytes, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match abi::set_shared_data(key, value, cas.unwrap_or(0)) {
            Ok(()) => Ok(()),
            Err(abi::CAS_MISMATCH) => Err(StoreError::CasMismatch),
            Err(other) => Err(StoreError::Host(format!("status {other}"))),
        }
    }
}

/// Envoy's stats as the core's [`MetricSink`]: each name is defined once per VM and its id
/// kept. A host failure loses that count or value (logged at debug), never the request.
#[derive(Default)]
pub struct HostMetrics {
    ids: std::cell::RefCell<std::collections::HashMap<String, u32>>,
}

impl HostMetrics {
    fn id(&self, name: &str, gauge: bool) -> Option<u32> {
        let mut ids = self.ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        match abi::define_metric(name, gauge) {
            Ok(id) => {
                ids.insert(name.to_owned(), id);
                Some(id)
            }
            Err(status) => {
                log::debug!("defining metric {name} failed with status {status}");
                None
            }
        }
    }
}

impl MetricSink for HostMetrics {
    fn define(&self, name: &str, gauge: bool) {
        self.id(name, gauge);
    }

    fn add(&self, counter: &str, by: u64) {
        if let Some(id) = self.id(counter, false) {
            let by = i64::try_from(by).unwrap_or(i64::MAX);
            if let Err(status) = abi::increment_metric(id, by) {
                log::debug!("incrementing metric {counter} failed with status {status}");
            }
        }
    }

    fn set(&self, gauge: &str, value: u64) {
        if let Some(id) = self.id(gauge, true) {
            if let Err(status) = abi::record_metric(id, value) {
                log::debug!("recording metric {gauge} failed with status {status}");
            }
        }
    }
}
