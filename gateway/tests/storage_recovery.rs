//! Recovery, migration and integrity of the encrypted storage, with real swtpm and
//! cryptsetup on files (this machine has no device-mapper, so nothing is opened or
//! mounted): `init --recovery` adds keyslot 1 that only the passphrase opens; `migrate`
//! moves the container to another TPM and to new PCRs and refuses every bad input
//! without changing a file; the header's integrity must be what the configuration
//! says; the passphrase is shown once and never reaches argv or the logs.
#![cfg(feature = "tpm")]

use attest::tpm::collect::Tpm;
use attest::tpm::quote::HashAlg;
use attest::tpm::seal::{SealError, SealTpm};
use gateway::storage::luks::{Integrity, Layout};
use gateway::storage::{self, luks, recovery, StorageError, StoragePaths, RUN_TMPFS_SIZE};
use std::path::Path;
use std::process::{Command, Output};
use testkit::swtpm::Swtpm;

const SIZE: u64 = 40 << 20;
const RECOVERY: Layout = Layout {
    integrity: Integrity::None,
    recovery: true,
};

#[path = "common/storage_cli.rs"]
mod storage_cli;
use storage_cli::paths;

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const MADE: [&str; 4] = [
    "data",
    "verigate-data.header",
    "verigate-data.luks",
    "verigate-data.sealed",
];

