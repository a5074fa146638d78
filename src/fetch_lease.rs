//! One fetch per trust domain for the whole Envoy process: a lease in shared data, taken with
//! compare-and-swap, says which VM fetches next and when the next fetch is due. Every worker's
//! root context ticks; only the lease holder dispatches; a holder that never answers loses the
//! lease when it expires (requirements BEP-12; field case FC-20).
//!
//! The lease also carries what every VM needs to know about the trust domain's fetches: how many
//! failed in a row (for the backoff), when the last one started (to rate-limit fetches that
//! requests ask for) and how many have completed (a held request waits for the next one).
//!
//! Shared data has no atomic create-if-absent: a missing lease is first written as a free one
//! (harmless if two VMs race, it holds nobody), then taken with CAS against what was read.

use crate::trust_store::{SharedData, StoreError};
use serde::{Deserialize, Serialize};

/// The shared schedule of one trust domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Lease {
    /// VM holding the lease (0: nobody).
    pub holder: u64,
    /// The lease lapses at this time (ms) even if its holder never releases it.
    pub until_ms: u64,
    /// The next fetch is due at this time (ms).
    pub next_due_ms: u64,
    /// Fetches that failed since the last good one.
    pub failures: u32,
    /// When the last fetch was started (ms; 0: never).
    pub last_start_ms: u64,
    /// Fetches completed, good or failed.
    pub completed: u64,
}

impl Lease {
    fn in_flight(&self, now_ms: u64) -> bool {
        self.holder != 0 && now_ms < self.until_ms
    }

    /// The lease as seen at `now_ms`. A last fetch that started after `now_ms` means the host
    /// clock went back: the times written since are meaningless, so the lease counts as free
    /// and due, rather than stalling fetches until the clock catches up.
    fn at(self, now_ms: u64) -> Lease {
        if self.last_start_ms <= now_ms {
            return self;
        }
        Lease {
            holder: 0,
            until_ms: 0,
            next_due_ms: now_ms,
            last_start_ms: 0,
            ..self
        }
    }
}

/// The shared-data key of a trust domain's lease, beside its bundle key.
pub fn lease_key(bundle_key: &str) -> String {
    format!("{bundle_key}#lease")
}

fn read(shared: &dyn SharedData, key: &str) -> Option<(Lease, u32)> {
    let (bytes, cas) = shared.get(key)?;
    // An unreadable entry is treated as a free lease that is due (and rewritten on take).
    let lease = serde_json::from_slice(&bytes).unwrap_or_default();
    Some((lease, cas))
}

/// The lease, written first as a free one that is due now if there is none yet.
fn read_or_init(shared: &dyn SharedData, key: &str, now_ms: u64) -> Option<(Lease, u32)> {
    if let Some(found) = read(shared, key) {
        return Some(found);
    }
    let free = Lease {
        next_due_ms: now_ms,
        ..Lease::default()
    };
    // A racing VM may have written first: either way, read what is there now.
    let _ = write(shared, key, &free, None);
    read(shared, key)
}

fn write(shared: &dyn SharedData, key: &str, lease: &Lease, cas: Option<u32>) -> bool {
    serde_json::to_vec(lease).is_ok_and(|bytes| shared.set(key, &bytes, cas).is_ok())
}

/// The lease as it is now, if any VM has written one.
pub fn current(shared: &dyn SharedData, key: &str) -> Option<Lease> {
    read(shared, key).map(|(lease, _)| lease)
}

/// Takes the lease for `me` if a fetch is due and nobody else holds a live lease. On success
/// the caller fetches and must call [`release_fetched`] or [`release_failed`].
pub fn try_take(shared: &dyn SharedData, key: &str, me: u64, now_ms: u64, hold_ms: u64) -> bool {
    let Some((lease, cas)) = read_or_init(shared, key, now_ms) else {
        return false;
    };
    let lease = lease.at(now_ms);
    let held_by_other = lease.in_flight(now_ms) && lease.holder != me;
    if now_ms < lease.next_due_ms || held_by_other {
        return false;
    }
    let taken = Lease {
        holder: me,
        until_ms: now_ms.saturating_add(hold_ms),
        last_start_ms: now_ms,
        ..lease
    };
    write(shared, key, &taken, Some(cas))
}

