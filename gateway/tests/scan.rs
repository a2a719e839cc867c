//! The snapshot file scan on real files in a temp dir: what is measured, what is
//! excluded, symlinks, digests against the real `sha256sum`, the cache across scans,
//! files that cannot be read (as root, see `unreadable_*`), progress and cancellation.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use attest::ima::HashAlg;
use gateway::scan::{
    self, CancelToken, Phase, ScanConfig, ScanError, ScanProgress, ScanResult, SkipReason,
};

/// A 64-byte ELF header prefix with the given `e_type` (little-endian, 64-bit).
fn elf_header(e_type: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16..18].copy_from_slice(&e_type.to_le_bytes());
    h.extend_from_slice(b"rest of a shared object");
    h
}

fn write(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, content).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn config(roots: &[&Path]) -> ScanConfig {
    ScanConfig {
        roots: roots.iter().map(|r| r.to_path_buf()).collect(),
        exclude: Vec::new(),
        algorithm: HashAlg::Sha256,
        cache_file: None,
        workers: 0,
    }
}

fn run(cfg: &ScanConfig) -> ScanResult {
    let progress = ScanProgress::new();
    let result = scan::scan(cfg, &progress, &CancelToken::new()).expect("scan");
    assert_eq!(progress.phase(), Phase::Done);
    result
}

/// Wait until the files just written are older than the cache's settle time: the scan
/// does not cache a version changed within it (see `scan::CACHE_SETTLE_TIME`).
fn settle() {
    std::thread::sleep(scan::CACHE_SETTLE_TIME + Duration::from_millis(100));
}

fn paths(result: &ScanResult) -> Vec<String> {
    result.files.iter().map(|(p, _)| p.clone()).collect()
}

/// The tempdir's real path: the scan reports real paths.
fn real(dir: &tempfile::TempDir) -> PathBuf {
    fs::canonicalize(dir.path()).expect("canonicalize tempdir")
}

fn s(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_owned()
}

/// `sha256sum`'s answer for each path.
fn sha256sum(files: &[String]) -> BTreeMap<String, String> {
    let out = Command::new("sha256sum")
        .arg("--")
        .args(files)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("sha256sum output is UTF-8 for UTF-8 paths")
        .lines()
        .map(|l| {
            let (digest, path) = l.split_once("  ").expect("`digest  path` line");
            (path.to_owned(), digest.to_owned())
        })
        .collect()
}

/// A tree with one file of each kind; returns the paths the scan must report.
fn mixed_tree(root: &Path) -> Vec<String> {
    write(&root.join("bin/tool"), b"\x00\x01binary tool", 0o755);
    write(
        &root.join("bin/only-other-x"),
        b"group/other exec bit",
        0o601,
    );
    write(&root.join("lib/libplain"), &elf_header(3), 0o644);
    write(&root.join("lib/libnamed.so.3.1"), b"not even ELF", 0o644);
    write(&root.join("lib/libz.so"), b"linker script", 0o644);
    write(&root.join("share/run.sh"), b"#!/bin/sh\necho hi\n", 0o644);
    write(&root.join("share/empty-exec"), b"", 0o700);
    // Not measured: data, an ELF executable without exec bit (not mappable code by
    // itself), a relocatable object, an empty file and a near-miss name.
    write(&root.join("share/data.txt"), b"just data", 0o644);
    write(&root.join("share/prog-noexec"), &elf_header(2), 0o644);
    write(&root.join("share/obj.o"), &elf_header(1), 0o644);
    write(&root.join("share/empty"), b"", 0o644);
    write(&root.join("share/notes.so.txt"), b"text", 0o644);
    write(&root.join("share/short"), b"#", 0o644);
    let mut want: Vec<String> = [
        "bin/only-other-x",
        "bin/tool",
        "lib/libnamed.so.3.1",
        "lib/libplain",
        "lib/libz.so",
        "share/empty-exec",
        "share/run.sh",
    ]
    .iter()
    .map(|p| s(&root.join(p)))
    .collect();
    want.sort();
    want
}

