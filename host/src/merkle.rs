//! Merkle trees: how the server commits to a list every client could not afford to receive,
//! and proves to each client the few entries it needs.
//!
//! A tree over `width` leaves, each leaf a SHA-256 digest the caller computes with
//! [`leaf_hash`] (so that every list hashes its own kind of entry under its own label):
//!
//! * leaf: `SHA-256(0x00 ‖ label length u8 ‖ label ‖ the entry's fields)`;
//! * node: `SHA-256(0x01 ‖ left ‖ right)`; a level of odd width carries its last node up
//!   unchanged (it has no sibling);
//! * root: `SHA-256(0x02 ‖ width u64 ‖ top)`, so the root binds how many leaves there are, and
//!   a proof made for one width fails under any other.
//!
//! The three tags keep a leaf, an inner node and a root from ever being read as one another.
//! Positions are canonical: every list is sorted before it is committed (by client id, or by
//! position on the ring), and a leaf's index is its rank.
//!
//! A proof opens any set of leaves at once (a multiproof): the sibling digests that the opened
//! leaves do not determine themselves, level by level from the leaves up and left to right
//! within a level. A tree has at most 2^32 leaves (depth ≤ [`MAX_DEPTH`]), and a proof for
//! `s` leaves of a tree of depth `d` holds at most `s · d` digests ([`max_proof_len`]): the
//! codec bounds every proof by that before allocating, and [`verify`] refuses a proof that is
//! one digest short or one too long.
//!
//! [`SortedSet`] commits to a sorted list of distinct `u32` values (the clients present at a
//! stage, as ring positions) and proves that a value is in it, or not (the two adjacent leaves
//! around it), with [`SetOpening`].

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The deepest tree: 2^32 leaves.
pub const MAX_DEPTH: u32 = 32;

const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;
const ROOT: u8 = 0x02;

/// Why a proof or a tree is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// More leaves than a tree may hold (2^32).
    #[error("{0} leaves: a tree holds at most 2^32")]
    TooWide(u64),
    /// The opened leaf indices are not strictly increasing.
    #[error("the opened leaf indices are not strictly increasing")]
    NotSorted,
    /// An opened index is outside the tree.
    #[error("leaf {index} is outside a tree of {width}")]
    OutOfRange {
        /// The index.
        index: u64,
        /// The tree's width.
        width: u64,
    },
    /// The proof ran out of digests.
    #[error("the proof is too short")]
    Truncated,
    /// Digests were left over.
    #[error("the proof has {0} digests too many")]
    TooLong(usize),
    /// The opened leaves and the proof lead to another root.
    #[error("the proof leads to another root")]
    WrongRoot,
}

/// The digest of a leaf of a list labelled `label` (at most 255 bytes): its fields in order.
pub fn leaf_hash(label: &[u8], fields: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    h.update([LEAF, label.len().min(255) as u8]);
    h.update(&label[..label.len().min(255)]);
    for f in fields {
        h.update(f);
    }
    h.finalize().into()
}

fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update([NODE]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn root_hash(width: u64, top: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update([ROOT]);
    h.update(width.to_le_bytes());
    h.update(top);
    h.finalize().into()
}

/// The number of levels above the leaves in a tree of `width` leaves: ⌈log2 width⌉.
pub fn depth(width: u64) -> u32 {
    if width <= 1 {
        0
    } else {
        64 - (width - 1).leading_zeros()
    }
}

/// The most digests a proof of `opened` leaves of a tree of `width` can need.
pub fn max_proof_len(opened: usize, width: u64) -> usize {
    opened.saturating_mul(depth(width) as usize)
}

fn check_width(width: u64) -> Result<(), MerkleError> {
    if width > 1u64 << MAX_DEPTH {
        return Err(MerkleError::TooWide(width));
    }
    Ok(())
}

/// The opened indices are strictly increasing and inside the tree.
fn check_indices(indices: impl Iterator<Item = u64>, width: u64) -> Result<(), MerkleError> {
    let mut last: Option<u64> = None;
    for index in indices {
        if index >= width {
            return Err(MerkleError::OutOfRange { index, width });
        }
        if last.is_some_and(|l| l >= index) {
            return Err(MerkleError::NotSorted);
        }
        last = Some(index);
    }
    Ok(())
}

/// A whole tree, as its owner (the server) keeps it to prove any leaf.
#[derive(Clone, Debug)]
pub struct Tree {
    /// levels[0] are the leaves; the last level has one node (none for an empty tree).
    levels: Vec<Vec<Digest>>,
    root: Digest,
}

impl Tree {
    /// The tree over `leaves` (in their canonical order).
    pub fn new(leaves: Vec<Digest>) -> Result<Self, MerkleError> {
        let width = leaves.len() as u64;
        check_width(width)?;
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above: Vec<Digest> = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        let top = levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32]);
        Ok(Self {
            root: root_hash(width, &top),
            levels,
        })
    }

    /// How many leaves.
    pub fn width(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The root: what the server commits to.
    pub fn root(&self) -> Digest {
        self.root
    }

    /// The digest of leaf `index`.
    pub fn leaf(&self, index: usize) -> Option<&Digest> {
        self.levels.first().and_then(|l| l.get(index))
    }

    /// The proof that opens the leaves at `indices` (strictly increasing).
    pub fn prove(&self, indices: &[usize]) -> Result<Vec<Digest>, MerkleError> {
        check_indices(indices.iter().map(|i| *i as u64), self.width() as u64)?;
        let mut known: Vec<usize> = indices.to_vec();
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len().saturating_sub(1)] {
            let mut next = Vec::with_capacity(known.len());
            let mut i = 0;
            while i < known.len() {
                let x = known[i];
                let sibling = x ^ 1;
                if x % 2 == 0 && known.get(i + 1) == Some(&sibling) {
                    i += 2;
                } else {
                    if let Some(d) = level.get(sibling) {
                        proof.push(*d);
                    }
                    i += 1;
                }
                next.push(x / 2);
            }
            known = next;
        }
        Ok(proof)
    }
}

/// Checks that `leaves` — (index, digest), indices strictly increasing — are leaves of the
/// tree of `width` leaves whose root is `root`, with `proof` (as [`Tree::prove`] makes it).
pub fn verify(
    root: &Digest,
    width: u64,
    leaves: &[(u64, Digest)],
    proof: &[Digest],
) -> Result<(), MerkleError> {
    check_width(width)?;
    check_indices(leaves.iter().map(|(i, _)| *i), width)?;
    if proof.len() > max_proof_len(leaves.len(), width) {
        return Err(MerkleError::TooLong(
            proof.len() - max_proof_len(leaves.len(), width),
        ));
    }
    let mut digests = proof.iter();
    let mut known: Vec<(u64, Digest)> = leaves.to_vec();
    let mut level_width = width;
    while level_width > 1 {
        let mut next = Vec::with_capacity(known.len());
        let mut i = 0;
        while i < known.len() {
            let (x, d) = known[i];
            let sibling = x ^ 1;
            let parent = if x % 2 == 0 {
                match known.get(i + 1) {
                    Some((s, r)) if *s == sibling => {
                        i += 1;
                        node_hash(&d, r)
                    }
                    _ if sibling < level_width => {
                        node_hash(&d, digests.next().ok_or(MerkleError::Truncated)?)
                    }
                    // The last node of an odd level goes up alone.
                    _ => d,
                }
            } else {
                node_hash(digests.next().ok_or(MerkleError::Truncated)?, &d)
            };
            next.push((x / 2, parent));
            i += 1;
        }
        known = next;
        level_width = level_width.div_ceil(2);
    }
    let left = digests.len();
    if left > 0 {
        return Err(MerkleError::TooLong(left));
    }
    let top = match known.as_slice() {
        [(0, top)] => *top,
        // Nothing opened of an empty tree: its root is still checked.
        [] if width == 0 => [0; 32],
        // Nothing opened of another tree: nothing is claimed, nothing to check.
        [] => return Ok(()),
        _ => return Err(MerkleError::WrongRoot),
    };
    if root_hash(width, &top) == *root {
        Ok(())
    } else {
        Err(MerkleError::WrongRoot)
    }
}

