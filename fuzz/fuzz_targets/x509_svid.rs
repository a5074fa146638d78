//! Fuzz target `x509_svid`: see `spiffe_oauth_filter::fuzz_targets::x509_svid`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::x509_svid(data);
});