#[test]
fn classification_and_digests_match_sha256sum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    let want = mixed_tree(&root);
    // A FIFO with exec bits is not a regular file: neither measured nor skipped (and
    // opening it would block, which the walk must never do).
    let fifo = root.join("bin/fifo");
    let st = Command::new("mkfifo")
        .arg("-m")
        .arg("755")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success());

    let result = run(&config(&[&root]));
    assert_eq!(paths(&result), want);
    assert!(result.skipped.is_empty(), "{:?}", result.skipped);
    let expected = sha256sum(&want);
    for (path, digest) in &result.files {
        assert_eq!(Some(digest), expected.get(path), "{path}");
    }
    assert_eq!(result.stats.files_seen, 13);
    assert_eq!(result.stats.files_measured, 7);
    assert_eq!(result.stats.files_hashed, 7);
    let bytes: u64 = want
        .iter()
        .map(|p| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(result.stats.bytes_hashed, bytes);
}

#[test]
fn other_algorithms_match_their_coreutils_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    let want = mixed_tree(&root);
    for (alg, tool) in [
        (HashAlg::Sha1, "sha1sum"),
        (HashAlg::Sha384, "sha384sum"),
        (HashAlg::Sha512, "sha512sum"),
    ] {
        let mut cfg = config(&[&root]);
        cfg.algorithm = alg;
        let result = run(&cfg);
        assert_eq!(result.algorithm, alg);
        assert_eq!(paths(&result), want);
        let out = Command::new(tool).args(&want).output().expect(tool);
        let text = String::from_utf8(out.stdout).expect("utf-8");
        for ((path, digest), line) in result.files.iter().zip(text.lines()) {
            assert_eq!(line, format!("{digest}  {path}"), "{alg}");
        }
    }
}

#[test]
fn excludes_are_whole_components_and_never_entered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    write(&root.join("ex/inside"), b"x", 0o755);
    write(&root.join("ex/deeper/inside"), b"x", 0o755);
    write(&root.join("extra/kept"), b"x", 0o755);
    write(&root.join("keep/ex/kept-too"), b"x", 0o755);
    let mut cfg = config(&[&root]);
    cfg.exclude = vec![root.join("ex")];
    let result = run(&cfg);
    assert_eq!(
        paths(&result),
        vec![
            s(&root.join("extra/kept")),
            s(&root.join("keep/ex/kept-too"))
        ]
    );
    assert_eq!(result.stats.files_seen, 2, "excluded tree was walked");
}

#[test]
fn a_root_inside_an_excluded_tree_is_still_scanned() {
    // The default excludes hold /tmp and /var/tmp, where this tempdir may live: an
    // explicit root wins over an exclude that contains it.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    write(&root.join("tool"), b"x", 0o755);
    write(&root.join("proc/tool"), b"y", 0o755);
    let mut cfg = ScanConfig {
        roots: vec![root.clone()],
        ..ScanConfig::default()
    };
    cfg.exclude
        .push(root.parent().expect("parent").to_path_buf());
    cfg.exclude.push(root.join("proc"));
    let result = run(&cfg);
    assert_eq!(paths(&result), vec![s(&root.join("tool"))]);
}

#[test]
fn symlinks_are_not_followed_and_targets_recorded_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    let out = real(&outside);
    write(&root.join("real/bin/tool"), b"tool", 0o755);
    write(&root.join("real/lib/libx.so.1"), b"lib", 0o644);
    write(&out.join("secret-tool"), b"outside", 0o755);
    write(&out.join("dir/other-tool"), b"outside", 0o755);
    // Links to a file and to a directory inside the root, chains, links leaving the
    // root, a dangling link and a loop.
    symlink("../real/bin/tool", root.join("real/tool-link")).expect("symlink");
    symlink(root.join("real/bin"), root.join("bin-link")).expect("symlink");
    symlink("libx.so.1", root.join("real/lib/libx.so")).expect("symlink");
    symlink("libx.so", root.join("real/lib/libx.so.chain")).expect("symlink");
    symlink(out.join("secret-tool"), root.join("out-file")).expect("symlink");
    symlink(out.join("dir"), root.join("out-dir")).expect("symlink");
    symlink(root.join("nowhere"), root.join("dangling")).expect("symlink");
    symlink(root.join("loop-b"), root.join("loop-a")).expect("symlink");
    symlink(root.join("loop-a"), root.join("loop-b")).expect("symlink");

    let result = run(&config(&[&root]));
    assert_eq!(
        paths(&result),
        vec![
            s(&root.join("real/bin/tool")),
            s(&root.join("real/lib/libx.so.1")),
        ]
    );
    assert!(result.skipped.is_empty(), "{:?}", result.skipped);
    assert_eq!(result.stats.files_hashed, 2, "a file was hashed twice");

    // With only the links' directory as root, the real files lie outside every root.
    let links_only = tempfile::tempdir().expect("tempdir");
    symlink(root.join("real/bin/tool"), links_only.path().join("l")).expect("symlink");
    let result = run(&config(&[links_only.path()]));
    assert!(result.files.is_empty(), "{:?}", result.files);
}

