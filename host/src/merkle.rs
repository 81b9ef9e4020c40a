//! Merkle search trees: how the server commits to a list every client could not afford to
//! receive, and proves to each client the few entries it needs.
//!
//! A tree over `width` leaves, each a key (a `u32`: a client id, a ring position) and a SHA-256
//! digest the caller computes with [`leaf_hash`] (so that every list hashes its own kind of
//! entry under its own label). The leaves are sorted by key, and every inner node commits to
//! the largest key of its left subtree — its *split*:
//!
//! * leaf: `SHA-256(0x00 ‖ label length u8 ‖ label ‖ the entry's fields)`;
//! * node: `SHA-256(0x01 ‖ left ‖ right ‖ split u32)`; a level of odd width carries its last
//!   node up unchanged (it has no sibling, and no split);
//! * root: `SHA-256(0x02 ‖ width u64 ‖ top)`, so the root binds how many leaves there are, and
//!   a proof made for one width fails under any other.
//!
//! The three tags keep a leaf, an inner node and a root from ever being read as one another.
//! Positions are canonical: a leaf's index is its key's rank.
//!
//! A proof opens any set of leaves at once (a multiproof): the sibling digests that the opened
//! leaves do not determine themselves, level by level from the leaves up and left to right
//! within a level, and the split of every inner node it recomputes. [`verify`] checks the
//! digests up to the root *and* every opened key against the splits above it: a key in a left
//! subtree must be at most the split, one in a right subtree above it. So two leaves that are
//! out of order, or that repeat a key, cannot both be opened: at their lowest common ancestor
//! one of them breaks the split, whatever the server committed to. A list the server padded
//! with a second leaf for one key (a second seat for one client) is caught by anyone who
//! opens the leaf that breaks its split — a bad leaf like any other, found by local checks.
//!
//! A tree has at most 2^32 leaves (depth ≤ [`MAX_DEPTH`]), and a proof for `s` leaves of a tree
//! of depth `d` holds at most `s · d` digests and as many splits ([`max_proof_len`]): the codec
//! bounds every proof by that before allocating, and [`verify`] refuses a proof that is one
//! digest or split short or too long.
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
    /// The proof ran out of digests or splits.
    #[error("the proof is too short")]
    Truncated,
    /// Digests or splits were left over.
    #[error("the proof has {0} digests or splits too many")]
    TooLong(usize),
    /// The opened leaves and the proof lead to another root.
    #[error("the proof leads to another root")]
    WrongRoot,
    /// An opened key breaks a split above it: the list is out of order, or repeats a key.
    #[error("the key {key} of leaf {index} is out of order under the committed splits")]
    OutOfOrder {
        /// The leaf.
        index: u64,
        /// Its key.
        key: u32,
    },
}

/// A proof: the sibling digests and the splits of the inner nodes, in the order [`verify`]
/// reads them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Proof {
    /// Sibling digests.
    pub digests: Vec<Digest>,
    /// Splits of the inner nodes recomputed, bottom-up, left to right.
    pub splits: Vec<u32>,
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

