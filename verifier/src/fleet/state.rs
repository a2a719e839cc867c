//! The enrolment state (ARCHITECTURE.md, "Fleets"): for each VM verified against a
//! policy, the identity recorded at first contact (trust on first use) with the evidence
//! it came from, and the identity last seen when it differed but passed the policy on its
//! own (after a reboot), for `verigate fleet accept`. JSON, written whole with `durable`;
//! every run that reads or writes it holds an exclusive lock ([`StateLock`]), so a second
//! concurrent run is refused instead of losing the first one's enrolments.

use anyhow::Context as _;
use attest::policy::Identity;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The only state format this code reads and writes.
pub const STATE_VERSION: u32 = 1;

/// The most state JSON parsed: an identity is a few hundred bytes.
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Always [`STATE_VERSION`].
    pub version: u32,
    /// By VM name.
    pub vms: BTreeMap<String, VmState>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: STATE_VERSION,
            vms: BTreeMap::new(),
        }
    }
}

/// One VM's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmState {
    /// The identity later runs require.
    pub identity: Identity,
    /// How it came to be recorded: `first contact (trust on first use)`, `fleet enroll`
    /// or `fleet accept`.
    pub how: String,
    /// RFC 3339, UTC.
    pub enrolled_at: String,
    /// The evidence it was read from.
    pub evidence: EvidenceRecord,
    /// A different identity seen since, with which the VM passed the policy on its own:
    /// what `fleet accept` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// An identity seen but not (yet) accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The identity the evidence proves.
    pub identity: Identity,
    /// RFC 3339, UTC.
    pub seen_at: String,
    /// The evidence it was read from.
    pub evidence: EvidenceRecord,
}

/// Which evidence an identity was read from: its SHA-256 and the copy kept beside the
/// state file, which verifies offline (`verigate` checks it again with the nonce inside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// SHA-256 of the evidence JSON as received, hex.
    pub sha256: String,
    /// The copy, relative to the state file's folder.
    pub file: PathBuf,
}

/// The state file and its lock, held for as long as this value lives.
pub struct StateLock {
    path: PathBuf,
    // The open lock file holds the flock; closing it releases it.
    _lock: File,
}

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the lock.
    #[error("another verigate run holds `{lock}`{holder}: wait for it to finish")]
    Busy {
        /// The lock file.
        lock: PathBuf,
        /// ` (pid N)` when the holder wrote its process id.
        holder: String,
    },
}

impl StateLock {
    /// Takes the lock beside `path` (`PATH.lock`) without waiting.
    pub fn acquire(path: &Path) -> anyhow::Result<StateLock> {
        let lock_path = sibling(path, ".lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("opening `{}`", lock_path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = std::fs::read_to_string(&lock_path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                return Err(StateError::Busy {
                    lock: lock_path,
                    holder,
                }
                .into());
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking `{}`", lock_path.display()))
            }
        }
        // The holder's pid, for the message of a refused run; the lock is the flock.
        let _ = std::fs::write(&lock_path, format!("{}\n", std::process::id()));
        Ok(StateLock {
            path: path.to_path_buf(),
            _lock: file,
        })
    }

    /// Reads the state; a missing file is an empty state.
    pub fn read(&self) -> anyhow::Result<State> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e).with_context(|| format!("reading `{}`", self.path.display())),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_STATE_BYTES.saturating_add(1)),
            &mut bytes,
        )
        .with_context(|| format!("reading `{}`", self.path.display()))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_STATE_BYTES {
            anyhow::bail!(
                "`{}` is larger than {MAX_STATE_BYTES} bytes",
                self.path.display()
            );
        }
        let state: State = serde_json::from_slice(&bytes)
            .with_context(|| format!("`{}` is not a verigate fleet state", self.path.display()))?;
        if state.version != STATE_VERSION {
            anyhow::bail!(
                "`{}`: state version {} is not supported (this verigate reads {STATE_VERSION})",
                self.path.display(),
                state.version
            );
        }
        Ok(state)
    }

    /// Writes the state whole (the old file or the new one survives a crash).
    pub fn write(&self, state: &State) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(state).context("encoding the fleet state")?;
        durable::write(&self.path, &json, 0o644)
            .with_context(|| format!("writing `{}`", self.path.display()))
    }

    /// Keeps `evidence` (of VM `name`) beside the state and says where.
    pub fn keep_evidence(&self, name: &str, evidence: &[u8]) -> anyhow::Result<EvidenceRecord> {
        let sha = hex::encode(Sha256::digest(evidence));
        let dir = sibling(&self.path, ".evidence");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
        let file_name = format!("{name}-{}.json", &sha[..16]);
        let path = dir.join(&file_name);
        durable::write(&path, evidence, 0o644)
            .with_context(|| format!("writing `{}`", path.display()))?;
        let rel = PathBuf::from(dir.file_name().unwrap_or_default()).join(file_name);
        Ok(EvidenceRecord {
            sha256: sha,
            file: rel,
        })
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/fleet-state.json");
        let lock = StateLock::acquire(&path).unwrap();
        let e = StateLock::acquire(&path).err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("another verigate run") && msg.contains(&std::process::id().to_string()),
            "{msg}"
        );
        assert_eq!(lock.read().unwrap(), State::default());
        let record = lock.keep_evidence("vm1", b"{}").unwrap();
        assert!(dir.path().join("sub").join(&record.file).exists());
        let mut state = State::default();
        state.vms.insert(
            "vm1".into(),
            VmState {
                identity: Identity::default(),
                how: "fleet enroll".into(),
                enrolled_at: now_rfc3339(),
                evidence: record,
                pending: None,
            },
        );
        lock.write(&state).unwrap();
        assert_eq!(lock.read().unwrap(), state);
        drop(lock);
        // Released with the value.
        let again = StateLock::acquire(&path).unwrap();

        // A broken or foreign file is refused, naming it.
        std::fs::write(&path, b"{\"version\": 2, \"vms\": {}}").unwrap();
        assert!(again.read().unwrap_err().to_string().contains("version 2"));
        std::fs::write(&path, b"not json").unwrap();
        assert!(format!("{:#}", again.read().unwrap_err()).contains("fleet state"));
    }
}