#[test]
fn hard_links_and_overlapping_roots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    write(&root.join("a/tool"), b"same inode", 0o755);
    fs::hard_link(root.join("a/tool"), root.join("b-tool")).expect("hard link");
    // "/x" and "/x/a" overlap: each path once.
    let result = run(&config(&[&root, &root.join("a"), &root.join("a/tool")]));
    assert_eq!(
        paths(&result),
        vec![s(&root.join("a/tool")), s(&root.join("b-tool"))]
    );
    assert_eq!(result.files[0].1, result.files[1].1);
}

#[test]
fn second_scan_hits_the_cache_and_changes_are_rehashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data dir");
    let root = real(&dir);
    let want = mixed_tree(&root);
    settle();
    let mut cfg = config(&[&root]);
    cfg.cache_file = Some(ScanConfig::cache_file_in(data.path()));

    let first = run(&cfg);
    assert_eq!(first.stats.files_hashed, 7);
    assert_eq!(first.stats.files_from_cache, 0);
    assert_eq!(first.stats.cache_warning, None);

    let cache_file = cfg.cache_file.clone().expect("cache file");
    let cache_inode = || {
        fs::metadata(&cache_file)
            .map(|m| m.ino())
            .expect("cache saved")
    };
    let first_inode = cache_inode();
    let second = run(&cfg);
    // Nothing changed, so the cache was not rewritten (a save renames a new inode in).
    assert_eq!(cache_inode(), first_inode);
    assert_eq!(second.files, first.files);
    assert_eq!(
        second.stats.files_hashed, 0,
        "unchanged files were re-hashed"
    );
    assert_eq!(second.stats.bytes_hashed, 0);
    assert_eq!(
        second.stats.files_from_cache, 13,
        "data files too are cached"
    );

    // Content and mtime change.
    let tool = root.join("bin/tool");
    fs::write(&tool, b"\x00\x01a new binary tool").expect("rewrite");
    let later = SystemTime::now() + Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&tool)
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    // Same size, mtime put back: only ctime tells (and the cache key includes it).
    let script = root.join("share/run.sh");
    let old_mtime = fs::metadata(&script)
        .and_then(|m| m.modified())
        .expect("mtime");
    fs::write(&script, b"#!/bin/sh\necho HI\n").expect("rewrite");
    File::options()
        .write(true)
        .open(&script)
        .and_then(|f| f.set_modified(old_mtime))
        .expect("restore mtime");
    // A data file gaining an exec bit becomes measured.
    fs::set_permissions(
        root.join("share/data.txt"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");

    let third = run(&cfg);
    assert_ne!(cache_inode(), first_inode, "changes were not saved");
    assert_eq!(third.stats.files_hashed, 3);
    assert_eq!(third.stats.files_from_cache, 10);
    let mut want3 = want.clone();
    want3.push(s(&root.join("share/data.txt")));
    want3.sort();
    assert_eq!(paths(&third), want3);
    let expected = sha256sum(&want3);
    for (path, digest) in &third.files {
        assert_eq!(Some(digest), expected.get(path), "{path}");
    }
    assert_ne!(third.files, first.files);
}

#[test]
fn corrupt_cache_is_ignored_and_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data dir");
    let root = real(&dir);
    mixed_tree(&root);
    settle();
    let cache_file = ScanConfig::cache_file_in(data.path());
    let mut cfg = config(&[&root]);
    cfg.cache_file = Some(cache_file.clone());
    let clean = run(&cfg);

    for garbage in [
        &b"\x00\xff not json at all"[..],
        b"{\"format\":\"verigate-scan-cache\",\"version\":1}\n{\"dev\":1,",
        b"",
    ] {
        fs::write(&cache_file, garbage).expect("corrupt the cache");
        let result = run(&cfg);
        assert_eq!(result.files, clean.files);
        assert_eq!(result.stats.files_hashed, 7, "a corrupt cache answered");
        let warning = result.stats.cache_warning.expect("a warning");
        assert!(warning.contains("cache ignored"), "{warning}");
        // The rebuilt cache serves the next scan.
        let again = run(&cfg);
        assert_eq!(again.stats.files_hashed, 0);
        assert_eq!(again.stats.cache_warning, None);
    }

    // A cache that cannot be saved (its dir is gone) is a warning, not a failure.
    cfg.cache_file = Some(data.path().join("missing-dir/cache.jsonl"));
    let result = run(&cfg);
    assert_eq!(result.files, clean.files);
    assert!(result.stats.cache_warning.is_some());
}

