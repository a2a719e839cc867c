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

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};

use super::api::Body;
use crate::server::Server;
use crate::snapshot::{JobConfig, StartError, Status};

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
pub fn handle(method: &Method, path: &str, server: &Arc<Server>) -> Response<Body> {
    match (method, path) {
        (&Method::POST, "/v1/snapshot") => start(server),
        (&Method::GET, "/v1/snapshot") => status(server),
        (&Method::GET, "/v1/snapshot/progress") => match server.snapshots.last_progress() {
            Some(p) => json_value(StatusCode::OK, &p),
            None => json_error(
                StatusCode::NOT_FOUND,
                "no snapshot job",
                "no snapshot job ran since verigated started; POST /v1/snapshot starts one",
            ),
        },
        (&Method::GET, "/v1/snapshot/skipped") => match server.snapshots.ready() {
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

fn start(server: &Arc<Server>) -> Response<Body> {
    let snapshot = &server.current().config.snapshot;
    let config = JobConfig {
        roots: snapshot.roots.clone(),
        exclude: snapshot.exclude.clone(),
        workers: snapshot.workers,
        ima_log: Some(server.current().config.attestation.ima_log.clone()),
    };
    let attester = server.attester.clone();
    let collect =
        move |nonce| async move { attester.attest(nonce).await.map_err(|e| e.to_string()) };
    // A shutdown must not wait for a scan of the whole disk: it stops the job.
    let mut shutdown = server.shutdown_signal();
    let stop = async move { super::stopping(&mut shutdown).await };
    match server.snapshots.start(config, collect, stop) {
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

fn status(server: &Arc<Server>) -> Response<Body> {
    match server.snapshots.status() {
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

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        &format!("use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// `{"error": error, "detail": detail}` with `status`.
pub fn json_error(status: StatusCode, error: &str, detail: &str) -> Response<Body> {
    json_value(
        status,
        &serde_json::json!({ "error": error, "detail": detail }),
    )
}

fn json_value(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        // Plain data always serializes; answer something sensible if it ever does not.
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"internal","detail":"response did not serialize"}"#.to_vec(),
        ),
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