/// Extends `me`'s lease to `until_ms` (a redirect being followed starts a new callout).
/// Returns whether `me` still held it.
pub fn renew(shared: &dyn SharedData, key: &str, me: u64, until_ms: u64) -> bool {
    let Some((lease, cas)) = read(shared, key) else {
        return false;
    };
    lease.holder == me && write(shared, key, &Lease { until_ms, ..lease }, Some(cas))
}

/// Gives the lease back after a good fetch, setting when the next one is due. Returns whether
/// `me` still held it (it may have lapsed and been taken over).
pub fn release_fetched(
    shared: &dyn SharedData,
    key: &str,
    me: u64,
    next_due_ms: u64,
) -> Result<bool, StoreError> {
    release_with(shared, key, me, |lease| Lease {
        next_due_ms,
        failures: 0,
        ..lease
    })
    .map(|done| done.is_some())
}

/// Gives the lease back after a failed fetch. `next_due_after` gets the number of consecutive
/// failures, this one included, and says when to try again (the backoff). Returns that number,
/// or `None` if `me` no longer held the lease.
pub fn release_failed(
    shared: &dyn SharedData,
    key: &str,
    me: u64,
    next_due_after: impl Fn(u32) -> u64,
) -> Result<Option<u32>, StoreError> {
    let released = release_with(shared, key, me, |lease| {
        let failures = lease.failures.saturating_add(1);
        Lease {
            next_due_ms: next_due_after(failures),
            failures,
            ..lease
        }
    })?;
    Ok(released.map(|lease| lease.failures))
}

fn release_with(
    shared: &dyn SharedData,
    key: &str,
    me: u64,
    update: impl Fn(Lease) -> Lease,
) -> Result<Option<Lease>, StoreError> {
    let Some((lease, cas)) = read(shared, key) else {
        return Ok(None);
    };
    if lease.holder != me {
        return Ok(None);
    }
    let free = Lease {
        holder: 0,
        until_ms: 0,
        completed: lease.completed.saturating_add(1),
        ..update(lease)
    };
    if write(shared, key, &free, Some(cas)) {
        Ok(Some(free))
    } else {
        // Only the holder writes a held lease, and try_take never overwrites a live one.
        Err(StoreError::CasMismatch)
    }
}

/// What a request that needs a fresher bundle can expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// The fetch that serves the request is done once the lease's `completed` reaches this.
    pub completed_target: u64,
    /// When that fetch starts at the latest (ms): now if one is in flight or due.
    pub starts_by_ms: u64,
}

