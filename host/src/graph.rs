//! The neighbour graph: a Harary graph H(k, n) over a ring of the cohort's n members, their
//! order on the ring drawn from the round's graph seed (see [`GraphSeed`]) so that every party
//! derives the same graph.
//!
//! Members are named by their index in the cohort (its sorted order, the leaf index of the
//! cohort commitment). The ring is a uniformly random permutation of the indices: Fisher–Yates
//! driven by ChaCha20 from the seed, with unbiased draws. Each ring position is joined to the
//! ⌊k/2⌋ nearest positions on either side; for odd k, also to the opposite position (n even),
//! or — for odd n — positions 0..=(n−1)/2 are joined to the position (n+1)/2 ahead, which
//! gives position 0 one extra neighbour (Harary's construction). k ≥ n − 1 gives the complete
//! graph of classic SecAgg.
//!
//! Deriving the ring costs O(n) time on every party — a few microseconds per thousand members
//! — and no bytes: the seed and n are all it takes. A client then keeps only its [`Window`]:
//! the ring around itself, its neighbours and theirs (about 4k positions), which is all the
//! later stages ask of the graph.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::crypto::GraphSeed;

/// The positions joined to position `p` on a ring of `n` with degree `k` (capped at n − 1),
/// increasing, without `p`.
pub fn harary(n: usize, k: usize, p: usize) -> Vec<usize> {
    if p >= n {
        return Vec::new();
    }
    let k = k.min(n.saturating_sub(1));
    if k + 1 >= n {
        return (0..n).filter(|q| *q != p).collect();
    }
    let mut out = Vec::with_capacity(k + 1);
    for j in 1..=k / 2 {
        out.push((p + j) % n);
        out.push((p + n - j) % n);
    }
    if k % 2 == 1 {
        if n % 2 == 0 {
            out.push((p + n / 2) % n);
        } else {
            let half = n.div_ceil(2);
            let last = (n - 1) / 2;
            if p <= last {
                out.push((p + half) % n);
            }
            let back = (p + n - half) % n;
            if back <= last {
                out.push(back);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out.retain(|q| *q != p);
    out
}

/// The whole ring, as the server (and anyone holding the seed) derives it.
#[derive(Clone, Debug)]
pub struct Ring {
    /// Ring position → cohort index.
    order: Vec<u32>,
    /// Cohort index → ring position.
    place: Vec<u32>,
    degree: usize,
}

impl Ring {
    /// The ring of `n` members (indices 0..n) for degree `k` (capped at n − 1), permuted by
    /// the seed.
    pub fn new(seed: &GraphSeed, n: usize, k: usize) -> Self {
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut rng = ChaCha20Rng::from_seed(seed.0);
        // Fisher–Yates with unbiased draws, so every platform derives the same ring.
        for i in (1..n).rev() {
            let j = uniform_below(&mut rng, i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let mut place = vec![0u32; n];
        for (p, i) in order.iter().enumerate() {
            place[*i as usize] = p as u32;
        }
        Self {
            order,
            place,
            degree: k.min(n.saturating_sub(1)),
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The degree asked for (capped at n − 1); one vertex may have one more (odd k, odd n).
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// Where member `index` sits on the ring.
    pub fn position(&self, index: u32) -> Option<usize> {
        self.place.get(index as usize).map(|p| *p as usize)
    }

    /// The member at ring position `position`.
    pub fn at(&self, position: usize) -> Option<u32> {
        self.order.get(position).copied()
    }

    /// The neighbours of member `index`, by cohort index, increasing; empty for a non-member.
    pub fn neighbors(&self, index: u32) -> Vec<u32> {
        let Some(p) = self.position(index) else {
            return Vec::new();
        };
        let mut out: Vec<u32> = harary(self.len(), self.degree, p)
            .into_iter()
            .map(|q| self.order[q])
            .collect();
        out.sort_unstable();
        out
    }

    /// Whether `a` and `b` are neighbours.
    pub fn are_neighbors(&self, a: u32, b: u32) -> bool {
        a != b && self.neighbors(a).binary_search(&b).is_ok()
    }

    /// What member `index` keeps of the ring: itself, its neighbours and their neighbours.
    pub fn window(&self, index: u32) -> Option<Window> {
        let p = self.position(index)?;
        let (n, k) = (self.len(), self.degree);
        let mut positions = vec![(p as u32, self.order[p])];
        for q in harary(n, k, p) {
            positions.push((q as u32, self.order[q]));
            for r in harary(n, k, q) {
                positions.push((r as u32, self.order[r]));
            }
        }
        positions.sort_unstable();
        positions.dedup();
        positions.shrink_to_fit();
        let mut indices: Vec<(u32, u32)> = positions.iter().map(|(p, i)| (*i, *p)).collect();
        indices.sort_unstable();
        Some(Window {
            n,
            degree: k,
            me: index,
            positions,
            indices,
        })
    }
}

/// The part of the ring one member keeps: enough to name its neighbours and each neighbour's
/// neighbours (the holders of every secret it holds a share of). Kept as two sorted lists
/// (about 2k + 1 entries each), not maps: every client keeps one for the whole round.
#[derive(Clone, Debug)]
pub struct Window {
    n: usize,
    degree: usize,
    me: u32,
    /// (ring position, member), sorted by position.
    positions: Vec<(u32, u32)>,
    /// (member, ring position), sorted by member.
    indices: Vec<(u32, u32)>,
}

impl Window {
    /// The member whose window this is.
    pub fn me(&self) -> u32 {
        self.me
    }

    /// The ring's size.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the ring is empty (never, for a window).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Where member `index` sits, if the window holds it.
    pub fn position(&self, index: u32) -> Option<usize> {
        let i = self.indices.binary_search_by_key(&index, |e| e.0).ok()?;
        self.indices.get(i).map(|e| e.1 as usize)
    }

    /// The member at ring position `position`, if the window holds it.
    fn member_at(&self, position: usize) -> Option<u32> {
        let position = u32::try_from(position).ok()?;
        let i = self
            .positions
            .binary_search_by_key(&position, |e| e.0)
            .ok()?;
        self.positions.get(i).map(|e| e.1)
    }

    /// The ring positions joined to member `index`'s, if the window holds it.
    pub fn neighbor_positions(&self, index: u32) -> Option<Vec<usize>> {
        Some(harary(self.n, self.degree, self.position(index)?))
    }

    /// The neighbours of member `index` by cohort index, increasing — if the window holds it
    /// and all of them (it does for itself and its neighbours).
    pub fn neighbors(&self, index: u32) -> Option<Vec<u32>> {
        let mut out = self
            .neighbor_positions(index)?
            .into_iter()
            .map(|q| self.member_at(q))
            .collect::<Option<Vec<u32>>>()?;
        out.sort_unstable();
        Some(out)
    }
}

/// A uniform draw from 0..n by rejection (no modulo bias).
pub(crate) fn uniform_below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
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

    fn check_symmetric_and_degree(g: &Ring, k: usize) {
        let mut extra = 0;
        for a in 0..g.len() as u32 {
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
        for n in [3usize, 4, 5, 10, 11, 100, 101] {
            for k in [2usize, 3, 4, 5, 21, 22] {
                if k >= n {
                    continue;
                }
                let g = Ring::new(&seed, n, k);
                check_symmetric_and_degree(&g, k);
                // Odd k with even n is exactly regular.
                if k % 2 == 1 && n % 2 == 0 || k % 2 == 0 {
                    assert!((0..n as u32).all(|a| g.neighbors(a).len() == k));
                }
            }
        }
    }

    #[test]
    fn complete_graph_when_k_reaches_n_minus_one() {
        let g = Ring::new(&GraphSeed([1; 32]), 6, 99);
        for a in 0..6 {
            assert_eq!(g.neighbors(a).len(), 5);
        }
    }

    #[test]
    fn same_seed_same_graph_other_seed_other_graph() {
        let a = Ring::new(&GraphSeed([1; 32]), 50, 4);
        let b = Ring::new(&GraphSeed([1; 32]), 50, 4);
        let c = Ring::new(&GraphSeed([2; 32]), 50, 4);
        let na: Vec<_> = (0..50).map(|i| a.neighbors(i)).collect();
        let nb: Vec<_> = (0..50).map(|i| b.neighbors(i)).collect();
        let nc: Vec<_> = (0..50).map(|i| c.neighbors(i)).collect();
        assert_eq!(na, nb);
        assert_ne!(na, nc);
    }

    #[test]
    fn non_members_have_no_neighbors() {
        let g = Ring::new(&GraphSeed([0; 32]), 5, 2);
        assert!(g.neighbors(99).is_empty());
        assert!(!g.are_neighbors(0, 0));
        assert!(g.window(99).is_none());
    }

    #[test]
    fn a_window_answers_for_its_member_and_its_neighbours() {
        for (n, k) in [(40usize, 6usize), (41, 7), (40, 7), (9, 8), (1000, 78)] {
            let g = Ring::new(&GraphSeed([3; 32]), n, k);
            for me in [0u32, 7, (n - 1) as u32] {
                let w = g.window(me).unwrap();
                assert_eq!(w.neighbors(me).unwrap(), g.neighbors(me));
                for v in g.neighbors(me) {
                    assert_eq!(w.neighbors(v).unwrap(), g.neighbors(v), "n {n} k {k}");
                }
                // It keeps O(k) of the ring, not all of it (but for the complete graph).
                if k + 1 < n {
                    assert!(w.positions.len() <= 4 * k + 4, "{}", w.positions.len());
                }
            }
        }
    }
}
