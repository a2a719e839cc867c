//! The promises of `durable`, checked on a real file system.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn replaces_whole_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.json");
    durable::write(&path, b"a longer first version", 0o644).unwrap();
    durable::write(&path, b"second", 0o644).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second");
    assert_eq!(names_in(dir.path()), vec!["snapshot.json"]);
}

#[test]
fn mode_is_set_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o600, 0o640, 0o644] {
        let path = dir.path().join(format!("f{mode:o}"));
        durable::write(&path, b"x", mode).unwrap();
        let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "{}", path.display());
    }
}

#[test]
fn a_failing_writer_leaves_the_target_untouched_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache");
    std::fs::write(&path, b"previous").unwrap();
    let err = durable::write_with(&path, 0o644, |w| {
        w.write_all(b"half of it")?;
        Err(io::Error::other("the serializer gave up"))
    })
    .unwrap_err();
    assert!(matches!(err, durable::Error::Write { .. }), "{err}");
    assert!(err.to_string().contains("the serializer gave up"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"previous");
    assert_eq!(names_in(dir.path()), vec!["cache"]);
}

#[test]
fn a_streamed_write_lands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines");
    durable::write_with(&path, 0o600, |w| {
        for i in 0..1000 {
            writeln!(w, "line {i}")?;
        }
        Ok(())
    })
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1000);
    assert_eq!(names_in(dir.path()), vec!["lines"]);
}

#[test]
fn a_symlink_at_the_target_is_replaced_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, b"untouched").unwrap();
    let path = dir.path().join("key.pem");
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    durable::write(&path, b"secret", 0o600).unwrap();
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"untouched");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(std::fs::read(&path).unwrap(), b"secret");
}

#[test]
fn a_missing_folder_is_an_error_naming_it_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/s.json");
    let err = durable::write(&path, b"x", 0o644).unwrap_err();
    assert!(matches!(err, durable::Error::CreateTemp { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_failed_rename_leaves_the_target_untouched_and_no_temporary_file() {
    // A folder at the target path: rename(2) of a file over it fails (EISDIR).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken");
    std::fs::create_dir(&path).unwrap();
    let err = durable::write(&path, b"x", 0o644).unwrap_err();
    assert!(matches!(err, durable::Error::Rename { .. }), "{err}");
    assert!(path.is_dir());
    assert_eq!(names_in(dir.path()), vec!["taken"]);
}

#[test]
fn write_new_never_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    durable::write_new(&path, b"first", 0o600).unwrap();
    let err = durable::write_new(&path, b"second", 0o600).unwrap_err();
    assert!(matches!(err, durable::Error::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert_eq!(names_in(dir.path()), vec!["blob"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_path_without_a_file_name_is_refused() {
    let err = durable::write(Path::new("/"), b"x", 0o644).unwrap_err();
    assert!(matches!(err, durable::Error::NotAFile { .. }), "{err}");
}

#[test]
fn the_owner_is_given_before_the_rename() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.conf");
    let me = std::fs::metadata(dir.path()).unwrap();
    // Our own ids: allowed for any user, so the test runs everywhere.
    durable::Options::new(0o600)
        .owner(me.uid(), me.gid())
        .write(&path, b"x")
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (me.uid(), me.gid()));
}

#[test]
fn temporary_names_carry_the_target_name() {
    assert_eq!(durable::temp_prefix("app.conf"), ".app.conf.tmp.");
}

#[test]
fn names_planted_in_a_shared_folder_are_neither_followed_nor_in_the_way() {
    // Someone who shares the folder plants symlinks at every name a writer with a
    // predictable temporary name (prefix, process id, counter) would try: the write
    // must still succeed, and the symlinks' target must stay untouched.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let prefix = durable::temp_prefix("snapshot.json");
    for n in 0..4096 {
        let planted = dir
            .path()
            .join(format!("{prefix}{}.{n}", std::process::id()));
        std::os::unix::fs::symlink(&victim, planted).unwrap();
    }
    let path = dir.path().join("snapshot.json");
    durable::write(&path, b"new", 0o644).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
}
