//! Benchmark-only root context (cargo feature `crypto-bench`, never in the shipped filter):
//! times the per-request work of the core inside the host's wasm runtime (Envoy's V8) and logs
//! one line per case, for `./build.sh bench`. Its plugin configuration names the cases:
//!
//! ```json
//! {"iterations": 200, "audience": "https://as.example.com",
//!  "bundle": "<bundle document>", "tokens": {"ES256": "<JWT-SVID>", ...},
//!  "chain": {"leaf": "<base64 DER>", "intermediates": ["<base64 DER>"]}, "now": 1780000000}
//! ```
//!
//! Every case runs `iterations` times in five batches; the line gives the fastest and the
//! median batch's mean in microseconds (`crypto-bench ES256 verify: best 512.3 µs, median
//! 530.1 µs`), timed with host time.

use super::host;
use crate::bundle::TrustBundle;
use crate::credential_cache::CredentialCache;
use crate::jwt_svid::{JwtSvid, JwtSvidPolicy};
use crate::token_request::AuthParameters;
use crate::x509_svid;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::BufferType;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct BenchConfig {
    iterations: u32,
    audience: String,
    bundle: String,
    tokens: BTreeMap<String, String>,
    chain: Option<Chain>,
    now: u64,
}

#[derive(Deserialize)]
struct Chain {
    leaf: String,
    intermediates: Vec<String>,
}

pub struct CryptoBenchRoot;

impl Context for CryptoBenchRoot {}

impl RootContext for CryptoBenchRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size).unwrap_or_default();
        match serde_json::from_slice::<BenchConfig>(&bytes) {
            Ok(config) => {
                run(&config);
                true
            }
            Err(e) => {
                log::error!("crypto-bench: bad configuration: {e}");
                false
            }
        }
    }
}

fn now_nanos() -> u64 {
    super::abi::current_time_nanos().unwrap_or_default()
}

/// Runs `f` `iterations` times in five batches; (best, median) batch mean in µs.
fn time(iterations: u32, mut f: impl FnMut() -> bool) -> Option<(f64, f64)> {
    let per_batch = (iterations / 5).max(1);
    let mut means = Vec::new();
    for _ in 0..5 {
        let start = now_nanos();
        for _ in 0..per_batch {
            if !f() {
                return None;
            }
        }
        let elapsed = now_nanos().saturating_sub(start) as f64;
        means.push(elapsed / f64::from(per_batch) / 1000.0);
    }
    means.sort_by(f64::total_cmp);
    Some((*means.first()?, *means.get(2)?))
}

fn report(name: &str, result: Option<(f64, f64)>) {
    match result {
        Some((best, median)) => {
            log::info!("crypto-bench {name}: best {best:.1} µs, median {median:.1} µs")
        }
        None => log::error!("crypto-bench {name}: failed"),
    }
}

fn run(config: &BenchConfig) {
    let n = config.iterations;
    report(
        "bundle parse",
        time(n, || TrustBundle::parse(config.bundle.as_bytes()).is_ok()),
    );
    let Ok(bundle) = TrustBundle::parse(config.bundle.as_bytes()) else {
        log::error!("crypto-bench: the bundle does not parse");
        return;
    };
    let policy = JwtSvidPolicy {
        audience: &config.audience,
        leeway_secs: 60,
    };
    for (alg, token) in &config.tokens {
        let body = format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-spiffe&client_assertion={token}"
        );
        report(
            &format!("{alg} form + decode"),
            time(n, || {
                AuthParameters::from_form(body.as_bytes()).is_ok()
                    && JwtSvid::decode(token, 16 * 1024).is_ok()
            }),
        );
        report(
            &format!("{alg} cache key (SHA-256 of {} bytes)", token.len()),
            time(n, || {
                std::hint::black_box(CredentialCache::jwt_digest(std::hint::black_box(token)));
                true
            }),
        );
        report(
            &format!("{alg} verify"),
            time(n, || {
                JwtSvid::decode(token, 16 * 1024)
                    .is_ok_and(|svid| svid.verify(&bundle, &policy, config.now).is_ok())
            }),
        );
    }
    if let Some(chain) = &config.chain {
        let leaf = crate::b64::decode_std(&chain.leaf).unwrap_or_default();
        let intermediates: Vec<Vec<u8>> = chain
            .intermediates
            .iter()
            .filter_map(|c| crate::b64::decode_std(c))
            .collect();
        report(
            "X509-SVID leaf: does it claim a SPIFFE ID",
            time(n, || x509_svid::claims_spiffe_id(&leaf)),
        );
        report(
            "X509-SVID cache key (SHA-256 of the chain)",
            time(n, || {
                std::hint::black_box(CredentialCache::chain_digest(&leaf, &intermediates));
                true
            }),
        );
        presented_chain_case(n, &leaf, &intermediates);
        report(
            "X509-SVID chain verify",
            time(n, || {
                x509_svid::verify(&leaf, &intermediates, &bundle.x509_authorities, config.now)
                    .is_ok()
            }),
        );
    }
    decision_cases(config, &bundle);
    log::info!("crypto-bench done");
}

