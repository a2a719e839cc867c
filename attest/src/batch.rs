//! Batched nonces (ARCHITECTURE.md, "Binding", "Version 2"): the Merkle tree over the
//! nonces of one hardware round, built as RFC 6962 builds its tree, and the inclusion
//! proof each caller receives.
//!
//! ```text
//! leaf(nonce) = SHA-256(0x00 || nonce[32])
//! node(l, r)  = SHA-256(0x01 || l || r)
//! ```
//!
//! The gateway builds the tree ([`Tree`]); the verifier recomputes the root from its own
//! nonce and the proof ([`Batch::root_for`]). Both are pure: no clock, no I/O.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::binding::Nonce;

/// The most leaves one batch may hold. A round of verigated never exceeds its configured
/// batch size, which is at most this; a proof claiming more is refused before any hashing.
pub const MAX_BATCH_SIZE: u32 = 1 << 16;

/// A 32-byte tree hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || nonce)`: the leaf of one caller.
pub fn leaf(nonce: &Nonce) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(nonce.0);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: an interior node.
pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why an inclusion proof does not lead to a root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// `size` is zero or above [`MAX_BATCH_SIZE`].
    #[error("batch size {size} is outside 1..={max}")]
    BadSize {
        /// The claimed number of leaves.
        size: u32,
        /// The most accepted, [`MAX_BATCH_SIZE`].
        max: u32,
    },
    /// `index` is not below `size`.
    #[error("batch index {index} is out of range for a batch of {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u32,
        /// The claimed number of leaves.
        size: u32,
    },
    /// The path does not have the length the index and size call for.
    #[error("inclusion path has {got} hashes, but leaf {index} of {size} needs {expected}")]
    PathLength {
        /// The claimed leaf index.
        index: u32,
        /// The claimed number of leaves.
        size: u32,
        /// How many hashes that leaf's audit path has.
        expected: usize,
        /// How many the proof carries.
        got: usize,
    },
}

/// A caller's place in its round: evidence version 2's `batch` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The caller's leaf, counted from 0 in arrival order.
    pub index: u32,
    /// The number of leaves (callers) of the round.
    pub size: u32,
    /// The RFC 6962 audit path of leaf `index`, nearest sibling first (64 hex characters each).
    #[serde(with = "hex_hashes")]
    pub path: Vec<Hash>,
}

impl Batch {
    /// The batch of a lone caller: the root is its leaf.
    pub fn single() -> Batch {
        Batch {
            index: 0,
            size: 1,
            path: Vec::new(),
        }
    }

