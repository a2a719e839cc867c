//! Rules about the repository itself, checked over every file git tracks.
//!
//! The repository describes itself: code and documents cite `ARCHITECTURE.md`, never a
//! design or style document kept outside the checkout, which a reader of the repository
//! cannot open. A citation of one fails here, naming the file, the line and the fix.
//!
//! One path outside the repository is allowed: the folder of real SEV-SNP, TDX and IMA
//! evidence beside the checkout, which tests read by path (hardware evidence is neither
//! ours to redistribute nor small) and which the README describes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Names of documents outside the repository that nothing here may cite. Spelled in
/// pieces so that this file does not cite them itself.
const FORBIDDEN: [&str; 2] = [concat!("DESIGN", ".md"), concat!("STYLE", ".md")];

/// The folder outside the repository that held those documents.
const OUTSIDE_FOLDER: &str = concat!("shared", "/");

/// The one path under [`OUTSIDE_FOLDER`] that tests may name (see the module doc).
const ALLOWED_UNDER_OUTSIDE_FOLDER: &str = "evidence";

/// The workspace root: the folder above this crate.
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits one folder below the workspace root")
        .to_path_buf()
}

/// Every file git tracks, relative to `root`; without git (a source archive), every
/// file under `root` outside `target/` and `.git/`.
fn tracked_files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output();
    match listed {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| !p.starts_with("target"))
            .collect(),
        _ => {
            let mut files = Vec::new();
            walk(root, root, &mut files);
            files
        }
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            files.push(relative.to_path_buf());
        }
    }
}

/// What in `line` cites something outside the repository, if anything.
fn outside_reference(line: &str) -> Option<String> {
    if let Some(name) = FORBIDDEN.iter().find(|name| line.contains(*name)) {
        return Some(format!("cites `{name}`"));
    }
    for (at, _) in line.match_indices(OUTSIDE_FOLDER) {
        let rest = &line[at + OUTSIDE_FOLDER.len()..];
        if !rest.starts_with(ALLOWED_UNDER_OUTSIDE_FOLDER) {
            return Some(format!("names a path under `{OUTSIDE_FOLDER}`"));
        }
    }
    None
}

#[test]
fn no_file_cites_a_document_outside_the_repository() {
    let root = repository_root();
    let files = tracked_files(&root);
    assert!(
        files.iter().any(|f| f == Path::new("ARCHITECTURE.md")),
        "ARCHITECTURE.md is missing from {}: it is the document the code cites",
        root.display()
    );

    let mut problems = Vec::new();
    for file in &files {
        // A file listed by git but deleted in the work tree has nothing to say.
        let Ok(bytes) = std::fs::read(root.join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (index, line) in text.lines().enumerate() {
            if let Some(what) = outside_reference(line) {
                problems.push(format!("{}:{}: {what}", file.display(), index + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "files cite documents outside the repository; cite the matching section of \
         ARCHITECTURE.md instead (e.g. \"ARCHITECTURE.md, 'Binding'\"), adding the section \
         if it is missing:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_rule_catches_what_it_should() {
    let design = FORBIDDEN[0];
    assert!(outside_reference(&format!("//! See {design} for the formats.")).is_some());
    assert!(outside_reference(&format!("see ../{OUTSIDE_FOLDER}{design}")).is_some());
    assert!(outside_reference(&format!("../{OUTSIDE_FOLDER}notes/x.txt")).is_some());
    assert!(outside_reference(&format!(
        "join(\"../../{OUTSIDE_FOLDER}{ALLOWED_UNDER_OUTSIDE_FOLDER}/snp\")"
    ))
    .is_none());
    assert!(outside_reference("//! (ARCHITECTURE.md, \"Binding\")").is_none());
}