/// Reading the presented chain as the filter gets it from Envoy: the leaf as PEM with its
/// SHA-256, the intermediates from an XFCC `Chain=` of URL-encoded PEM.
fn presented_chain_case(n: u32, leaf: &[u8], intermediates: &[Vec<u8>]) {
    use sha2::{Digest, Sha256};
    use x509_cert::der::pem::{encode_string, LineEnding};
    let pem = |der: &[u8]| encode_string("CERTIFICATE", LineEnding::LF, der).unwrap_or_default();
    let url = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let leaf_pem = pem(leaf);
    let chain_pem: String = std::iter::once(leaf)
        .chain(intermediates.iter().map(Vec::as_slice))
        .map(pem)
        .collect();
    let digest: String = Sha256::digest(leaf)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let xfcc = format!(
        "Hash={digest};Cert=\"{}\";Chain=\"{}\";URI=spiffe://example.org/bench-client",
        url(&leaf_pem),
        url(&chain_pem)
    );
    report(
        &format!(
            "X509-SVID presented chain from PEM + XFCC ({} bytes)",
            xfcc.len()
        ),
        time(n, || {
            crate::client_cert::presented_chain(true, Some(&leaf_pem), Some(&digest), Some(&xfcc))
                .is_ok_and(|c| c.is_some_and(|c| c.intermediates().len() == 1))
        }),
    );
}

/// The whole per-request decision of the core for a JWT-SVID, uncached and cached.
fn decision_cases(config: &BenchConfig, bundle: &TrustBundle) {
    use crate::authenticator::{authenticate, BundleSource, Checks, RequestHead, Verdict};
    use crate::config::{Config, TrustDomainConfig};
    use crate::trust_store::NoBundle;
    use std::sync::Arc;

    struct One(Arc<TrustBundle>);
    impl BundleSource for One {
        fn bundle_for(&self, _: &TrustDomainConfig) -> Result<Arc<TrustBundle>, NoBundle> {
            Ok(Arc::clone(&self.0))
        }
    }
    let doc = format!(
        r#"{{"issuer":"{}","token_paths":["/token"],"clients":[{{"spiffe_id":"spiffe://example.org/bench-client"}}],
        "trust_domains":{{"example.org":{{"bundle_endpoint":{{"cluster":"c","authority":"a","path":"/b"}}}}}}}}"#,
        config.audience
    );
    let Ok(plugin) = Config::parse(doc.as_bytes()) else {
        log::error!("crypto-bench: decision configuration refused");
        return;
    };
    let bundles = One(Arc::new(bundle.clone()));
    let head = RequestHead {
        method: "POST",
        path: "/token",
        content_type: Some("application/x-www-form-urlencoded"),
        authorization: None,
    };
    for (alg, token) in &config.tokens {
        let body = format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-spiffe&client_assertion={token}"
        );
        let cache = CredentialCache::new(16);
        let checks = Checks {
            bundles: &bundles,
            cache: &cache,
            now: Some(config.now),
        };
        report(
            &format!("{alg} whole decision, cached"),
            time(config.iterations, || {
                matches!(
                    authenticate(&plugin, &head, body.as_bytes(), None, checks),
                    Verdict::Authenticated { .. }
                )
            }),
        );
    }
}