#[test]
fn unreadable_file_removed_between_walk_and_hash_is_skipped() {
    // As root, mode bits do not stop a read; a file that vanishes after the walk is a
    // real way to be unable to read it, and so is a file swapped for a symlink.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    mixed_tree(&root);
    let cfg = config(&[&root]);
    let progress = ScanProgress::new();
    let cancel = CancelToken::new();
    let listed = scan::list_files(&cfg, &progress, &cancel).expect("walk");
    assert_eq!(progress.phase(), Phase::Walking);
    fs::remove_file(root.join("bin/tool")).expect("rm");
    fs::remove_file(root.join("share/run.sh")).expect("rm");
    symlink(root.join("lib/libz.so"), root.join("share/run.sh")).expect("symlink");
    let result = scan::hash_files(&cfg, listed, &progress, &cancel).expect("hash");
    let skipped: Vec<(String, SkipReason)> = result
        .skipped
        .iter()
        .map(|sk| (sk.path.clone(), sk.reason.clone()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (s(&root.join("bin/tool")), SkipReason::Vanished),
            (s(&root.join("share/run.sh")), SkipReason::NotRegular),
        ]
    );
    assert!(!paths(&result).contains(&s(&root.join("bin/tool"))));
    assert_eq!(result.stats.skipped, 2);
    assert_eq!(progress.report().skipped, 2);
}

#[test]
fn unreadable_kernel_files_are_skipped_with_the_reason() {
    // Real files that root cannot read: /proc/self/mem fails reads at offset 0 with
    // EIO, and a write-only sysfs attribute refuses even root with EACCES.
    let progress = ScanProgress::new();
    let mut cfg = config(&[Path::new("/proc/self/mem")]);
    cfg.workers = 1;
    let result = scan::scan(&cfg, &progress, &CancelToken::new()).expect("scan");
    assert!(result.files.is_empty());
    assert_eq!(result.skipped.len(), 1, "{:?}", result.skipped);
    assert!(
        matches!(&result.skipped[0].reason, SkipReason::Io { op: "read", error } if error.contains("Input/output error")),
        "{:?}",
        result.skipped
    );
    let json = serde_json::to_value(&result.skipped).expect("json");
    assert_eq!(json[0]["reason"]["kind"], "io");

    let write_only = ["/sys/bus/pci/rescan", "/sys/kernel/mm/ksm/run"]
        .into_iter()
        .map(Path::new)
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o444 == 0)
        });
    let Some(write_only) = write_only else {
        let what = "a write-only sysfs attribute (the EACCES half of this test)";
        testkit::require(false, what, "run on Linux with /sys mounted");
        return;
    };
    let result = run(&config(&[write_only]));
    assert_eq!(result.skipped.len(), 1, "{:?}", result.skipped);
    assert_eq!(result.skipped[0].reason, SkipReason::PermissionDenied);
    assert_eq!(result.skipped[0].reason.to_string(), "permission denied");
}

#[test]
fn non_utf8_paths_are_skipped_not_mangled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    let bad_name = OsStr::from_bytes(b"tool-\xff\xfe");
    write(&root.join(bad_name), b"x", 0o755);
    write(&root.join(OsStr::from_bytes(b"data-\xff")), b"x", 0o644);
    let bad_dir = root.join(OsStr::from_bytes(b"dir-\xc3"));
    write(&bad_dir.join("inner.sh"), b"#!/bin/sh\n", 0o644);
    write(&root.join("good"), b"x", 0o755);
    let result = run(&config(&[&root]));
    assert_eq!(paths(&result), vec![s(&root.join("good"))]);
    let skipped: Vec<&str> = result.skipped.iter().map(|sk| sk.path.as_str()).collect();
    let base = s(&root);
    assert_eq!(
        skipped,
        vec![
            format!("{base}/dir-\\xc3/inner.sh"),
            format!("{base}/tool-\\xff\\xfe"),
        ]
    );
    assert!(result.skipped.iter().all(
        |sk| sk.reason == SkipReason::NonUtf8Path && sk.reason.to_string() == "non-UTF-8 path"
    ));
}

