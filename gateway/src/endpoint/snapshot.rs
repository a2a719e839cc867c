//! `POST /v1/snapshot`, `GET /v1/snapshot` and their companions: the HTTP face of
//! [`crate::snapshot::SnapshotService`].
//!
//! - `POST /v1/snapshot`: starts a job and answers 202 with its progress at once. While
//!   a job runs, another POST is refused with 409 (`"error": "snapshot already
//!   running"`), whose body also carries the running job's `progress`: a second client
//!   polls the same job instead of starting a scan of the whole disk again.
//! - `GET /v1/snapshot`: 202 + progress while a job runs; 200 + the Snapshot JSON when
//!   the last job succeeded (or, after a restart, the stored one); 500 `"snapshot
//!   failed"` with the reason when the last job failed; 404 when there never was one.
//! - `GET /v1/snapshot/progress`: the progress of the running or last job since start
//!   (200; its `state` says running, done or failed), e.g. to read `files_from_cache`
//!   once the snapshot is ready; 404 when no job ran since start.
//! - `GET /v1/snapshot/skipped`: `{"created_at", "skipped": [{"path", "reason"}]}` for
//!   the ready snapshot, the files the scan could not read (the Snapshot format has no
//!   field for them); 404 when there is no snapshot.
//!
//! Every error body is `{"error": ..., "detail": ...}`.

use hyper::{Method, Response, StatusCode};

use super::response::{json, json_error, json_value, not_allowed, Body};
use super::services::Services;
use crate::snapshot::{JobConfig, SnapshotService, StartError, Status};

/// The paths this module answers (others under `/v1/snapshot/` get a JSON 404).
pub const PATHS: [&str; 3] = [
    "/v1/snapshot",
    "/v1/snapshot/progress",
    "/v1/snapshot/skipped",
];

/// Whether [`handle`] answers `path`: `/v1/snapshot` and everything under it.
pub fn is_snapshot_path(path: &str) -> bool {
    path == "/v1/snapshot" || path.starts_with("/v1/snapshot/")
}

/// Answers `method path` for a path where [`is_snapshot_path`] holds.
pub fn handle(method: &Method, path: &str, services: &Services) -> Response<Body> {
    match (method, path) {
        (&Method::POST, "/v1/snapshot") => start(services),
        (&Method::GET, "/v1/snapshot") => status(&services.snapshots),
        (&Method::GET, "/v1/snapshot/progress") => match services.snapshots.last_progress() {
            Some(p) => json_value(StatusCode::OK, &p),
            None => json_error(
                StatusCode::NOT_FOUND,
                "no snapshot job",
                "no snapshot job ran since verigated started; POST /v1/snapshot starts one",
            ),
        },
        (&Method::GET, "/v1/snapshot/skipped") => match services.snapshots.ready() {
            Some(stored) => json_value(StatusCode::OK, &stored.skipped),
            None => no_snapshot(),
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
    let collect =
        move |nonce| async move { attester.attest(nonce).await.map_err(|e| e.to_string()) };
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
