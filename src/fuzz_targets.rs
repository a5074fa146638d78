//! Entry points of the fuzz targets (`fuzz/`, run by `./build.sh fuzz`) and of the corpus
//! replay in `cargo test`: each takes arbitrary bytes and must return, without panicking,
//! whatever they are. Inputs that parse are also checked for properties that must hold (an
//! accepted SPIFFE ID re-parses to itself; a verified JWT-SVID names a registered client).
//!
//! The fixture bundle (`fuzz/fixtures/bundle.json`, with JWT keys and X.509 authorities of
//! `example.org`) and the seed corpora are written together by `fuzz/make_seeds.py`, so seeds
//! reach the signature and chain checks. Fixture time is [`NOW`].

use crate::authenticator::{self, BundleSource, Checks, RequestHead};
use crate::bundle::TrustBundle;
use crate::client_cert;
use crate::config::{Config, TrustDomainConfig};
use crate::credential_cache::CredentialCache;
use crate::jwt_svid::{JwtSvid, JwtSvidPolicy};
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::token_request::{canonical_path, is_form_content_type, AuthParameters};
use crate::trust_store::NoBundle;
use crate::x509_svid;
use std::sync::{Arc, OnceLock};

/// Unix time at which the seed tokens and certificates are valid (2027-01-15).
pub const NOW: u64 = 1_800_000_000;

const ISSUER: &str = "https://as.example.com";
const FIXTURE_BUNDLE: &[u8] = include_bytes!("../fuzz/fixtures/bundle.json");
const FIXTURE_CONFIG: &[u8] = include_bytes!("../fuzz/fixtures/config.json");

fn fixture_bundle() -> Option<Arc<TrustBundle>> {
    static BUNDLE: OnceLock<Option<Arc<TrustBundle>>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| TrustBundle::parse(FIXTURE_BUNDLE).ok().map(Arc::new))
        .clone()
}

fn fixture_config() -> Option<&'static Config> {
    static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Config::parse(FIXTURE_CONFIG).ok())
        .as_ref()
}

/// The fixture bundle for `example.org`; no other trust domain has one.
struct FixtureBundles;

impl BundleSource for FixtureBundles {
    fn bundle_for(&self, td: &TrustDomainConfig) -> Result<Arc<TrustBundle>, NoBundle> {
        match fixture_bundle() {
            Some(bundle) if td.name.as_str() == "example.org" => Ok(bundle),
            _ => Err(NoBundle::NotFetched),
        }
    }
}

/// SPIFFE IDs and trust domain names (the grammar of ID-1 … ID-9).
pub fn spiffe_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        assert_eq!(id.as_str(), text, "kept exactly as received");
        assert!(TrustDomain::parse(id.trust_domain_name()).is_ok());
        assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id));
    }
    let _ = TrustDomain::parse(text);
}

/// Token request bodies and heads: form decoding, method selection, token path matching and
/// the whole decision against the fixture configuration and bundle.
pub fn token_request(data: &[u8]) {
    if let Ok(params) = AuthParameters::from_form(data) {
        let _ = params.method();
    }
    let text = String::from_utf8_lossy(data);
    let _ = canonical_path(&text);
    let _ = is_form_content_type(&text);
    let Some(config) = fixture_config() else {
        return;
    };
    let _ = config.is_token_path(&text);
    let head = RequestHead {
        method: "POST",
        path: "/token",
        content_type: Some("application/x-www-form-urlencoded"),
        authorization: None,
    };
    let _ = authenticator::inspect_head(config, &head);
    // Twice through one credential cache: the cached verdict must be the verdict.
    let cache = CredentialCache::new(4);
    let checks = Checks {
        bundles: &FixtureBundles,
        cache: &cache,
        now: Some(NOW),
    };
    let verdict = authenticator::authenticate(config, &head, data, None, checks);
    let again = authenticator::authenticate(config, &head, data, None, checks);
    assert_eq!(verdict, again, "the cached verdict differs");
    if let authenticator::Verdict::Authenticated { spiffe_id, .. } = verdict {
        assert!(config.is_registered(&spiffe_id), "only registered clients");
    }
}

/// Compact JWT-SVIDs: decoding, claims and signature checks against the fixture bundle.
pub fn jwt_svid(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(svid) = JwtSvid::decode(token, 16 * 1024) else {
        return;
    };
    let Some(bundle) = fixture_bundle() else {
        return;
    };
    let policy = JwtSvidPolicy {
        audience: ISSUER,
        leeway_secs: 60,
    };
    if let Ok(id) = svid.verify(&bundle, &policy, NOW) {
        assert_eq!(&id, svid.subject());
    }
}

/// SPIFFE bundle documents.
pub fn bundle(data: &[u8]) {
    if let Ok(bundle) = TrustBundle::parse(data) {
        for key in &bundle.jwt_keys {
            assert!(bundle.jwt_keys_with_kid(&key.kid).next().is_some());
        }
    }
}