#[test]
fn results_are_stable_across_runs_and_worker_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    for i in 0..200 {
        let mode = if i % 3 == 0 { 0o644 } else { 0o755 };
        write(
            &root.join(format!("d{}/f{i}", i % 7)),
            format!("file {i}").as_bytes(),
            mode,
        );
    }
    let mut cfg = config(&[&root]);
    cfg.workers = 1;
    let one = run(&cfg);
    cfg.workers = 4;
    let four = run(&cfg);
    cfg.workers = 0;
    let auto = run(&cfg);
    assert_eq!(one.files, four.files);
    assert_eq!(one.files, auto.files);
    assert_eq!(one.files.len(), 133);
    assert!(one.files.windows(2).all(|w| w[0].0 < w[1].0), "not sorted");
    assert_eq!(four.stats.workers, 4);
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-root");
    let progress = ScanProgress::new();
    let err =
        scan::scan(&config(&[&missing]), &progress, &CancelToken::new()).expect_err("missing root");
    assert!(matches!(err, ScanError::Root { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-root"), "{err}");
    assert_eq!(progress.phase(), Phase::Failed);
}

/// A big sparse file: hashing it takes seconds of CPU but no disk space.
fn sparse_exec(path: &Path, len: u64) {
    let f = File::create(path).expect("create");
    f.set_len(len).expect("set_len");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn progress_moves_and_is_readable_from_another_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    for i in 0..4 {
        sparse_exec(&root.join(format!("big{i}")), 16 << 20);
    }
    let mut small = File::create(root.join("small")).expect("create");
    small.write_all(b"#!/bin/sh\n").expect("write");
    let progress = Arc::new(ScanProgress::new());
    let cancel = CancelToken::new();
    let cfg = config(&[&root]);
    let job = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || scan::scan(&cfg, &progress, &cancel))
    };
    let mut seen = Vec::new();
    while !job.is_finished() {
        seen.push(progress.report());
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = job.join().expect("scan thread").expect("scan");
    let last = progress.report();
    seen.push(last.clone());
    for w in seen.windows(2) {
        assert!(w[1].files_seen >= w[0].files_seen);
        assert!(w[1].files_done >= w[0].files_done);
        assert!(w[1].bytes_hashed >= w[0].bytes_hashed);
        assert!(w[1].elapsed_ms >= w[0].elapsed_ms);
    }
    assert_eq!(last.phase, Phase::Done);
    assert_eq!(last.files_seen, 5);
    assert_eq!(last.files_done, 5);
    assert_eq!(last.files_hashed, 5);
    assert_eq!(last.bytes_hashed, 4 * (16 << 20) + 10);
    assert_eq!(last.bytes_hashed, result.stats.bytes_hashed);
    assert!(last.bytes_per_sec > 0);
    let json = serde_json::to_value(&last).expect("json");
    assert_eq!(json["phase"], "done");
}

#[test]
fn cancel_stops_a_running_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    let len: u64 = 64 << 30;
    sparse_exec(&root.join("huge"), len);
    let progress = Arc::new(ScanProgress::new());
    let cancel = CancelToken::new();
    let cfg = config(&[&root]);
    let job = {
        let (progress, cancel) = (Arc::clone(&progress), cancel.clone());
        std::thread::spawn(move || scan::scan(&cfg, &progress, &cancel))
    };
    // Cancel once hashing has visibly started (the 64 GiB file would take minutes).
    while progress.report().bytes_hashed == 0 && !job.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    cancel.cancel();
    let result = job.join().expect("scan thread");
    assert!(matches!(result, Err(ScanError::Cancelled)), "{result:?}");
    assert_eq!(progress.phase(), Phase::Cancelled);
    assert!(progress.report().bytes_hashed < len);

    // Cancelled before it starts: nothing is walked.
    let progress = ScanProgress::new();
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = scan::scan(&config(&[&root]), &progress, &cancel).expect_err("cancelled");
    assert!(matches!(err, ScanError::Cancelled));
    assert_eq!(progress.report().files_seen, 0);
}