    /// The root that `nonce` at this index and path leads to (RFC 9162, 2.1.3.2). An
    /// index out of range or a path of the wrong length is an error, never a root.
    pub fn root_for(&self, nonce: &Nonce) -> Result<Hash, ProofError> {
        let (index, size) = (self.index, self.size);
        if size == 0 || size > MAX_BATCH_SIZE {
            return Err(ProofError::BadSize {
                size,
                max: MAX_BATCH_SIZE,
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let expected = path_len(index, size);
        if self.path.len() != expected {
            return Err(ProofError::PathLength {
                index,
                size,
                expected,
                got: self.path.len(),
            });
        }
        let (mut f, mut s) = (index, size - 1);
        let mut r = leaf(nonce);
        for p in &self.path {
            if f & 1 == 1 || f == s {
                r = node(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        // path_len made the walk end at the root; RFC 9162 states it as `s == 0`.
        debug_assert_eq!(s, 0);
        Ok(r)
    }
}

/// The length of leaf `index`'s audit path in a tree of `size` leaves (`index < size`).
fn path_len(index: u32, size: u32) -> usize {
    let (mut f, mut s, mut len) = (index, size - 1, 0);
    while s > 0 {
        if f & 1 == 1 || f == s {
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        }
        f >>= 1;
        s >>= 1;
        len += 1;
    }
    len
}

/// The tree over one round's nonces, leaves in arrival order.
#[derive(Debug, Clone)]
pub struct Tree {
    leaves: Vec<Hash>,
}

impl Tree {
    /// The tree over `nonces`; `None` when there are none or more than [`MAX_BATCH_SIZE`].
    pub fn new(nonces: &[Nonce]) -> Option<Tree> {
        let n = u32::try_from(nonces.len()).ok()?;
        (1..=MAX_BATCH_SIZE).contains(&n).then(|| Tree {
            leaves: nonces.iter().map(leaf).collect(),
        })
    }

    /// The number of leaves.
    pub fn size(&self) -> u32 {
        // Tree::new bounds the leaves to MAX_BATCH_SIZE.
        u32::try_from(self.leaves.len()).unwrap_or(u32::MAX)
    }

    /// The tree's root (MTH of RFC 6962).
    pub fn root(&self) -> Hash {
        mth(&self.leaves)
    }

    /// The proof of leaf `index` (`None` when out of range).
    pub fn proof(&self, index: u32) -> Option<Batch> {
        let i = usize::try_from(index).ok()?;
        (i < self.leaves.len()).then(|| {
            let mut path = Vec::new();
            audit_path(i, &self.leaves, &mut path);
            Batch {
                index,
                size: self.size(),
                path,
            }
        })
    }
}

/// MTH over a non-empty run of leaves.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]) of RFC 6962, 2.1.1, pushed leaf-side first.
fn audit_path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if m < k {
        audit_path(m, &leaves[..k], out);
        out.push(mth(&leaves[k..]));
    } else {
        audit_path(m - k, &leaves[k..], out);
        out.push(mth(&leaves[..k]));
    }
}

/// The largest power of two below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Serde for a list of 32-byte hashes as 64-hex-character strings.
mod hex_hashes {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        // Bounded by the evidence's size limit; a long path is refused by root_for.
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|s| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "batch path: expected 64 hex characters (a SHA-256), got `{s}`: {e}"
                    ))
                })?;
                Ok(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces(n: u8) -> Vec<Nonce> {
        (0..n).map(|i| Nonce([i; 32])).collect()
    }

    #[test]
    fn every_proof_of_every_size_leads_to_the_root() {
        for n in 1..=33u8 {
            let ns = nonces(n);
            let tree = Tree::new(&ns).unwrap();
            for (i, nonce) in ns.iter().enumerate() {
                let proof = tree.proof(u32::try_from(i).unwrap()).unwrap();
                assert_eq!(proof.root_for(nonce), Ok(tree.root()), "leaf {i} of {n}");
                if n > 1 {
                    let other = &ns[(i + 1) % ns.len()];
                    assert_ne!(proof.root_for(other), Ok(tree.root()), "leaf {i} of {n}");
                }
            }
            assert!(tree.proof(u32::from(n)).is_none());
        }
    }

    #[test]
    fn a_single_leaf_is_its_own_root() {
        let n = Nonce([9; 32]);
        let tree = Tree::new(&[n]).unwrap();
        assert_eq!(tree.root(), leaf(&n));
        assert_eq!(tree.proof(0), Some(Batch::single()));
        assert!(Tree::new(&[]).is_none());
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let ns = nonces(5);
        let tree = Tree::new(&ns).unwrap();
        let good = tree.proof(2).unwrap();
        let mut long = good.clone();
        long.path.push([0; 32]);
        assert!(matches!(
            long.root_for(&ns[2]),
            Err(ProofError::PathLength {
                expected: 3,
                got: 4,
                ..
            })
        ));
        let mut short = good.clone();
        short.path.pop();
        assert!(matches!(
            short.root_for(&ns[2]),
            Err(ProofError::PathLength { .. })
        ));
        let mut out = good.clone();
        out.index = 5;
        assert_eq!(
            out.root_for(&ns[2]),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        for size in [0, MAX_BATCH_SIZE + 1] {
            let mut bad = good.clone();
            bad.size = size;
            assert!(matches!(
                bad.root_for(&ns[2]),
                Err(ProofError::BadSize { .. })
            ));
        }
        // Another index with a path of the right length leads elsewhere.
        let mut moved = tree.proof(3).unwrap();
        moved.path = good.path.clone();
        moved.index = 3;
        assert_ne!(moved.root_for(&ns[2]), Ok(tree.root()));
    }

    #[test]
    fn json_shape() {
        let tree = Tree::new(&nonces(3)).unwrap();
        let v = serde_json::to_value(tree.proof(2).unwrap()).unwrap();
        assert_eq!(v["index"], 2);
        assert_eq!(v["size"], 3);
        assert_eq!(v["path"].as_array().unwrap().len(), 1);
        let bad = serde_json::json!({"index": 0, "size": 1, "path": ["abcd"]});
        let e = serde_json::from_value::<Batch>(bad).unwrap_err();
        assert!(e.to_string().contains("batch path"), "{e}");
        let extra = serde_json::json!({"index": 0, "size": 1, "path": [], "root": "00"});
        assert!(serde_json::from_value::<Batch>(extra).is_err());
    }
}
