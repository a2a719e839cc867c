//! The app-control part of `verigated.toml`'s schema: the keys of `[api]`, `[app]` and
//! `[app.standalone]` that say how to reach and run the application, as written
//! ([`RawApiControl`], [`RawAppControl`], [`RawStandalone`], embedded by the parent
//! module's raw structs), their validation ([`validate`]), and the parsed values that app
//! control uses ([`AppControlSettings`] and the settings of each manager). The
//! configuration owns the schema of the whole file; `crate::app` only reads these
//! values. Problems name the field and the fix, in the style of `check-config`.
//!
//! ```toml
//! [api]
//! admin_token_sha256 = ["..."]
//! client_ca = "client-ca.pem"          # CA of accepted TLS client certificates
//! max_config_bytes = 1048576           # largest app.conf accepted by init
//!
//! [app]
//! service_type = "standalone"
//! service_name = "my_app"
//! app_storage = "data/app"
//! supervisor_socket = "/run/supervisor.sock"   # supervisor: supervisorctl -s unix://...
//! supervisor_conf = "/etc/supervisor/supervisord.conf"  # supervisor: supervisorctl -c
//! systemctl = "/usr/bin/systemctl"
//!
//! [app.standalone]                     # required when service_type = "standalone"
//! command = ["/usr/local/bin/my_app", "--config", "app.conf"]  # as written: relative to working_dir
//! env = { RUST_LOG = "info" }
//! working_dir = "data/app"            # relative to data_dir
//! stop_grace_period = "10s"
//! restart_backoff_max = "1m"
//! user = "my_app"                      # run as this user (name or number), not root
//! group = "my_app"                     # and group; default: the user's primary group
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::account::{self, AccountFiles, RunAs};
use super::{parse_duration, Problem, ServiceType};

/// The default limit on the size of an `app.conf` sent to `init`.
pub const DEFAULT_MAX_CONFIG_BYTES: usize = 1 << 20;

/// How long one `supervisorctl`/`systemctl` call may take before it counts as failed.
/// A restart waits for the program to stop and start, so this is generous.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// App control's settings beyond `[app]`'s `service_type`, `service_name` and
/// `app_storage`: the size limit of `init` and how to reach each manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppControlSettings {
    /// Largest `app.conf` accepted by `init`.
    pub max_config_bytes: usize,
    /// How to reach supervisord, for `service_type = "supervisor"`.
    pub supervisor: SupervisorSettings,
    /// How to reach systemd, for `service_type = "systemd"`.
    pub systemd: SystemdSettings,
    /// Required when `service_type = "standalone"`: what to run.
    pub standalone: Option<StandaloneSettings>,
}

impl Default for AppControlSettings {
    fn default() -> Self {
        AppControlSettings {
            max_config_bytes: DEFAULT_MAX_CONFIG_BYTES,
            supervisor: SupervisorSettings::default(),
            systemd: SystemdSettings::default(),
            standalone: None,
        }
    }
}

/// How to reach supervisord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorSettings {
    /// The `supervisorctl` program (default: found on `PATH`).
    pub supervisorctl: PathBuf,
    /// `supervisorctl -c CONF`, when set.
    pub conf: Option<PathBuf>,
    /// `supervisorctl -s URL` (e.g. `unix:///run/supervisor.sock`), when set; wins over
    /// the URL in `conf`.
    pub server_url: Option<String>,
    /// The longest a single `supervisorctl` call may take.
    pub timeout: Duration,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings {
            supervisorctl: PathBuf::from("supervisorctl"),
            conf: None,
            server_url: None,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

/// How to reach systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdSettings {
    /// The `systemctl` program (default: found on `PATH`).
    pub systemctl: PathBuf,
    /// The longest a single `systemctl` call may take.
    pub timeout: Duration,
}