#[test]
fn a_relative_exclude_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&[dir.path()]);
    cfg.exclude = vec![PathBuf::from("/proc"), PathBuf::from("var/tmp")];
    let progress = ScanProgress::new();
    let err = scan::scan(&cfg, &progress, &CancelToken::new()).expect_err("relative exclude");
    assert!(
        matches!(&err, ScanError::RelativeExclude { exclude } if exclude == Path::new("var/tmp")),
        "{err:?}"
    );
    assert!(err.to_string().contains("var/tmp"), "{err}");
    assert_eq!(progress.phase(), Phase::Failed);
}

#[test]
fn a_cache_in_another_algorithm_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data dir");
    let root = real(&dir);
    mixed_tree(&root);
    settle();
    let mut cfg = config(&[&root]);
    cfg.cache_file = Some(ScanConfig::cache_file_in(data.path()));
    let sha256 = run(&cfg);
    assert_eq!(sha256.stats.files_hashed, 7);

    cfg.algorithm = HashAlg::Sha512;
    let sha512 = run(&cfg);
    // Measured files are hashed again; data files keep their cached "not measured".
    assert_eq!(sha512.stats.files_hashed, 7);
    assert_eq!(sha512.stats.files_from_cache, 6);
    assert!(sha512.files.iter().all(|(_, d)| d.len() == 128));
    assert_eq!(paths(&sha512), paths(&sha256));

    cfg.algorithm = HashAlg::Sha256;
    let again = run(&cfg);
    assert_eq!(again.stats.files_hashed, 7);
    assert_eq!(again.files, sha256.files);
}

#[test]
fn a_file_changed_while_being_hashed_is_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = real(&dir);
    let big = root.join("shrinking");
    let len: u64 = 4 << 30;
    sparse_exec(&big, len);
    let progress = Arc::new(ScanProgress::new());
    let cfg = config(&[&root]);
    let job = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || scan::scan(&cfg, &progress, &CancelToken::new()))
    };
    // Once reading has begun (hashing 4 GiB takes seconds), the file shrinks: the worker
    // reaches the new end at once and sees that size, mtime and ctime moved.
    while progress.report().bytes_hashed == 0 && !job.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    File::options()
        .write(true)
        .open(&big)
        .and_then(|f| f.set_len(4096))
        .expect("shrink");
    let result = job.join().expect("scan thread").expect("scan");
    assert!(result.files.is_empty(), "{:?}", result.files);
    assert_eq!(result.skipped.len(), 1);
    assert_eq!(result.skipped[0].path, s(&big));
    assert_eq!(result.skipped[0].reason, SkipReason::ChangedWhileHashing);
}

/// The scan's threads (`verigate-scan` and its workers `verigate-scan-N`) of this
/// process, by thread id, read from /proc.
fn scan_threads() -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let entry = entry.expect("task");
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue; // the thread ended meanwhile
        };
        let comm = comm.trim().to_string();
        if comm.starts_with("verigate-scan") {
            let tid = entry.file_name().to_string_lossy().parse().expect("tid");
            found.push((tid, comm));
        }
    }
    found
}

