//! The neighbour graph: a Harary graph H(k, n) over a permutation of the clients that
//! advertised keys, seeded by the round's graph seed (the cohort and the clients' committed
//! nonces, see [`GraphSeed`]) so that every party derives the same graph.
//!
//! Positions on a ring of n: each is joined to the ⌊k/2⌋ nearest positions on either side;
//! for odd k, also to the opposite position (n even), or — for odd n — positions
//! 0..=(n−1)/2 are joined to the position (n+1)/2 ahead, which gives position 0 one extra
//! neighbour (Harary's construction). k ≥ n − 1 gives the complete graph of classic SecAgg.
//! The permutation hides which clients are neighbours until the keys are fixed.

use std::collections::{BTreeSet, HashMap};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::ClientId;
use crate::crypto::GraphSeed;

/// Who is whose neighbour in one round.
#[derive(Clone, Debug)]
pub struct NeighborGraph {
    ring: Vec<ClientId>,
    position: HashMap<ClientId, usize>,
    degree: usize,
}

impl NeighborGraph {
    /// The graph over `members` (the clients that advertised keys, any order) with degree
    /// `k` (capped at `members − 1`), permuted by the seed.
    pub fn new(seed: &GraphSeed, members: &[ClientId], k: usize) -> Self {
        let mut ring: Vec<ClientId> = members.to_vec();
        ring.sort_unstable();
        ring.dedup();
        let mut rng = ChaCha20Rng::from_seed(seed.0);
        // Fisher–Yates with unbiased draws, so every platform derives the same ring.
        for i in (1..ring.len()).rev() {
            let j = uniform_below(&mut rng, i as u64 + 1) as usize;
            ring.swap(i, j);
        }
        let position = ring.iter().enumerate().map(|(p, id)| (*id, p)).collect();
        let degree = k.min(ring.len().saturating_sub(1));
        Self {
            ring,
            position,
            degree,
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the graph has no members.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: ClientId) -> bool {
        self.position.contains_key(&id)
    }

    /// The degree asked for (capped at n − 1); one vertex may have one more (odd k, odd n).
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// The neighbours of `id`, sorted; empty for a non-member.
    pub fn neighbors(&self, id: ClientId) -> Vec<ClientId> {
        let Some(&p) = self.position.get(&id) else {
            return Vec::new();
        };
        let n = self.ring.len();
        let k = self.degree;
        let mut out = BTreeSet::new();
        if k + 1 >= n {
            out.extend(self.ring.iter().copied().filter(|&c| c != id));
            return out.into_iter().collect();
        }
        for j in 1..=k / 2 {
            out.insert(self.ring[(p + j) % n]);
            out.insert(self.ring[(p + n - j) % n]);
        }
        if k % 2 == 1 {
            if n % 2 == 0 {
                out.insert(self.ring[(p + n / 2) % n]);
            } else {
                let half = n.div_ceil(2);
                let last = (n - 1) / 2;
                if p <= last {
                    out.insert(self.ring[(p + half) % n]);
                }
                let back = (p + n - half) % n;
                if back <= last {
                    out.insert(self.ring[back]);
                }
            }
        }
        out.remove(&id);
        out.into_iter().collect()
    }

    /// Whether `a` and `b` are neighbours.
    pub fn are_neighbors(&self, a: ClientId, b: ClientId) -> bool {
        a != b && self.neighbors(a).binary_search(&b).is_ok()
    }
}

/// A uniform draw from 0..n by rejection (no modulo bias).
fn uniform_below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u32) -> Vec<ClientId> {
        (0..n).map(ClientId).collect()
    }

    fn check_symmetric_and_degree(g: &NeighborGraph, ids: &[ClientId], k: usize) {
        let mut extra = 0;
        for &a in ids {
            let na = g.neighbors(a);
            assert!(!na.contains(&a));
            for &b in &na {
                assert!(g.neighbors(b).contains(&a), "{a} -> {b} not symmetric");
            }
            match na.len() {
                d if d == k => {}
                d if d == k + 1 => extra += 1,
                d => panic!("{a} has degree {d}, expected {k}"),
            }
        }
        assert!(extra <= 1, "{extra} vertices above degree {k}");
    }

    #[test]
    fn harary_graphs_are_symmetric_with_degree_k() {
        let seed = GraphSeed([7; 32]);
        for n in [3u32, 4, 5, 10, 11, 100, 101] {
            let ids = members(n);
            for k in [2usize, 3, 4, 5, 21, 22] {
                if k >= n as usize {
                    continue;
                }
                let g = NeighborGraph::new(&seed, &ids, k);
                check_symmetric_and_degree(&g, &ids, k);
                // Odd k with even n is exactly regular.
                if k % 2 == 1 && n % 2 == 0 || k % 2 == 0 {
                    assert!(ids.iter().all(|&a| g.neighbors(a).len() == k));
                }
            }
        }
    }

    #[test]
    fn complete_graph_when_k_reaches_n_minus_one() {
        let ids = members(6);
        let g = NeighborGraph::new(&GraphSeed([1; 32]), &ids, 99);
        for &a in &ids {
            assert_eq!(g.neighbors(a).len(), 5);
        }
    }

    #[test]
    fn same_session_same_graph_other_session_other_graph() {
        let ids = members(50);
        let a = NeighborGraph::new(&GraphSeed([1; 32]), &ids, 4);
        let b = NeighborGraph::new(&GraphSeed([1; 32]), &ids, 4);
        let c = NeighborGraph::new(&GraphSeed([2; 32]), &ids, 4);
        let na: Vec<_> = ids.iter().map(|&i| a.neighbors(i)).collect();
        let nb: Vec<_> = ids.iter().map(|&i| b.neighbors(i)).collect();
        let nc: Vec<_> = ids.iter().map(|&i| c.neighbors(i)).collect();
        assert_eq!(na, nb);
        assert_ne!(na, nc);
        // Order of the member list does not matter.
        let mut rev = ids.clone();
        rev.reverse();
        let d = NeighborGraph::new(&GraphSeed([1; 32]), &rev, 4);
        let nd: Vec<_> = ids.iter().map(|&i| d.neighbors(i)).collect();
        assert_eq!(na, nd);
    }

    #[test]
    fn non_members_have_no_neighbors() {
        let g = NeighborGraph::new(&GraphSeed([0; 32]), &members(5), 2);
        assert!(g.neighbors(ClientId(99)).is_empty());
        assert!(!g.are_neighbors(ClientId(0), ClientId(0)));
    }
}