impl Default for SystemdSettings {
    fn default() -> Self {
        SystemdSettings {
            systemctl: PathBuf::from("systemctl"),
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

/// What to run and how to supervise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandaloneSettings {
    /// The program to run (`command[0]`, resolved under `data_dir` when relative).
    pub program: PathBuf,
    /// Its arguments (the rest of `command`), passed as written.
    pub args: Vec<OsString>,
    /// Added to verigated's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// The folder it runs in (resolved under `data_dir` when relative); `None`:
    /// verigated's own.
    pub working_dir: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL when stopping.
    pub grace_period: Duration,
    /// The first wait before starting a program that exited; doubled at each exit.
    pub backoff_initial: Duration,
    /// The longest wait; a run longer than this resets the wait to `backoff_initial`.
    pub backoff_max: Duration,
    /// Start the program as soon as the manager exists.
    pub autostart: bool,
    /// The user and group it runs as (`user`, `group`); `None`: verigated's own (root
    /// under the shipped unit).
    pub run_as: Option<RunAs>,
}

impl StandaloneSettings {
    /// `program` with no arguments and the defaults: 10 s grace, backoff 1 s doubling up
    /// to 60 s, started at once.
    pub fn new(program: impl Into<PathBuf>) -> StandaloneSettings {
        StandaloneSettings {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            grace_period: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            autostart: true,
            run_as: None,
        }
    }
}

/// `[api]` keys for app control.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiControl {
    /// PEM file of the CA(s) whose client certificates may control the app.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Largest `app.conf` accepted by `init`, in bytes; default 1 MiB.
    #[serde(default)]
    pub max_config_bytes: Option<i64>,
}

/// `[app]` keys for app control.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppControl {
    /// A socket path or `unix://` URL.
    #[serde(default)]
    pub supervisor_socket: Option<String>,
    /// supervisord's configuration file, for `supervisorctl -c`.
    #[serde(default)]
    pub supervisor_conf: Option<PathBuf>,
    /// The `supervisorctl` program; default: found on `PATH`.
    #[serde(default)]
    pub supervisorctl: Option<PathBuf>,
    /// The `systemctl` program; default: found on `PATH`.
    #[serde(default)]
    pub systemctl: Option<PathBuf>,
    /// `[app.standalone]`, required when `service_type = "standalone"`.
    #[serde(default)]
    pub standalone: Option<RawStandalone>,
}

/// `[app.standalone]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStandalone {
    /// The program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// Variables added to verigated's own environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The folder the program runs in.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL when stopping, e.g. `"10s"`.
    #[serde(default)]
    pub stop_grace_period: Option<String>,
    /// The longest wait before restarting a program that exited, e.g. `"1m"`.
    #[serde(default)]
    pub restart_backoff_max: Option<String>,
    /// The user the program runs as (a name or a number).
    #[serde(default)]
    pub user: Option<String>,
    /// The group it runs as (a name or a number); needs `user`.
    #[serde(default)]
    pub group: Option<String>,
}

/// Validated app-control settings plus the client CA (which the TLS server needs, not
/// the managers).
#[derive(Debug, Clone)]
pub struct ValidatedControl {
    /// What the service managers use.
    pub settings: AppControlSettings,
    /// Absolute.
    pub client_ca: Option<PathBuf>,
}

/// Checks the raw keys and resolves relative paths under `data_dir`, collecting every
/// problem.
pub fn validate(
    api: &RawApiControl,
    app: &RawAppControl,
    service_type: Option<ServiceType>,
    data_dir: &Path,
) -> Result<ValidatedControl, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: field.to_string(),
            message,
        });
    };
    let mut settings = AppControlSettings::default();

    match api.max_config_bytes {
        None => settings.max_config_bytes = DEFAULT_MAX_CONFIG_BYTES,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n > 0 => settings.max_config_bytes = n,
            _ => problem(
                "api.max_config_bytes",
                format!("expected a positive number of bytes, got {n}"),
            ),
        },
    }
    let client_ca = api.client_ca.as_ref().map(|p| data_dir.join(p));
    if let Some(ca) = &client_ca {
        if !ca.is_file() {
            problem(
                "api.client_ca",
                format!(
                    "`{}` is not a readable file: write the path of a PEM file of CA certificates",
                    ca.display()
                ),
            );
        }
    }

    if let Some(socket) = &app.supervisor_socket {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        if path.is_empty() || !path.starts_with('/') {
            problem(
                "app.supervisor_socket",
                format!("expected an absolute socket path or unix:///path, got `{socket}`"),
            );
        } else {
            settings.supervisor.server_url = Some(format!("unix://{path}"));
        }
    }
    settings.supervisor.conf = app.supervisor_conf.as_ref().map(|p| data_dir.join(p));
    if let Some(program) = &app.supervisorctl {
        settings.supervisor.supervisorctl = program.clone();
    }
    if let Some(program) = &app.systemctl {
        settings.systemd.systemctl = program.clone();
    }

    match (&app.standalone, service_type) {
        (None, Some(ServiceType::Standalone)) => problem(
            "app.standalone",
            "service_type = \"standalone\" needs an [app.standalone] table with `command = [\"/path/to/program\", ...]`".into(),
        ),
        (None, _) => {}
        (Some(raw), _) => {
            if let Some(standalone) = standalone(raw, data_dir, &mut problem) {
                settings.standalone = Some(standalone);
            }
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ValidatedControl {
        settings,
        client_ca,
    })
}

