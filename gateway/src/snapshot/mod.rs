//! The snapshot job (ARCHITECTURE.md, "Snapshot"): freezes the state of this VM into the
//! reference that later verifications compare against. One job at a time: it collects
//! evidence for a fresh random nonce and verifies it as the verifier would (TEE and TPM
//! policy, manifest, IMA log), then scans the disk for code that has not run yet
//! ([`crate::scan`], hashed with the IMA log's algorithm, cached in the data dir),
//! merges both file lists and keeps the result on disk ([`store`]).
//!
//! [`SnapshotService`] holds the running job's live progress, the last finished
//! snapshot and the last failure, for `POST/GET /v1/snapshot`
//! ([`crate::endpoint::snapshot`]). A job interrupted by a restart is gone; the stored
//! snapshot (if any) is loaded again at start.

pub mod build;
pub mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use attest::binding::Nonce;
use attest::evidence::Evidence;
use attest::snapshot::{ImaPolicy, Snapshot, SNAPSHOT_VERSION};
use serde::Serialize;

use crate::scan::{self, CancelToken, ScanConfig, ScanError, ScanProgress};
use build::PolicyError;
use store::{SkippedFile, StoreError, Stored};

/// Why a snapshot job failed; served as the `detail` of `GET /v1/snapshot`'s 500.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The attester could not produce evidence.
    #[error("collecting evidence: {0}")]
    Evidence(String),
    /// The evidence does not verify, or no policy can be derived from it.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The filesystem scan failed (a root missing, a relative exclude, ...).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The configured IMA log (read when the evidence has none) cannot be read or parsed.
    #[error("IMA log {path}: {detail}")]
    ImaLog {
        /// The configured `attestation.ima_log`.
        path: PathBuf,
        /// Why it cannot be read or parsed.
        detail: String,
    },
    /// A blocking task of the job panicked or was cancelled (a defect).
    #[error("a snapshot task ended abnormally: {0}")]
    Task(String),
    /// The finished snapshot cannot be written to the data dir.
    #[error("saving the snapshot: {0}")]
    Store(#[from] StoreError),
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Collecting and verifying evidence (TEE, TPM, IMA log, manifest).
    Policy,
    /// Listing files under the roots.
    Walking,
    /// Classifying and hashing files.
    Hashing,
    /// Writing the scan cache.
    SavingCache,
    /// Writing the snapshot to the data dir.
    Saving,
    /// Finished; the snapshot is ready.
    Done,
    /// Stopped by an error (see `error`).
    Failed,
    /// Stopped because the gateway is shutting down.
    Cancelled,
}

impl JobPhase {
    const ALL: [JobPhase; 8] = [
        JobPhase::Policy,
        JobPhase::Walking,
        JobPhase::Hashing,
        JobPhase::SavingCache,
        JobPhase::Saving,
        JobPhase::Done,
        JobPhase::Failed,
        JobPhase::Cancelled,
    ];

    fn from_u8(v: u8) -> JobPhase {
        JobPhase::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(JobPhase::Failed)
    }

    fn as_u8(self) -> u8 {
        // The position in ALL; ALL has 8 entries, so this never truncates.
        JobPhase::ALL
            .iter()
            .position(|p| *p == self)
            .and_then(|i| u8::try_from(i).ok())
            .unwrap_or(u8::MAX)
    }

    fn state(self) -> JobState {
        match self {
            JobPhase::Done => JobState::Done,
            JobPhase::Failed | JobPhase::Cancelled => JobState::Failed,
            _ => JobState::Running,
        }
    }
}

/// Whether a job still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Still working; the phase says on what.
    Running,
    /// Finished; the snapshot is ready.
    Done,
    /// Failed or cancelled; no new snapshot.
    Failed,
}

/// The progress JSON of `POST /v1/snapshot` and `GET /v1/snapshot` (while running).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobProgress {
    /// Whether the job still runs.
    pub state: JobState,
    /// The step it is at, or ended in.
    pub phase: JobPhase,
    /// RFC 3339 UTC time at which the job started.
    pub started_at: String,
    /// Milliseconds since the job started (frozen once it ends).
    pub elapsed_ms: u64,
    /// Measured entries of the IMA log (known once the policy phase is over).
    pub ima_entries: u64,
    /// Regular files found under the roots so far.
    pub files_seen: u64,
    /// Files examined (classified, hashed, answered by the cache or skipped).
    pub files_done: u64,
    /// Files whose digest was computed by this job.
    pub files_hashed: u64,
    /// Files answered by the scan cache without being read.
    pub files_from_cache: u64,
    /// Bytes hashed by this job.
    pub bytes_hashed: u64,
    /// Hash throughput since hashing began, bytes per second.
    pub rate_bytes_per_s: u64,
    /// Files that could not be read (listed by `GET /v1/snapshot/skipped` once done).
    pub skipped: u64,
    /// Entries of the finished snapshot's `filehashes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filehashes: Option<u64>,
    /// Why the job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One job's live state, shared between its task and the API.
