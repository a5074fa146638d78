//! Verified-credential cache: a bounded per-VM map from a digest of a credential that verified
//! (a JWT-SVID's whole compact form, or a presented certificate chain) to what its verification
//! proved, so that a credential presented again costs one SHA-256 and a lookup instead of a
//! signature check.
//!
//! An entry answers only while three things still hold:
//! - the time is inside the window in which the credential was checked valid: not before the
//!   moment it was verified (a clock that went back misses), and before the JWT-SVID's `exp`
//!   (plus the configured leeway) or the certificate chain's earliest `notAfter`;
//! - the trust domain's bundle is the very parsed bundle the signature was checked against: each
//!   new bundle version gets a new parsed object in the VM's bundle cache, so a rotated key set,
//!   a removed key or a revoking empty bundle take effect for cached credentials at the next
//!   bundle change;
//! - the plugin configuration is the same (the cache belongs to one root context and its
//!   configuration: audience, leeway and limits are fixed for its life).
//!
//! Only successes are cached: the claims that do not depend on time or keys (structure,
//! audience, subject) are deterministic for the same bytes. Client registration and the
//! request's `client_id` are checked again on every request, as are the request's other
//! credentials. Eviction is first in, first out; expired entries and entries of an older bundle
//! are dropped when met.

use crate::bundle::TrustBundle;
use crate::spiffe_id::SpiffeId;
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

/// SHA-256 of a credential, with a prefix naming its kind so a JWT and a chain never collide.
pub type CredentialDigest = [u8; 32];

/// What verifying a credential proved.
struct Entry {
    spiffe_id: SpiffeId,
    /// The bundle the credential verified against (compared by identity, never upgraded).
    bundle: Weak<TrustBundle>,
    /// Unix seconds: when it verified, and the first second at which it is no longer valid.
    verified_at: u64,
    valid_until: u64,
    /// Insertion number: the one record of `order` that may evict this entry.
    seq: u64,
}

/// A cached verdict, to be confirmed against the trust domain's current bundle.
pub struct Hit {
    pub spiffe_id: SpiffeId,
    bundle: Weak<TrustBundle>,
}

impl Hit {
    /// Whether `current` is the bundle this credential was verified against.
    pub fn verified_against(&self, current: &Arc<TrustBundle>) -> bool {
        std::ptr::eq(self.bundle.as_ptr(), Arc::as_ptr(current))
    }
}

/// The cache of one root context (one VM and plugin configuration).
pub struct CredentialCache {
    max_entries: usize,
    entries: RefCell<HashMap<CredentialDigest, Entry>>,
    /// Insertion order, for eviction: (digest, insertion number). Records of entries dropped or
    /// inserted again since are stale and skipped; compaction keeps the list bounded.
    order: RefCell<VecDeque<(CredentialDigest, u64)>>,
    next_seq: Cell<u64>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl CredentialCache {
    /// A cache of at most `max_entries` credentials; 0 turns caching off.
    pub fn new(max_entries: usize) -> Self {
        CredentialCache {
            max_entries,
            entries: RefCell::default(),
            order: RefCell::default(),
            next_seq: Cell::new(0),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    /// The digest of a JWT-SVID (its whole compact serialization).
    pub fn jwt_digest(assertion: &str) -> CredentialDigest {
        digest(b"jwt-svid", &[assertion.as_bytes()])
    }

    /// The digest of a presented certificate chain (leaf, then intermediates in order).
    pub fn chain_digest(leaf: &[u8], intermediates: &[Vec<u8>]) -> CredentialDigest {
        let parts: Vec<&[u8]> = std::iter::once(leaf)
            .chain(intermediates.iter().map(Vec::as_slice))
            .collect();
        digest(b"x509-svid", &parts)
    }

    /// The cached verdict for `key` if it is still inside its validity window at `now`. The
    /// caller must also check [`Hit::verified_against`] with the current bundle.
    pub fn get(&self, key: &CredentialDigest, now: u64) -> Option<Hit> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.borrow_mut();
        let hit = entries.get(key).and_then(|e| {
            let in_window = e.verified_at <= now && now < e.valid_until;
            let bundle_alive = e.bundle.strong_count() > 0;
            (in_window && bundle_alive).then(|| Hit {
                spiffe_id: e.spiffe_id.clone(),
                bundle: Weak::clone(&e.bundle),
            })
        });
        if hit.is_none() {
            entries.remove(key);
            self.misses.set(self.misses.get().saturating_add(1));
        }
        hit
    }

    /// Counts a hit that was confirmed against the current bundle.
    pub fn confirm_hit(&self) {
        self.hits.set(self.hits.get().saturating_add(1));
    }

    /// Forgets `key` (its bundle changed since it was verified).
    pub fn forget(&self, key: &CredentialDigest) {
        self.entries.borrow_mut().remove(key);
        self.misses.set(self.misses.get().saturating_add(1));
    }

    /// Remembers that the credential `key` verified as `spiffe_id` against `bundle` at
    /// `verified_at`, valid until just before `valid_until` (Unix seconds).
    pub fn insert(
        &self,
        key: CredentialDigest,
        spiffe_id: &SpiffeId,
        bundle: &Arc<TrustBundle>,
        verified_at: u64,
        valid_until: u64,
    ) {
        if !self.enabled() || valid_until <= verified_at {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        let mut order = self.order.borrow_mut();
        let live = |entries: &HashMap<CredentialDigest, Entry>,
                    (k, seq): &(CredentialDigest, u64)| {
            entries.get(k).is_some_and(|e| e.seq == *seq)
        };
        while !entries.contains_key(&key) && entries.len() >= self.max_entries {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            if live(&entries, &oldest) {
                entries.remove(&oldest.0);
            }
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq.wrapping_add(1));
        let entry = Entry {
            spiffe_id: spiffe_id.clone(),
            bundle: Arc::downgrade(bundle),
            verified_at,
            valid_until,
            seq,
        };
        entries.insert(key, entry);
        order.push_back((key, seq));
        // Records of dropped or re-inserted entries linger in `order`; keep it bounded.
        if order.len() > self.max_entries.saturating_mul(2) {
            order.retain(|record| live(&entries, record));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hits confirmed against the current bundle, and lookups that found nothing usable.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.get(), self.misses.get())
    }
}

fn digest(kind: &[u8], parts: &[&[u8]]) -> CredentialDigest {
    let mut h = Sha256::new();
    h.update(kind);
    for part in parts {
        // Length-prefixed, so that no two sequences of parts hash the same input.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
