//! TEE report collection through Linux configfs-tsm (`/sys/kernel/config/tsm/report`,
//! kernel 6.7 and later), which serves SEV-SNP and TDX guests alike.
//!
//! One request creates its own entry directory, writes the 64-byte report data to
//! `inblob` (and `privlevel` if asked), reads `provider`, `outblob` and `auxblob`, and
//! removes the entry. The kernel bumps `generation` on every write to the entry, so
//! reading it after our writes and again after reading the blobs detects another process
//! writing to the same entry in between (the report would then carry its data, not ours).
//! The root is a parameter ([`request_at`]) so that tests run the whole exchange against
//! a stand-in of the kernel in a temporary folder (`testkit::tsm`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a new entry's attributes may take to appear. configfs creates them with the
/// directory, so on a kernel the first look finds them; a user-space stand-in of the
/// kernel (the tests') creates them a moment after the `mkdir`.
const ATTRIBUTES_WAIT: Duration = Duration::from_secs(1);

/// Where the kernel exposes configfs-tsm reports.
pub const TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// A report as the kernel returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// Which driver produced it, e.g. `sev_guest` or `tdx_guest`.
    pub provider: String,
    /// The report itself: an SEV-SNP attestation report or a TDX quote.
    pub outblob: Vec<u8>,
    /// Extra data: for SEV-SNP, the host's certificate table (see
    /// [`crate::tee::snp::cert_table`]); absent or empty when the host gives none.
    pub auxblob: Option<Vec<u8>>,
    /// The entry's generation when the report was read.
    pub generation: u64,
}

impl TsmReport {
    /// The kind of TEE, from the provider name.
    pub fn tee_kind(&self) -> Option<&'static str> {
        match self.provider.as_str() {
            "sev_guest" => Some("sev-snp"),
            "tdx_guest" => Some("tdx"),
            _ => None,
        }
    }
}

/// Why configfs-tsm gave no report. Each variant names the path or attribute.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    /// The configfs-tsm root does not exist or cannot be read (old kernel, configfs not
    /// mounted, not a TEE guest).
    #[error("configfs-tsm is not available at {path}: {source}")]
    Unavailable {
        /// The root that was looked for.
        path: PathBuf,
        /// The error from reading its metadata.
        #[source]
        source: io::Error,
    },
    /// The report entry directory cannot be created under the root.
    #[error("cannot create report entry {path}: {source}")]
    CreateEntry {
        /// The entry directory.
        path: PathBuf,
        /// The error from `mkdir`.
        #[source]
        source: io::Error,
    },
    /// Writing an attribute of the entry failed (the kernel refuses e.g. a bad
    /// `privlevel`).
    #[error("cannot write {attribute}: {source}")]
    Write {
        /// The attribute, e.g. `inblob`.
        attribute: &'static str,
        /// The error from the write.
        #[source]
        source: io::Error,
    },
    /// Reading an attribute of the entry failed; for `outblob` this is where the
    /// TEE's own failure shows.
    #[error("cannot read {attribute}: {source}")]
    Read {
        /// The attribute, e.g. `outblob`.
        attribute: &'static str,
        /// The error from the read.
        #[source]
        source: io::Error,
    },
    /// The `generation` attribute is not a decimal number; holds its text.
    #[error("generation is `{0}`, not a number")]
    BadGeneration(String),
    /// The generation moved by other than our own writes: another process wrote to the
    /// entry, so the report may carry its data.
    #[error(
        "another writer changed the report entry: generation {expected} expected, {got} found"
    )]
    ConcurrentWriter {
        /// The generation our writes alone would give.
        expected: u64,
        /// The generation read.
        got: u64,
    },
    /// The kernel returned no report bytes.
    #[error("the kernel returned an empty outblob")]
    EmptyOutblob,
}

/// Removes the entry directory when dropped, so a failed request leaves nothing behind.
struct Entry {
    path: PathBuf,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // configfs removes an item with rmdir; its attributes go with it.
        let _ = fs::remove_dir(&self.path);
    }
}

