//! One fetch per trust domain for the whole Envoy process: a lease in shared data, taken with
//! compare-and-swap, says which VM fetches next and when the next fetch is due. Every worker's
//! root context ticks; only the lease holder dispatches; a holder that never answers loses the
//! lease when it expires (requirements BEP-12; field case FC-20).
//!
//! Shared data has no atomic create-if-absent: a missing lease is first written as a free one
//! (harmless if two VMs race, it holds nobody), then taken with CAS against what was read.

use crate::trust_store::{SharedData, StoreError};
use serde::{Deserialize, Serialize};

/// The shared schedule of one trust domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lease {
    /// VM holding the lease (0: nobody).
    pub holder: u64,
    /// The lease lapses at this time (ms) even if its holder never releases it.
    pub until_ms: u64,
    /// The next fetch is due at this time (ms).
    pub next_due_ms: u64,
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

fn write(shared: &dyn SharedData, key: &str, lease: &Lease, cas: Option<u32>) -> bool {
    serde_json::to_vec(lease).is_ok_and(|bytes| shared.set(key, &bytes, cas).is_ok())
}

/// Takes the lease for `me` if a fetch is due and nobody else holds a live lease. On success
/// the caller fetches and must [`release`] with the next due time.
pub fn try_take(shared: &dyn SharedData, key: &str, me: u64, now_ms: u64, hold_ms: u64) -> bool {
    let (lease, cas) = match read(shared, key) {
        Some(found) => found,
        None => {
            // First VM to look: write a free, due lease, then compete for it like everyone.
            let free = Lease {
                next_due_ms: now_ms,
                ..Lease::default()
            };
            if !write(shared, key, &free, None) {
                return false;
            }
            match read(shared, key) {
                Some(found) => found,
                None => return false,
            }
        }
    };
    let held_by_other = lease.holder != 0 && lease.holder != me && now_ms < lease.until_ms;
    if now_ms < lease.next_due_ms || held_by_other {
        return false;
    }
    let taken = Lease {
        holder: me,
        until_ms: now_ms.saturating_add(hold_ms),
        next_due_ms: lease.next_due_ms,
    };
    write(shared, key, &taken, Some(cas))
}

/// Gives the lease back after a fetch (good or failed), setting when the next one is due.
/// Does nothing if `me` no longer holds it (it lapsed and another VM took over).
pub fn release(
    shared: &dyn SharedData,
    key: &str,
    me: u64,
    next_due_ms: u64,
) -> Result<bool, StoreError> {
    let Some((lease, cas)) = read(shared, key) else {
        return Ok(false);
    };
    if lease.holder != me {
        return Ok(false);
    }
    let free = Lease {
        holder: 0,
        until_ms: 0,
        next_due_ms,
    };
    Ok(write(shared, key, &free, Some(cas)))
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
        assert_eq!(release(&shared, KEY, 1, 61_000), Ok(true));
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
        assert_eq!(release(&shared, KEY, 1, 99_000), Ok(false));
        assert_eq!(release(&shared, KEY, 2, 70_000), Ok(true));
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
            next_due_ms: 0,
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
}
