//! Fuzz target `spiffe_id`: see `spiffe_oauth_filter::fuzz_targets::spiffe_id`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::spiffe_id(data);
});
