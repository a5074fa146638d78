//! The client certificate chain each downstream connection presented, remembered per VM by
//! Envoy's connection id, so that token requests on a kept-alive mTLS connection do not read
//! the peer certificate, its digest and `connection.mtls` from the host and decode the PEM and
//! the XFCC chain again on every request.
//!
//! What a connection presented cannot change during its life (TLS 1.3 and this listener do not
//! renegotiate), and Envoy's connection ids are never reused within a process. The XFCC value
//! is part of the input too (the chain's intermediates come from it), so an entry answers only
//! for the exact XFCC text it was read with; any other text reads the chain afresh. Bounded:
//! at most [`MAX_CONNECTIONS`] connections, first in first out, and XFCC values over
//! [`MAX_XFCC_BYTES`] are not remembered.

use crate::client_cert::PresentedChain;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Most connections one VM remembers.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest XFCC value remembered with a connection (a leaf and a few intermediates).
pub const MAX_XFCC_BYTES: usize = 16 * 1024;

/// What one connection presented: no certificate (`None`), or its chain.
pub type Presented = Option<Rc<PresentedChain>>;

struct Seen {
    xfcc: Option<String>,
    presented: Presented,
}

/// The per-VM map from connection id to what the connection presented.
#[derive(Default)]
pub struct ConnectionChains {
    entries: RefCell<HashMap<Vec<u8>, Seen>>,
    order: RefCell<VecDeque<Vec<u8>>>,
}

impl ConnectionChains {
    /// What `connection` presented, if it was read before with this same XFCC value.
    pub fn get(&self, connection: &[u8], xfcc: Option<&str>) -> Option<Presented> {
        let entries = self.entries.borrow();
        let seen = entries.get(connection)?;
        (seen.xfcc.as_deref() == xfcc).then(|| seen.presented.clone())
    }

    /// Remembers what `connection` presented, read with `xfcc`.
    pub fn insert(&self, connection: &[u8], xfcc: Option<&str>, presented: Presented) {
        if xfcc.is_some_and(|x| x.len() > MAX_XFCC_BYTES) {
            return;
        }
        let seen = Seen {
            xfcc: xfcc.map(str::to_owned),
            presented,
        };
        let mut entries = self.entries.borrow_mut();
        if entries.insert(connection.to_vec(), seen).is_some() {
            return;
        }
        let mut order = self.order.borrow_mut();
        order.push_back(connection.to_vec());
        while order.len() > MAX_CONNECTIONS {
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

    fn chain(byte: u8) -> Presented {
        Some(Rc::new(PresentedChain::new(vec![byte], vec![])))
    }

    #[test]
    fn a_connection_answers_for_the_xfcc_it_was_read_with_only() {
        let c = ConnectionChains::default();
        assert_eq!(c.get(b"1", Some("x")), None, "never seen");
        c.insert(b"1", Some("x"), chain(1));
        assert_eq!(c.get(b"1", Some("x")), Some(chain(1)));
        assert_eq!(c.get(b"1", Some("y")), None, "another XFCC is read afresh");
        assert_eq!(c.get(b"1", None), None);
        assert_eq!(c.get(b"2", Some("x")), None, "another connection");
        c.insert(b"1", Some("y"), chain(2));
        assert_eq!(c.get(b"1", Some("y")), Some(chain(2)));
        assert_eq!(c.get(b"1", Some("x")), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_connection_without_a_certificate_is_remembered_too() {
        let c = ConnectionChains::default();
        c.insert(b"7", None, None);
        assert_eq!(c.get(b"7", None), Some(None));
    }

    #[test]
    fn the_oldest_connection_goes_first_and_the_map_stays_bounded() {
        let c = ConnectionChains::default();
        for i in 0..=MAX_CONNECTIONS {
            c.insert(&i.to_le_bytes(), None, None);
            // Seen again: not a new connection, no second place in the order.
            c.insert(&i.to_le_bytes(), None, None);
        }
        assert_eq!(c.len(), MAX_CONNECTIONS);
        assert_eq!(c.get(&0usize.to_le_bytes(), None), None);
        assert_eq!(c.get(&1usize.to_le_bytes(), None), Some(None));
        assert_eq!(c.order.borrow().len(), MAX_CONNECTIONS);
    }

    #[test]
    fn an_oversized_xfcc_is_not_remembered() {
        let c = ConnectionChains::default();
        let big = "a".repeat(MAX_XFCC_BYTES + 1);
        c.insert(b"1", Some(&big), chain(1));
        assert!(c.is_empty());
        let edge = "a".repeat(MAX_XFCC_BYTES);
        c.insert(b"1", Some(&edge), chain(1));
        assert_eq!(c.get(b"1", Some(&edge)), Some(chain(1)));
    }
}
