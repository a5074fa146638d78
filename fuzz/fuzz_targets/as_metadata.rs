//! Fuzz target `as_metadata`: see `spiffe_oauth_filter::fuzz_targets::as_metadata`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::as_metadata(data);
});
