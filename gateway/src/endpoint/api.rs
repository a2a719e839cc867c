//! The HTTP API of verigated's own endpoint, behind TLS: one function from request to
//! response, the same for HTTP/1.1 and HTTP/2. `GET /healthz` says the process serves;
//! `GET /metrics` is the Prometheus text of [`crate::metrics`]. Later endpoints
//! (attestation, snapshot, app control) are added to [`handle`]'s table.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::server::Server;

/// The response body type of the API.
pub type Body = Full<Bytes>;

/// Answers one request.
pub async fn handle(
    req: Request<Incoming>,
    server: Arc<Server>,
) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut r = text(
                StatusCode::OK,
                server.metrics.render() + &server.attester.render_metrics(),
            );
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/v1/attestation") => {
            super::attestation::attestation(req.uri().query(), &server).await
        }
        (&Method::GET, "/v1/manifest") => super::attestation::manifest(&server),
        (_, "/v1/attestation" | "/v1/manifest") => {
            let mut r = super::attestation::json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "use GET",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            r
        }
        (_, path) if super::app::is_app_path(path) => super::app::handle(req, &server).await,
        (method, path) if super::snapshot::is_snapshot_path(path) => {
            super::snapshot::handle(method, path, &server)
        }
        (_, "/healthz" | "/metrics") => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET\n",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        (_, path) => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")),
    };
    Ok(response)
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
