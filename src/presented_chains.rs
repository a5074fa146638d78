//! The client certificate chains recently read, remembered per VM by the leaf's SHA-256 (as Envoy
//! reports it for the connection) and the exact XFCC text, so that token requests presenting a
//! chain seen before (a kept-alive mTLS connection, or a new connection of the same client) do
//! not read the peer certificate from the host and decode the PEM and the XFCC chain again.
//!
//! This is a memo of a pure function: the leaf is the certificate whose SHA-256 Envoy reports for
//! the connection (the read checks that), and the intermediates come from the XFCC text alone. It
//! is not keyed by connection: Envoy's `connection.id` is a process-wide counter for TCP, but for
//! HTTP/3 it is a hash of a QUIC connection ID that a client chooses and can reuse, so one
//! connection could be mistaken for another (found by an adversarial review). Bounded: at most
//! [`MAX_ENTRIES`] chains, first in first out; an XFCC value or a leaf over [`MAX_BYTES`] is not
//! remembered.

use crate::client_cert::PresentedChain;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Most chains one VM remembers.
pub const MAX_ENTRIES: usize = 256;
/// Largest XFCC value, and largest leaf, remembered.
pub const MAX_BYTES: usize = 16 * 1024;

/// What a request's connection presented: no certificate (`None`), or its chain.
pub type Presented = Option<Rc<PresentedChain>>;

/// (the leaf's SHA-256 as Envoy reports it, lower-case hex; the XFCC value)
type Key = (String, Option<String>);

/// The per-VM memo of chains read.
#[derive(Default)]
pub struct PresentedChains {
    entries: RefCell<HashMap<Key, Rc<PresentedChain>>>,
    order: RefCell<VecDeque<Key>>,
}

impl PresentedChains {
    /// The chain read before for the leaf digest `sha256_hex` and this same XFCC value.
    pub fn get(&self, sha256_hex: &str, xfcc: Option<&str>) -> Presented {
        let key = (sha256_hex.to_ascii_lowercase(), xfcc.map(str::to_owned));
        self.entries.borrow().get(&key).cloned()
    }

    /// Remembers `chain`, read for the leaf digest `sha256_hex` and `xfcc`.
    pub fn insert(&self, sha256_hex: &str, xfcc: Option<&str>, chain: &Rc<PresentedChain>) {
        if xfcc.is_some_and(|x| x.len() > MAX_BYTES) || chain.leaf().len() > MAX_BYTES {
            return;
        }
        let key = (sha256_hex.to_ascii_lowercase(), xfcc.map(str::to_owned));
        let mut entries = self.entries.borrow_mut();
        if entries.insert(key.clone(), Rc::clone(chain)).is_some() {
            return;
        }
        let mut order = self.order.borrow_mut();
        order.push_back(key);
        while order.len() > MAX_ENTRIES {
            if let Some(oldest) = order.pop_front() {
                entries.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(byte: u8) -> Rc<PresentedChain> {
        Rc::new(PresentedChain::new(vec![byte], vec![]))
    }

    #[test]
    fn a_chain_answers_for_its_digest_and_the_xfcc_it_was_read_with_only() {
        let c = PresentedChains::default();
        assert_eq!(c.get("ab", Some("x")), None, "never seen");
        c.insert("ab", Some("x"), &chain(1));
        assert_eq!(c.get("ab", Some("x")), Some(chain(1)));
        assert_eq!(
            c.get("AB", Some("x")),
            Some(chain(1)),
            "hex case does not matter"
        );
        assert_eq!(c.get("ab", Some("y")), None, "another XFCC is read afresh");
        assert_eq!(c.get("ab", None), None);
        assert_eq!(c.get("cd", Some("x")), None, "another certificate");
        c.insert("ab", Some("y"), &chain(2));
        assert_eq!(c.get("ab", Some("y")), Some(chain(2)));
        assert_eq!(c.get("ab", Some("x")), Some(chain(1)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn the_oldest_chain_goes_first_and_the_memo_stays_bounded() {
        let c = PresentedChains::default();
        for i in 0..=MAX_ENTRIES {
            c.insert(&i.to_string(), None, &chain(1));
            // Read again: not a new entry, no second place in the order.
            c.insert(&i.to_string(), None, &chain(1));
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        assert_eq!(c.get("0", None), None);
        assert_eq!(c.get("1", None), Some(chain(1)));
        assert_eq!(c.order.borrow().len(), MAX_ENTRIES);
    }

    #[test]
    fn an_oversized_xfcc_or_leaf_is_not_remembered() {
        let c = PresentedChains::default();
        let big = "a".repeat(MAX_BYTES + 1);
        c.insert("ab", Some(&big), &chain(1));
        let big_leaf = Rc::new(PresentedChain::new(vec![0; MAX_BYTES + 1], vec![]));
        c.insert("ab", None, &big_leaf);
        assert!(c.is_empty());
        let edge = "a".repeat(MAX_BYTES);
        c.insert("ab", Some(&edge), &chain(1));
        assert_eq!(c.get("ab", Some(&edge)), Some(chain(1)));
    }
}