#[derive(Debug)]
struct Job {
    started: Instant,
    started_at: String,
    phase: AtomicU8,
    /// Milliseconds after `started` at which the job ended (0: still running).
    ended_ms: AtomicU64,
    ima_entries: AtomicU64,
    filehashes: AtomicU64,
    scan: Arc<ScanProgress>,
    cancel: CancelToken,
    error: Mutex<Option<String>>,
}

impl Job {
    fn new() -> Job {
        Job {
            started: Instant::now(),
            started_at: rfc3339(SystemTime::now()),
            phase: AtomicU8::new(JobPhase::Policy.as_u8()),
            ended_ms: AtomicU64::new(0),
            ima_entries: AtomicU64::new(0),
            filehashes: AtomicU64::new(0),
            scan: Arc::new(ScanProgress::new()),
            cancel: CancelToken::new(),
            error: Mutex::new(None),
        }
    }

    fn phase(&self) -> JobPhase {
        JobPhase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn set_phase(&self, phase: JobPhase) {
        self.phase.store(phase.as_u8(), Ordering::Relaxed);
        if phase.state() != JobState::Running {
            let ms = u64::try_from(self.started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            self.ended_ms.store(ms, Ordering::Relaxed);
        }
    }

    fn progress(&self) -> JobProgress {
        let mut phase = self.phase();
        let scan = self.scan.report();
        // While the scan runs, its own phase is the finer answer.
        if matches!(
            phase,
            JobPhase::Walking | JobPhase::Hashing | JobPhase::SavingCache
        ) {
            phase = match scan.phase {
                scan::Phase::Hashing => JobPhase::Hashing,
                scan::Phase::SavingCache => JobPhase::SavingCache,
                _ => JobPhase::Walking,
            };
        }
        let ended = self.ended_ms.load(Ordering::Relaxed);
        let elapsed_ms = if ended == 0 {
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
        } else {
            ended
        };
        let filehashes = self.filehashes.load(Ordering::Relaxed);
        JobProgress {
            state: phase.state(),
            phase,
            started_at: self.started_at.clone(),
            elapsed_ms,
            ima_entries: self.ima_entries.load(Ordering::Relaxed),
            files_seen: scan.files_seen,
            files_done: scan.files_done,
            files_hashed: scan.files_hashed,
            files_from_cache: scan.files_from_cache,
            bytes_hashed: scan.bytes_hashed,
            rate_bytes_per_s: scan.bytes_per_sec,
            skipped: scan.skipped,
            filehashes: (phase == JobPhase::Done).then_some(filehashes),
            error: lock(&self.error).clone(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// RFC 3339 UTC with second precision, as `created_at` is written.
fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// What `GET /v1/snapshot` answers.
#[derive(Debug, Clone)]
pub enum Status {
    /// A job runs.
    Running(JobProgress),
    /// The last snapshot is ready.
    Ready(Arc<Stored>),
    /// The last job failed, but a good snapshot made before it is still here: that one
    /// is served (a failed job must not hide the last good reference), with the failed
    /// job's progress so the answer can say so.
    ReadyAfterFailure(Arc<Stored>, JobProgress),
    /// The last job failed and there is no good snapshot to fall back on.
    Failed(JobProgress),
    /// No snapshot was ever made (or it was lost with the data dir).
    None,
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another job runs; its progress is attached.
    #[error("a snapshot job started at {} is still running", .0.started_at)]
    AlreadyRunning(Box<JobProgress>),
}

#[derive(Debug, Default)]
struct State {
    /// The job running now or the last one since start.
    job: Option<Arc<Job>>,
    /// The last snapshot made (loaded from disk at start).
    ready: Option<Arc<Stored>>,
}

/// The snapshot jobs of one gateway: at most one running, the last result kept in
/// memory and on disk in `data_dir`.
#[derive(Debug)]
pub struct SnapshotService {
    data_dir: PathBuf,
    state: Mutex<State>,
}

/// What a job needs from the gateway's configuration.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// `[snapshot] roots`.
    pub roots: Vec<PathBuf>,
    /// `[snapshot] exclude`.
    pub exclude: Vec<PathBuf>,
    /// Hashing workers; 0 = one per core.
    pub workers: usize,
    /// `[attestation] ima_log`, read for `filehashes` when the evidence carries no log
    /// (no TPM: nothing vouches for the log, but it still lists what ran). A missing
    /// file means no log.
    pub ima_log: Option<PathBuf>,
}

impl SnapshotService {
    /// The service of `data_dir`, with the snapshot stored there (if any). A stored file
    /// that cannot be read is logged and ignored: the gateway must still route, and the
    /// next snapshot replaces the file.
    pub fn load(data_dir: &Path) -> SnapshotService {
        let ready = match store::load(data_dir) {
            Ok(Some(stored)) => {
                tracing::info!(
                    created_at = %stored.created_at,
                    files = stored.files,
                    "loaded the stored snapshot"
                );
                Some(Arc::new(stored))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("ignoring the stored snapshot, GET /v1/snapshot answers 404 until the next one: {e}");
                None
            }
        };
        SnapshotService {
            data_dir: data_dir.to_path_buf(),
            state: Mutex::new(State { job: None, ready }),
        }
    }

    /// Where the snapshot is stored.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What `GET /v1/snapshot` answers now.
    pub fn status(&self) -> Status {
        let state = lock(&self.state);
        if let Some(job) = &state.job {
            let p = job.progress();
            match (p.state, &state.ready) {
                (JobState::Running, _) => return Status::Running(p),
                (JobState::Failed, Some(good)) => {
                    return Status::ReadyAfterFailure(good.clone(), p)
                }
                (JobState::Failed, None) => return Status::Failed(p),
                (JobState::Done, _) => {}
            }
        }
        match &state.ready {
            Some(s) => Status::Ready(s.clone()),
            None => Status::None,
        }
    }

    /// The progress of the running job, or of the last one since start.
    pub fn last_progress(&self) -> Option<JobProgress> {
        lock(&self.state).job.as_ref().map(|j| j.progress())
    }

    /// The last finished snapshot.
    pub fn ready(&self) -> Option<Arc<Stored>> {
        lock(&self.state).ready.clone()
    }

    /// Starts a job on the current tokio runtime and returns its first progress at once.
    /// `collect` produces evidence for the nonce it is given (the attester); the job
    /// verifies it before using it. When `stop` completes (gateway shutdown) the job is
    /// cancelled at its next check and fails as `cancelled`.
    pub fn start<F, Fut, S>(
        self: &Arc<Self>,
        config: JobConfig,
        collect: F,
        stop: S,
    ) -> Result<JobProgress, StartError>
    where
        F: FnOnce(Nonce) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Evidence, String>> + Send + 'static,
        S: Future<Output = ()> + Send + 'static,
    {
        let job = {
            let mut state = lock(&self.state);
            if let Some(job) = &state.job {
                let p = job.progress();
                if p.state == JobState::Running {
                    return Err(StartError::AlreadyRunning(Box::new(p)));
                }
            }
            let job = Arc::new(Job::new());
            state.job = Some(job.clone());
            job
        };
        let progress = job.progress();
        let service = self.clone();
        tokio::spawn(async move {
            // The job runs in its own task so that a panic in it (a bug) ends as a
            // failed job instead of a job reported as running forever.
            let worker = tokio::spawn({
                let (service, job) = (service.clone(), job.clone());
                async move {
                    let run = service.run(&job, config, collect);
                    tokio::pin!(run);
                    tokio::select! {
                        r = &mut run => r,
                        () = stop => {
                            job.cancel.cancel();
                            run.await
                        }
                    }
                }
            });
            let result = worker
                .await
                .unwrap_or_else(|e| Err(JobError::Task(e.to_string())));
            // Everything the job held but its result is freed by now; hand the pages back
            // so that verigated's RSS returns to its steady state (see `scan::heap`).
            let _ = tokio::task::spawn_blocking(scan::heap::release_free_memory).await;
            let mut state = lock(&service.state);
            match result {
                Ok(stored) => {
                    tracing::info!(
                        created_at = %stored.created_at,
                        files = stored.files,
                        skipped = stored.skipped.skipped.len(),
                        "snapshot ready"
                    );
                    state.ready = Some(stored);
                    job.set_phase(JobPhase::Done);
                }
                Err(e) => {
                    tracing::error!("snapshot failed: {e}");
                    *lock(&job.error) = Some(e.to_string());
                    job.set_phase(if job.cancel.is_cancelled() {
                        JobPhase::Cancelled
                    } else {
                        JobPhase::Failed
                    });
                }
            }
        });
        Ok(progress)
    }

    async fn run<F, Fut>(
        &self,
        job: &Arc<Job>,
        config: JobConfig,
        collect: F,
    ) -> Result<Arc<Stored>, JobError>
    where
        F: FnOnce(Nonce) -> Fut,
        Fut: Future<Output = Result<Evidence, String>>,
    {
        let nonce = Nonce::random();
        let evidence = collect(nonce).await.map_err(JobError::Evidence)?;
        let mut policy = build::policy_from_evidence(&evidence, &nonce, SystemTime::now())?;
        // The snapshot pins IMA only when the evidence carries a quoted log: verification
        // then requires one. Without a TPM the log file still feeds `filehashes`.
        let ima_quoted = policy.has_ima_log;
        if !policy.has_ima_log {
            if let Some(path) = config.ima_log.clone() {
                policy.ima_entries = tokio::task::spawn_blocking(move || read_ima_log(&path))
                    .await
                    .map_err(|e| JobError::Task(e.to_string()))??;
            }
        }
        let log_files = build::log_files(&policy.ima_entries);
        let algorithm = build::log_algorithm(&policy.ima_entries);
        job.ima_entries.store(
            u64::try_from(log_files.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );

        job.set_phase(JobPhase::Walking);
        remove_legacy_cache(&self.data_dir);
        let scan_config = ScanConfig {
            roots: config.roots,
            exclude: config.exclude,
            algorithm,
            cache_file: Some(ScanConfig::cache_file_in(&self.data_dir)),
            workers: config.workers,
        };
        let (progress, cancel) = (job.scan.clone(), job.cancel.clone());
        // On threads of its own at idle priority, never the shared blocking pool.
        let scanned = scan::scan_idle(scan_config, progress, cancel).await?;

        job.set_phase(JobPhase::Saving);
        let skipped = scanned
            .skipped
            .into_iter()
            .map(|s| SkippedFile {
                reason: s.reason.to_string(),
                path: s.path,
            })
            .collect();
        let snapshot = Snapshot {
            version: SNAPSHOT_VERSION,
            created_at: rfc3339(SystemTime::now()),
            tee_policy: policy.tee_policy,
            tpm_policy: policy.tpm_policy,
            ima: ima_quoted.then_some(ImaPolicy {
                pcr: build::IMA_PCR,
                hash_algorithm: algorithm,
            }),
            manifest: policy.manifest,
            filehashes: build::merge_files(log_files, scanned.files),
        };
        job.filehashes.store(
            u64::try_from(snapshot.filehashes.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let stored = Stored::new(snapshot, skipped);
            store::save(&data_dir, &stored).map(|()| Arc::new(stored))
        })
        .await
        .map_err(|e| JobError::Task(e.to_string()))?
        .map_err(JobError::from)
    }
}

/// Removes the scan cache of the format before version 2 (`scan-cache.jsonl`, a line per
/// file seen, tens of MB on a real root) which no scan reads any more; the new cache
/// lives next to it under [`scan::CACHE_FILE_NAME`].
fn remove_legacy_cache(data_dir: &Path) {
    let legacy = data_dir.join(scan::LEGACY_CACHE_FILE_NAME);
    match std::fs::remove_file(&legacy) {
        Ok(()) => {
            tracing::info!(path = %legacy.display(), "removed the scan cache of the old format");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %legacy.display(), "cannot remove the scan cache of the old format: {e}");
        }
    }
}

/// The entries of the binary IMA log at `path`; none when the file does not exist.
fn read_ima_log(path: &Path) -> Result<Vec<attest::ima::ImaEntry>, JobError> {
    let fail = |detail: String| JobError::ImaLog {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(e.to_string())),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let template_alg = attest::ima::template_hash_alg_for_file_name(&name);
    attest::ima::binary::parse(&bytes, template_alg).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    fn job_config(root: &Path) -> JobConfig {
        JobConfig {
            roots: vec![root.to_path_buf()],
            exclude: Vec::new(),
            workers: 1,
            ima_log: None,
        }
    }

    /// Polls until the job is no longer running (never a timing assertion: the bound
    /// only turns a hang into a failure).
    async fn settled(service: &SnapshotService) -> Status {
        for _ in 0..6000 {
            match service.status() {
                Status::Running(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
        panic!("the job never ended");
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir");
        let script = root.join("run");
        std::fs::write(&script, "#!/bin/sh\n").expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    #[tokio::test]
    async fn one_job_at_a_time_then_the_result_is_stored() {
        let dir = tree();
        let service = Arc::new(SnapshotService::load(dir.path()));
        assert!(matches!(service.status(), Status::None));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let collect = move |nonce| async move {
            // Holds the job in its policy phase until the test lets it go.
            let _ = rx.await;
            Ok(build::test_evidence(nonce, None).0)
        };
        let first = service
            .start(
                job_config(&dir.path().join("root")),
                collect,
                std::future::pending(),
            )
            .expect("start");
        assert_eq!(
            (first.state, first.phase),
            (JobState::Running, JobPhase::Policy)
        );
        let refused = service
            .start(
                job_config(dir.path()),
                |_| async { Err("must not run".to_string()) },
                std::future::pending(),
            )
            .unwrap_err();
        let StartError::AlreadyRunning(running) = refused;
        assert_eq!(running.started_at, first.started_at);
        assert!(matches!(service.status(), Status::Running(_)));
        tx.send(()).expect("release");
        let Status::Ready(stored) = settled(&service).await else {
            panic!("expected a ready snapshot");
        };
        let script = dir.path().join("root/run").display().to_string();
        let served = attest::snapshot::Snapshot::from_json(&stored.json).expect("the served JSON");
        assert_eq!(stored.files, 1);
        assert_eq!(served.filehashes.len(), 1);
        assert_eq!(served.filehashes[0].0, script);
        // On disk, and loaded by a new service (a restart).
        let again = SnapshotService::load(dir.path());
        let Status::Ready(loaded) = again.status() else {
            panic!("the stored snapshot was not loaded");
        };
        assert_eq!(loaded.json, stored.json);
        let done = service.last_progress().expect("progress");
        assert_eq!((done.state, done.filehashes), (JobState::Done, Some(1)));
    }

    #[tokio::test]
    async fn a_job_removes_the_cache_of_the_old_format() {
        let dir = tree();
        let legacy = dir.path().join(scan::LEGACY_CACHE_FILE_NAME);
        std::fs::write(
            &legacy,
            "{\"format\":\"verigate-scan-cache\",\"version\":1}\n",
        )
        .expect("old cache");
        let service = Arc::new(SnapshotService::load(dir.path()));
        service
            .start(
                job_config(&dir.path().join("root")),
                |nonce| async move { Ok(build::test_evidence(nonce, None).0) },
                std::future::pending(),
            )
            .expect("start");
        assert!(matches!(settled(&service).await, Status::Ready(_)));
        assert!(!legacy.exists(), "the old-format cache is still there");
    }

    #[tokio::test]
    async fn an_attester_error_fails_the_job_and_keeps_no_file() {
        let dir = tree();
        let service = Arc::new(SnapshotService::load(dir.path()));
        service
            .start(
                job_config(&dir.path().join("root")),
                |_| async { Err("TPM: connection refused".to_string()) },
                std::future::pending(),
            )
            .expect("start");
        let Status::Failed(p) = settled(&service).await else {
            panic!("expected a failure");
        };
        assert_eq!((p.state, p.phase), (JobState::Failed, JobPhase::Failed));
        assert_eq!(
            p.error.as_deref(),
            Some("collecting evidence: TPM: connection refused")
        );
        assert!(!dir.path().join(store::SNAPSHOT_FILE).exists());
    }

    #[tokio::test]
    async fn a_failed_job_leaves_the_last_good_snapshot_served() {
        let dir = tree();
        let service = Arc::new(SnapshotService::load(dir.path()));
        let good = |nonce| async move { Ok(build::test_evidence(nonce, None).0) };
        service
            .start(
                job_config(&dir.path().join("root")),
                good,
                std::future::pending(),
            )
            .expect("start");
        let Status::Ready(first) = settled(&service).await else {
            panic!("expected a ready snapshot");
        };
        let on_disk = std::fs::read(dir.path().join(store::SNAPSHOT_FILE)).expect("stored");
        service
            .start(
                job_config(&dir.path().join("root")),
                |_| async { Err("the TPM is gone".to_string()) },
                std::future::pending(),
            )
            .expect("start");
        let Status::ReadyAfterFailure(served, failed) = settled(&service).await else {
            panic!("the good snapshot is no longer served");
        };
        assert_eq!(served.json, first.json);
        assert_eq!(failed.state, JobState::Failed);
        assert!(failed.error.is_some(), "{failed:?}");
        // The failure wrote nothing: the good snapshot is still the one on disk.
        assert_eq!(
            std::fs::read(dir.path().join(store::SNAPSHOT_FILE)).expect("stored"),
            on_disk
        );
        // A restart serves it too, with no failure to report.
        assert!(matches!(
            SnapshotService::load(dir.path()).status(),
            Status::Ready(_)
        ));
    }

    #[tokio::test]
    async fn evidence_for_another_nonce_fails_the_job() {
        let dir = tree();
        let service = Arc::new(SnapshotService::load(dir.path()));
        // A replayed answer: evidence for a nonce the job did not choose.
        let collect = |_| async { Ok(build::test_evidence(Nonce::random(), None).0) };
        service
            .start(
                job_config(&dir.path().join("root")),
                collect,
                std::future::pending(),
            )
            .expect("start");
        let Status::Failed(p) = settled(&service).await else {
            panic!("expected a failure");
        };
        assert!(
            p.error
                .as_deref()
                .is_some_and(|e| e.starts_with("evidence nonce: expected")),
            "{p:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_failed_job() {
        let dir = tree();
        let service = Arc::new(SnapshotService::load(dir.path()));
        let collect = |_| async { panic!("attester bug") };
        service
            .start(job_config(dir.path()), collect, std::future::pending())
            .expect("start");
        let Status::Failed(p) = settled(&service).await else {
            panic!("expected a failure");
        };
        assert!(
            p.error
                .as_deref()
                .is_some_and(|e| e.contains("ended abnormally")),
            "{p:?}"
        );
        // And a new job may start.
        assert!(service
            .start(
                job_config(dir.path()),
                |_| async { Err("x".to_string()) },
                std::future::pending()
            )
            .is_ok());
    }

    #[tokio::test]
    async fn shutdown_cancels_the_job() {
        let dir = tree();
        let big = dir.path().join("root/big");
        let f = std::fs::File::create(&big).expect("big");
        f.set_len(1 << 30).expect("sparse");
        std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let service = Arc::new(SnapshotService::load(dir.path()));
        let collect = |nonce| async move { Ok(build::test_evidence(nonce, None).0) };
        // Shutdown is already under way when the job starts.
        service
            .start(
                job_config(&dir.path().join("root")),
                collect,
                std::future::ready(()),
            )
            .expect("start");
        let Status::Failed(p) = settled(&service).await else {
            panic!("expected a cancelled job");
        };
        assert_eq!(p.phase, JobPhase::Cancelled);
        assert_eq!(p.error.as_deref(), Some("scan cancelled"));
        assert!(!dir.path().join(store::SNAPSHOT_FILE).exists());
    }

    #[tokio::test]
    async fn a_corrupt_stored_snapshot_is_ignored_and_replaced() {
        let dir = tree();
        std::fs::write(dir.path().join(store::SNAPSHOT_FILE), b"\x00not json").expect("write");
        let service = Arc::new(SnapshotService::load(dir.path()));
        assert!(matches!(service.status(), Status::None));
        let collect = |nonce| async move { Ok(build::test_evidence(nonce, None).0) };
        service
            .start(
                job_config(&dir.path().join("root")),
                collect,
                std::future::pending(),
            )
            .expect("start");
        assert!(matches!(settled(&service).await, Status::Ready(_)));
        let reloaded = SnapshotService::load(dir.path());
        assert!(matches!(reloaded.status(), Status::Ready(_)));
    }

    #[test]
    fn phases_round_trip_through_their_byte() {
        for p in JobPhase::ALL {
            assert_eq!(JobPhase::from_u8(p.as_u8()), p);
        }
        assert_eq!(JobPhase::from_u8(200), JobPhase::Failed);
    }

    #[test]
    fn created_at_is_rfc3339_utc_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_795_824_000, 123);
        assert_eq!(rfc3339(t), "2026-11-28T00:00:00Z");
    }
}
