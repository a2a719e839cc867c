//! The report-data binding against vectors computed by `vectors/binding.py` (Python's
//! hashlib, written from ARCHITECTURE.md "Binding", not from this crate).

use attest::binding::{ak_digest, report_data, tpm_qualifying, Manifest, ManifestEntry, Nonce};
use serde_json::Value;

fn hex_bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn binding_matches_independent_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/binding.json");
    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(cases.len() >= 5);
    for case in &cases {
        let label = case["label"].as_str().unwrap();
        let nonce: Nonce = case["nonce"].as_str().unwrap().parse().unwrap();
        let entries = case["certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                ManifestEntry::from_cert(c["name"].as_str().unwrap(), &hex_bytes(&c["der"]))
                    .unwrap()
            })
            .collect();
        let manifest = Manifest::new(entries).unwrap();
        let expected_manifest: Manifest = serde_json::from_value(case["manifest"].clone()).unwrap();
        assert_eq!(manifest, expected_manifest, "{label}: manifest entries");
        let md = manifest.digest();
        assert_eq!(
            md.to_vec(),
            hex_bytes(&case["manifest_digest"]),
            "{label}: manifest_digest"
        );
        let ak = case["ak_public"].as_str().map(|h| hex::decode(h).unwrap());
        let akd = ak_digest(ak.as_deref());
        assert_eq!(
            akd.to_vec(),
            hex_bytes(&case["ak_digest"]),
            "{label}: ak_digest"
        );
        let rd = report_data(&nonce, &md, &akd);
        assert_eq!(
            rd.to_vec(),
            hex_bytes(&case["report_data"]),
            "{label}: report_data"
        );
        assert_eq!(
            tpm_qualifying(&rd).to_vec(),
            hex_bytes(&case["tpm_qualifying"]),
            "{label}: tpm_qualifying"
        );
    }
}

#[test]
fn any_changed_input_changes_report_data() {
    let nonce = Nonce([7; 32]);
    let m = Manifest::new(vec![ManifestEntry {
        name: "a.example.com".into(),
        cert_sha256: [1; 32],
        spki_sha256: [3; 32],
    }])
    .unwrap();
    let base = report_data(&nonce, &m.digest(), &ak_digest(None));
    let other_cert = Manifest::new(vec![ManifestEntry {
        name: "a.example.com".into(),
        cert_sha256: [2; 32],
        spki_sha256: [3; 32],
    }])
    .unwrap();
    let other_key = Manifest::new(vec![ManifestEntry {
        name: "a.example.com".into(),
        cert_sha256: [1; 32],
        spki_sha256: [4; 32],
    }])
    .unwrap();
    assert_ne!(
        base,
        report_data(&nonce, &other_key.digest(), &ak_digest(None))
    );
    assert_ne!(
        base,
        report_data(&nonce, &other_cert.digest(), &ak_digest(None))
    );
    assert_ne!(
        base,
        report_data(&Nonce([8; 32]), &m.digest(), &ak_digest(None))
    );
    assert_ne!(
        base,
        report_data(&nonce, &m.digest(), &ak_digest(Some(b"ak")))
    );
}

/// The vectors' renewal: `vm-1` and `vm-2` are two certificates for one key (as
/// `certbot --reuse-key` makes), so their entries differ in `cert_sha256` only.
#[test]
fn a_renewal_with_the_same_key_keeps_the_key_digest() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/certs/");
    let read = |n: &str| std::fs::read(format!("{dir}{n}.der")).unwrap();
    let first = ManifestEntry::from_cert("vm.example.com", &read("vm-1")).unwrap();
    let renewed = ManifestEntry::from_cert("vm.example.com", &read("vm-2")).unwrap();
    let other = ManifestEntry::from_cert("vm.example.com", &read("a")).unwrap();
    assert_ne!(first.cert_sha256, renewed.cert_sha256);
    assert_eq!(first.spki_sha256, renewed.spki_sha256);
    assert_ne!(first.spki_sha256, other.spki_sha256);
}
