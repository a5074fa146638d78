//! spiffe-oauth-filter: OAuth 2.0 client authentication with SPIFFE SVIDs at the Envoy edge.
//!
//! The crate is a host-agnostic core (everything but [`filter`]) that takes time and I/O as
//! arguments and is unit-tested natively, plus a thin proxy-wasm shell in [`filter`].

pub mod b64;
pub mod bundle;
pub mod jwt_svid;
pub mod log_text;
pub mod spiffe_id;
pub mod strict_json;

pub mod as_metadata;
pub mod authenticator;
pub mod bundle_fetch;
pub mod bundle_wait;
pub mod client_cert;
pub mod config;

pub mod credential_cache;
pub mod deny_reason;
pub mod fetch_lease;
pub mod filter;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_targets;
pub mod metrics;
pub mod oauth_error;
pub mod presented_chains;
#[cfg(test)]
mod test_support;
pub mod token_request;
pub mod trust_store;
pub mod x509_sig_algs;
pub mod x509_svid;
