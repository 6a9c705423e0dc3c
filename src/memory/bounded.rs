//! The in-process memory's tables: a map capped at a number of entries, the oldest written
//! dropped first, sized so that it stays within its cap's memory however long it runs.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A map that keeps at most `cap` entries, dropping the least recently written first.
/// Keys and values are small `Copy` values, so neither table nor queue allocates per entry.
pub(super) struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    cap: usize,
    seq: u64,
}

impl<K: Hash + Eq + Copy, V> Bounded<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
            seq: 0,
        }
    }

    pub(super) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }

    pub(super) fn insert(&mut self, k: K, v: V) {
        self.seq += 1;
        self.grow_to_cap_once_large();
        self.map.insert(k, (v, self.seq));
        self.drop_stale_queue_entries();
        self.order.push_back((k, self.seq));
        while self.map.len() > self.cap {
            self.pop_oldest();
        }
    }

    /// Rewrites of one key leave stale entries in the order queue: they are dropped before they
    /// pile up, and rather than grow a full queue once an eighth of the table's size is stale.
    fn drop_stale_queue_entries(&mut self) {
        let stale = self.order.len().saturating_sub(self.map.len());
        let full = self.order.len() == self.order.capacity();
        if self.order.len() > 2 * self.map.len() + 64 || (full && stale > self.map.len() / 8 + 16) {
            let map = &self.map;
            self.order.retain(|(k, s)| map.get(k).is_some_and(|(_, cur)| cur == s));
        }
    }

    /// Once the table holds a sixteenth of its cap and is full, it is given room for the whole cap
    /// at once (the queue a quarter more, for the stale entries of rewrites). Growing by doubling
    /// all the way would leave each smaller table behind with the allocator, which keeps it. A
    /// small memory (a quiet service) stays small.
    ///
    /// At the cap, every write drops the oldest entry, and the hash table counts the marks those
    /// removals leave against its room: left alone it would double (twice the memory for the same
    /// entries) once the marks fill it. Its entries are moved out and back in instead (which
    /// clears the marks), once every few thousand writes.
    fn grow_to_cap_once_large(&mut self) {
        if self.map.len() < self.cap / 16 {
            return;
        }
        if self.map.len() == self.map.capacity() {
            let entries: Vec<_> = self.map.drain().collect();
            // Drained, the table keeps its allocation with every mark cleared.
            self.map.reserve(self.cap + 1);
            self.map.extend(entries);
        }
        let queue = self.cap + self.cap / 4 + 1;
        if self.order.len() == self.order.capacity() && self.order.len() < queue {
            self.order.reserve_exact(queue - self.order.len());
        }
    }

    pub(super) fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some((k, s)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|(_, cur)| *cur == s) {
                return self.map.remove(&k).map(|(v, _)| (k, v));
            }
        }
        None
    }

    /// Drops entries from the oldest end while `expired` says so.
    pub(super) fn drop_oldest_while(&mut self, mut expired: impl FnMut(&V) -> bool) {
        while let Some((k, s)) = self.order.front() {
            match self.map.get(k) {
                Some((v, cur)) if cur == s => {
                    if !expired(v) {
                        break;
                    }
                    self.pop_oldest();
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `cap` entries, keys and values 0 to `cap - 1`.
    fn filled(cap: u64) -> Bounded<u64, u64> {
        let mut table = Bounded::new(usize::try_from(cap).expect("small"));
        for k in 0..cap {
            table.insert(k, k);
        }
        table
    }

    #[test]
    fn a_small_table_stays_small_and_a_large_one_skips_the_doublings() {
        let mut small: Bounded<u64, u64> = Bounded::new(1_000_000);
        for k in 0..100 {
            small.insert(k, k);
        }
        assert!(small.map.capacity() < 1_000, "{}", small.map.capacity());
        let mut large: Bounded<u64, u64> = Bounded::new(16_000);
        let mut capacities = vec![];
        for k in 0..16_000 {
            large.insert(k, k);
            if capacities.last() != Some(&large.map.capacity()) {
                capacities.push(large.map.capacity());
            }
        }
        // From (about) a sixteenth of the cap, one step to the whole cap (plus the entry over it).
        let [.., before, last] = capacities[..] else {
            panic!("{capacities:?}")
        };
        assert!(before < 2_000 && last > 16_000, "{capacities:?}");
        assert_eq!(large.order.capacity(), 20_001);
    }

    #[test]
    fn a_full_table_keeps_its_size_however_long_the_oldest_is_dropped() {
        let mut table = filled(10_000);
        let size = table.map.capacity();
        for k in 10_000..200_000 {
            table.insert(k, k);
            assert!(table.map.capacity() <= size, "grew to {} at {k}", table.map.capacity());
        }
        assert_eq!(table.len(), 10_000);
        assert_eq!(table.get(&189_999), None);
        assert_eq!(table.get(&190_000), Some(&190_000));
    }

    #[test]
    fn rewrites_do_not_grow_the_order_queue_and_the_oldest_still_goes_first() {
        let mut table = filled(1_000);
        let queue = table.order.capacity();
        for round in 0..20 {
            for k in 500..1_000 {
                table.insert(k, round);
            }
        }
        assert_eq!(table.order.capacity(), queue, "stale entries are dropped instead");
        assert_eq!(table.len(), 1_000);
        table.insert(1_000, 0);
        assert_eq!(table.get(&0), None, "the oldest write is dropped at the cap");
        assert_eq!(table.get(&1), Some(&1));
        assert_eq!(table.get(&999), Some(&19));
    }
}