impl Entry {
    fn create(root: &Path) -> Result<Entry, TsmError> {
        fs::metadata(root).map_err(|source| TsmError::Unavailable {
            path: root.to_path_buf(),
            source,
        })?;
        let name = format!(
            "verigate-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        );
        let path = root.join(name);
        fs::create_dir(&path).map_err(|source| TsmError::CreateEntry {
            path: path.clone(),
            source,
        })?;
        Ok(Entry { path })
    }

    fn read(&self, attribute: &'static str) -> Result<Vec<u8>, TsmError> {
        fs::read(self.path.join(attribute)).map_err(|source| TsmError::Read { attribute, source })
    }

    fn write(&self, attribute: &'static str, value: &[u8]) -> Result<(), TsmError> {
        fs::write(self.path.join(attribute), value)
            .map_err(|source| TsmError::Write { attribute, source })
    }

    /// Waits (at most [`ATTRIBUTES_WAIT`]) for the `generation` attribute to exist; a
    /// missing one is then reported by the read that follows.
    fn await_attributes(&self) {
        let deadline = Instant::now() + ATTRIBUTES_WAIT;
        let generation = self.path.join("generation");
        while !generation.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn generation(&self) -> Result<u64, TsmError> {
        parse_generation(&self.read("generation")?)
    }
}

/// Parses the text of a `generation` attribute.
pub fn parse_generation(raw: &[u8]) -> Result<u64, TsmError> {
    let text = String::from_utf8_lossy(raw);
    text.trim()
        .parse()
        .map_err(|_| TsmError::BadGeneration(text.trim().to_string()))
}

/// The generation check: `writes` writes after `before` must give exactly
/// `before + writes` when the outblob was read, and it must not move while reading.
pub fn check_generation(
    before: u64,
    writes: u64,
    after_writes: u64,
    after_read: u64,
) -> Result<(), TsmError> {
    let expected = before.saturating_add(writes);
    if after_writes != expected {
        return Err(TsmError::ConcurrentWriter {
            expected,
            got: after_writes,
        });
    }
    if after_read != after_writes {
        return Err(TsmError::ConcurrentWriter {
            expected: after_writes,
            got: after_read,
        });
    }
    Ok(())
}

/// Requests a report carrying `report_data` from the default configfs-tsm root.
pub fn request(report_data: &[u8; 64]) -> Result<TsmReport, TsmError> {
    request_at(Path::new(TSM_REPORT_ROOT), report_data, None)
}

/// Requests a report under `root`, optionally at privilege level `privlevel` (SEV-SNP
/// VMPL; TDX ignores it).
pub fn request_at(
    root: &Path,
    report_data: &[u8; 64],
    privlevel: Option<u32>,
) -> Result<TsmReport, TsmError> {
    let entry = Entry::create(root)?;
    entry.await_attributes();
    let before = entry.generation()?;
    let mut writes = 0u64;
    if let Some(level) = privlevel {
        entry.write("privlevel", level.to_string().as_bytes())?;
        writes += 1;
    }
    entry.write("inblob", report_data)?;
    writes += 1;
    let after_writes = entry.generation()?;
    let provider = String::from_utf8_lossy(&entry.read("provider")?)
        .trim()
        .to_string();
    let outblob = entry.read("outblob")?;
    // Older kernels and hosts without certificates have no or an empty auxblob.
    let auxblob = match entry.read("auxblob") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => None,
    };
    let after_read = entry.generation()?;
    check_generation(before, writes, after_writes, after_read)?;
    if outblob.is_empty() {
        return Err(TsmError::EmptyOutblob);
    }
    Ok(TsmReport {
        provider,
        outblob,
        auxblob,
        generation: after_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_check_detects_other_writers() {
        assert!(check_generation(3, 1, 4, 4).is_ok());
        assert!(check_generation(3, 2, 5, 5).is_ok());
        assert!(matches!(
            check_generation(3, 1, 5, 5),
            Err(TsmError::ConcurrentWriter {
                expected: 4,
                got: 5
            })
        ));
        assert!(matches!(
            check_generation(3, 1, 4, 6),
            Err(TsmError::ConcurrentWriter {
                expected: 4,
                got: 6
            })
        ));
        assert!(check_generation(u64::MAX, 1, u64::MAX, u64::MAX).is_ok());
    }

    #[test]
    fn generation_text_is_parsed_strictly() {
        assert_eq!(parse_generation(b"7\n").ok(), Some(7));
        assert!(matches!(
            parse_generation(b"seven"),
            Err(TsmError::BadGeneration(s)) if s == "seven"
        ));
        assert!(parse_generation(b"").is_err());
    }

    #[test]
    fn missing_root_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("no-tsm");
        assert!(matches!(
            request_at(&root, &[0; 64], None),
            Err(TsmError::Unavailable { .. })
        ));
    }

    /// A plain directory stands in for configfs (which this machine lacks): mkdir works,
    /// the kernel's attributes are missing, and the entry must be removed again.
    #[test]
    fn failed_request_removes_its_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = request_at(dir.path(), &[0; 64], Some(0)).expect_err("no kernel here");
        assert!(
            matches!(
                err,
                TsmError::Read {
                    attribute: "generation",
                    ..
                }
            ),
            "{err}"
        );
        let left: Vec<_> = fs::read_dir(dir.path()).expect("readable").collect();
        assert!(left.is_empty(), "entry left behind: {left:?}");
    }

    #[test]
    fn provider_names_map_to_tee_kinds() {
        let r = |p: &str| TsmReport {
            provider: p.into(),
            outblob: vec![1],
            auxblob: None,
            generation: 1,
        };
        assert_eq!(r("sev_guest").tee_kind(), Some("sev-snp"));
        assert_eq!(r("tdx_guest").tee_kind(), Some("tdx"));
        assert_eq!(r("other").tee_kind(), None);
    }

    /// The whole exchange against `testkit::tsm::TsmStandIn`, a stand-in of the kernel's
    /// configfs-tsm in a temporary folder (named so: no configfs here): our report data
    /// reaches `inblob`, the recorded TDX quote comes back from `outblob`, the
    /// generation moved by our one write, and the entry is gone afterwards.
    #[test]
    fn a_request_runs_against_the_configfs_tsm_stand_in() {
        let Some(dir) = testkit::evidence::dir("tdx") else {
            return;
        };
        if !testkit::require_programs(&["mkfifo"], "apt-get install coreutils") {
            return;
        }
        let quote = fs::read(dir.join("tdx_quote")).expect("quote");
        let tmp = tempfile::tempdir().expect("tempdir");
        let stand_in = testkit::tsm::TsmStandIn::start(
            &tmp.path().join("report"),
            testkit::tsm::Answer {
                provider: "tdx_guest".into(),
                outblob: quote.clone(),
                auxblob: None,
            },
        )
        .expect("stand-in");
        let r = request_at(stand_in.root(), &[7; 64], None).expect("report");
        assert_eq!(r.provider, "tdx_guest");
        assert_eq!(r.tee_kind(), Some("tdx"));
        assert_eq!(r.outblob, quote);
        assert_eq!(r.auxblob, None);
        assert_eq!(r.generation, 1);
        assert_eq!(stand_in.inblobs(), vec![vec![7u8; 64]]);
    }
}
