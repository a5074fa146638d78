//! Trust bundles in proxy-wasm shared data: one copy per Envoy process, keyed by trust domain
//! and bundle endpoint, that every worker's VM reads; plus a per-VM cache of the parsed form,
//! refreshed only when the shared entry's CAS value changes.
//!
//! A request must not copy the whole bundle document out of shared data to learn that it has
//! not changed: beside each bundle a 4-byte version entry holds the bundle entry's CAS token, and
//! the per-VM cache compares that. The publisher writes it right after the bundle; should that
//! second write ever be lost, the cache still reads the bundle itself at least once a second.
//!
//! Shared data sits behind the small [`SharedData`] trait, so this logic is tested natively.

use crate::bundle::TrustBundle;
use crate::config::BundleEndpoint;
use crate::spiffe_id::TrustDomain;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Host shared data (proxy-wasm `get_shared_data` / `set_shared_data`), reduced to what the
/// filter uses. Implementations never panic; host failures read as absent or as an error.
pub trait SharedData {
    /// The value and its CAS token, or `None` when absent (or unreadable).
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value`; with `cas`, only if the entry still has that CAS token.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    CasMismatch,
    Host(String),
}

/// Envelope stored under a bundle key: the bundle document as fetched plus when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBundle {
    pub fetched_at_ms: u64,
    pub sequence: Option<u64>,
    pub document: String,
}

const KEY_PREFIX: &str = "spiffe_oauth_filter/v1/bundle";

/// Longest a VM trusts the version entry alone before reading the bundle entry again.
const REVALIDATE_MS: u64 = 1000;

/// The shared-data key of a bundle's version entry (the bundle entry's CAS token, 4 bytes LE).
fn version_key(bundle_key: &str) -> String {
    format!("{bundle_key}#version")
}

/// The shared-data key of a trust domain's bundle. It names the endpoint too, so a configuration
/// that points a trust domain elsewhere never reads the old endpoint's bundle (shared data
/// outlives configuration changes).
pub fn bundle_key(trust_domain: &TrustDomain, ep: &BundleEndpoint) -> String {
    format!(
        "{KEY_PREFIX}/{trust_domain}/{}|{}|{}",
        ep.cluster, ep.authority, ep.path
    )
}

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Applied,
    /// Not applied: the bundle in use has a higher `spiffe_sequence` (BEP-5).
    LowerSequence {
        in_use: u64,
    },
}

/// Publishes a freshly fetched bundle for every VM to read, unless the stored one has a higher
/// `spiffe_sequence`. A bundle without a sequence replaces whatever is stored (BEP-5). Writes
/// are compare-and-swap against the version read, so a concurrent publisher is never
/// overwritten blindly.
pub fn publish(
    shared: &dyn SharedData,
    key: &str,
    stored: &StoredBundle,
) -> Result<Published, StoreError> {
    let bytes = serde_json::to_vec(stored).map_err(|e| StoreError::Host(e.to_string()))?;
    let mut last = StoreError::CasMismatch;
    for _ in 0..4 {
        let current = shared.get(key);
        let in_use = current
            .as_ref()
            .and_then(|(b, _)| serde_json::from_slice::<StoredBundle>(b).ok())
            .and_then(|c| c.sequence);
        if let (Some(in_use), Some(new)) = (in_use, stored.sequence) {
            if new < in_use {
                return Ok(Published::LowerSequence { in_use });
            }
        }
        match shared.set(key, &bytes, current.map(|(_, cas)| cas)) {
            Ok(()) => {
                publish_version(shared, key);
                return Ok(Published::Applied);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Records the bundle entry's current CAS token in its version entry (see the module doc).
fn publish_version(shared: &dyn SharedData, key: &str) {
    if let Some((_, cas)) = shared.get(key) {
        write_version(shared, key, cas);
    }
}

/// Writes `cas` as the version of `key`, then checks that the bundle entry still has it: when
/// another publisher wrote in between, its newer CAS is written instead (a few rounds at most),
/// so interleaved publishers do not leave an older version behind.
fn write_version(shared: &dyn SharedData, key: &str, mut cas: u32) {
    for _ in 0..4 {
        if let Err(e) = shared.set(&version_key(key), &cas.to_le_bytes(), None) {
            log::warn!("writing the version of {key} failed: {e:?}");
            return;
        }
        match shared.get(key) {
            Some((_, now)) if now != cas => cas = now,
            _ => return,
        }
    }
}

/// Reads the stored envelope (for logs and the refresh policy).
pub fn read(shared: &dyn SharedData, key: &str) -> Option<(StoredBundle, u32)> {
    let (bytes, cas) = shared.get(key)?;
    let stored = serde_json::from_slice(&bytes).ok()?;
    Some((stored, cas))
}

/// Why a trust domain has no usable bundle right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBundle {
    /// Nothing fetched yet (or the stored entry is unreadable).
    NotFetched,
    /// The last good bundle is older than the configured maximum staleness (BEP-8).
    Stale { age_secs: u64 },
}

/// One parsed stored version: its CAS token, when it was fetched, and the bundle.
struct Cached {
    cas: u32,
    fetched_at_ms: u64,
    bundle: Arc<TrustBundle>,
    /// SHA-256 of the bundle document, so a refetch of the same document keeps the parsed bundle
    /// (and with it the credentials verified against it).
    document_digest: [u8; 32],
    version_key: String,
    /// When the bundle entry itself was last read (ms).
    read_at_ms: u64,
}

impl Cached {
    /// The cached bundle, if the version entry says it is still current and the bundle entry
    /// was read within the last [`REVALIDATE_MS`].
    fn current(&self, shared: &dyn SharedData, now_ms: u64) -> Option<(u64, Arc<TrustBundle>)> {
        let recent = self.read_at_ms <= now_ms && now_ms < self.read_at_ms + REVALIDATE_MS;
        if !recent {
            return None;
        }
        let (bytes, _) = shared.get(&self.version_key)?;
        let version = u32::from_le_bytes(bytes.as_slice().try_into().ok()?);
        (version == self.cas).then(|| (self.fetched_at_ms, Arc::clone(&self.bundle)))
    }
}

/// Per-VM cache of parsed bundles, keyed by shared-data key and valid for one CAS token.
#[derive(Default)]
pub struct BundleCache {
    entries: RefCell<HashMap<String, Cached>>,
}

impl BundleCache {
    /// The current bundle under `key`, parsed at most once per stored version, if it was
    /// fetched no longer than `max_age_ms` before `now_ms`.
    pub fn get(
        &self,
        shared: &dyn SharedData,
        key: &str,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<Arc<TrustBundle>, NoBundle> {
        let (fetched_at, bundle) = self.fetched(shared, key, now_ms)?;
        let age = now_ms.saturating_sub(fetched_at);
        if age > max_age_ms {
            return Err(NoBundle::Stale {
                age_secs: age / 1000,
            });
        }
        Ok(bundle)
    }

    /// The current bundle under `key` and when it was fetched (ms), whatever its age.
    pub fn fetched(
        &self,
        shared: &dyn SharedData,
        key: &str,
        now_ms: u64,
    ) -> Result<(u64, Arc<TrustBundle>), NoBundle> {
        let current = self
            .entries
            .borrow()
            .get(key)
            .and_then(|c| c.current(shared, now_ms));
        match current {
            Some(found) => Ok(found),
            None => self.read(shared, key, now_ms),
        }
    }

    /// Reads the bundle entry, parsing it only if its version is not the cached one.
    fn read(
        &self,
        shared: &dyn SharedData,
        key: &str,
        now_ms: u64,
    ) -> Result<(u64, Arc<TrustBundle>), NoBundle> {
        let Some((bytes, cas)) = shared.get(key) else {
            self.entries.borrow_mut().remove(key);
            return Err(NoBundle::NotFetched);
        };
        let mut entries = self.entries.borrow_mut();
        if let Some(cached) = entries.get_mut(key).filter(|c| c.cas == cas) {
            cached.read_at_ms = now_ms;
            return Ok((cached.fetched_at_ms, Arc::clone(&cached.bundle)));
        }
        // Only documents that parsed when fetched are stored, so a failure here means the entry
        // is not ours or is corrupt: no bundle (fail closed).
        let stored: StoredBundle =
            serde_json::from_slice(&bytes).map_err(|_| NoBundle::NotFetched)?;
        let document_digest: [u8; 32] = Sha256::digest(stored.document.as_bytes()).into();
        // The same document fetched again (a periodic refresh, an unknown-kid refetch): a new
        // version with the same keys, so the parsed bundle stays.
        let unchanged = entries
            .get(key)
            .filter(|c| c.document_digest == document_digest)
            .map(|c| Arc::clone(&c.bundle));
        let bundle = match unchanged {
            Some(bundle) => bundle,
            None => Arc::new(
                TrustBundle::parse(stored.document.as_bytes()).map_err(|_| NoBundle::NotFetched)?,
            ),
        };
        let entry = Cached {
            cas,
            fetched_at_ms: stored.fetched_at_ms,
            bundle: Arc::clone(&bundle),
            document_digest,
            version_key: version_key(key),
            read_at_ms: now_ms,
        };
        entries.insert(key.to_owned(), entry);
        Ok((stored.fetched_at_ms, bundle))
    }
}

/// An in-memory [`SharedData`] with Envoy's semantics (one global CAS counter; a write with a
/// stale CAS fails), for native tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemorySharedData {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: RefCell<u32>,
    reads: RefCell<HashMap<String, usize>>,
}

#[cfg(test)]
impl MemorySharedData {
    /// How many times `key` was read.
    pub fn reads(&self, key: &str) -> usize {
        self.reads.borrow().get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
impl SharedData for MemorySharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        *self.reads.borrow_mut().entry(key.to_owned()).or_default() += 1;
        self.entries.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        if let (Some(expected), Some((_, current))) = (cas.filter(|c| *c != 0), entries.get(key)) {
            if *current != expected {
                return Err(StoreError::CasMismatch);
            }
        }
        let mut next = self.next_cas.borrow_mut();
        *next = next.wrapping_add(1);
        entries.insert(key.to_owned(), (value.to_vec(), *next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, TrustDomainConfig};
    use crate::test_support::{bundle_json, EcKey};

    fn td(cluster: &str) -> TrustDomainConfig {
        let doc = format!(
            r#"{{"issuer":"https://as.example.com","token_paths":["/token"],"clients":[],
            "trust_domains":{{"example.org":{{"bundle_endpoint":{{"cluster":"{cluster}","authority":"bundle.example.org","path":"/bundle.json"}}}}}}}}"#
        );
        let c = Config::parse(doc.as_bytes()).unwrap();
        c.trust_domains.into_values().next().unwrap()
    }

    /// Fetched at 1 s; NOW is 2 s; a day of allowed staleness.
    const NOW: u64 = 2_000;
    const DAY: u64 = 86_400_000;

    fn stored(kid: &str, seq: u64) -> StoredBundle {
        StoredBundle {
            fetched_at_ms: 1000,
            sequence: Some(seq),
            document: bundle_json(&[EcKey::p256(1).jwk(kid)]),
        }
    }

    /// BEP-5: a lower sequence is not applied; equal or higher, or none, is.
    #[test]
    fn bep_5_sequence_guard() {
        let shared = MemorySharedData::default();
        assert_eq!(
            publish(&shared, "k", &stored("k10", 10)),
            Ok(Published::Applied)
        );
        assert_eq!(
            publish(&shared, "k", &stored("k9", 9)),
            Ok(Published::LowerSequence { in_use: 10 })
        );
        let cache = BundleCache::default();
        assert_eq!(
            cache.get(&shared, "k", NOW, DAY).unwrap().jwt_keys[0].kid,
            "k10"
        );
        assert_eq!(
            publish(&shared, "k", &stored("k10b", 10)),
            Ok(Published::Applied)
        );
        let unsequenced = StoredBundle {
            sequence: None,
            ..stored("none", 0)
        };
        assert_eq!(publish(&shared, "k", &unsequenced), Ok(Published::Applied));
        assert_eq!(
            cache.get(&shared, "k", NOW, DAY).unwrap().jwt_keys[0].kid,
            "none"
        );
    }

    /// BEP-8: a bundle older than the maximum staleness is not used, cached or not.
    #[test]
    fn bep_8_max_staleness() {
        let shared = MemorySharedData::default();
        publish(&shared, "k", &stored("k1", 1)).unwrap();
        let cache = BundleCache::default();
        assert!(
            cache.get(&shared, "k", 61_000, 60_000).is_ok(),
            "exactly at the limit"
        );
        assert_eq!(
            cache.get(&shared, "k", 61_001, 60_000).unwrap_err(),
            NoBundle::Stale { age_secs: 60 }
        );
        // A fresh fetch makes it usable again.
        let fresh = StoredBundle {
            fetched_at_ms: 61_000,
            ..stored("k1", 1)
        };
        publish(&shared, "k", &fresh).unwrap();
        assert!(cache.get(&shared, "k", 61_001, 60_000).is_ok());
    }

    /// Hot path: a request reads the 4-byte version entry, not the bundle document, while the
    /// bundle is unchanged; a new version is read at once; a lost version write is caught up
    /// within a second.
    #[test]
    fn unchanged_bundle_is_not_copied_per_request() {
        let shared = MemorySharedData::default();
        publish(&shared, "k", &stored("k1", 1)).unwrap();
        let cache = BundleCache::default();
        let before = shared.reads("k");
        for i in 0..10 {
            assert!(cache.get(&shared, "k", NOW + i, DAY).is_ok());
        }
        assert_eq!(shared.reads("k") - before, 1, "one read of the document");
        assert_eq!(shared.reads("k#version"), 9);
        publish(&shared, "k", &stored("k2", 2)).unwrap();
        let kid = |now| {
            cache.get(&shared, "k", now, DAY).unwrap().jwt_keys[0]
                .kid
                .clone()
        };
        assert_eq!(
            kid(NOW + 20),
            "k2",
            "a new version is seen by the next request"
        );
        // A bundle written without its version entry (a publisher that died in between).
        let lost = serde_json::to_vec(&stored("k3", 3)).unwrap();
        shared.set("k", &lost, None).unwrap();
        assert_eq!(kid(NOW + 30), "k2");
        assert_eq!(
            kid(NOW + 20 + REVALIDATE_MS),
            "k3",
            "read again after a second"
        );
    }

    /// The same document fetched again is a new version (its age starts over) with the same
    /// parsed bundle, so credentials verified against it stay cached; another document is parsed.
    #[test]
    fn a_refetched_identical_document_keeps_the_parsed_bundle() {
        let shared = MemorySharedData::default();
        publish(&shared, "k", &stored("k1", 1)).unwrap();
        let cache = BundleCache::default();
        let first = cache.get(&shared, "k", 2000, DAY).unwrap();
        let again = StoredBundle {
            fetched_at_ms: 50_000,
            ..stored("k1", 1)
        };
        publish(&shared, "k", &again).unwrap();
        let same = cache.get(&shared, "k", 60_000, 10_000).unwrap();
        assert!(Arc::ptr_eq(&first, &same), "not parsed again");
        publish(&shared, "k", &stored("k2", 1)).unwrap();
        let other = cache.get(&shared, "k", 60_000, DAY).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.jwt_keys[0].kid, "k2");
    }

    /// A document that comes back after this VM saw another one (a key removed, then published
    /// again) is parsed anew: only the document the VM holds now is kept, never an older parse,
    /// so credentials verified against the first copy verify again.
    #[test]
    fn a_document_back_after_another_is_parsed_anew() {
        let shared = MemorySharedData::default();
        publish(&shared, "k", &stored("k1", 1)).unwrap();
        let cache = BundleCache::default();
        let first = cache.get(&shared, "k", NOW, DAY).unwrap();
        publish(&shared, "k", &stored("k2", 1)).unwrap();
        let other = cache.get(&shared, "k", NOW, DAY).unwrap();
        assert_eq!(other.jwt_keys[0].kid, "k2");
        publish(&shared, "k", &stored("k1", 1)).unwrap();
        let back = cache.get(&shared, "k", NOW, DAY).unwrap();
        assert_eq!(back.jwt_keys[0].kid, "k1");
        assert!(
            !Arc::ptr_eq(&first, &back),
            "the first parse is not brought back"
        );
    }

    /// Two publishers interleaved (A reads the bundle's CAS, B writes bundle and version, A then
    /// writes its older CAS as the version): A sees the bundle moved on and writes the current one.
    #[test]
    fn an_interleaved_publisher_leaves_the_current_version() {
        let shared = MemorySharedData::default();
        publish(&shared, "k", &stored("k1", 1)).unwrap();
        let (_, a_saw) = shared.get("k").unwrap();
        publish(&shared, "k", &stored("k2", 2)).unwrap();
        let (_, current) = shared.get("k").unwrap();
        write_version(&shared, "k", a_saw);
        let version = shared.get("k#version").unwrap().0;
        assert_eq!(version, current.to_le_bytes());
    }

    #[test]
    fn key_names_trust_domain_and_endpoint() {
        assert_eq!(
            td("c1").bundle_key,
            "spiffe_oauth_filter/v1/bundle/example.org/c1|bundle.example.org|/bundle.json"
        );
        assert_ne!(td("c1").bundle_key, td("c2").bundle_key);
    }

    /// BEP-7: before anything is published there is no bundle.
    #[test]
    fn empty_store_has_no_bundle() {
        let shared = MemorySharedData::default();
        assert_eq!(
            BundleCache::default()
                .get(&shared, "k", 0, DAY)
                .unwrap_err(),
            NoBundle::NotFetched
        );
    }

    /// BEP-12: what one VM publishes, another VM's cache reads; a new version replaces the
    /// cached parse, an unchanged one is served from the cache.
    #[test]
    fn bep_12_publish_is_seen_by_every_cache() {
        let shared = MemorySharedData::default();
        let key = td("c1").bundle_key;
        let (vm1, vm2) = (BundleCache::default(), BundleCache::default());
        publish(&shared, &key, &stored("k1", 1)).unwrap();
        let first = vm1.get(&shared, &key, NOW, DAY).unwrap();
        assert_eq!(first.jwt_keys[0].kid, "k1");
        assert!(
            Arc::ptr_eq(&first, &vm1.get(&shared, &key, NOW, DAY).unwrap()),
            "cached"
        );
        assert_eq!(
            vm2.get(&shared, &key, NOW, DAY).unwrap().jwt_keys[0].kid,
            "k1"
        );

        publish(&shared, &key, &stored("k2", 2)).unwrap();
        assert_eq!(
            vm1.get(&shared, &key, NOW, DAY).unwrap().jwt_keys[0].kid,
            "k2"
        );
        assert_eq!(
            vm2.get(&shared, &key, NOW, DAY).unwrap().jwt_keys[0].kid,
            "k2"
        );
        let (envelope, _) = read(&shared, &key).unwrap();
        assert_eq!(envelope.sequence, Some(2));
    }

    /// A foreign or corrupt entry under our key is no bundle (fail closed).
    #[test]
    fn corrupt_entry_is_no_bundle() {
        let shared = MemorySharedData::default();
        shared.set("k", b"not json", None).unwrap();
        assert!(BundleCache::default().get(&shared, "k", NOW, DAY).is_err());
        let bad_doc = StoredBundle {
            fetched_at_ms: 0,
            sequence: None,
            document: "{}".into(),
        };
        publish(&shared, "k", &bad_doc).unwrap();
        assert!(BundleCache::default().get(&shared, "k", NOW, DAY).is_err());
    }

    #[test]
    fn memory_shared_data_cas_semantics() {
        let shared = MemorySharedData::default();
        shared.set("a", b"1", None).unwrap();
        let (_, cas) = shared.get("a").unwrap();
        shared.set("b", b"x", None).unwrap();
        shared.set("a", b"2", Some(cas)).unwrap();
        assert_eq!(
            shared.set("a", b"3", Some(cas)),
            Err(StoreError::CasMismatch)
        );
        assert_eq!(shared.get("a").unwrap().0, b"2");
    }
}
