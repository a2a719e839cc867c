//! The version 2 binding (batched nonces) against vectors computed by
//! `vectors/binding_v2.py` (Python's hashlib, the tree written from RFC 6962's text, not
//! from this crate): leaves, root, every audit path, report_data and tpm_qualifying; then
//! each proof is checked the way a verifier does, from its own nonce, and the tampered
//! proofs of the design (another caller's nonce, a path of the wrong length, an index out
//! of range) lead to no root or to another one.

use attest::batch::{leaf, Batch, ProofError, Tree};
use attest::binding::{report_data_v2, tpm_qualifying, Freshness, Nonce};
use serde_json::Value;

fn hex32(v: &Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().expect("hex string"), &mut out).expect("32 bytes of hex");
    out
}

fn cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/binding_v2.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn nonces(case: &Value) -> Vec<Nonce> {
    case["nonces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().parse().unwrap())
        .collect()
}

fn batch(case: &Value, index: usize) -> Batch {
    let paths = case["paths"].as_array().unwrap();
    Batch {
        index: u32::try_from(index).unwrap(),
        size: u32::try_from(paths.len()).unwrap(),
        path: paths[index].as_array().unwrap().iter().map(hex32).collect(),
    }
}

#[test]
fn tree_and_binding_match_independent_vectors() {
    let cases = cases();
    assert!(cases.len() >= 5);
    for case in &cases {
        let label = case["label"].as_str().unwrap();
        let nonces = nonces(case);
        for (n, l) in nonces.iter().zip(case["leaves"].as_array().unwrap()) {
            assert_eq!(leaf(n), hex32(l), "{label}: leaf");
        }
        let tree = Tree::new(&nonces).unwrap();
        let root = hex32(&case["root"]);
        assert_eq!(tree.root(), root, "{label}: root");
        let rd = report_data_v2(
            &root,
            &hex32(&case["manifest_digest"]),
            &hex32(&case["ak_digest"]),
        );
        assert_eq!(
            hex::encode(rd),
            case["report_data"].as_str().unwrap(),
            "{label}: report_data"
        );
        assert_eq!(
            hex::encode(tpm_qualifying(&rd)),
            case["tpm_qualifying"].as_str().unwrap(),
            "{label}: tpm_qualifying"
        );
        for (i, nonce) in nonces.iter().enumerate() {
            let expected = batch(case, i);
            assert_eq!(
                tree.proof(u32::try_from(i).unwrap()).as_ref(),
                Some(&expected),
                "{label}: path of leaf {i}"
            );
            assert_eq!(expected.root_for(nonce), Ok(root), "{label}: leaf {i}");
            assert_eq!(
                Freshness::BatchRoot(root)
                    .report_data(&hex32(&case["manifest_digest"]), &hex32(&case["ak_digest"])),
                rd
            );
        }
    }
}

#[test]
fn tampered_proofs_lead_to_no_root_or_another() {
    for case in cases() {
        let label = case["label"].as_str().unwrap();
        let nonces = nonces(&case);
        let root = hex32(&case["root"]);
        let size = nonces.len();
        for (i, nonce) in nonces.iter().enumerate() {
            let proof = batch(&case, i);
            // A proof for another caller's nonce: the right shape, the wrong root.
            let other = Nonce([0xee; 32]);
            assert_ne!(proof.root_for(&other), Ok(root), "{label}: foreign nonce");
            if size > 1 {
                let j = (i + 1) % size;
                assert_ne!(
                    batch(&case, j).root_for(nonce),
                    Ok(root),
                    "{label}: leaf {j}'s proof for leaf {i}'s nonce"
                );
            }
            // A path of the wrong length, longer and shorter.
            let mut long = proof.clone();
            long.path.push(root);
            assert!(
                matches!(long.root_for(nonce), Err(ProofError::PathLength { .. })),
                "{label}: long path"
            );
            if !proof.path.is_empty() {
                let mut short = proof.clone();
                short.path.pop();
                assert!(
                    matches!(short.root_for(nonce), Err(ProofError::PathLength { .. })),
                    "{label}: short path"
                );
            }
            // An index out of range.
            let mut out = proof.clone();
            out.index = out.size;
            assert!(
                matches!(out.root_for(nonce), Err(ProofError::IndexOutOfRange { .. })),
                "{label}: index out of range"
            );
        }
    }
}
