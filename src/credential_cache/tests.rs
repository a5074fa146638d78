use super::*;

fn id(path: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://example.org/{path}")).unwrap()
}

fn bundle() -> Arc<TrustBundle> {
    Arc::new(TrustBundle::default())
}

#[test]
fn hit_inside_the_window_against_the_same_bundle() {
    let cache = CredentialCache::new(4);
    let b = bundle();
    let key = CredentialCache::jwt_digest("a.b.c");
    cache.insert(key, &id("w"), &b, 100, 200);
    let hit = cache.get(&key, 150).unwrap();
    assert_eq!(hit.spiffe_id, id("w"));
    assert!(hit.verified_against(&b));
    assert!(!hit.verified_against(&bundle()), "another bundle object");
}

#[test]
fn window_is_verified_at_inclusive_valid_until_exclusive() {
    let cache = CredentialCache::new(4);
    let b = bundle();
    let key = CredentialCache::jwt_digest("t");
    cache.insert(key, &id("w"), &b, 100, 200);
    assert!(cache.get(&key, 100).is_some());
    assert!(cache.get(&key, 199).is_some());
    assert!(cache.get(&key, 200).is_none(), "expired");
    assert!(cache.get(&key, 150).is_none(), "dropped when met expired");
    cache.insert(key, &id("w"), &b, 100, 200);
    assert!(
        cache.get(&key, 99).is_none(),
        "clock went back before verification"
    );
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_dropped_bundle_misses() {
    let cache = CredentialCache::new(4);
    let key = CredentialCache::jwt_digest("t");
    let b = bundle();
    cache.insert(key, &id("w"), &b, 0, 10);
    drop(b);
    assert!(cache.get(&key, 5).is_none());
}

#[test]
fn bounded_first_in_first_out() {
    let cache = CredentialCache::new(3);
    let b = bundle();
    let keys: Vec<_> = (0..5)
        .map(|i| CredentialCache::jwt_digest(&format!("t{i}")))
        .collect();
    for k in &keys {
        cache.insert(*k, &id("w"), &b, 0, 10);
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.get(&keys[0], 1).is_none());
    assert!(cache.get(&keys[1], 1).is_none());
    for k in &keys[2..] {
        assert!(cache.get(k, 1).is_some());
    }
    // Reinserting a present key neither grows nor duplicates it.
    cache.insert(keys[4], &id("w"), &b, 0, 10);
    assert_eq!(cache.len(), 3);
    assert!(cache.order.borrow().len() <= 6);
}

#[test]
fn eviction_order_stays_bounded_under_churn() {
    let cache = CredentialCache::new(2);
    let b = bundle();
    for i in 0..1000u32 {
        let k = CredentialCache::jwt_digest(&i.to_string());
        cache.insert(k, &id("w"), &b, 0, 10);
        cache.forget(&k);
    }
    assert!(cache.order.borrow().len() <= 4);
    assert!(cache.is_empty());
}

#[test]
fn disabled_cache_keeps_nothing() {
    let cache = CredentialCache::new(0);
    let key = CredentialCache::jwt_digest("t");
    let b = bundle();
    cache.insert(key, &id("w"), &b, 0, 10);
    assert!(cache.get(&key, 1).is_none());
    assert!(cache.is_empty());
}

#[test]
fn digests_separate_kinds_and_boundaries() {
    assert_ne!(
        CredentialCache::jwt_digest("abc"),
        CredentialCache::chain_digest(b"abc", &[])
    );
    assert_ne!(
        CredentialCache::chain_digest(b"ab", &[b"c".to_vec()]),
        CredentialCache::chain_digest(b"a", &[b"bc".to_vec()])
    );
    assert_ne!(
        CredentialCache::chain_digest(b"leaf", &[b"i1".to_vec()]),
        CredentialCache::chain_digest(b"leaf", &[])
    );
}

/// A credential verified again after its entry was dropped (a bundle change) leaves one live
/// eviction record, not one per verification: the order list stays bounded, and first in,
/// first out still evicts the oldest entry, not the newest.
#[test]
fn reinserted_entries_keep_the_order_bounded_and_fifo() {
    let cache = CredentialCache::new(2);
    let b = bundle();
    let a = CredentialCache::jwt_digest("a");
    for _ in 0..10_000 {
        cache.insert(a, &id("w"), &b, 0, 10);
        cache.forget(&a);
    }
    cache.insert(a, &id("w"), &b, 0, 10);
    for _ in 0..10_000 {
        cache.insert(a, &id("w"), &b, 0, 10);
    }
    assert!(
        cache.order.borrow().len() <= 4,
        "{}",
        cache.order.borrow().len()
    );
    let c = CredentialCache::jwt_digest("c");
    let d = CredentialCache::jwt_digest("d");
    cache.insert(c, &id("w"), &b, 0, 10);
    cache.insert(d, &id("w"), &b, 0, 10);
    assert!(cache.get(&a, 1).is_none(), "the oldest entry is evicted");
    assert!(cache.get(&c, 1).is_some() && cache.get(&d, 1).is_some());
}
