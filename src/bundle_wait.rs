//! Token requests held until their trust domain's next bundle fetch completes (cold start,
//! unknown `kid`), and which of them to decide again now.
//!
//! Per VM: a paused request can only be resumed from the worker that paused it, so each root
//! context keeps its own list and checks it whenever the shared fetch state may have changed
//! (its own fetch answered, or a tick). Host-agnostic: the caller looks up how many fetches
//! have completed per lease key and passes the time in.

use std::collections::HashMap;

/// A held request of context `context_id`, carrying whatever `T` it needs to be decided.
#[derive(Debug)]
struct Held<T> {
    context_id: u32,
    lease_key: String,
    /// Decide again once the lease's completed-fetch count reaches this.
    completed_target: u64,
    deadline_ms: u64,
    request: T,
}

/// The held requests of one VM.
#[derive(Debug)]
pub struct Waiting<T> {
    held: Vec<Held<T>>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting { held: Vec::new() }
    }
}

impl<T> Waiting<T> {
    /// Holds `request` until the fetch counted as `completed_target` of `lease_key` completes,
    /// or until `deadline_ms`.
    pub fn hold(
        &mut self,
        context_id: u32,
        lease_key: &str,
        completed_target: u64,
        deadline_ms: u64,
        request: T,
    ) {
        self.held.push(Held {
            context_id,
            lease_key: lease_key.to_owned(),
            completed_target,
            deadline_ms,
            request,
        });
    }

    /// Forgets the request of a context that ended (client gone) before it was decided.
    pub fn forget(&mut self, context_id: u32) -> Option<T> {
        let at = self.held.iter().position(|h| h.context_id == context_id)?;
        Some(self.held.swap_remove(at).request)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Removes and returns, in the order they were held, the requests to decide now: those
    /// whose fetch has completed and those whose deadline has come. `completed` tells how many
    /// fetches a lease key has completed (`None`: unknown); it is asked once per key.
    pub fn take_ready(
        &mut self,
        completed: impl Fn(&str) -> Option<u64>,
        now_ms: u64,
    ) -> Vec<(u32, T)> {
        if self.held.is_empty() {
            return Vec::new();
        }
        let mut counts: HashMap<String, Option<u64>> = HashMap::new();
        let mut ready = Vec::new();
        let mut still = Vec::with_capacity(self.held.len());
        for held in self.held.drain(..) {
            let count = *counts
                .entry(held.lease_key.clone())
                .or_insert_with(|| completed(&held.lease_key));
            let fetched = count.is_some_and(|c| c >= held.completed_target);
            if fetched || now_ms >= held.deadline_ms {
                ready.push((held.context_id, held.request));
            } else {
                still.push(held);
            }
        }
        self.held = still;
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> impl Fn(&str) -> Option<u64> {
        let map: HashMap<String, u64> = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        move |key| map.get(key).copied()
    }

    #[test]
    fn released_when_the_awaited_fetch_completes() {
        let mut w = Waiting::default();
        w.hold(1, "org", 3, 10_000, "a");
        w.hold(2, "net", 1, 10_000, "b");
        w.hold(3, "org", 4, 10_000, "c");
        assert!(w
            .take_ready(counts(&[("org", 2), ("net", 0)]), 0)
            .is_empty());
        assert_eq!(
            w.take_ready(counts(&[("org", 3), ("net", 0)]), 0),
            vec![(1, "a")]
        );
        assert_eq!(
            w.take_ready(counts(&[("org", 4), ("net", 1)]), 0),
            vec![(2, "b"), (3, "c")]
        );
        assert!(w.is_empty());
    }

    /// Bounded wait: a request whose fetch never completes is decided at its deadline.
    #[test]
    fn released_at_the_deadline() {
        let mut w = Waiting::default();
        w.hold(1, "org", 1, 5_000, ());
        w.hold(2, "org", 1, 6_000, ());
        assert!(w.take_ready(counts(&[]), 4_999).is_empty());
        assert_eq!(w.take_ready(counts(&[]), 5_000), vec![(1, ())]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.take_ready(counts(&[]), 6_000), vec![(2, ())]);
    }

    #[test]
    fn a_gone_request_is_forgotten() {
        let mut w = Waiting::default();
        w.hold(1, "org", 1, 5_000, "a");
        w.hold(2, "org", 1, 5_000, "b");
        assert_eq!(w.forget(1), Some("a"));
        assert_eq!(w.forget(1), None);
        assert_eq!(w.take_ready(counts(&[("org", 1)]), 0), vec![(2, "b")]);
    }

    /// The shared state is read once per trust domain, not once per held request.
    #[test]
    fn one_lookup_per_lease_key() {
        let mut w = Waiting::default();
        for id in 0..50 {
            w.hold(id, "org", 1, 5_000, ());
        }
        let lookups = std::cell::Cell::new(0);
        let ready = w.take_ready(
            |_| {
                lookups.set(lookups.get() + 1);
                Some(1)
            },
            0,
        );
        assert_eq!((ready.len(), lookups.get()), (50, 1));
    }
}
