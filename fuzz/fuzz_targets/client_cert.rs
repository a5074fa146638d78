//! Fuzz target `client_cert`: see `spiffe_oauth_filter::fuzz_targets::client_cert`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::client_cert(data);
});
