//! `POST /v1/snapshot`, `GET /v1/snapshot` and their companions: the HTTP face of
//! [`crate::snapshot::SnapshotService`].
//!
//! - `POST /v1/snapshot`: takes the app-control credential ([`super::credential`]): a
//!   job hashes every file under the roots on every core, so nobody else may start one.
//!   Without it: 401/403 and nothing happens (no job, nothing written). With it: starts
//!   a job and answers 202 with its progress at once. While
//!   a job runs, another POST is refused with 409 (`"error": "snapshot already
//!   running"`), whose body also carries the running job's `progress`: a second client
//!   polls the same job instead of starting a scan of the whole disk again.
//! - `GET /v1/snapshot`: 202 + progress while a job runs; 200 + the Snapshot JSON of the
//!   last good snapshot (made by the last job, or stored before a restart). When the
//!   last job failed, a good snapshot is still served with 200 and the header
//!   [`LAST_JOB_HEADER`]`: failed`; a failed job with no good snapshot before it is a
//!   500 `"snapshot failed"` saying what failed; 404 when there never was one.
//! - `GET /v1/snapshot/progress`: the progress of the running or last job since start
//!   (200; its `state` says running, done or failed), e.g. to read `files_from_cache`
//!   once the snapshot is ready; 404 when no job ran since start.
//! - `GET /v1/snapshot/skipped`: `{"created_at", "skipped": [{"path", "reason"}]}` for
//!   the ready snapshot, the files the scan could not read (the Snapshot format has no
//!   field for them); 404 when there is no snapshot. It names files of the VM, so it
//!   takes the credential too.
//!
//! Every error body is `{"error": ..., "detail": ...}`.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use super::credential;
use super::response::{json, json_error, json_value, not_allowed, Body};
use super::services::Services;
use crate::snapshot::{JobConfig, SnapshotService, StartError, Status};

/// The paths this module answers (others under `/v1/snapshot/` get a JSON 404).
pub const PATHS: [&str; 3] = [
    "/v1/snapshot",
    "/v1/snapshot/progress",
    "/v1/snapshot/skipped",
];

/// The header of a 200 from `GET /v1/snapshot` that says how the last job ended when it
/// failed after the served snapshot was made (`failed`); absent otherwise.
pub const LAST_JOB_HEADER: &str = "verigate-last-job";

/// Whether [`handle`] answers `path`: `/v1/snapshot` and everything under it.
pub fn is_snapshot_path(path: &str) -> bool {
    path == "/v1/snapshot" || path.starts_with("/v1/snapshot/")
}

/// Answers `method path` of `req` for a path where [`is_snapshot_path`] holds.
pub fn handle(
    method: &Method,
    path: &str,
    req: &Request<Incoming>,
    services: &Services,
) -> Response<Body> {
    let authorized = |what| {
        let config = services.active.current().config.clone();
        credential::require(req.headers(), req.extensions().get(), &config, what)
    };
    match (method, path) {
        (&Method::POST, "/v1/snapshot") => match authorized("snapshot start") {
            Ok(_) => start(services),
            Err(e) => credential::refused(&e),
        },
        (&Method::GET, "/v1/snapshot") => status(&services.snapshots),
        (&Method::GET, "/v1/snapshot/progress") => match services.snapshots.last_progress() {
            Some(p) => json_value(StatusCode::OK, &p),
            None => json_error(
                StatusCode::NOT_FOUND,
                "no snapshot job",
                "no snapshot job ran since verigated started; POST /v1/snapshot starts one",
            ),
        },
        (&Method::GET, "/v1/snapshot/skipped") => match authorized("snapshot skipped") {
            Err(e) => credential::refused(&e),
            Ok(_) => match services.snapshots.ready() {
                Some(stored) => json_value(StatusCode::OK, &stored.skipped),
                None => no_snapshot(),
            },
        },
        (_, "/v1/snapshot") => not_allowed("GET, POST"),
        (_, p) if PATHS.contains(&p) => not_allowed("GET"),
        (_, p) => json_error(
            StatusCode::NOT_FOUND,
            "no such endpoint",
            &format!("{p}: the snapshot API has {}", PATHS.join(", ")),
        ),
    }
}

fn start(services: &Services) -> Response<Body> {
    let config = services.active.current().config.clone();
    let job = JobConfig {
        roots: config.snapshot.roots.clone(),
        exclude: config.snapshot.exclude.clone(),
        workers: config.snapshot.workers,
        ima_log: Some(config.attestation.ima_log.clone()),
    };
    let attester = services.attester.clone();
    // The job's error is public (`GET /v1/snapshot/progress`): it says which part
    // failed, as a 503 of /v1/attestation does; the attester's own words go to the log.
    let collect = move |nonce| async move {
        attester.attest(nonce).await.map_err(|e| {
            tracing::error!("snapshot evidence: {e}");
            super::attestation::public_detail(&e).to_string()
        })
    };
    // A shutdown must not wait for a scan of the whole disk: it stops the job.
    let mut shutdown = services.shutdown.clone();
    let stop = async move { crate::shutdown::stopping(&mut shutdown).await };
    match services.snapshots.start(job, collect, stop) {
        Ok(progress) => json_value(StatusCode::ACCEPTED, &progress),
        Err(e @ StartError::AlreadyRunning(_)) => {
            let StartError::AlreadyRunning(progress) = &e;
            json_value(
                StatusCode::CONFLICT,
                &serde_json::json!({
                    "error": "snapshot already running",
                    "detail": format!("{e}; poll GET /v1/snapshot for its result"),
                    "progress": progress,
                }),
            )
        }
    }
}

fn status(snapshots: &SnapshotService) -> Response<Body> {
    match snapshots.status() {
        Status::Running(p) => json_value(StatusCode::ACCEPTED, &p),
        Status::Ready(stored) => json(StatusCode::OK, stored.json.clone()),
        // The failure is newer, but the snapshot before it is still good: serve it, and
        // say that the last job failed (its progress says what failed).
        Status::ReadyAfterFailure(stored, _) => {
            let mut r = json(StatusCode::OK, stored.json.clone());
            r.headers_mut()
                .insert(LAST_JOB_HEADER, HeaderValue::from_static("failed"));
            r
        }
        Status::Failed(p) => json_value(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({
                "error": "snapshot failed",
                "detail": p.error.as_deref().unwrap_or("the job stopped"),
                "progress": p,
            }),
        ),
        Status::None => no_snapshot(),
    }
}

fn no_snapshot() -> Response<Body> {
    json_error(
        StatusCode::NOT_FOUND,
        "no snapshot",
        "no snapshot was made on this VM; POST /v1/snapshot starts one",
    )
}
