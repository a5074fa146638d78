//! The proxy-wasm host functions this filter calls on paths a client or a bundle endpoint
//! controls, declared with plain integer statuses.
//!
//! The SDK's `hostcalls` wrappers declare the host's status as a Rust enum (undefined behaviour
//! for a value outside it) and `panic!` on any status they do not expect, which traps the VM:
//! for a filter in front of a token endpoint that is an outage of the worker. Every call here
//! returns `Err(status)` instead, whatever the host answers. `dispatch_http_call` and
//! `set_tick_period` stay with the SDK: the SDK's dispatcher must register callout tokens to
//! route the answers, and neither depends on client input.
//!
//! The encoders (header maps, property paths) are plain functions, unit-tested natively.

use std::ptr::{null, null_mut};

/// `WasmResult::Ok`.
const OK: u32 = 0;
/// `WasmResult::NotFound`.
pub const NOT_FOUND: u32 = 1;
/// `WasmResult::CasMismatch`.
pub const CAS_MISMATCH: u32 = 8;

/// Stream type of the HTTP request (`proxy_continue_stream`).
const STREAM_HTTP_REQUEST: u32 = 0;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Native builds (unit tests) have no host: every call fails with `NOT_FOUND`.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
mod no_host {
    use super::NOT_FOUND;
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_replace_header_map_value(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_remove_header_map_value(_: u32, _: *const u8, _: usize) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_log_level(_: *mut u32) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_property(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_send_local_response(
        _: u32,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: i32,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_get_shared_data(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut u32,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_set_shared_data(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_set_effective_context(_: u32) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_continue_stream(_: u32) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_set_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *const u8,
        _: usize,
    ) -> u32 {
        NOT_FOUND
    }
    pub unsafe fn proxy_record_metric(_: u32, _: u64) -> u32 {
        NOT_FOUND
    }
}
#[cfg(not(target_arch = "wasm32"))]
use no_host::*;

/// Takes ownership of bytes the host wrote into memory it got from the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` must be null or come from the host for this call, with `size` its length.
unsafe fn take_host_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: allocated by proxy_on_memory_allocate as `size` bytes with alignment 1.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

fn status(code: u32) -> Result<(), u32> {
    if code == OK {
        Ok(())
    } else {
        Err(code)
    }
}

/// Writes a log line at `level` (proxy-wasm levels: 0 trace … 5 critical).
pub fn log(level: u32, message: &str) -> Result<(), u32> {
    // SAFETY: pointer and length of a live string.
    status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

/// The host's log level for this plugin (proxy-wasm levels: 0 trace … 5 critical).
pub fn log_level() -> Result<u32, u32> {
    let mut level = 0u32;
    // SAFETY: the host writes one u32 into `level`.
    status(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(level)
}

/// Host time in nanoseconds since the Unix epoch.
pub fn current_time_nanos() -> Result<u64, u32> {
    let mut nanos = 0u64;
    // SAFETY: the host writes one u64 into `nanos`.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

/// A header (or trailer, or callout answer header) value; `Ok(None)` when absent.
pub fn header(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, u32> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: live key; the host returns memory from proxy_on_memory_allocate.
    let code = unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    // SAFETY: the host's answer for this call.
    let value = unsafe { take_host_bytes(data, size) };
    match code {
        OK => Ok(Some(value)),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// Replaces (or adds) a header of `map_type`.
pub fn replace_header(map_type: u32, name: &str, value: &str) -> Result<(), u32> {
    // SAFETY: live key and value.
    status(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Removes every value of a header of `map_type`.
pub fn remove_header(map_type: u32, name: &str) -> Result<(), u32> {
    // SAFETY: live key.
    status(unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) })
}

/// Every header of `map_type` in one call, in the proxy-wasm header map encoding
/// (see [`decode_header_map`]).
pub fn header_map(map_type: u32) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host returns memory from proxy_on_memory_allocate.
    let code = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    // SAFETY: the host's answer for this call.
    let bytes = unsafe { take_host_bytes(data, size) };
    status(code).map(|()| bytes)
}

/// Bytes `[start, start + max)` of a host buffer (request body, callout answer, configuration).
pub fn buffer(buffer_type: u32, start: usize, max: usize) -> Result<Vec<u8>, u32> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: the host returns memory from proxy_on_memory_allocate.
    let code = unsafe { proxy_get_buffer_bytes(buffer_type, start, max, &mut data, &mut size) };
    // SAFETY: the host's answer for this call.
    let bytes = unsafe { take_host_bytes(data, size) };
    status(code).map(|()| bytes)
}

/// Replaces bytes `[start, start + size)` of a host buffer with `data`.
pub fn set_buffer(buffer_type: u32, start: usize, size: usize, data: &[u8]) -> Result<(), u32> {
    // SAFETY: live data.
    status(unsafe { proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len()) })
}

/// A property (e.g. `connection.mtls`); `Ok(None)` when absent.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, u32> {
    let encoded = encode_property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: live path; the host returns memory from proxy_on_memory_allocate.
    let code = unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) };
    // SAFETY: the host's answer for this call.
    let value = unsafe { take_host_bytes(data, size) };
    match code {
        OK if data.is_null() => Ok(None),
        OK => Ok(Some(value)),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// Answers the effective context's request with a local reply.
pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), u32> {
    let encoded = encode_header_map(headers);
    // SAFETY: live buffers; no details string, no gRPC status (-1).
    status(unsafe {
        proxy_send_local_response(
            status_code,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            encoded.as_ptr(),
            encoded.len(),
            -1,
        )
    })
}

/// A shared-data value and its CAS token; `Ok(None)` when the key has none.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, u32> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: live key; the host returns memory from proxy_on_memory_allocate.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    let found = !data.is_null();
    // SAFETY: the host's answer for this call.
    let value = unsafe { take_host_bytes(data, size) };
    match code {
        OK if found => Ok(Some((value, cas))),
        OK | NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

/// Writes a shared-data value; `cas` 0 writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
    // SAFETY: live key and value.
    status(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// Makes `context_id` the context later calls act on.
pub fn set_effective_context(context_id: u32) -> Result<(), u32> {
    // SAFETY: a plain integer argument.
    status(unsafe { proxy_set_effective_context(context_id) })
}

/// Resumes the effective context's paused request.
pub fn continue_request() -> Result<(), u32> {
    // SAFETY: a plain integer argument.
    status(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

/// Defines a counter (`gauge` false) or gauge named `name`; its metric id.
pub fn define_metric(name: &str, gauge: bool) -> Result<u32, u32> {
    let mut id = 0u32;
    // SAFETY: live name; the host writes one u32 into `id`.
    status(unsafe { proxy_define_metric(u32::from(gauge), name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds `by` to a counter.
pub fn increment_metric(id: u32, by: i64) -> Result<(), u32> {
    // SAFETY: plain integer arguments.
    status(unsafe { proxy_increment_metric(id, by) })
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) -> Result<(), u32> {
    // SAFETY: plain integer arguments.
    status(unsafe { proxy_record_metric(id, value) })
}

/// The proxy-wasm header map encoding: the pair count, each name and value length (u32, little
/// endian), then each name and value followed by a NUL.
pub fn encode_header_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(n, v)| n.len() + v.len() + 10)
            .sum::<usize>(),
    );
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes the proxy-wasm header map encoding (see [`encode_header_map`]) into name and value
/// byte slices, in order; `None` when the bytes do not follow it.
pub fn decode_header_map(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = u32_at(0)?;
    // Every pair needs 8 bytes of lengths and 2 NULs: a count the bytes cannot hold is refused
    // before anything is allocated for it.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let name_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len)?;
        (bytes.get(data) == Some(&0)).then_some(())?;
        data = data.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?;
        (bytes.get(data) == Some(&0)).then_some(())?;
        data = data.checked_add(1)?;
        pairs.push((name, value));
    }
    (data == bytes.len()).then_some(pairs)
}

/// The proxy-wasm property path encoding: segments joined by NUL.
pub fn encode_property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_encoding() {
        let encoded = encode_header_map(&[(":status", "401"), ("a", "")]);
        let mut want = vec![2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b":status\x00401\x00a\x00\x00");
        assert_eq!(encoded, want);
        assert_eq!(encode_header_map(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn header_map_decoding_inverts_encoding_and_refuses_anything_else() {
        let pairs = [(":path", "/token"), ("x-a", ""), ("", "v")];
        let encoded = encode_header_map(&pairs);
        let decoded = decode_header_map(&encoded).unwrap();
        let as_bytes: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(decoded, as_bytes);
        assert_eq!(decode_header_map(&encode_header_map(&[])), Some(vec![]));
        // Every truncation, a trailing byte, a missing NUL, and huge counts or lengths.
        for cut in 0..encoded.len() {
            assert_eq!(decode_header_map(&encoded[..cut]), None, "cut at {cut}");
        }
        let mut longer = encoded.clone();
        longer.push(0);
        assert_eq!(decode_header_map(&longer), None);
        let mut no_nul = encoded.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(decode_header_map(&no_nul), None);
        for huge in [u32::MAX, 1 << 30] {
            let mut count = encoded.clone();
            count[..4].copy_from_slice(&huge.to_le_bytes());
            assert_eq!(decode_header_map(&count), None);
            let mut len = encoded.clone();
            len[4..8].copy_from_slice(&huge.to_le_bytes());
            assert_eq!(decode_header_map(&len), None);
        }
    }

    #[test]
    fn property_path_encoding() {
        assert_eq!(
            encode_property_path(&["connection", "mtls"]),
            b"connection\x00mtls".to_vec()
        );
        assert!(encode_property_path(&[]).is_empty());
    }

    /// Natively there is no host: every call reports a status instead of panicking.
    #[test]
    fn no_host_means_errors_not_panics() {
        assert_eq!(header(0, "x"), Ok(None));
        assert_eq!(current_time_nanos(), Err(NOT_FOUND));
        assert_eq!(shared_data("k"), Ok(None));
        assert_eq!(set_shared_data("k", b"v", 0), Err(NOT_FOUND));
        assert_eq!(continue_request(), Err(NOT_FOUND));
    }
}
