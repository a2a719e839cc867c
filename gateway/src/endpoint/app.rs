//! The app-control endpoints of the own endpoint: `POST /v1/app/init` (body: the new
//! `app.conf`), `POST /v1/app/restart` and `GET /v1/app/status`. This module is only the
//! HTTP side: it collects the request's credentials (the `Authorization` header and the
//! client certificate that rustls verified), reads the body under the size limit, and
//! hands the action to the controller ([`crate::app::control::AppControl`]), which
//! authorizes, acts and logs. The credentials (`admin_token_sha256`, `client_ca`) are
//! those of the configuration active when the request arrives, so they follow reloads.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, Response, StatusCode};
use rustls::pki_types::CertificateDer;

use super::credential::refused;
use super::response::{json, json_error, not_allowed, Body};
use crate::app::control::AppControl;
use crate::app::{auth::credentials_from, authorize, ApiAuthConfig, ControlError, ServiceStatus};
use crate::config::Config;

/// The path prefix of app control.
pub const PREFIX: &str = "/v1/app/";

/// The client certificate chain that rustls verified against `[api] client_ca` (leaf
/// first), put by the endpoint into the extensions of every request of the connection.
#[derive(Debug, Clone)]
pub struct ClientChain(pub Arc<Vec<CertificateDer<'static>>>);

/// Whether `path` is app control's.
pub fn is_app_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/v1/app"
}

/// Answers one app-control request, with the credentials of `config` (the active one)
/// and the controller `app` (`None` without `[app]`).
pub async fn handle(
    req: Request<Incoming>,
    config: &Config,
    app: Option<&AppControl>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let action = match (&method, path.as_str()) {
        (&Method::POST, "/v1/app/init") => Action::Init,
        (&Method::POST, "/v1/app/restart") => Action::Restart,
        (&Method::GET, "/v1/app/status") => Action::Status,
        (_, "/v1/app/init" | "/v1/app/restart") => return not_allowed("POST"),
        (_, "/v1/app/status") => return not_allowed("GET"),
        _ => {
            return json_error(
                StatusCode::NOT_FOUND,
                "no such endpoint",
                &format!(
                    "{path}: app control has /v1/app/init, /v1/app/restart and /v1/app/status"
                ),
            )
        }
    };
    tracing::info!(target: "verigated::app", method = %method, path, "app control request");

    let auth = match ApiAuthConfig::from_api(&config.api, config.control.client_ca.clone()) {
        Ok(auth) => auth,
        Err(e) => return refused(&e),
    };
    let (parts, mut body) = req.into_parts();
    let chain = parts.extensions.get::<ClientChain>();
    let creds = credentials_from(&parts.headers, chain.map(|c| c.0.as_slice()));

    // Decide before reading a body: a caller without a credential makes us buffer nothing.
    if let Err(e) = authorize(&creds, &auth) {
        tracing::warn!(
            target: "verigated::app",
            action = action.name(),
            outcome = "refused",
            status = e.http_status(),
            reason = %e,
            "app control"
        );
        // Discarded (bounded), never kept: a client still sending its body would
        // otherwise see a reset instead of the answer.
        drain(&mut body).await;
        return refused(&e);
    }
    let Some(control) = app else {
        drain(&mut body).await;
        return json_error(
            StatusCode::CONFLICT,
            "no [app] configured",
            "verigated.toml has no [app] section: add one (service_type, service_name, app_storage) and restart verigated",
        );
    };
    let controller = control.controller();
    let result = match action {
        Action::Init => {
            let limit = control.max_config_bytes();
            let bytes = match read_limited(&parts.headers, body, limit).await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            controller.init_as(&creds, &auth, &bytes).await
        }
        Action::Restart => controller.restart_as(&creds, &auth).await,
        Action::Status => controller.status_as(&creds, &auth).await,
    };
    respond(result)
}

#[derive(Clone, Copy)]
enum Action {
    Init,
    Restart,
    Status,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Init => "init",
            Action::Restart => "restart",
            Action::Status => "status",
        }
    }
}

/// After refusing a body as too large, at most this much more of it is read and
/// discarded, so that the client (still sending) sees the 413 instead of a reset; a
/// larger body gets the 413 and a closed connection.
const DRAIN_BYTES: usize = 1 << 20;

/// How long the drain may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the body, keeping at most `limit` bytes: one that announces or sends more is
/// refused (413), and what follows is discarded, never buffered.
async fn read_limited(
    headers: &hyper::HeaderMap,
    mut body: Incoming,
    limit: usize,
) -> Result<Vec<u8>, Response<Body>> {
    let too_large = |got: String| {
        tracing::warn!(target: "verigated::app", action = "init", outcome = "refused", status = 413, got, limit, "app control");
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "configuration too large",
            &format!("the configuration is {got} bytes, more than the limit of {limit} (`[api] max_config_bytes`)"),
        )
    };
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        let announced = length
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        match announced {
            Some(n) if usize::try_from(n).map_or(true, |n| n > limit) => {
                drain(&mut body).await;
                return Err(too_large(n.to_string()));
            }
            Some(_) => {}
            None => {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "bad Content-Length",
                    "the Content-Length header is not a number",
                ))
            }
        }
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            json_error(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
                &e.to_string(),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.len() > limit.saturating_sub(bytes.len()) {
            drain(&mut body).await;
            return Err(too_large(format!("more than {limit}")));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Reads and discards up to [`DRAIN_BYTES`] of what is left of `body`, for at most
/// [`DRAIN_TIME`].
async fn drain(body: &mut Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
            }
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

fn respond(result: Result<ServiceStatus, ControlError>) -> Response<Body> {
    match result {
        Ok(status) => json(
            StatusCode::OK,
            serde_json::to_vec(&status).unwrap_or_default(),
        ),
        Err(ControlError::Refused(e)) => refused(&e),
        Err(e @ ControlError::Failed(_)) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_error(status, "app control failed", &e.to_string())
        }
    }
}