fn standalone(
    raw: &RawStandalone,
    data_dir: &Path,
    problem: &mut impl FnMut(&str, String),
) -> Option<StandaloneSettings> {
    let Some((program, args)) = raw.command.split_first() else {
        problem(
            "app.standalone.command",
            "empty: write the program and its arguments, e.g. [\"/usr/local/bin/my_app\"]".into(),
        );
        return None;
    };
    if program.trim().is_empty() {
        problem("app.standalone.command[0]", "empty program path".into());
        return None;
    }
    let mut settings = StandaloneSettings::new(data_dir.join(program));
    settings.args = args.iter().map(Into::into).collect();
    settings.env = raw.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    for key in raw.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            problem(
                "app.standalone.env",
                format!("`{key}` is not a valid variable name"),
            );
        }
    }
    settings.working_dir = raw.working_dir.as_ref().map(|p| data_dir.join(p));
    let mut duration = |field: &str, text: &Option<String>, default: Duration| match text {
        None => default,
        Some(t) => parse_duration(t).unwrap_or_else(|e| {
            problem(field, e);
            default
        }),
    };
    settings.grace_period = duration(
        "app.standalone.stop_grace_period",
        &raw.stop_grace_period,
        settings.grace_period,
    );
    settings.backoff_max = duration(
        "app.standalone.restart_backoff_max",
        &raw.restart_backoff_max,
        settings.backoff_max,
    );
    match (&raw.user, &raw.group) {
        (Some(user), group) => {
            match account::resolve(user, group.as_deref(), AccountFiles::system()) {
                Ok(run_as) => settings.run_as = Some(run_as),
                Err(e) => problem("app.standalone.user", e),
            }
        }
        (None, Some(_)) => problem(
            "app.standalone.group",
            "needs `user` too: a program that keeps root's user ID gains nothing from another group".into(),
        ),
        (None, None) => {}
    }
    if settings.backoff_max < settings.backoff_initial {
        problem(
            "app.standalone.restart_backoff_max",
            format!(
                "must be at least {:?}, the first wait",
                settings.backoff_initial
            ),
        );
    }
    Some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(problems: Vec<Problem>) -> Vec<String> {
        problems.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn standalone_user_and_group_are_resolved_or_named() {
        let run = |user: Option<&str>, group: Option<&str>| {
            let app = RawAppControl {
                standalone: Some(RawStandalone {
                    command: vec!["/bin/true".into()],
                    user: user.map(Into::into),
                    group: group.map(Into::into),
                    ..RawStandalone::default()
                }),
                ..RawAppControl::default()
            };
            validate(
                &RawApiControl::default(),
                &app,
                Some(ServiceType::Standalone),
                Path::new("/data"),
            )
        };
        let v = run(Some("root"), Some("0")).unwrap();
        let run_as = v.settings.standalone.unwrap().run_as;
        assert_eq!(run_as, Some(RunAs { uid: 0, gid: 0 }));
        let e = fields(run(Some("no-such-user-here"), None).unwrap_err());
        assert!(
            e.iter()
                .any(|p| p.contains("app.standalone.user") && p.contains("no-such-user-here")),
            "{e:?}"
        );
        let e = fields(run(None, Some("0")).unwrap_err());
        assert!(
            e.iter().any(|p| p.contains("app.standalone.group")),
            "{e:?}"
        );
        assert_eq!(
            run(None, None).unwrap().settings.standalone.unwrap().run_as,
            None
        );
    }

    #[test]
    fn defaults() {
        let v = validate(
            &RawApiControl::default(),
            &RawAppControl::default(),
            Some(ServiceType::Supervisor),
            Path::new("/data"),
        )
        .unwrap();
        assert_eq!(v.settings.max_config_bytes, DEFAULT_MAX_CONFIG_BYTES);
        assert_eq!(v.settings.supervisor.server_url, None);
        assert!(v.client_ca.is_none());
    }

    #[test]
    fn full_file_parses() {
        #[derive(Deserialize)]
        struct File {
            api: RawApiControl,
            app: RawAppControl,
        }
        let f: File = toml::from_str(
            r#"
            [api]
            max_config_bytes = 4096
            [app]
            supervisor_socket = "/run/supervisor.sock"
            supervisor_conf = "supervisord.conf"
            [app.standalone]
            command = ["bin/app", "--x"]
            env = { A = "1" }
            stop_grace_period = "3s"
            restart_backoff_max = "2m"
            "#,
        )
        .unwrap();
        let v = validate(
            &f.api,
            &f.app,
            Some(ServiceType::Standalone),
            Path::new("/data"),
        )
        .unwrap();
        assert_eq!(v.settings.max_config_bytes, 4096);
        assert_eq!(
            v.settings.supervisor.server_url.as_deref(),
            Some("unix:///run/supervisor.sock")
        );
        assert_eq!(
            v.settings.supervisor.conf.as_deref(),
            Some(Path::new("/data/supervisord.conf"))
        );
        let s = v.settings.standalone.unwrap();
        assert_eq!(s.program, Path::new("/data/bin/app"));
        assert_eq!(s.args, vec![std::ffi::OsString::from("--x")]);
        assert_eq!(s.grace_period, Duration::from_secs(3));
        assert_eq!(s.backoff_max, Duration::from_secs(120));
    }

    #[test]
    fn every_problem_is_named() {
        let api = RawApiControl {
            client_ca: Some("/nonexistent/ca.pem".into()),
            max_config_bytes: Some(0),
        };
        let app = RawAppControl {
            supervisor_socket: Some("relative.sock".into()),
            standalone: Some(RawStandalone {
                command: vec![],
                ..RawStandalone::default()
            }),
            ..RawAppControl::default()
        };
        let p = fields(
            validate(&api, &app, Some(ServiceType::Standalone), Path::new("/d")).unwrap_err(),
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("api.max_config_bytes: expected a positive")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("api.client_ca: `/nonexistent/ca.pem`")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|l| l.starts_with("app.supervisor_socket:")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("app.standalone.command: empty")),
            "{p:?}"
        );
    }

    #[test]
    fn standalone_problems() {
        let app = RawAppControl::default();
        let p = fields(
            validate(
                &RawApiControl::default(),
                &app,
                Some(ServiceType::Standalone),
                Path::new("/d"),
            )
            .unwrap_err(),
        );
        assert!(p[0].starts_with("app.standalone: service_type"), "{p:?}");

        let app = RawAppControl {
            standalone: Some(RawStandalone {
                command: vec!["/bin/app".into()],
                env: BTreeMap::from([("A=B".to_string(), "x".to_string())]),
                stop_grace_period: Some("10".into()),
                restart_backoff_max: Some("10ms".into()),
                ..RawStandalone::default()
            }),
            ..RawAppControl::default()
        };
        let p = fields(
            validate(
                &RawApiControl::default(),
                &app,
                Some(ServiceType::Standalone),
                Path::new("/d"),
            )
            .unwrap_err(),
        );
        assert!(
            p.iter().any(|l| l.starts_with("app.standalone.env: `A=B`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("app.standalone.stop_grace_period: expected a duration")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("app.standalone.restart_backoff_max: must be at least")),
            "{p:?}"
        );
    }
}