fn node_hash(left: &Digest, right: &Digest, split: u32) -> Digest {
    let mut h = Sha256::new();
    h.update([NODE]);
    h.update(left);
    h.update(right);
    h.update(split.to_le_bytes());
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

/// The most digests (and the most splits) a proof of `opened` leaves of a tree of `width` can
/// need.
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

/// One node of a level: its digest and the largest key below it.
#[derive(Clone, Copy, Debug)]
struct Node {
    digest: Digest,
    max_key: u32,
}

/// A whole tree, as its owner (the server) keeps it to prove any leaf.
#[derive(Clone, Debug)]
pub struct Tree {
    /// levels[0] are the leaves; the last level has one node (none for an empty tree).
    levels: Vec<Vec<Node>>,
    /// The split of each inner node with two children, by (level, index) — level 1 up.
    splits: Vec<Vec<u32>>,
    root: Digest,
}

impl Tree {
    /// The tree over `leaves` — (key, digest) in their canonical order, keys increasing (an
    /// attacker's tree may be out of order: its splits then catch it).
    pub fn new(leaves: Vec<(u32, Digest)>) -> Result<Self, MerkleError> {
        let width = leaves.len() as u64;
        check_width(width)?;
        let mut levels = vec![
            leaves
                .into_iter()
                .map(|(key, digest)| Node {
                    digest,
                    max_key: key,
                })
                .collect::<Vec<Node>>(),
        ];
        let mut splits = vec![Vec::new()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let mut above = Vec::with_capacity(below.len().div_ceil(2));
            let mut split = Vec::with_capacity(below.len() / 2);
            for pair in below.chunks(2) {
                match pair {
                    [l, r] => {
                        split.push(l.max_key);
                        above.push(Node {
                            digest: node_hash(&l.digest, &r.digest, l.max_key),
                            max_key: l.max_key.max(r.max_key),
                        });
                    }
                    [only] => above.push(*only),
                    _ => unreachable!("chunks(2) yields one or two"),
                }
            }
            levels.push(above);
            splits.push(split);
        }
        let top = levels
            .last()
            .and_then(|l| l.first())
            .map(|n| n.digest)
            .unwrap_or([0; 32]);
        Ok(Self {
            root: root_hash(width, &top),
            levels,
            splits,
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

    /// The proof that opens the leaves at `indices` (strictly increasing).
    pub fn prove(&self, indices: &[usize]) -> Result<Proof, MerkleError> {
        check_indices(indices.iter().map(|i| *i as u64), self.width() as u64)?;
        let mut known: Vec<usize> = indices.to_vec();
        let mut proof = Proof::default();
        for (h, level) in self.levels[..self.levels.len().saturating_sub(1)]
            .iter()
            .enumerate()
        {
            let mut next = Vec::with_capacity(known.len());
            let mut i = 0;
            while i < known.len() {
                let x = known[i];
                let sibling = x ^ 1;
                let both = x % 2 == 0 && known.get(i + 1) == Some(&sibling);
                if both {
                    i += 1;
                } else if let Some(d) = level.get(sibling) {
                    proof.digests.push(d.digest);
                }
                if sibling < level.len() {
                    if let Some(s) = self.splits.get(h + 1).and_then(|s| s.get(x / 2)) {
                        proof.splits.push(*s);
                    }
                }
                next.push(x / 2);
                i += 1;
            }
            known = next;
        }
        Ok(proof)
    }
}

/// What the walk knows of a node above opened leaves: its digest and the keys of the opened
/// leaves below it.
#[derive(Clone, Copy)]
struct Known {
    index: u64,
    digest: Digest,
    min_key: u32,
    max_key: u32,
    /// The opened leaf holding `min_key` and the one holding `max_key`, to name one in an
    /// error.
    min_leaf: u64,
    max_leaf: u64,
}

/// Checks that `leaves` — (index, key, digest), indices strictly increasing — are leaves of the
/// tree of `width` leaves whose root is `root`, with `proof` (as [`Tree::prove`] makes it), and
/// that every key keeps to the splits above it.
pub fn verify(
    root: &Digest,
    width: u64,
    leaves: &[(u64, u32, Digest)],
    proof: &Proof,
) -> Result<(), MerkleError> {
    check_width(width)?;
    check_indices(leaves.iter().map(|(i, _, _)| *i), width)?;
    let most = max_proof_len(leaves.len(), width);
    if proof.digests.len() > most || proof.splits.len() > most {
        let extra = proof.digests.len().max(proof.splits.len()) - most;
        return Err(MerkleError::TooLong(extra));
    }
    let mut digests = proof.digests.iter();
    let mut splits = proof.splits.iter();
    let mut known: Vec<Known> = leaves
        .iter()
        .map(|&(index, key, digest)| Known {
            index,
            digest,
            min_key: key,
            max_key: key,
            min_leaf: index,
            max_leaf: index,
        })
        .collect();
    let mut level_width = width;
    while level_width > 1 {
        let mut next = Vec::with_capacity(known.len());
        let mut i = 0;
        while i < known.len() {
            let k = known[i];
            let sibling = k.index ^ 1;
            let joined = if k.index % 2 == 0 {
                match known.get(i + 1) {
                    Some(r) if r.index == sibling => {
                        i += 1;
                        Some((Some(k), r.digest, k.digest, Some(*r)))
                    }
                    _ if sibling < level_width => {
                        let right = *digests.next().ok_or(MerkleError::Truncated)?;
                        Some((Some(k), right, k.digest, None))
                    }
                    // The last node of an odd level goes up alone.
                    _ => None,
                }
            } else {
                let left = *digests.next().ok_or(MerkleError::Truncated)?;
                Some((None, k.digest, left, Some(k)))
            };
            let parent = match joined {
                None => Known {
                    index: k.index / 2,
                    ..k
                },
                Some((left, right_digest, left_digest, right)) => {
                    let split = *splits.next().ok_or(MerkleError::Truncated)?;
                    if let Some(l) = left
                        && l.max_key > split
                    {
                        return Err(MerkleError::OutOfOrder {
                            index: l.max_leaf,
                            key: l.max_key,
                        });
                    }
                    if let Some(r) = right
                        && r.min_key <= split
                    {
                        return Err(MerkleError::OutOfOrder {
                            index: r.min_leaf,
                            key: r.min_key,
                        });
                    }
                    let lo = left.or(right).unwrap_or(k);
                    let hi = right.or(left).unwrap_or(k);
                    Known {
                        index: k.index / 2,
                        digest: node_hash(&left_digest, &right_digest, split),
                        min_key: lo.min_key,
                        min_leaf: lo.min_leaf,
                        max_key: hi.max_key,
                        max_leaf: hi.max_leaf,
                    }
                }
            };
            next.push(parent);
            i += 1;
        }
        known = next;
        level_width = level_width.div_ceil(2);
    }
    let left = digests.len() + splits.len();
    if left > 0 {
        return Err(MerkleError::TooLong(left));
    }
    let top = match known.as_slice() {
        [k] if k.index == 0 => k.digest,
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
        Self::in_order(label, values)
    }

    /// `values` committed in the order given, repeats and all: not a set (what a lying server
    /// commits to; whoever opens a leaf that breaks a split above it catches it).
    pub fn in_order(label: &[u8], values: Vec<u32>) -> Result<Self, MerkleError> {
        let leaves = values.iter().map(|v| (*v, set_leaf(label, *v))).collect();
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
    /// holds it, or the leaves just below and just above it; and the leaves at the indices
    /// `audit` (a client's random sample).
    pub fn open(&self, queries: &[u32], audit: &[u32]) -> Result<SetOpening, MerkleError> {
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
        indices.extend(audit.iter().map(|a| *a as usize).filter(|i| *i < n));
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
    pub proof: Proof,
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
    /// The opening does not verify (out of order leaves among it).
    #[error(transparent)]
    Proof(#[from] MerkleError),
    /// The opening does not show whether the value is in the set.
    #[error("the opening does not show whether {0} is in the set")]
    Unsettled(u32),
}

impl SetOpening {
    /// Checks the opening against the set committed as (`root`, `len`) under `label` (its
    /// leaves keep to the splits above them, so they increase strictly).
    pub fn check(&self, label: &[u8], root: &Digest, len: u32) -> Result<CheckedSet, SetError> {
        let leaves: Vec<(u64, u32, Digest)> = self
            .leaves
            .iter()
            .map(|(i, v)| (u64::from(*i), *v, set_leaf(label, *v)))
            .collect();
        verify(root, u64::from(len), &leaves, &self.proof)?;
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

    /// Whether leaf `index` was opened (an audited leaf), or lies outside the set.
    pub fn has_leaf(&self, index: u32) -> bool {
        index >= self.len
            || self
                .leaves
                .binary_search_by_key(&index, |(j, _)| *j)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    type Leaf = (u32, Digest);

    /// The reference: node (h, i) of a tree over `leaves` — its digest and the largest key
    /// below it — computed by recursion on the span it covers, not by the level-by-level
    /// pairing [`Tree`] uses. A node whose right half is empty is its left child (carried up).
    fn reference_node(leaves: &[Leaf], h: u32, i: u64) -> Option<(Digest, u32)> {
        let start = i << h;
        if start >= leaves.len() as u64 {
            return None;
        }
        if h == 0 {
            let (k, d) = leaves[start as usize];
            return Some((d, k));
        }
        let (left, lmax) = reference_node(leaves, h - 1, 2 * i)?;
        match reference_node(leaves, h - 1, 2 * i + 1) {
            Some((right, rmax)) => {
                let mut b = vec![1u8];
                b.extend_from_slice(&left);
                b.extend_from_slice(&right);
                b.extend_from_slice(&lmax.to_le_bytes());
                Some((Sha256::digest(&b).into(), lmax.max(rmax)))
            }
            None => Some((left, lmax)),
        }
    }

    fn reference_root(leaves: &[Leaf]) -> Digest {
        let d = depth(leaves.len() as u64);
        let top = reference_node(leaves, d, 0).map_or([0; 32], |n| n.0);
        let mut b = vec![2u8];
        b.extend_from_slice(&(leaves.len() as u64).to_le_bytes());
        b.extend_from_slice(&top);
        Sha256::digest(&b).into()
    }

    /// The reference proof of one leaf: its siblings' digests from the bottom up, skipping
    /// the levels where it has none, and the split (the left child's largest key) of each
    /// parent it is joined under.
    fn reference_path(leaves: &[Leaf], index: u64) -> Proof {
        let mut proof = Proof::default();
        for h in 0..depth(leaves.len() as u64) {
            let me = index >> h;
            if let Some((d, _)) = reference_node(leaves, h, me ^ 1) {
                proof.digests.push(d);
                let left = reference_node(leaves, h, me & !1).map_or(0, |n| n.1);
                proof.splits.push(left);
            }
        }
        proof
    }

    /// `width` leaves with strictly increasing random keys.
    fn random_leaves(rng: &mut ChaCha20Rng, width: usize) -> Vec<Leaf> {
        let mut key = 0u32;
        (0..width)
            .map(|_| {
                key += 1 + rng.next_u32() % 5;
                let mut d = [0u8; 32];
                rng.fill_bytes(&mut d);
                (key, leaf_hash(b"test", &[&d]))
            })
            .collect()
    }

    fn random_subset(rng: &mut ChaCha20Rng, width: usize) -> Vec<usize> {
        let p = rng.next_u32() % 100;
        (0..width).filter(|_| rng.next_u32() % 100 < p).collect()
    }

    fn opened(leaves: &[Leaf], set: &[usize]) -> Vec<(u64, u32, Digest)> {
        set.iter()
            .map(|i| (*i as u64, leaves[*i].0, leaves[*i].1))
            .collect()
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
                let path = reference_path(&leaves, i as u64);
                assert_eq!(tree.prove(&[i]).unwrap(), path, "width {width} leaf {i}");
                verify(&tree.root(), width as u64, &opened(&leaves, &[i]), &path).unwrap();
            }
            for _ in 0..8 {
                let set = random_subset(&mut rng, width);
                let proof = tree.prove(&set).unwrap();
                assert!(proof.digests.len() <= max_proof_len(set.len(), width as u64));
                assert!(proof.splits.len() <= max_proof_len(set.len(), width as u64));
                verify(&tree.root(), width as u64, &opened(&leaves, &set), &proof)
                    .unwrap_or_else(|e| panic!("width {width} set {set:?}: {e}, seed {seed}"));
            }
        }
    }

    #[test]
    fn a_wrong_leaf_key_position_width_or_proof_is_refused() {
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
            let shown = opened(&leaves, &set);
            let proof = tree.prove(&set).unwrap();
            verify(&root, w, &shown, &proof).unwrap();
            // Another leaf's digest, or another key, at an opened index.
            let mut altered = shown.clone();
            altered[0].2[3] ^= 1;
            assert!(verify(&root, w, &altered, &proof).is_err(), "seed {seed}");
            // The right digest at the wrong position (moved to a free index).
            if let Some(free) = (0..w).find(|i| !set.contains(&(*i as usize))) {
                let mut moved = shown.clone();
                moved[0].0 = free;
                moved.sort_by_key(|(i, _, _)| *i);
                assert!(verify(&root, w, &moved, &proof).is_err());
            }
            // Every truncation, one digest or split too many, one digest or split changed.
            for cut in 0..proof.digests.len() {
                let short = Proof {
                    digests: proof.digests[..cut].to_vec(),
                    ..proof.clone()
                };
                assert!(verify(&root, w, &shown, &short).is_err());
            }
            for cut in 0..proof.splits.len() {
                let short = Proof {
                    splits: proof.splits[..cut].to_vec(),
                    ..proof.clone()
                };
                assert!(verify(&root, w, &shown, &short).is_err());
            }
            let mut long = proof.clone();
            long.digests.push([7; 32]);
            assert!(verify(&root, w, &shown, &long).is_err());
            let mut long = proof.clone();
            long.splits.push(7);
            assert!(verify(&root, w, &shown, &long).is_err());
            for k in 0..proof.digests.len() {
                let mut bent = proof.clone();
                bent.digests[k][0] ^= 0x80;
                assert_eq!(verify(&root, w, &shown, &bent), Err(MerkleError::WrongRoot));
            }
            for k in 0..proof.splits.len() {
                let mut bent = proof.clone();
                bent.splits[k] ^= 0x10;
                assert!(verify(&root, w, &shown, &bent).is_err());
            }
            // The root binds the width: the same leaves under another width fail.
            assert!(verify(&root, w + 1, &shown, &proof).is_err());
            // Indices out of order, repeated, or outside the tree.
            if shown.len() >= 2 {
                let mut swapped = shown.clone();
                swapped.swap(0, 1);
                assert_eq!(
                    verify(&root, w, &swapped, &proof),
                    Err(MerkleError::NotSorted)
                );
                let mut twice = shown.clone();
                twice[1] = twice[0];
                assert_eq!(
                    verify(&root, w, &twice, &proof),
                    Err(MerkleError::NotSorted)
                );
            }
            assert!(matches!(
                verify(
                    &root,
                    w,
                    &[(w, leaves[0].0, leaves[0].1)],
                    &Proof::default()
                ),
                Err(MerkleError::OutOfRange { .. })
            ));
            assert!(tree.prove(&[width]).is_err());
        }
    }

    #[test]
    fn a_repeated_or_misplaced_key_is_caught_by_whoever_opens_the_leaf_that_breaks_a_split() {
        let seed = secagg_engine::testing::test_seed("merkle::repeats");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for width in [8usize, 33, 200] {
            let honest = random_leaves(&mut rng, width);
            // A second leaf for one key, wherever the server puts it: its own block at the end
            // (sorted there), or next to the first.
            let pick = rng.next_u32() as usize % width;
            for at in [width, pick + 1] {
                let mut leaves = honest.clone();
                leaves.insert(at, honest[pick]);
                let tree = Tree::new(leaves.clone()).unwrap();
                let w = leaves.len() as u64;
                let first = pick;
                let second = at;
                // The two leaves cannot both be opened...
                let both = tree.prove(&[first, second]).unwrap();
                assert!(
                    matches!(
                        verify(&tree.root(), w, &opened(&leaves, &[first, second]), &both),
                        Err(MerkleError::OutOfOrder { .. })
                    ),
                    "width {width}, seed {seed}"
                );
                // ...and one of them cannot even be opened alone.
                let alone = |i: usize| {
                    let p = tree.prove(&[i]).unwrap();
                    verify(&tree.root(), w, &opened(&leaves, &[i]), &p)
                };
                assert!(
                    alone(first).is_err() || alone(second).is_err(),
                    "width {width} at {at}, seed {seed}"
                );
            }
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
            verify(
                &[0; 32],
                (1 << 32) + 1,
                &[(0, 0, [0; 32])],
                &Proof::default()
            ),
            Err(MerkleError::TooWide((1 << 32) + 1))
        );
        // A proof longer than the depth allows is refused before it is walked.
        let long = Proof {
            digests: vec![[0u8; 32]; 33],
            splits: Vec::new(),
        };
        assert!(matches!(
            verify(&[0; 32], 1 << 32, &[(5, 1, [1; 32])], &long),
            Err(MerkleError::TooLong(1))
        ));
        // An empty tree has a root of its own and opens nothing.
        let empty = Tree::new(Vec::new()).unwrap();
        verify(&empty.root(), 0, &[], &Proof::default()).unwrap();
        assert!(verify(&[9; 32], 0, &[], &Proof::default()).is_err());
        // Opening nothing of a wider tree claims nothing, and settles nothing about a set.
        verify(&[9; 32], 1, &[], &Proof::default()).unwrap();
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
            let audit: Vec<u32> = (0..3).map(|_| rng.next_u32() % (len + 1)).collect();
            let opening = set.open(&queries, &audit).unwrap();
            let checked = opening.check(b"set", &set.root(), len).unwrap();
            for q in &queries {
                assert_eq!(checked.contains(*q), Ok(set.contains(*q)), "seed {seed}");
            }
            for a in &audit {
                assert!(checked.has_leaf(*a));
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
        // A committed list out of order is caught where its leaves are opened.
        let unsorted = SortedSet::in_order(b"s", vec![30, 10]).unwrap();
        let opening = unsorted.open(&[], &[0, 1]).unwrap();
        assert!(matches!(
            opening.check(b"s", &unsorted.root(), 2),
            Err(SetError::Proof(MerkleError::OutOfOrder { .. }))
        ));
    }
}