/// A committed set: distinct `u32` values in increasing order, one leaf each.
#[derive(Clone, Debug)]
pub struct SortedSet {
    values: Vec<u32>,
    tree: Tree,
}

impl SortedSet {
    /// The set of `values` (any order, duplicates removed) under `label`.
    pub fn new(label: &[u8], mut values: Vec<u32>) -> Result<Self, MerkleError> {
        values.sort_unstable();
        values.dedup();
        let leaves = values.iter().map(|v| set_leaf(label, *v)).collect();
        Ok(Self {
            tree: Tree::new(leaves)?,
            values,
        })
    }

    /// The values, increasing.
    pub fn values(&self) -> &[u32] {
        &self.values
    }

    /// The root.
    pub fn root(&self) -> Digest {
        self.tree.root()
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: u32) -> bool {
        self.values.binary_search(&value).is_ok()
    }

    /// The leaves that settle, for each of `queries`, whether it is in the set: the leaf that
    /// holds it, or the leaves just below and just above it. With `pairs`, also each leaf
    /// index given there and the one after it (an audit of the order).
    pub fn open(&self, queries: &[u32], pairs: &[u32]) -> Result<SetOpening, MerkleError> {
        let n = self.values.len();
        let mut indices: Vec<usize> = Vec::new();
        for q in queries {
            let at = self.values.partition_point(|v| v < q);
            if at < n {
                indices.push(at);
            }
            if at > 0 && self.values.get(at) != Some(q) {
                indices.push(at - 1);
            }
        }
        for p in pairs {
            let p = *p as usize;
            indices.extend([p, p + 1].into_iter().filter(|i| *i < n));
        }
        indices.sort_unstable();
        indices.dedup();
        let proof = self.tree.prove(&indices)?;
        Ok(SetOpening {
            leaves: indices
                .iter()
                .map(|i| (*i as u32, self.values[*i]))
                .collect(),
            proof,
        })
    }
}

fn set_leaf(label: &[u8], value: u32) -> Digest {
    leaf_hash(label, &[&value.to_le_bytes()])
}

/// Some leaves of a committed set — (leaf index, value), indices strictly increasing — and
/// the proof that opens them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SetOpening {
    /// The opened leaves.
    pub leaves: Vec<(u32, u32)>,
    /// The proof.
    pub proof: Vec<Digest>,
}

/// What an opening settles about a set committed as (`root`, `len`), once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedSet {
    len: u32,
    leaves: Vec<(u32, u32)>,
}

/// Why a set opening does not settle what it was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// The opening does not verify.
    #[error(transparent)]
    Proof(#[from] MerkleError),
    /// Two opened leaves, adjacent in the list, are not in increasing order.
    #[error("leaves {0} and the next of the set are out of order")]
    Unordered(u32),
    /// The opening does not show whether the value is in the set.
    #[error("the opening does not show whether {0} is in the set")]
    Unsettled(u32),
}

impl SetOpening {
    /// Checks the opening against the set committed as (`root`, `len`) under `label`, and that
    /// every two opened leaves that are adjacent in the list are in increasing order.
    pub fn check(&self, label: &[u8], root: &Digest, len: u32) -> Result<CheckedSet, SetError> {
        let leaves: Vec<(u64, Digest)> = self
            .leaves
            .iter()
            .map(|(i, v)| (u64::from(*i), set_leaf(label, *v)))
            .collect();
        verify(root, u64::from(len), &leaves, &self.proof)?;
        for w in self.leaves.windows(2) {
            if w[1].0 == w[0].0 + 1 && w[1].1 <= w[0].1 {
                return Err(SetError::Unordered(w[0].0));
            }
        }
        Ok(CheckedSet {
            len,
            leaves: self.leaves.clone(),
        })
    }
}

