//! App control: verigated runs the hosted application's life cycle so that the people who
//! operate it need no SSH into the VM. An authenticated caller ([`auth`]) may replace the
//! application's configuration (`<app_storage>/app.conf`, written atomically by
//! [`conf_write`]), restart the application and read its status, through one of three
//! service managers behind [`ServiceManager`]: supervisord ([`supervisor`]), systemd
//! ([`systemd`]) or verigated itself ([`standalone`]).
//!
//! [`AppController`] ties these together and logs every control action (action, principal,
//! outcome); it never logs the configuration bytes or a token. The HTTP endpoints call
//! it; nothing here knows about HTTP except the status codes that [`auth::AuthError`]
//! maps to.

pub mod auth;
mod command;
pub mod conf_write;
pub mod control;
pub mod standalone;
pub mod supervisor;
pub mod systemd;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::control::AppControlSettings;
use crate::config::{AppConfig, ServiceType};

pub use auth::{authorize, ApiAuthConfig, AuthError, Credentials, Principal};
pub use conf_write::{write_app_conf, ConfWriteError, APP_CONF_NAME};
pub use standalone::Standalone;
pub use supervisor::Supervisor;
pub use systemd::Systemd;

/// The state of the application as its manager reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Up and running.
    Running,
    /// Started but not yet counted as running (supervisord STARTING, systemd activating).
    Starting,
    /// Exited and waiting before the next start (supervisord BACKOFF, systemd
    /// auto-restart, the standalone manager's backoff).
    Backoff,
    /// Asked to stop and not yet stopped.
    Stopping,
    /// Not running, and not going to start by itself.
    Stopped,
    /// Given up (supervisord FATAL, systemd failed).
    Failed,
    /// A state the manager reported that none of the above names.
    Unknown,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ServiceState::Running => "running",
            ServiceState::Starting => "starting",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
            ServiceState::Unknown => "unknown",
        };
        f.write_str(text)
    }
}

/// How the application's main process last ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LastExit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl fmt::Display for LastExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastExit::Code(code) => write!(f, "exit code {code}"),
            LastExit::Signal(sig) => write!(f, "signal {sig}"),
        }
    }
}

/// Which manager runs the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagerKind {
    /// supervisord, driven through `supervisorctl`.
    Supervisor,
    /// systemd, driven through `systemctl`.
    Systemd,
    /// verigated itself runs the application as a child process.
    Standalone,
}

impl From<ServiceType> for ManagerKind {
    fn from(t: ServiceType) -> Self {
        match t {
            ServiceType::Supervisor => ManagerKind::Supervisor,
            ServiceType::Systemd => ManagerKind::Systemd,
            ServiceType::Standalone => ManagerKind::Standalone,
        }
    }
}

/// What `GET /v1/app/status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// The manager that reported this status.
    pub manager: ManagerKind,
    /// The service's name in its manager.
    pub service: String,
    /// The application's state.
    pub state: ServiceState,
    /// The application's process id, when it runs and the manager says.
    pub pid: Option<u32>,
    /// When the application entered its current state, as far as the manager says
    /// (serialized as RFC 3339).
    #[serde(serialize_with = "serialize_time")]
    pub since: Option<SystemTime>,
    /// How the application's last run ended, when the manager says.
    pub last_exit: Option<LastExit>,
    /// The manager's own words on the state, e.g. supervisord's "Exited too quickly".
    pub detail: Option<String>,
}

impl ServiceStatus {
    /// A status with only the state known.
    pub fn new(manager: ManagerKind, service: &str, state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            manager,
            service: service.to_string(),
            state,
            pid: None,
            since: None,
            last_exit: None,
            detail: None,
        }
    }

    /// `since` as RFC 3339 text, when known.
    pub fn since_rfc3339(&self) -> Option<String> {
        self.since.and_then(rfc3339)
    }
}

fn rfc3339(t: SystemTime) -> Option<String> {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn serialize_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(rfc3339) {
        Some(text) => s.serialize_some(&text),
        None => s.serialize_none(),
    }
}