/// X.509 chains: `data` is a leaf and intermediates, each preceded by its length in two bytes
/// (big-endian); checked against the fixture bundle's `x509-svid` authorities.
pub fn x509_svid(data: &[u8]) {
    let ders = length_prefixed(data);
    let Some((leaf, intermediates)) = ders.split_first() else {
        return;
    };
    let claims = x509_svid::claims_spiffe_id(leaf);
    let _ = x509_svid::leaf_spiffe_id(leaf);
    let Some(bundle) = fixture_bundle() else {
        return;
    };
    if let Ok(id) = x509_svid::verify(leaf, intermediates, &bundle.x509_authorities, NOW) {
        assert!(claims, "a verified leaf claims a SPIFFE ID");
        assert_eq!(id.trust_domain_name(), "example.org");
    }
}

/// Splits `data` into parts each preceded by its length in two bytes (big-endian); a short
/// last part is kept as it is.
pub fn length_prefixed(data: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(*hi) << 8 | usize::from(*lo);
        let (part, after) = tail.split_at(len.min(tail.len()));
        parts.push(part.to_vec());
        rest = after;
    }
    parts
}

/// The presented chain: `data` is the connection's leaf PEM, a NUL, the leaf digest, a NUL,
/// and Envoy's `x-forwarded-client-cert` value.
pub fn client_cert(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let leaf = parts.next();
    let digest = parts.next();
    let xfcc = parts.next();
    let _ = client_cert::presented_chain(true, leaf, digest, xfcc);
}

/// Plugin configurations (operator input): every problem listed, the first the one the filter
/// reports.
pub fn config(data: &[u8]) {
    match Config::check(data) {
        Ok(_) => assert!(Config::parse(data).is_ok()),
        Err(errors) => {
            let first = Config::parse(data).err();
            assert_eq!(first.as_ref(), errors.first());
        }
    }
}

/// AS metadata documents passing through (the AS's output): a completed document lists every
/// method and is complete when completed again.
pub fn as_metadata(data: &[u8]) {
    let methods: Vec<String> = crate::as_metadata::METHODS.map(str::to_owned).to_vec();
    if let Ok(Some(completed)) = crate::as_metadata::rewrite(data, &methods) {
        assert_eq!(crate::as_metadata::rewrite(&completed, &methods), Ok(None));
    }
}

/// A fuzz target: arbitrary bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// Every target by the name of its corpus directory.
pub const TARGETS: [(&str, Target); 8] = [
    ("spiffe_id", spiffe_id),
    ("token_request", token_request),
    ("jwt_svid", jwt_svid),
    ("bundle", bundle),
    ("x509_svid", x509_svid),
    ("client_cert", client_cert),
    ("config", config),
    ("as_metadata", as_metadata),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Replays every fuzz corpus (seeds and whatever fuzzing added, crashes found included):
    /// no input may panic.
    #[test]
    fn corpora_replay_without_panics() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut replayed = 0;
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
            for entry in entries {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= TARGETS.len() * 5, "only {replayed} inputs");
    }

    /// The fixtures load, and the seeds reach the deep checks: a seed token verifies and a
    /// seed chain validates.
    #[test]
    fn fixtures_reach_verification() {
        assert!(fixture_config().is_some());
        let bundle = fixture_bundle().unwrap();
        assert!(!bundle.jwt_keys.is_empty() && !bundle.x509_authorities.is_empty());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let token = std::fs::read_to_string(root.join("jwt_svid/valid-es256")).unwrap();
        let svid = JwtSvid::decode(token.trim(), 16 * 1024).unwrap();
        let policy = JwtSvidPolicy {
            audience: ISSUER,
            leeway_secs: 60,
        };
        assert!(svid.verify(&bundle, &policy, NOW).is_ok());
        let body = std::fs::read(root.join("token_request/valid-jwt-svid")).unwrap();
        let head = RequestHead {
            method: "POST",
            path: "/token",
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
        };
        let cache = CredentialCache::new(4);
        let checks = Checks {
            bundles: &FixtureBundles,
            cache: &cache,
            now: Some(NOW),
        };
        for _ in 0..2 {
            let verdict =
                authenticator::authenticate(fixture_config().unwrap(), &head, &body, None, checks);
            assert!(
                matches!(verdict, authenticator::Verdict::Authenticated { .. }),
                "{verdict:?}"
            );
        }
        assert_eq!(cache.counts(), (1, 1), "the second one came from the cache");
        let chain = std::fs::read(root.join("x509_svid/valid-chain")).unwrap();
        let ders = length_prefixed(&chain);
        let id = x509_svid::verify(&ders[0], &ders[1..], &bundle.x509_authorities, NOW).unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/fuzz-client");
    }
}
