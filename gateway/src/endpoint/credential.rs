//! The one credential check of the own endpoint's costly or revealing calls: app
//! control, `POST /v1/snapshot` (a scan of the whole disk), `GET /v1/snapshot/skipped`
//! (file paths) and `GET /metrics` (routes and traffic). Each takes the same credential
//! as app control, from the configuration active when the request arrives: a bearer
//! token listed in `[api] admin_token_sha256` or a client certificate issued by
//! `[api] client_ca` (see [`crate::app::auth`]). With neither configured, each is
//! refused (403), never open.

use hyper::header::HeaderValue;
use hyper::{HeaderMap, Response, StatusCode};

use super::app::ClientChain;
use super::response::{json_error, Body};
use crate::app::auth::credentials_from;
use crate::app::{authorize, ApiAuthConfig, AuthError, Principal};
use crate::config::Config;

/// Lets in a request whose `headers` and verified client chain (`chain`) carry the
/// credential of `config`; otherwise why not (answer it with [`refused`]), logged with
/// `what` (the call, e.g. `"snapshot start"`) and never naming the token.
pub fn require(
    headers: &HeaderMap,
    chain: Option<&ClientChain>,
    config: &Config,
    what: &'static str,
) -> Result<Principal, AuthError> {
    let auth = ApiAuthConfig::from_api(&config.api, config.control.client_ca.clone())?;
    let creds = credentials_from(headers, chain.map(|c| c.0.as_slice()));
    authorize(&creds, &auth).inspect_err(|e| {
        tracing::warn!(
            target: "verigated::api",
            call = what,
            outcome = "refused",
            status = e.http_status(),
            reason = %e,
            "credential refused"
        );
    })
}

/// The JSON answer to a refused credential: 401 (with `WWW-Authenticate: Bearer`) when
/// it is missing or wrong, 403 when none is configured, 500 when the configured one is
/// unusable.
pub fn refused(e: &AuthError) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = match e.http_status() {
        403 => "no credential is configured",
        401 => "unauthorized",
        _ => "the credential configuration is unusable",
    };
    let mut r = json_error(status, error, &e.to_string());
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    }
    r
}