/// Why an app-control action failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The configuration sent to init is larger than app control's `max_config_bytes`.
    #[error("the configuration is {got} bytes, more than the limit of {limit} (app control `max_config_bytes`)")]
    ConfigTooLarge {
        /// Size of the configuration sent, in bytes.
        got: usize,
        /// The largest size accepted, in bytes.
        limit: usize,
    },
    /// Init was asked for but `[app] app_storage` is not set.
    #[error("[app] app_storage is not set: init has nowhere to write app.conf")]
    NoAppStorage,
    /// Writing `app.conf` failed; the previous file is left as it was.
    #[error(transparent)]
    Write(#[from] ConfWriteError),
    /// The manager's command (`supervisorctl`, `systemctl`) could not be run or waited for.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line, joined with spaces.
        command: String,
        /// Why it could not run.
        #[source]
        source: std::io::Error,
    },
    /// The manager's command ran longer than allowed and was killed.
    #[error("`{command}` did not finish within {after:?}")]
    Timeout {
        /// The command line, joined with spaces.
        command: String,
        /// The time it was given.
        after: Duration,
    },
    /// The manager's command exited with a failure.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line, joined with spaces.
        command: String,
        /// Its exit status, or that a signal killed it.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The manager's status output has no line that reads as the service's state.
    #[error("`{command}` printed nothing that reads as the status of `{service}`: {output}")]
    UnexpectedOutput {
        /// The command line, joined with spaces.
        command: String,
        /// The service asked about.
        service: String,
        /// What the command printed.
        output: String,
    },
    /// The manager does not know the configured service name.
    #[error("the service manager knows no service named `{service}`: {output}")]
    NoSuchService {
        /// The service name, from `[app] service_name`.
        service: String,
        /// What the manager printed.
        output: String,
    },
    /// The standalone manager could not start the application's program.
    #[error("could not start `{program}`: {source}")]
    StartFailed {
        /// The program the standalone manager runs.
        program: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// The standalone manager's task has ended, so nothing runs the application any more.
    #[error("the standalone manager of `{service}` has shut down")]
    ManagerGone {
        /// The service name, from `[app] service_name`.
        service: String,
    },
    /// The configuration lacks what the chosen manager needs; the text says what.
    #[error("app control is not configured: {0}")]
    NotConfigured(String),
}

/// One service manager: restarts, starts and reports on the application. Implemented by
/// [`Supervisor`], [`Systemd`], [`Standalone`] and [`AnyManager`].
#[allow(async_fn_in_trait)] // used with concrete types (and AnyManager), never boxed
pub trait ServiceManager {
    /// Stops the application if it runs, starts it, and reports the state after.
    async fn restart(&self) -> Result<ServiceStatus, AppError>;
    /// Starts the application if it is not running, and reports the state after.
    async fn start(&self) -> Result<ServiceStatus, AppError>;
    /// The application's state now.
    async fn status(&self) -> Result<ServiceStatus, AppError>;
}

/// The manager chosen by `[app] service_type`.
pub enum AnyManager {
    /// `service_type = "supervisor"`.
    Supervisor(Supervisor),
    /// `service_type = "systemd"`.
    Systemd(Systemd),
    /// `service_type = "standalone"`.
    Standalone(Standalone),
}

impl ServiceManager for AnyManager {
    async fn restart(&self) -> Result<ServiceStatus, AppError> {
        match self {
            AnyManager::Supervisor(m) => m.restart().await,
            AnyManager::Systemd(m) => m.restart().await,
            AnyManager::Standalone(m) => m.restart().await,
        }
    }
    async fn start(&self) -> Result<ServiceStatus, AppError> {
        match self {
            AnyManager::Supervisor(m) => m.start().await,
            AnyManager::Systemd(m) => m.start().await,
            AnyManager::Standalone(m) => m.start().await,
        }
    }
    async fn status(&self) -> Result<ServiceStatus, AppError> {
        match self {
            AnyManager::Supervisor(m) => m.status().await,
            AnyManager::Systemd(m) => m.status().await,
            AnyManager::Standalone(m) => m.status().await,
        }
    }
}

/// Builds the manager that `[app]` names. For `standalone` this starts the program
/// (the manager supervises it from then on), so it must run inside a tokio runtime.
pub fn manager_from_config(
    app: &AppConfig,
    settings: &AppControlSettings,
) -> Result<AnyManager, AppError> {
    Ok(match app.service_type {
        ServiceType::Supervisor => AnyManager::Supervisor(Supervisor::new(
            &app.service_name,
            settings.supervisor.clone(),
        )),
        ServiceType::Systemd => {
            AnyManager::Systemd(Systemd::new(&app.service_name, settings.systemd.clone()))
        }
        ServiceType::Standalone => {
            let Some(standalone) = &settings.standalone else {
                return Err(AppError::NotConfigured(
                    "service_type = \"standalone\" needs `[app.standalone] command = [...]`".into(),
                ));
            };
            AnyManager::Standalone(Standalone::spawn(&app.service_name, standalone.clone()))
        }
    })
}

/// The app-control actions behind the API: `init`, `restart`, `status`, each logged with
/// the principal that asked and its outcome.
pub struct AppController<M> {
    manager: M,
    /// `<app_storage>`; `None` when `[app] app_storage` is not set (init then fails).
    app_storage: Option<PathBuf>,
    max_config_bytes: usize,
    /// One init or restart at a time, so that the status an init reports is that of the
    /// program which read its configuration.
    serial: tokio::sync::Mutex<()>,
}