/// A request needs a fresher bundle (none yet, or its `kid` is unknown): brings the next fetch
/// forward to now, or to `min_interval_ms` after the last one started, whichever is later, so
/// that however many requests ask, fetches stay rate-limited per trust domain across all VMs.
/// While fetches are failing, the backoff's due time stands: requests never make a failing
/// endpoint be asked more often (BEP-6). `None` if the lease cannot be read or written.
pub fn demand(
    shared: &dyn SharedData,
    key: &str,
    now_ms: u64,
    min_interval_ms: u64,
) -> Option<Demand> {
    for _ in 0..4 {
        let (lease, cas) = read_or_init(shared, key, now_ms)?;
        let lease = lease.at(now_ms);
        let completed_target = lease.completed.saturating_add(1);
        if lease.in_flight(now_ms) {
            return Some(Demand {
                completed_target,
                starts_by_ms: now_ms,
            });
        }
        let allowed_at = if lease.last_start_ms == 0 {
            now_ms
        } else {
            lease
                .last_start_ms
                .saturating_add(min_interval_ms)
                .max(now_ms)
        };
        if lease.next_due_ms <= allowed_at || lease.failures > 0 {
            return Some(Demand {
                completed_target,
                starts_by_ms: lease.next_due_ms.max(now_ms),
            });
        }
        let sooner = Lease {
            next_due_ms: allowed_at,
            ..lease
        };
        if write(shared, key, &sooner, Some(cas)) {
            return Some(Demand {
                completed_target,
                starts_by_ms: allowed_at,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust_store::MemorySharedData;

    const KEY: &str = "td#lease";
    const HOLD: u64 = 5_000;

    /// BEP-12 / FC-20: of several VMs ticking at the same time, exactly one fetches.
    #[test]
    fn one_vm_takes_the_lease() {
        let shared = MemorySharedData::default();
        let takers: Vec<u64> = (1..=5)
            .filter(|vm| try_take(&shared, KEY, *vm, 1_000, HOLD))
            .collect();
        assert_eq!(takers, vec![1]);
        // While held, nobody else (and not the holder again before the due time moves).
        assert!(!try_take(&shared, KEY, 2, 1_500, HOLD));
    }

    #[test]
    fn release_sets_the_next_due_time_for_everyone() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 61_000), Ok(true));
        assert!(!try_take(&shared, KEY, 2, 60_999, HOLD), "not due yet");
        assert!(
            try_take(&shared, KEY, 2, 61_000, HOLD),
            "any VM may take the next one"
        );
        assert!(!try_take(&shared, KEY, 1, 61_001, HOLD));
    }

    /// A holder that never answers loses the lease when it lapses; its late release is ignored.
    #[test]
    fn lapsed_lease_is_taken_over() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert!(!try_take(&shared, KEY, 2, 5_999, HOLD));
        assert!(try_take(&shared, KEY, 2, 6_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 99_000), Ok(false));
        assert_eq!(release_fetched(&shared, KEY, 2, 70_000), Ok(true));
        assert!(!try_take(&shared, KEY, 3, 69_999, HOLD));
    }

    /// A racing initialisation or a concurrent take makes the loser's CAS fail.
    #[test]
    fn concurrent_take_loses_on_cas() {
        let shared = MemorySharedData::default();
        let free = Lease {
            next_due_ms: 0,
            ..Lease::default()
        };
        assert!(write(&shared, KEY, &free, None));
        let (_, stale_cas) = read(&shared, KEY).unwrap();
        assert!(try_take(&shared, KEY, 1, 10, HOLD));
        let mine = Lease {
            holder: 2,
            until_ms: 10 + HOLD,
            ..Lease::default()
        };
        assert!(
            !write(&shared, KEY, &mine, Some(stale_cas)),
            "VM 2 read before VM 1 took it"
        );
        assert_eq!(read(&shared, KEY).unwrap().0.holder, 1);
    }

    #[test]
    fn garbage_entry_is_a_free_due_lease() {
        let shared = MemorySharedData::default();
        shared.set(KEY, b"garbage", None).unwrap();
        assert!(try_take(&shared, KEY, 7, 1, HOLD));
        assert_eq!(read(&shared, KEY).unwrap().0.holder, 7);
    }

    /// A redirect renews the holder's lease; nobody else can renew it.
    #[test]
    fn renew_extends_only_the_holders_lease() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert!(!renew(&shared, KEY, 2, 20_000));
        assert!(renew(&shared, KEY, 1, 1_000 + 2 * HOLD));
        assert!(!try_take(&shared, KEY, 2, 1_000 + HOLD, HOLD), "renewed");
        assert!(try_take(&shared, KEY, 2, 1_000 + 2 * HOLD, HOLD));
    }

    /// Consecutive failures are counted for the backoff and reset by a good fetch; every
    /// release, good or failed, completes a fetch.
    #[test]
    fn failures_are_counted_and_reset() {
        let shared = MemorySharedData::default();
        for (n, now) in [(1, 1_000), (2, 20_000), (3, 60_000)] {
            assert!(try_take(&shared, KEY, 1, now, HOLD));
            let seen = release_failed(&shared, KEY, 1, |f| now + u64::from(f) * 10_000);
            assert_eq!(seen, Ok(Some(n)));
            assert_eq!(
                current(&shared, KEY).unwrap().next_due_ms,
                now + u64::from(n) * 10_000
            );
        }
        assert!(try_take(&shared, KEY, 1, 90_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 200_000), Ok(true));
        let lease = current(&shared, KEY).unwrap();
        assert_eq!((lease.failures, lease.completed, lease.holder), (0, 4, 0));
        assert_eq!(lease.last_start_ms, 90_000);
    }

    /// BEP-6: a release by a VM whose lease lapsed changes nothing.
    #[test]
    fn lapsed_holder_release_failed_is_ignored() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert!(try_take(&shared, KEY, 2, 6_000, HOLD));
        assert_eq!(release_failed(&shared, KEY, 1, |_| 0), Ok(None));
        assert_eq!(current(&shared, KEY).unwrap().holder, 2);
    }

    /// Unknown kid / cold start: a demand brings the next fetch forward to now when the last
    /// one started long enough ago.
    #[test]
    fn demand_brings_the_fetch_forward() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 300_000), Ok(true));
        let d = demand(&shared, KEY, 50_000, 10_000).unwrap();
        assert_eq!(
            d,
            Demand {
                completed_target: 2,
                starts_by_ms: 50_000
            }
        );
        assert!(
            try_take(&shared, KEY, 2, 50_000, HOLD),
            "due now for any VM"
        );
    }

    /// A flood of demands right after a fetch moves the next fetch to one interval after it,
    /// once: fetches stay rate-limited however many requests ask.
    #[test]
    fn demands_are_rate_limited() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 300_000), Ok(true));
        for now in [2_000, 2_001, 5_000, 10_999] {
            let d = demand(&shared, KEY, now, 10_000).unwrap();
            assert_eq!(
                d,
                Demand {
                    completed_target: 2,
                    starts_by_ms: 11_000
                }
            );
        }
        let vms_fetching = (1..=4)
            .filter(|vm| try_take(&shared, KEY, *vm, 11_000, HOLD))
            .count();
        assert_eq!(vms_fetching, 1);
        // While that fetch is in flight, demands wait for it and change nothing.
        let d = demand(&shared, KEY, 11_500, 10_000).unwrap();
        assert_eq!(
            d,
            Demand {
                completed_target: 2,
                starts_by_ms: 11_500
            }
        );
        assert_eq!(
            release_fetched(&shared, KEY, 2, 300_000),
            Ok(false),
            "not the holder"
        );
        assert_eq!(current(&shared, KEY).unwrap().completed, 1);
        assert_eq!(release_fetched(&shared, KEY, 1, 300_000), Ok(true));
        assert_eq!(
            current(&shared, KEY).unwrap().completed,
            2,
            "the awaited fetch"
        );
    }

    /// Cold start: a request before any VM ticked creates the lease, due now, and waits for
    /// the first completed fetch.
    #[test]
    fn demand_before_the_first_tick() {
        let shared = MemorySharedData::default();
        let d = demand(&shared, KEY, 500, 10_000).unwrap();
        assert_eq!(
            d,
            Demand {
                completed_target: 1,
                starts_by_ms: 500
            }
        );
        assert!(try_take(&shared, KEY, 3, 500, HOLD));
    }

    /// BEP-6: requests never override the backoff of a failing endpoint.
    #[test]
    fn demand_respects_the_failure_backoff() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert_eq!(release_failed(&shared, KEY, 1, |_| 81_000), Ok(Some(1)));
        let d = demand(&shared, KEY, 30_000, 10_000).unwrap();
        assert_eq!(
            d,
            Demand {
                completed_target: 2,
                starts_by_ms: 81_000
            }
        );
        assert!(!try_take(&shared, KEY, 2, 80_999, HOLD));
        assert!(try_take(&shared, KEY, 2, 81_000, HOLD));
    }

    /// A host clock that went back behind the last fetch's start does not stall fetching.
    #[test]
    fn clock_going_back_frees_the_lease() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 1_300_000), Ok(true));
        assert!(try_take(&shared, KEY, 2, 500_000, HOLD), "due at once");
        assert_eq!(current(&shared, KEY).unwrap().completed, 1);
        assert!(!try_take(&shared, KEY, 3, 500_001, HOLD), "and held again");
    }

    /// A demand never delays a fetch that is already due sooner.
    #[test]
    fn demand_keeps_an_earlier_due_time() {
        let shared = MemorySharedData::default();
        assert!(try_take(&shared, KEY, 1, 1_000, HOLD));
        assert_eq!(release_fetched(&shared, KEY, 1, 4_000), Ok(true));
        let d = demand(&shared, KEY, 2_000, 10_000).unwrap();
        assert_eq!(
            d,
            Demand {
                completed_target: 2,
                starts_by_ms: 4_000
            }
        );
        assert_eq!(current(&shared, KEY).unwrap().next_due_ms, 4_000);
    }
}
