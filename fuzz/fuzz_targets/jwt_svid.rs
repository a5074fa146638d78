//! Fuzz target `jwt_svid`: see `spiffe_oauth_filter::fuzz_targets::jwt_svid`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::jwt_svid(data);
});