#[test]
fn init_with_recovery_adds_a_keyslot_only_the_passphrase_opens() {
    let sw = Swtpm::start().expect("swtpm");
    let dir = tempfile::tempdir().expect("tmp");
    let p = paths(dir.path());
    let mut tpm = SealTpm::open(&sw.tcti()).expect("tpm");
    let pass = storage::init(&p, SIZE, RECOVERY, &[], &mut tpm)
        .expect("init")
        .expect("a passphrase");
    assert_eq!(
        recovery::parse(pass.expose()).expect("parses").expose(),
        pass.expose()
    );
    let header = luks::check_header(&p.header, RECOVERY).expect("pinned");
    assert_eq!(header.keyslot_ids, ["0", "1"]);
    assert!(luks::test_key(&p.image, &p.header, pass.expose(), 1).expect("slot 1"));
    assert!(!luks::test_key(&p.image, &p.header, pass.expose(), 0).expect("slot 0"));
    let key = storage::unseal_key(&p.blob, &mut tpm).expect("unseal");
    assert!(luks::test_key(&p.image, &p.header, key.expose(), 0).expect("slot 0"));
    assert!(!luks::test_key(&p.image, &p.header, key.expose(), 1).expect("slot 1"));

    // Two keyslots where the configuration expects one, and the other way round.
    match luks::check_header(&p.header, Layout::default()) {
        Err(StorageError::Unpinned { reason, .. }) => {
            assert!(
                reason.contains("2 keyslot(s) [0, 1], expected 1"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let q = paths(&dir.path().join("plain"));
    let none = storage::init(&q, SIZE, Layout::default(), &[], &mut tpm).expect("init");
    assert!(none.is_none(), "no recovery asked, no passphrase");
    match storage::open(&q, RECOVERY, RUN_TMPFS_SIZE, &mut tpm) {
        Err(StorageError::Unpinned { reason, .. }) => {
            assert!(reason.contains("1 keyslot(s) [0], expected 2"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut expected = [&MADE[..], &["plain"]].concat();
    expected.sort_unstable();
    assert_eq!(names(dir.path()), expected);
}

#[test]
fn migrate_moves_the_container_to_another_tpm_and_new_pcrs() {
    let a = Swtpm::start().expect("swtpm a");
    let b = Swtpm::start().expect("swtpm b");
    let dir = tempfile::tempdir().expect("tmp");
    let p = paths(dir.path());
    let mut tpm_a = SealTpm::open(&a.tcti()).expect("tpm a");
    let pass = storage::init(&p, SIZE, RECOVERY, &[7], &mut tpm_a)
        .expect("init")
        .expect("passphrase");
    let old_key = storage::unseal_key(&p.blob, &mut tpm_a).expect("unseal on a");

    // On the new VM the old sealed key is useless...
    let mut tpm_b = SealTpm::open(&b.tcti()).expect("tpm b");
    match storage::open(&p, RECOVERY, RUN_TMPFS_SIZE, &mut tpm_b) {
        Err(StorageError::Seal {
            source: SealError::WrongTpm,
            ..
        }) => {}
        other => panic!("expected WrongTpm, got {other:?}"),
    }
    // ...until migrate puts a key sealed to this TPM in keyslot 0.
    storage::migrate(&p, RECOVERY, &pass, &[16], &mut tpm_b).expect("migrate");
    let new_key = storage::unseal_key(&p.blob, &mut tpm_b).expect("unseal on b");
    assert_ne!(new_key.expose(), old_key.expose());
    assert!(luks::test_key(&p.image, &p.header, new_key.expose(), 0).expect("new key"));
    assert!(
        !luks::test_key(&p.image, &p.header, old_key.expose(), 0).expect("old key"),
        "the key sealed to the old TPM no longer opens the container"
    );
    assert!(luks::test_key(&p.image, &p.header, pass.expose(), 1).expect("recovery"));
    luks::check_header(&p.header, RECOVERY).expect("still the pinned header");
    match storage::unseal_key(&p.blob, &mut tpm_a) {
        Err(StorageError::Seal {
            source: SealError::WrongTpm,
            ..
        }) => {}
        other => panic!("the old TPM cannot unseal the new blob: {other:?}"),
    }
    assert_eq!(names(dir.path()), MADE, "no temporary header left");
    let status = storage::status(&p, RECOVERY);
    assert_eq!(status.blob_pcrs, Some(vec![16]));
    if luks::require_device_mapper().is_err() {
        match storage::open(&p, RECOVERY, RUN_TMPFS_SIZE, &mut tpm_b) {
            Err(StorageError::NoDeviceMapper { .. }) => {}
            other => panic!("open gets past the header and the key: {other:?}"),
        }
    }

    // The bound PCR changes (a new boot chain): the sealed key stops unsealing, and
    // the recovery passphrase moves the container to the new state.
    Tpm::open(&b.tcti())
        .expect("tpm")
        .extend_pcr(16, HashAlg::Sha256, &[1; 32])
        .expect("extend");
    let mut tpm_b = SealTpm::open(&b.tcti()).expect("tpm b");
    assert!(matches!(
        storage::unseal_key(&p.blob, &mut tpm_b),
        Err(StorageError::Seal {
            source: SealError::PolicyFailed { .. },
            ..
        })
    ));
    storage::migrate(&p, RECOVERY, &pass, &[16], &mut tpm_b).expect("migrate again");
    let key = storage::unseal_key(&p.blob, &mut tpm_b).expect("unseal after");
    assert!(luks::test_key(&p.image, &p.header, key.expose(), 0).expect("key"));
    assert_eq!(tpm_b.transient_count().expect("handles"), 0);
}

/// `migrate` replaces the blob, then the header. A stop between the two leaves the new
/// blob with the old header (and maybe the header copy): the key does not open it, the
/// recovery keyslot still does, and running `migrate` again finishes.
#[test]
fn migrate_stopped_between_blob_and_header_is_finished_by_a_rerun() {
    let sw = Swtpm::start().expect("swtpm");
    let dir = tempfile::tempdir().expect("tmp");
    let p = paths(dir.path());
    let mut tpm = SealTpm::open(&sw.tcti()).expect("tpm");
    let pass = storage::init(&p, SIZE, RECOVERY, &[], &mut tpm)
        .expect("init")
        .expect("passphrase");
    let old_header = std::fs::read(&p.header).expect("header");
    storage::migrate(&p, RECOVERY, &pass, &[], &mut tpm).expect("migrate");
    // As if the VM stopped after the blob was written: the old header, and the copy
    // migrate was editing.
    std::fs::write(&p.header, &old_header).expect("old header back");
    let copy = dir.path().join(".verigate-data.header.tmp.migrate");
    std::fs::write(&copy, &old_header).expect("stale copy");
    match storage::open(&p, RECOVERY, RUN_TMPFS_SIZE, &mut tpm) {
        Err(StorageError::WrongKey { .. }) => {}
        other => panic!("expected WrongKey, got {other:?}"),
    }
    storage::migrate(&p, RECOVERY, &pass, &[], &mut tpm).expect("rerun");
    let key = storage::unseal_key(&p.blob, &mut tpm).expect("unseal");
    assert!(luks::test_key(&p.image, &p.header, key.expose(), 0).expect("key"));
    assert_eq!(names(dir.path()), MADE, "the stale copy is gone");
    use std::os::unix::fs::PermissionsExt;
    for file in [&p.header, &p.blob] {
        let mode = std::fs::metadata(file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

#[test]
fn migrate_refuses_each_bad_input_and_changes_nothing() {
    let sw = Swtpm::start().expect("swtpm");
    let dir = tempfile::tempdir().expect("tmp");
    let p = paths(dir.path());
    let mut tpm = SealTpm::open(&sw.tcti()).expect("tpm");
    let pass = storage::init(&p, SIZE, RECOVERY, &[], &mut tpm)
        .expect("init")
        .expect("passphrase");
    let header = std::fs::read(&p.header).expect("header");
    let blob = std::fs::read(&p.blob).expect("blob");
    let unchanged = |what: &str| {
        assert_eq!(std::fs::read(&p.header).expect("header"), header, "{what}");
        assert_eq!(std::fs::read(&p.blob).expect("blob"), blob, "{what}");
        assert_eq!(names(dir.path()), MADE, "{what}");
    };

    // A well-formed passphrase of another container.
    let other = recovery::generate().expect("passphrase");
    match storage::migrate(&p, RECOVERY, &other, &[], &mut tpm) {
        Err(e @ StorageError::WrongPassphrase { .. }) => {
            assert!(e.to_string().contains("does not open keyslot 1"), "{e}");
        }
        other => panic!("expected WrongPassphrase, got {other:?}"),
    }
    unchanged("wrong passphrase");

    // The configuration says the container has no recovery keyslot.
    assert!(matches!(
        storage::migrate(&p, Layout::default(), &pass, &[], &mut tpm),
        Err(StorageError::NoRecovery { .. })
    ));
    unchanged("no recovery");

    // The configuration says integrity, the header has none.
    let hmac = Layout {
        integrity: Integrity::HmacSha256,
        recovery: true,
    };
    match storage::migrate(&p, hmac, &pass, &[], &mut tpm) {
        Err(StorageError::Unpinned { reason, .. }) => {
            assert!(reason.contains("integrity `none`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    unchanged("integrity mismatch");

    // No header where it is kept.
    let moved = dir.path().join("moved.header");
    std::fs::rename(&p.header, &moved).expect("move");
    assert!(matches!(
        storage::migrate(&p, RECOVERY, &pass, &[], &mut tpm),
        Err(StorageError::HeaderMissing { .. })
    ));
    std::fs::rename(&moved, &p.header).expect("back");
    unchanged("missing header");

    // The new TPM cannot seal (it went away): the header copy is dropped, the live
    // header and blob stay as they were.
    let mut gone = {
        let sw2 = Swtpm::start().expect("swtpm");
        SealTpm::open(&sw2.tcti()).expect("tpm")
    };
    assert!(matches!(
        storage::migrate(&p, RECOVERY, &pass, &[], &mut gone),
        Err(StorageError::Seal { .. })
    ));
    unchanged("sealing failed");

    // Input that is not a passphrase never reaches cryptsetup.
    for bad in [
        &b""[..],
        b"\n",
        b"hunter2",
        b"0123-4567-89ab-cdef-ghjk-mnpq-rstv-wxyz-0000-1111-2222-3333-444o",
    ] {
        assert!(
            matches!(
                recovery::parse(bad),
                Err(StorageError::BadPassphrase { .. })
            ),
            "{bad:?}"
        );
    }
    storage::migrate(&p, RECOVERY, &pass, &[], &mut tpm).expect("the right one works");
}

#[test]
fn integrity_is_pinned_and_its_format_needs_device_mapper() {
    let sw = Swtpm::start().expect("swtpm");
    let dir = tempfile::tempdir().expect("tmp");
    let mut tpm = SealTpm::open(&sw.tcti()).expect("tpm");
    let hmac = Layout {
        integrity: Integrity::HmacSha256,
        recovery: false,
    };
    let p = paths(&dir.path().join("hmac"));
    match storage::init(&p, SIZE, hmac, &[], &mut tpm) {
        Ok(_) => {
            // A VM: cryptsetup made the dm-integrity device and the header says so.
            let header = luks::check_header(&p.header, hmac).expect("pinned");
            assert_eq!(header.keyslot_key_sizes, [96]);
        }
        Err(StorageError::Cryptsetup { op, stderr, .. }) => {
            // Here: `luksFormat --integrity` formats dm-integrity through
            // device-mapper, even with --integrity-no-wipe. The argument vector is
            // checked in `luks::tests`; what was half made is removed.
            eprintln!(
                "skipped part: `cryptsetup luksFormat --integrity hmac-sha256` needs \
                 device-mapper, which this machine lacks ({stderr})"
            );
            assert_eq!(op, "luksFormat");
            assert!(stderr.contains("device-mapper"), "{stderr}");
            assert_eq!(names(&dir.path().join("hmac")), ["data"]);
        }
        Err(other) => panic!("{other:?}"),
    }

    // The header pin, on a real header marked as cryptsetup marks an hmac-sha256 one.
    let q = paths(dir.path());
    storage::init(&q, SIZE, Layout::default(), &[], &mut tpm).expect("init");
    let marked = dir.path().join("marked.header");
    std::fs::copy(&q.header, &marked).expect("copy");
    testkit::luks::mark_integrity_hmac_sha256(&marked);
    let dump = Command::new("cryptsetup")
        .arg("luksDump")
        .arg(&marked)
        .output()
        .expect("luksDump");
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("integrity: hmac(sha256)"),
        "cryptsetup reads the marked header: {dump:?}"
    );
    let header = luks::check_header(&marked, hmac).expect("an hmac-sha256 header passes");
    assert_eq!(header.segment_integrity, [Some("hmac(sha256)".to_string())]);
    for (file, layout, why) in [
        (
            &marked,
            Layout::default(),
            "integrity `hmac(sha256)`, expected `none`",
        ),
        (&q.header, hmac, "integrity `none`, expected `hmac(sha256)`"),
    ] {
        match luks::check_header(file, layout) {
            Err(StorageError::Unpinned { reason, .. }) => {
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    // open checks the header before anything is unsealed.
    let swapped = StoragePaths {
        header: marked.clone(),
        ..q.clone()
    };
    assert!(matches!(
        storage::open(&swapped, Layout::default(), RUN_TMPFS_SIZE, &mut tpm),
        Err(StorageError::Unpinned { .. })
    ));
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_shows_the_passphrase_once_and_migrate_reads_it_from_stdin_or_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(recorder) = testkit::luks::ArgvRecorder::new(dir.path()) else {
        return;
    };
    let a = Swtpm::start().expect("swtpm a");
    let b = Swtpm::start().expect("swtpm b");
    let p = paths(dir.path());
    let run = |args: &[&str], tpm: &Swtpm, stdin: Option<&[u8]>| {
        storage_cli::run(args, &tpm.tcti(), &p, &[("PATH", &recorder.path)], stdin)
    };
    let mut logs = String::new();

    // No --pcrs and no [storage]: the boot chain, 0 and 7.
    let init = run(&["init", "--size", "40M", "--recovery"], &a, None);
    let (out, err) = text(&init);
    assert!(init.status.success(), "{out}{err}");
    assert!(out.contains("bound to SHA-256 PCR(s) [0, 7]"), "{out}");
    let pass = out
        .lines()
        .skip_while(|l| !l.starts_with("recovery passphrase"))
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("recovery passphrase"))
        .expect("the passphrase is printed")
        .to_string();
    recovery::parse(pass.as_bytes()).expect("the printed passphrase parses");
    logs += &err;

    // Open without saying the container has a recovery keyslot: refused by name.
    let open = run(&["open"], &a, None);
    let (_, err) = text(&open);
    assert!(!open.status.success());
    assert!(err.contains("2 keyslot(s) [0, 1], expected 1"), "{err}");
    logs += &err;

    let status = run(&["status", "--recovery"], &a, None);
    let (out, err) = text(&status);
    assert!(out.contains("keyslots 0, 1"), "{out}");
    logs += &err;

    // To the other TPM, the passphrase on stdin, as typed (capitals, newline).
    let typed = format!("{}\n", pass.to_ascii_uppercase());
    let migrate = run(&["migrate", "--pcrs", "none"], &b, Some(typed.as_bytes()));
    let (out, err) = text(&migrate);
    assert!(migrate.status.success(), "{out}{err}");
    assert!(out.contains("not bound to PCRs"), "{out}");
    logs += &err;
    let key = {
        let mut tpm = SealTpm::open(&b.tcti()).expect("tpm b");
        storage::unseal_key(&p.blob, &mut tpm).expect("unseal on b")
    };
    assert!(luks::test_key(&p.image, &p.header, key.expose(), 0).expect("key"));

    // Back, from a file.
    let file = dir.path().join("recovery.txt");
    std::fs::write(&file, format!("{pass}\n")).expect("file");
    let file_arg = file.to_string_lossy().into_owned();
    let migrate = run(&["migrate", "--passphrase-file", &file_arg], &a, None);
    let (out, err) = text(&migrate);
    assert!(migrate.status.success(), "{out}{err}");
    assert!(out.contains("bound to SHA-256 PCR(s) [0, 7]"), "{out}");
    logs += &err;

    // Bad input: not a passphrase, the wrong one, an unreadable file.
    for (stdin, args, why) in [
        (
            Some(&b"hunter2\n"[..]),
            vec!["migrate"],
            "expected 13 groups of 4 symbols",
        ),
        (None, vec!["migrate"], "recovery passphrase: empty"),
        (
            None,
            vec!["migrate", "--passphrase-file", "/nonexistent/recovery.txt"],
            "reading the recovery passphrase from /nonexistent/recovery.txt",
        ),
    ] {
        let out = run(&args, &a, stdin);
        let (_, err) = text(&out);
        assert!(!out.status.success());
        assert!(err.contains(why), "{why}: {err}");
        logs += &err;
    }
    let other = recovery::generate().expect("passphrase");
    let out = run(&["migrate"], &a, Some(other.expose()));
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("does not open keyslot 1"), "{err}");
    logs += &err;

    // The passphrase is in no log line and in no cryptsetup argv.
    let argv = recorder.argv();
    assert!(
        argv.contains("luksAddKey") && argv.contains("luksKillSlot"),
        "{argv}"
    );
    for haystack in [&logs.to_lowercase(), &argv.to_lowercase()] {
        assert!(!haystack.contains(&pass), "passphrase leaked: {haystack}");
        assert!(
            !haystack.contains(&pass[..14]),
            "passphrase leaked: {haystack}"
        );
    }
}
