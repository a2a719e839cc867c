//! The HTTP API of verigated's own endpoint, behind TLS: one function from request to
//! response, the same for HTTP/1.1 and HTTP/2. `GET /healthz` says the process serves
//! (and warns when `tee = "auto"` found no TEE); `GET /metrics` is the Prometheus text
//! of [`crate::metrics`], behind the app-control credential ([`super::credential`]): it
//! names every route and its traffic. Later endpoints (attestation, snapshot, app
//! control) are added to [`handle`]'s table.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::response::{json_error, text, with_allow, Body};
use super::services::Services;

/// Answers one request.
pub async fn handle(
    req: Request<Incoming>,
    services: Arc<Services>,
) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => match services.attester.tee_warning() {
            // Still 200: the process serves; the body tells the operator what is wrong.
            Some(warning) => text(StatusCode::OK, format!("ok\nwarning: {warning}\n")),
            None => text(StatusCode::OK, "ok\n"),
        },
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let config = services.active.current().config.clone();
            if let Err(refused) = super::credential::require(
                req.headers(),
                req.extensions().get(),
                &config,
                "metrics",
            ) {
                return Ok(super::credential::refused(&refused));
            }
            let mut r = text(
                StatusCode::OK,
                services.metrics.render()
                    + &services.attester.render_metrics()
                    + &services.acme.metrics.render(),
            );
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/v1/attestation") => {
            super::attestation::attestation(req.uri().query(), &services.attester).await
        }
        (&Method::GET, "/v1/manifest") => super::attestation::manifest(&services.manifest),
        (_, "/v1/attestation" | "/v1/manifest") => with_allow(
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
                "use GET",
            ),
            "GET",
        ),
        (_, path) if super::app::is_app_path(path) => {
            let config = services.active.current().config.clone();
            super::app::handle(req, &config, services.app.as_ref()).await
        }
        (method, path) if super::snapshot::is_snapshot_path(path) => {
            super::snapshot::handle(method, path, &req, &services)
        }
        (_, "/healthz" | "/metrics") => with_allow(
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET\n",
            ),
            "GET, HEAD",
        ),
        (_, path) => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")),
    };
    Ok(response)
}
