//! Fuzz target `bundle`: see `spiffe_oauth_filter::fuzz_targets::bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    spiffe_oauth_filter::fuzz_targets::bundle(data);
});
