//! Every call this filter makes to the proxy-wasm host, in one place.
//!
//! The SDK's `hostcalls` return `Result`, but panic (and so trap the VM) on statuses they do not
//! expect and on non-UTF-8 header values. This module only uses calls whose failure modes are
//! known for the way we call them: header values are read as bytes, header writes happen only
//! in the headers phase or while the headers are held, and shared-data reads treat anything but
//! a value as absent.

use crate::trust_store::{SharedData, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};
use std::time::{Duration, UNIX_EPOCH};

/// Host time in milliseconds since the Unix epoch, if the host can tell.
pub fn now_ms() -> Option<u64> {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .filter(|ms| *ms > 0)
}

/// A request header, decoded lossily (a non-UTF-8 value never traps the VM).
pub fn request_header(name: &str) -> Option<String> {
    header(MapType::HttpRequestHeaders, name)
}

/// A header of an HTTP callout's answer.
pub fn call_response_header(name: &str) -> Option<String> {
    header(MapType::HttpCallResponseHeaders, name)
}

fn header(map: MapType, name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(map, name) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

/// Sets (or with `None` removes) a request header. Only valid in the headers phase, or later
/// while the headers are held (`allow_on_headers_stop_iteration`).
pub fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
        log::warn!("setting request header {name} failed: {status:?}");
    }
}

/// A connection or request property (e.g. `["connection", "mtls"]`); absent or unreadable
/// reads as `None`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// Removes every header (or trailer) of `map` named in `names` that the request carries.
pub fn remove_all(map: MapType, names: &[String]) {
    for name in names {
        if matches!(hostcalls::get_map_value_bytes(map, name), Ok(Some(_))) {
            if let Err(status) = hostcalls::set_map_value(map, name, None) {
                log::warn!("removing {name} from {map:?} failed: {status:?}");
            }
        }
    }
}

/// Bytes `[0, size)` of a host buffer; `None` unless exactly `size` bytes could be read.
pub fn buffer(kind: BufferType, size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(Some(bytes)) if bytes.len() == size => Some(bytes),
        _ => None,
    }
}

/// Sends a local reply.
pub fn send_response(status: u32, headers: &[(&str, String)], body: &str) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(e) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
        log::error!("sending local reply failed: {e:?}");
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
    // SAFETY: an ABI function of the host taking a plain integer.
    unsafe { abi::proxy_set_effective_context(context_id) == abi::OK }
}

/// Resumes the effective context's paused request.
pub fn resume_request() {
    // SAFETY: an ABI function of the host taking a plain integer.
    let status = unsafe { abi::proxy_continue_stream(abi::STREAM_HTTP_REQUEST) };
    if status != abi::OK {
        log::warn!("resuming a held request failed with status {status}");
    }
}

/// The raw host functions whose SDK wrappers panic on statuses they do not expect; declared
/// here returning the plain status integer so that any status is handled.
mod abi {
    pub const OK: u32 = 0;
    pub const STREAM_HTTP_REQUEST: u32 = 0;

    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
    }
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
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(other) => Err(StoreError::Host(format!("{other:?}"))),
        }
    }
}
