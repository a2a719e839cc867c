//! Where the real attestation evidence is: `shared/evidence` beside the repository (its
//! README says where each file comes from), or the folder `VERIGATE_EVIDENCE` names (a
//! checkout elsewhere, e.g. a git worktree). One lookup for every crate's tests.

use std::path::PathBuf;

/// The environment variable that points at the evidence folder.
pub const EVIDENCE_ENV: &str = "VERIGATE_EVIDENCE";

/// The evidence folder, or its subfolder `sub` (`""` for the folder itself), when it
/// exists; `None` after [`crate::require`] named it (it panics under CI).
pub fn dir(sub: &str) -> Option<PathBuf> {
    let root = match std::env::var_os(EVIDENCE_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/evidence"),
    };
    let dir = if sub.is_empty() { root } else { root.join(sub) };
    crate::require_path(&dir, crate::require::install::EVIDENCE).then_some(dir)
}
