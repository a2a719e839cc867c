//! The `systemd` manager: the application is a systemd unit, driven with `systemctl
//! restart|start NAME` and read with `systemctl show NAME -p ...`, whose `key=value`
//! lines are parsed here. The `systemctl` program is configurable, which is also how the
//! tests reach this module's command boundary: systemd cannot run in the test machine
//! (it is not PID 1 there).

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use crate::config::control::SystemdSettings;

use super::command::{self, Output};
use super::{AppError, LastExit, ManagerKind, ServiceManager, ServiceState, ServiceStatus};

/// The properties `status` asks for.
pub const SHOW_PROPERTIES: &str =
    "LoadState,ActiveState,SubState,MainPID,ActiveEnterTimestamp,ExecMainStatus,ExecMainCode";

/// One systemd unit.
#[derive(Debug, Clone)]
pub struct Systemd {
    name: String,
    settings: SystemdSettings,
}

impl Systemd {
    /// Controls the unit `name` (e.g. `my_app` or `my_app.service`).
    pub fn new(name: &str, settings: SystemdSettings) -> Systemd {
        Systemd {
            name: name.to_string(),
            settings,
        }
    }

    async fn systemctl(&self, args: &[&str]) -> Result<Output, AppError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        command::run(&self.settings.systemctl, &args, self.settings.timeout).await
    }

    async fn act(&self, action: &str) -> Result<ServiceStatus, AppError> {
        // `--` so that a service name starting with `-` is never read as an option.
        let out = self.systemctl(&[action, "--", &self.name]).await?;
        if out.code != Some(0) {
            return Err(out.failed());
        }
        self.status().await
    }
}

impl ServiceManager for Systemd {
    async fn restart(&self) -> Result<ServiceStatus, AppError> {
        self.act("restart").await
    }

    async fn start(&self) -> Result<ServiceStatus, AppError> {
        self.act("start").await
    }

    async fn status(&self) -> Result<ServiceStatus, AppError> {
        let out = self
            .systemctl(&["show", "-p", SHOW_PROPERTIES, "--", &self.name])
            .await?;
        if out.code != Some(0) {
            return Err(out.failed());
        }
        parse_show(&self.name, &out)
    }
}

/// Reads the `key=value` lines of `systemctl show`.
fn parse_show(name: &str, out: &Output) -> Result<ServiceStatus, AppError> {
    let props: HashMap<&str, &str> = out
        .stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let unexpected = || AppError::UnexpectedOutput {
        command: out.command.clone(),
        service: name.to_string(),
        output: out.printed(),
    };
    if props.get("LoadState") == Some(&"not-found") {
        return Err(AppError::NoSuchService {
            service: name.to_string(),
            output: out.printed(),
        });
    }
    let active = *props.get("ActiveState").ok_or_else(unexpected)?;
    let sub = props.get("SubState").copied().unwrap_or("");
    let state = match (active, sub) {
        (_, "auto-restart") => ServiceState::Backoff,
        ("active" | "reloading", _) => ServiceState::Running,
        ("activating", _) => ServiceState::Starting,
        ("deactivating", _) => ServiceState::Stopping,
        ("inactive", _) => ServiceState::Stopped,
        ("failed", _) => ServiceState::Failed,
        _ => ServiceState::Unknown,
    };
    let mut status = ServiceStatus::new(ManagerKind::Systemd, name, state);
    if !sub.is_empty() {
        status.detail = Some(format!("{active} ({sub})"));
    }
    // MainPID=0 means "no main process".
    status.pid = props
        .get("MainPID")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| *p != 0);
    status.since = props
        .get("ActiveEnterTimestamp")
        .and_then(|t| parse_timestamp(t));
    // ExecMainCode is a CLD_* code of waitid(2): 1 exited, 2 killed, 3 dumped core; 0
    // means the main process has not exited yet.
    let code = props
        .get("ExecMainCode")
        .and_then(|c| c.parse::<i32>().ok());
    let value = props
        .get("ExecMainStatus")
        .and_then(|c| c.parse::<i32>().ok());
    status.last_exit = match (code, value) {
        (Some(1), Some(v)) => Some(LastExit::Code(v)),
        (Some(2 | 3), Some(v)) => Some(LastExit::Signal(v)),
        _ => None,
    };
    Ok(status)
}

