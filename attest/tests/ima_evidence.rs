//! The real IMA log in `../shared/evidence/ima/` (826 ima-ng entries from a keylime
//! test machine): it parses, every template hash recomputes, and the replay matches the
//! values computed independently by `tests/vectors/ima_replay.py` from the same file.

use attest::ima::{ascii, binary, replay, HashAlg, ImaError};

/// Output of `python3 tests/vectors/ima_replay.py <log> <bank>` for each bank.
const REPLAY_SHA1: &str = "82231c67a69da98dc5b3aa10f6343d33109225fc";
const REPLAY_SHA256: &str = "c4a065637fc6a7c55f2811dd06cb45dd037133be2b3dc5c3e6fbe6bf061db724";
const REPLAY_SHA384: &str = "cd3b31be56970702d736d8faebcf9c0ad90961e38a4922975b3f4cce4fa106096c51bb5ef1b8dc41519ed18bd61afae5";
const REPLAY_SHA512: &str = "078beeb9112bbbb5a441f9d06c16e02f83e13a5996e1c7d28be8b6c4431dc13c8380b320605b98ab430d2f1805371a7be99f04cff295d375d86fc79906be3a44";

fn evidence_log() -> Option<String> {
    let path = testkit::evidence::dir("ima")?.join("keylime-ascii_runtime_measurements");
    Some(std::fs::read_to_string(&path).expect("the evidence log is readable"))
}

#[test]
fn keylime_log_parses() {
    let Some(text) = evidence_log() else { return };
    let entries = ascii::parse(&text).unwrap();
    assert_eq!(entries.len(), 826);
    assert!(entries.iter().all(|e| e.template_name() == "ima-ng"
        && e.pcr() == 10
        && e.template_hash_alg() == HashAlg::Sha1
        && e.file_digest_alg() == HashAlg::Sha1
        && !e.is_violation()));
    assert!(entries[0].is_boot_aggregate());
    assert_eq!(entries[0].file_digest(), &[0; 20]);
    assert_eq!(entries.iter().filter(|e| e.is_boot_aggregate()).count(), 1);
    assert_eq!(entries[1].path(), "/init");
    assert_eq!(
        hex::encode(entries[1].file_digest()),
        "19f13b42c2745066347e76454788c0fe083643f3"
    );
    assert_eq!(entries[825].path(), "/bin/cp");
}

#[test]
fn keylime_log_template_hashes_recompute() {
    let Some(text) = evidence_log() else { return };
    let entries = ascii::parse(&text).unwrap();
    assert_eq!(replay::check(&entries), Ok(()));
    assert!(replay::check_all(&entries).is_empty());
}

#[test]
fn keylime_log_replays_to_the_reference_values() {
    let Some(text) = evidence_log() else { return };
    let entries = ascii::parse(&text).unwrap();
    for (bank, want) in [
        (HashAlg::Sha1, REPLAY_SHA1),
        (HashAlg::Sha256, REPLAY_SHA256),
        (HashAlg::Sha384, REPLAY_SHA384),
        (HashAlg::Sha512, REPLAY_SHA512),
    ] {
        assert_eq!(hex::encode(replay::replay(&entries, bank)), want, "{bank}");
    }
    let all = replay::replay_all(&entries, HashAlg::Sha1);
    assert_eq!(all.len(), 1);
    assert_eq!(hex::encode(&all[&10]), REPLAY_SHA1);
}

#[test]
fn keylime_log_converts_to_binary_and_back() {
    let Some(text) = evidence_log() else { return };
    let entries = ascii::parse(&text).unwrap();
    // ASCII -> entries -> ASCII is byte-identical to what the kernel wrote.
    assert_eq!(ascii::serialize(&entries), text);
    let bin = binary::serialize(&entries);
    let again = binary::parse(&bin, HashAlg::Sha1).unwrap();
    assert_eq!(again, entries);
    assert_eq!(
        hex::encode(replay::replay(&again, HashAlg::Sha1)),
        REPLAY_SHA1
    );
    // The same log as the kernel's `_sha256` lists would expose it: template hashes
    // are SHA-256, and the SHA-256 bank replays to the same value.
    let e256: Vec<_> = entries
        .iter()
        .cloned()
        .map(|e| e.with_template_hash_alg(HashAlg::Sha256))
        .collect();
    let bin256 = binary::serialize(&e256);
    assert!(binary::parse(&bin256, HashAlg::Sha1).is_err());
    let parsed256 = binary::parse(&bin256, HashAlg::Sha256).unwrap();
    assert_eq!(replay::check(&parsed256), Ok(()));
    assert_eq!(
        hex::encode(replay::replay(&parsed256, HashAlg::Sha256)),
        REPLAY_SHA256
    );
    assert_eq!(
        hex::encode(replay::replay(&parsed256, HashAlg::Sha1)),
        REPLAY_SHA1
    );
    let ascii256 = ascii::parse(&ascii::serialize(&parsed256)).unwrap();
    assert_eq!(ascii256, parsed256);
}

#[test]
fn tampered_file_digest_is_named_by_check() {
    let Some(text) = evidence_log() else { return };
    // Swap the digest of /bin/sh (line 3, entry 2) for another, keeping its template hash.
    let tampered = text.replacen(
        "sha1:c90333979f56f38bbd41b81806015b0de502f3cc /bin/sh",
        "sha1:0000000000000000000000000000000000000001 /bin/sh",
        1,
    );
    assert_ne!(tampered, text);
    let entries = ascii::parse(&tampered).unwrap();
    match replay::check(&entries) {
        Err(ImaError::TemplateHashMismatch {
            entry,
            path,
            logged,
            ..
        }) => {
            assert_eq!(entry, 2);
            assert_eq!(path, "/bin/sh");
            assert_eq!(logged, "790ff4fe72889b071a0f7585112710be6d0084fe");
        }
        other => panic!("expected a mismatch on entry 2, got {other:?}"),
    }
    assert_eq!(replay::check_all(&entries).len(), 1);
    // The SHA-1 bank extends logged hashes, so it cannot see the change: that is why
    // check() exists. Banks that hash the data do see it.
    assert_eq!(
        hex::encode(replay::replay(&entries, HashAlg::Sha1)),
        REPLAY_SHA1
    );
    assert_ne!(
        hex::encode(replay::replay(&entries, HashAlg::Sha256)),
        REPLAY_SHA256
    );
}

#[test]
fn dropped_or_reordered_entry_changes_the_replay() {
    let Some(text) = evidence_log() else { return };
    let entries = ascii::parse(&text).unwrap();
    let mut dropped = entries.clone();
    dropped.remove(100);
    assert_eq!(replay::check(&dropped), Ok(()));
    assert_ne!(
        hex::encode(replay::replay(&dropped, HashAlg::Sha1)),
        REPLAY_SHA1
    );
    let mut swapped = entries;
    swapped.swap(10, 11);
    assert_ne!(
        hex::encode(replay::replay(&swapped, HashAlg::Sha1)),
        REPLAY_SHA1
    );
}
