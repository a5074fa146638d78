//! Fuzz target `config`: see `spiffe_oauth_filter::fuzz_targets::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::config(data);
});