impl CheckedSet {
    /// Whether `value` is in the set, if the opening settles it: a leaf holds it; or the
    /// leaves around it are adjacent and below and above it (or it lies below the first leaf,
    /// or above the last).
    pub fn contains(&self, value: u32) -> Result<bool, SetError> {
        let at = self.leaves.partition_point(|(_, v)| *v < value);
        if let Some((_, v)) = self.leaves.get(at)
            && *v == value
        {
            return Ok(true);
        }
        let below = at.checked_sub(1).and_then(|i| self.leaves.get(i));
        let above = self.leaves.get(at);
        let settled = match (below, above) {
            (Some((i, _)), Some((j, _))) => *j == i + 1,
            (None, Some((j, _))) => *j == 0,
            (Some((i, _)), None) => i + 1 == self.len,
            (None, None) => self.len == 0,
        };
        if settled {
            Ok(false)
        } else {
            Err(SetError::Unsettled(value))
        }
    }

    /// The opened leaves.
    pub fn leaves(&self) -> &[(u32, u32)] {
        &self.leaves
    }

    /// Whether leaf `index` and the one after it were opened (an audited pair); checked to be
    /// in order by [`SetOpening::check`]. A pair at the last leaf is the last leaf alone.
    pub fn has_pair(&self, index: u32) -> bool {
        let has = |i: u32| self.leaves.binary_search_by_key(&i, |(j, _)| *j).is_ok();
        has(index) && (index + 1 >= self.len || has(index + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    /// The reference: node (h, i) of a tree of `width` leaves, computed from the leaves by
    /// recursion on the span it covers — not by the level-by-level pairing [`Tree`] uses. A
    /// node whose right half is empty is its left child (carried up).
    fn reference_node(leaves: &[Digest], h: u32, i: u64) -> Option<Digest> {
        let start = i << h;
        if start >= leaves.len() as u64 {
            return None;
        }
        if h == 0 {
            return Some(leaves[start as usize]);
        }
        let left = reference_node(leaves, h - 1, 2 * i)?;
        match reference_node(leaves, h - 1, 2 * i + 1) {
            Some(right) => {
                let mut b = vec![1u8];
                b.extend_from_slice(&left);
                b.extend_from_slice(&right);
                Some(Sha256::digest(&b).into())
            }
            None => Some(left),
        }
    }

    fn reference_root(leaves: &[Digest]) -> Digest {
        let d = depth(leaves.len() as u64);
        let top = reference_node(leaves, d, 0).unwrap_or([0; 32]);
        let mut b = vec![2u8];
        b.extend_from_slice(&(leaves.len() as u64).to_le_bytes());
        b.extend_from_slice(&top);
        Sha256::digest(&b).into()
    }

    /// The reference proof of one leaf: its siblings' digests from the bottom up, skipping
    /// the levels where it has none.
    fn reference_path(leaves: &[Digest], index: u64) -> Vec<Digest> {
        (0..depth(leaves.len() as u64))
            .filter_map(|h| reference_node(leaves, h, (index >> h) ^ 1))
            .collect()
    }

    fn random_leaves(rng: &mut ChaCha20Rng, width: usize) -> Vec<Digest> {
        (0..width)
            .map(|_| {
                let mut d = [0u8; 32];
                rng.fill_bytes(&mut d);
                leaf_hash(b"test", &[&d])
            })
            .collect()
    }

    fn random_subset(rng: &mut ChaCha20Rng, width: usize) -> Vec<usize> {
        let p = rng.next_u32() % 100;
        (0..width).filter(|_| rng.next_u32() % 100 < p).collect()
    }

    #[test]
    fn roots_and_proofs_match_an_independent_reference() {
        let seed = secagg_engine::testing::test_seed("merkle::reference");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for width in (0..70).chain([127, 128, 129, 255, 256, 257, 1000]) {
            let leaves = random_leaves(&mut rng, width);
            let tree = Tree::new(leaves.clone()).unwrap();
            assert_eq!(
                tree.root(),
                reference_root(&leaves),
                "width {width}, seed {seed}"
            );
            for i in 0..width {
                // A single leaf's proof is exactly its reference path.
                assert_eq!(tree.prove(&[i]).unwrap(), reference_path(&leaves, i as u64));
                verify(
                    &tree.root(),
                    width as u64,
                    &[(i as u64, leaves[i])],
                    &reference_path(&leaves, i as u64),
                )
                .unwrap();
            }
            for _ in 0..8 {
                let set = random_subset(&mut rng, width);
                let proof = tree.prove(&set).unwrap();
                assert!(proof.len() <= max_proof_len(set.len(), width as u64));
                let opened: Vec<(u64, Digest)> =
                    set.iter().map(|i| (*i as u64, leaves[*i])).collect();
                verify(&tree.root(), width as u64, &opened, &proof)
                    .unwrap_or_else(|e| panic!("width {width} set {set:?}: {e}, seed {seed}"));
            }
        }
    }

    #[test]
    fn a_wrong_leaf_position_width_or_proof_is_refused() {
        let seed = secagg_engine::testing::test_seed("merkle::refusals");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for width in [2usize, 3, 5, 16, 33, 100, 1000] {
            let leaves = random_leaves(&mut rng, width);
            let tree = Tree::new(leaves.clone()).unwrap();
            let root = tree.root();
            let w = width as u64;
            let mut set = random_subset(&mut rng, width);
            if set.is_empty() {
                set.push(width - 1);
            }
            let opened: Vec<(u64, Digest)> = set.iter().map(|i| (*i as u64, leaves[*i])).collect();
            let proof = tree.prove(&set).unwrap();
            verify(&root, w, &opened, &proof).unwrap();
            // Another leaf's digest at an opened index.
            let mut altered = opened.clone();
            altered[0].1[3] ^= 1;
            assert!(verify(&root, w, &altered, &proof).is_err(), "seed {seed}");
            // The right digest at the wrong position (moved to a free index).
            if let Some(free) = (0..w).find(|i| !set.contains(&(*i as usize))) {
                let mut moved = opened.clone();
                moved[0].0 = free;
                moved.sort_by_key(|(i, _)| *i);
                assert!(verify(&root, w, &moved, &proof).is_err());
            }
            // Every truncation, one digest too many, one digest changed.
            for cut in 0..proof.len() {
                assert!(verify(&root, w, &opened, &proof[..cut]).is_err());
            }
            let mut long = proof.clone();
            long.push([7; 32]);
            assert!(matches!(
                verify(&root, w, &opened, &long),
                Err(MerkleError::TooLong(_))
            ));
            for k in 0..proof.len() {
                let mut bent = proof.clone();
                bent[k][0] ^= 0x80;
                assert_eq!(
                    verify(&root, w, &opened, &bent),
                    Err(MerkleError::WrongRoot)
                );
            }
            // The root binds the width: the same leaves under another width fail.
            assert!(verify(&root, w + 1, &opened, &proof).is_err());
            // Indices out of order, repeated, or outside the tree.
            if opened.len() >= 2 {
                let mut swapped = opened.clone();
                swapped.swap(0, 1);
                assert_eq!(
                    verify(&root, w, &swapped, &proof),
                    Err(MerkleError::NotSorted)
                );
                let mut twice = opened.clone();
                twice[1] = twice[0];
                assert_eq!(
                    verify(&root, w, &twice, &proof),
                    Err(MerkleError::NotSorted)
                );
            }
            assert!(matches!(
                verify(&root, w, &[(w, leaves[0])], &[]),
                Err(MerkleError::OutOfRange { .. })
            ));
            assert!(tree.prove(&[width]).is_err());
        }
    }

    #[test]
    fn depth_is_bounded_before_anything_is_read() {
        assert_eq!(depth(0), 0);
        assert_eq!(depth(1), 0);
        assert_eq!(depth(2), 1);
        assert_eq!(depth(3), 2);
        assert_eq!(depth(1 << 32), 32);
        // A claimed width beyond 2^32 is refused whatever the proof.
        assert_eq!(
            verify(&[0; 32], (1 << 32) + 1, &[(0, [0; 32])], &[]),
            Err(MerkleError::TooWide((1 << 32) + 1))
        );
        // A proof longer than the depth allows is refused before it is walked.
        let long = vec![[0u8; 32]; 33];
        assert!(matches!(
            verify(&[0; 32], 1 << 32, &[(5, [1; 32])], &long),
            Err(MerkleError::TooLong(1))
        ));
        // An empty tree has a root of its own and opens nothing.
        let empty = Tree::new(Vec::new()).unwrap();
        verify(&empty.root(), 0, &[], &[]).unwrap();
        assert!(verify(&[9; 32], 0, &[], &[]).is_err());
        // Opening nothing of a wider tree claims nothing, and settles nothing about a set.
        verify(&[9; 32], 1, &[], &[]).unwrap();
        let nothing = SetOpening::default().check(b"s", &[9; 32], 1).unwrap();
        assert_eq!(nothing.contains(4), Err(SetError::Unsettled(4)));
    }

    #[test]
    fn sets_prove_membership_and_absence() {
        let seed = secagg_engine::testing::test_seed("merkle::sets");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for n in [0usize, 1, 2, 7, 64, 300] {
            let universe = 4 * n as u32 + 8;
            let values: Vec<u32> = (0..n).map(|_| rng.next_u32() % universe).collect();
            let set = SortedSet::new(b"set", values).unwrap();
            let len = set.len() as u32;
            let queries: Vec<u32> = (0..20).map(|_| rng.next_u32() % universe).collect();
            let pairs: Vec<u32> = (0..3).map(|_| rng.next_u32() % (len + 1)).collect();
            let opening = set.open(&queries, &pairs).unwrap();
            let checked = opening.check(b"set", &set.root(), len).unwrap();
            for q in &queries {
                assert_eq!(checked.contains(*q), Ok(set.contains(*q)), "seed {seed}");
            }
            for p in &pairs {
                if *p < len {
                    assert!(checked.has_pair(*p));
                }
            }
            // Another label, another length: refused.
            if !opening.leaves.is_empty() {
                assert!(opening.check(b"other", &set.root(), len).is_err());
                assert!(opening.check(b"set", &set.root(), len + 1).is_err());
            }
            // A value nobody asked about is not settled (unless the opening happens to).
            if len > 4 {
                let one = set.open(&[set.values()[0]], &[]).unwrap();
                let c = one.check(b"set", &set.root(), len).unwrap();
                let last = set.values()[len as usize - 1];
                assert_eq!(c.contains(last), Err(SetError::Unsettled(last)));
            }
        }
    }

    #[test]
    fn a_set_opening_that_hides_a_member_is_caught() {
        // The server commits to {10, 20, 30} and claims 20 is absent by opening 10 and 30 as
        // if they were adjacent: they are leaves 0 and 2, so nothing is settled.
        let set = SortedSet::new(b"s", vec![10, 20, 30]).unwrap();
        let full = set.open(&[10, 30], &[]).unwrap();
        let checked = full.check(b"s", &set.root(), 3).unwrap();
        assert_eq!(checked.contains(20), Err(SetError::Unsettled(20)));
        // Relabelling leaf 2 as leaf 1 breaks the proof.
        let mut lying = full.clone();
        lying.leaves[1].0 = 1;
        assert!(lying.check(b"s", &set.root(), 3).is_err());
        // A committed list out of order is caught where two adjacent leaves are opened.
        let tree = Tree::new(vec![set_leaf(b"s", 30), set_leaf(b"s", 10)]).unwrap();
        let opening = SetOpening {
            leaves: vec![(0, 30), (1, 10)],
            proof: tree.prove(&[0, 1]).unwrap(),
        };
        assert_eq!(
            opening.check(b"s", &tree.root(), 2),
            Err(SetError::Unordered(0))
        );
    }
}
