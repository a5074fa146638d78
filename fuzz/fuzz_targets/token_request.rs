//! Fuzz target `token_request`: see `spiffe_oauth_filter::fuzz_targets::token_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::token_request(data);
});