/// systemd timestamps: `@1764297600` (with `--timestamp=unix`) or `Sat 2026-11-28
/// 02:40:00 UTC` (the default format, read only when the zone is UTC: a zone
/// abbreviation alone does not name an offset). Empty or unreadable → None.
fn parse_timestamp(text: &str) -> Option<SystemTime> {
    if let Some(secs) = text.strip_prefix('@') {
        let secs: u64 = secs.trim().parse().ok()?;
        return SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs));
    }
    let mut words = text.split_whitespace();
    let _weekday = words.next()?;
    let date = words.next()?;
    let clock = words.next()?;
    if words.next()? != "UTC" || words.next().is_some() {
        return None;
    }
    let mut ymd = date.split('-');
    let year: i32 = ymd.next()?.parse().ok()?;
    let month: u8 = ymd.next()?.parse().ok()?;
    let day: u8 = ymd.next()?.parse().ok()?;
    let mut hms = clock.split(':');
    let hour: u8 = hms.next()?.parse().ok()?;
    let minute: u8 = hms.next()?.parse().ok()?;
    let second: u8 = hms.next()?.parse().ok()?;
    if ymd.next().is_some() || hms.next().is_some() {
        return None;
    }
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let clock = time::Time::from_hms(hour, minute, second).ok()?;
    Some(SystemTime::from(
        time::PrimitiveDateTime::new(date, clock).assume_utc(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &str) -> Output {
        Output {
            command: "systemctl show".into(),
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp("@1764297600"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_297_600))
        );
        assert_eq!(
            parse_timestamp("Fri 2025-11-28 02:40:00 UTC"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_297_600))
        );
        assert_eq!(parse_timestamp("Fri 2025-11-28 02:40:00 CET"), None);
        assert_eq!(parse_timestamp(""), None);
        assert_eq!(parse_timestamp("n/a"), None);
        assert_eq!(parse_timestamp("@x"), None);
        assert_eq!(parse_timestamp("@99999999999999999999999"), None);
        assert_eq!(parse_timestamp("Fri 2025-13-28 02:40:00 UTC"), None);
    }

    #[test]
    fn failed_unit_reports_signal() {
        let s = parse_show(
            "app",
            &out(
                "LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\n\
                  ActiveEnterTimestamp=\nExecMainStatus=9\nExecMainCode=2\n",
            ),
        )
        .unwrap();
        assert_eq!(s.state, ServiceState::Failed);
        assert_eq!(s.pid, None);
        assert_eq!(s.since, None);
        assert_eq!(s.last_exit, Some(LastExit::Signal(9)));
    }

    #[test]
    fn auto_restart_is_backoff() {
        let s = parse_show(
            "app",
            &out(
                "ActiveState=activating\nSubState=auto-restart\nExecMainStatus=1\nExecMainCode=1\n",
            ),
        )
        .unwrap();
        assert_eq!(s.state, ServiceState::Backoff);
        assert_eq!(s.last_exit, Some(LastExit::Code(1)));
    }

    #[test]
    fn not_found_and_garbage() {
        let err =
            parse_show("nope", &out("LoadState=not-found\nActiveState=inactive\n")).unwrap_err();
        assert!(matches!(err, AppError::NoSuchService { .. }), "{err}");
        for text in ["", "garbage", "MainPID=12\n", "=\n==\n"] {
            let err = parse_show("app", &out(text)).unwrap_err();
            assert!(
                matches!(err, AppError::UnexpectedOutput { .. }),
                "{text:?}: {err}"
            );
        }
        let s = parse_show(
            "app",
            &out("ActiveState=weird\nMainPID=-4\nExecMainCode=7\n"),
        )
        .unwrap();
        assert_eq!(s.state, ServiceState::Unknown);
        assert_eq!(s.pid, None);
        assert_eq!(s.last_exit, None);
    }
}