impl<M: ServiceManager> AppController<M> {
    /// A controller writing `app.conf` into `app_storage` and driving `manager`.
    pub fn new(manager: M, app_storage: Option<PathBuf>, max_config_bytes: usize) -> Self {
        AppController {
            manager,
            app_storage,
            max_config_bytes,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.manager
    }

    /// Gives the manager back (e.g. to shut a standalone one down gracefully).
    pub fn into_manager(self) -> M {
        self.manager
    }

    /// Replaces `<app_storage>/app.conf` with `config` (size-checked, atomically), then
    /// restarts the application, or starts it if it was not running, and reports the
    /// state after. Nothing is written when the size check fails; the application is not
    /// touched when the write fails.
    pub async fn init(
        &self,
        principal: &Principal,
        config: &[u8],
    ) -> Result<ServiceStatus, AppError> {
        let result = self.init_inner(config).await;
        log_action("init", principal, Some(config.len()), &result);
        result
    }

    async fn init_inner(&self, config: &[u8]) -> Result<ServiceStatus, AppError> {
        if config.len() > self.max_config_bytes {
            return Err(AppError::ConfigTooLarge {
                got: config.len(),
                limit: self.max_config_bytes,
            });
        }
        let dir = self.app_storage.as_ref().ok_or(AppError::NoAppStorage)?;
        let _serial = self.serial.lock().await;
        write_app_conf(dir, config, self.max_config_bytes)?;
        self.restart_or_start().await
    }

    async fn restart_or_start(&self) -> Result<ServiceStatus, AppError> {
        let before = self.manager.status().await?;
        match before.state {
            ServiceState::Running | ServiceState::Starting | ServiceState::Backoff => {
                self.manager.restart().await
            }
            _ => self.manager.start().await,
        }
    }

    /// Restarts the application (starts it if stopped) and reports the state after.
    pub async fn restart(&self, principal: &Principal) -> Result<ServiceStatus, AppError> {
        let result = {
            let _serial = self.serial.lock().await;
            self.restart_or_start().await
        };
        log_action("restart", principal, None, &result);
        result
    }

    /// The application's state.
    pub async fn status(&self, principal: &Principal) -> Result<ServiceStatus, AppError> {
        let result = self.manager.status().await;
        log_action("status", principal, None, &result);
        result
    }

    /// [`AppController::init`] for a request: authorizes `creds` first, and on refusal
    /// neither writes nor restarts anything (the refusal is logged with its reason).
    pub async fn init_as(
        &self,
        creds: &Credentials<'_>,
        auth: &ApiAuthConfig,
        config: &[u8],
    ) -> Result<ServiceStatus, ControlError> {
        let principal = authorize_logged("init", creds, auth)?;
        Ok(self.init(&principal, config).await?)
    }

    /// [`AppController::restart`] for a request, authorized first.
    pub async fn restart_as(
        &self,
        creds: &Credentials<'_>,
        auth: &ApiAuthConfig,
    ) -> Result<ServiceStatus, ControlError> {
        let principal = authorize_logged("restart", creds, auth)?;
        Ok(self.restart(&principal).await?)
    }

    /// [`AppController::status`] for a request, authorized first.
    pub async fn status_as(
        &self,
        creds: &Credentials<'_>,
        auth: &ApiAuthConfig,
    ) -> Result<ServiceStatus, ControlError> {
        let principal = authorize_logged("status", creds, auth)?;
        Ok(self.status(&principal).await?)
    }
}

/// Why a control request failed: refused, or tried and failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The caller was not let in.
    #[error(transparent)]
    Refused(#[from] AuthError),
    /// The caller was let in, and the action failed.
    #[error(transparent)]
    Failed(#[from] AppError),
}

impl ControlError {
    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            ControlError::Refused(e) => e.http_status(),
            ControlError::Failed(AppError::ConfigTooLarge { .. }) => 413,
            ControlError::Failed(AppError::ManagerGone { .. }) => 503,
            ControlError::Failed(_) => 500,
        }
    }
}

fn authorize_logged(
    action: &str,
    creds: &Credentials<'_>,
    auth: &ApiAuthConfig,
) -> Result<Principal, AuthError> {
    authorize(creds, auth).inspect_err(|e| {
        tracing::warn!(
            target: "verigated::app",
            action,
            outcome = "refused",
            status = e.http_status(),
            reason = %e,
            "app control"
        );
    })
}

/// One log line per control action. The configuration is described by its length only,
/// and a principal carries no secret (see [`Principal`]).
fn log_action(
    action: &str,
    principal: &Principal,
    config_len: Option<usize>,
    result: &Result<ServiceStatus, AppError>,
) {
    match result {
        Ok(status) => tracing::info!(
            target: "verigated::app",
            action,
            principal = %principal,
            config_bytes = config_len,
            outcome = "ok",
            state = %status.state,
            pid = status.pid,
            "app control"
        ),
        Err(e) => tracing::warn!(
            target: "verigated::app",
            action,
            principal = %principal,
            config_bytes = config_len,
            outcome = "error",
            error = %e,
            "app control"
        ),
    }
}