#[test]
fn scan_threads_run_at_idle_cpu_and_io_priority() {
    use gateway::scan::priority::{cpu_policy, io_class, IDLE_CPU_POLICY, IDLE_IO_CLASS};
    let dir = tempfile::tempdir().expect("tempdir");
    // A large sparse executable keeps a worker hashing while the test looks at it.
    let big = dir.path().join("big");
    let f = File::create(&big).expect("big");
    (&f).write_all(b"#!/bin/sh\n").expect("write");
    f.set_len(4 << 30).expect("sparse");
    fs::set_permissions(&big, fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = ScanConfig {
        roots: vec![dir.path().to_path_buf()],
        exclude: Vec::new(),
        workers: 1,
        ..ScanConfig::default()
    };
    let progress = Arc::new(ScanProgress::new());
    let cancel = CancelToken::new();
    let scan = std::thread::spawn({
        let cancel = cancel.clone();
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(scan::scan_idle(config, progress, cancel))
        }
    });

    // Wait (bounded, never timed) until both the scan thread and a worker exist.
    let mut seen = Vec::new();
    for _ in 0..3000 {
        seen = scan_threads();
        if seen.iter().any(|(_, n)| n == "verigate-scan")
            && seen.iter().any(|(_, n)| n == "verigate-scan-0")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen.len() >= 2, "no scan worker appeared: {seen:?}");
    // Other tests of this binary run scans at the same time, and every scan thread
    // lowers itself as its first step: a thread caught before that step gets a few more
    // looks (bounded, not timed). A thread gone meanwhile (ESRCH, the walk thread ends
    // as soon as its one file is handed over) has no priority left to check.
    let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ESRCH);
    let mut checked = 0;
    for (tid, name) in &seen {
        let mut last = None;
        for _ in 0..200 {
            match (cpu_policy(*tid), io_class(*tid)) {
                (Ok(policy), Ok(class)) if policy == IDLE_CPU_POLICY && class == IDLE_IO_CLASS => {
                    checked += 1;
                    last = None;
                    break;
                }
                (Err(e), _) | (_, Err(e)) if gone(&e) => {
                    last = None;
                    break;
                }
                other => last = Some(other),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(last.is_none(), "{name} ({tid}) is not idle: {last:?}");
    }
    assert!(checked >= 2, "{seen:?}");
    // The test's own thread keeps its priority.
    assert_ne!(cpu_policy(0).expect("policy"), IDLE_CPU_POLICY);

    cancel.cancel();
    let result = scan.join().expect("join");
    assert!(matches!(result, Err(ScanError::Cancelled)), "{result:?}");
}

#[test]
fn the_streamed_scan_equals_the_step_by_step_one() {
    // `scan` streams the walk into the workers; `list_files` then `hash_files` collect
    // the walk first. Same tree, same result, then both answered from the cache.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data dir");
    let root = real(&dir);
    let want = mixed_tree(&root);
    for i in 0..300 {
        write(
            &root.join(format!("many/d{}/f{i}", i % 11)),
            format!("#!/bin/sh\necho {i}\n").as_bytes(),
            if i % 2 == 0 { 0o755 } else { 0o644 },
        );
    }
    settle();
    let mut cfg = config(&[&root]);
    cfg.cache_file = Some(ScanConfig::cache_file_in(data.path()));
    let streamed = run(&cfg);
    assert_eq!(streamed.stats.files_seen, 313);
    assert_eq!(streamed.files.len(), want.len() + 300);
    let progress = ScanProgress::new();
    let cancel = CancelToken::new();
    let listed = scan::list_files(&cfg, &progress, &cancel).expect("walk");
    let stepped = scan::hash_files(&cfg, listed, &progress, &cancel).expect("hash");
    assert_eq!(stepped.files, streamed.files);
    assert_eq!(stepped.skipped, streamed.skipped);
    assert_eq!(stepped.stats.files_seen, streamed.stats.files_seen);
    // The first scan cached every file: neither run after it hashes anything.
    assert_eq!(stepped.stats.files_hashed, 0);
    assert_eq!(stepped.stats.files_from_cache, 313);
    let again = run(&cfg);
    assert_eq!(again.files, streamed.files);
    assert_eq!(again.stats.files_hashed, 0);
    assert_eq!(again.stats.files_from_cache, 313);
}

#[test]
fn hard_links_measured_by_name_and_not_share_one_cache_entry_safely() {
    // One file version (one inode) under a library name, which makes it measured, and
    // under a plain name, which leaves it to its content (data): the cached digest must
    // not make the plain name measured, nor the "not code" answer hide the library.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data dir");
    let root = real(&dir);
    write(&root.join("lib/libdata.so.1"), b"plain data", 0o644);
    fs::create_dir_all(root.join("share")).expect("mkdir");
    fs::hard_link(root.join("lib/libdata.so.1"), root.join("share/data.bin")).expect("link");
    settle();
    let mut cfg = config(&[&root]);
    cfg.cache_file = Some(ScanConfig::cache_file_in(data.path()));
    let first = run(&cfg);
    assert_eq!(paths(&first), vec![s(&root.join("lib/libdata.so.1"))]);
    for _ in 0..2 {
        let next = run(&cfg);
        assert_eq!(next.files, first.files);
        assert_eq!(next.stats.files_hashed, 0);
    }
}
