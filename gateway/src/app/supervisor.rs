//! The `supervisor` manager: the application is a `[program:NAME]` of supervisord,
//! driven through `supervisorctl` (`-c CONF` and/or `-s unix:///path/to.sock`, as
//! configured). `supervisorctl`'s output is text meant for people, so the parser reads it
//! defensively: the status line of exactly NAME, a known state word, `pid N, uptime
//! [D day[s], ]H:MM:SS` when running; anything else is an error that quotes the output.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use crate::config::control::SupervisorSettings;

use super::command::{self, Output};
use super::{AppError, ManagerKind, ServiceManager, ServiceState, ServiceStatus};

/// One supervisord program.
#[derive(Debug, Clone)]
pub struct Supervisor {
    name: String,
    settings: SupervisorSettings,
}

impl Supervisor {
    /// Controls `[program:name]` (or `group:name`) of the supervisord in `settings`.
    pub fn new(name: &str, settings: SupervisorSettings) -> Supervisor {
        Supervisor {
            name: name.to_string(),
            settings,
        }
    }

    async fn ctl(&self, action: &str) -> Result<Output, AppError> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(conf) = &self.settings.conf {
            args.push("-c".into());
            args.push(conf.into());
        }
        if let Some(url) = &self.settings.server_url {
            args.push("-s".into());
            args.push(url.into());
        }
        args.push(action.into());
        args.push(self.name.as_str().into());
        command::run(&self.settings.supervisorctl, &args, self.settings.timeout).await
    }

    /// Runs `restart`/`start` and checks what it said about NAME.
    async fn act(&self, action: &str) -> Result<ServiceStatus, AppError> {
        let out = self.ctl(action).await?;
        check_action(&self.name, &out)?;
        self.status().await
    }
}

impl ServiceManager for Supervisor {
    async fn restart(&self) -> Result<ServiceStatus, AppError> {
        self.act("restart").await
    }

    async fn start(&self) -> Result<ServiceStatus, AppError> {
        self.act("start").await
    }

    async fn status(&self) -> Result<ServiceStatus, AppError> {
        let out = self.ctl("status").await?;
        // Exit status 3 only says "not running"; the text says which state. Other
        // failures (no socket, no such process) leave no status line and fail below.
        parse_status(&self.name, &out, SystemTime::now())
    }
}

/// `NAME: ERROR (...)` lines are failures, except the two that leave the program in the
/// wanted state: `not running` (restart of a stopped program, which then starts it) and
/// `already started`.
fn check_action(name: &str, out: &Output) -> Result<(), AppError> {
    let prefix = format!("{name}: ERROR");
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        let line = line.trim();
        if !line.starts_with(&prefix) {
            continue;
        }
        if line.contains("(no such process)") {
            return Err(AppError::NoSuchService {
                service: name.to_string(),
                output: out.printed(),
            });
        }
        if !(line.contains("(not running)") || line.contains("(already started)")) {
            return Err(out.failed());
        }
    }
    if out.code != Some(0) {
        return Err(out.failed());
    }
    Ok(())
}

/// Reads `supervisorctl status NAME`.
fn parse_status(name: &str, out: &Output, now: SystemTime) -> Result<ServiceStatus, AppError> {
    for line in out.stdout.lines() {
        let line = line.trim();
        if line.starts_with(&format!("{name}: ERROR (no such process)")) {
            return Err(AppError::NoSuchService {
                service: name.to_string(),
                output: out.printed(),
            });
        }
        let Some((first, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if first != name {
            continue;
        }
        let rest = rest.trim_start();
        let (word, description) = rest
            .split_once(char::is_whitespace)
            .map(|(w, d)| (w, d.trim()))
            .unwrap_or((rest, ""));
        let Some(state) = state_of(word) else {
            continue;
        };
        let mut status = ServiceStatus::new(ManagerKind::Supervisor, name, state);
        if !description.is_empty() {
            status.detail = Some(description.to_string());
        }
        if let Some((pid, uptime)) = parse_pid_uptime(description) {
            status.pid = Some(pid);
            status.since = uptime.and_then(|u| now.checked_sub(u));
        }
        return Ok(status);
    }
    if out.code == Some(0) || out.code == Some(3) {
        Err(AppError::UnexpectedOutput {
            command: out.command.clone(),
            service: name.to_string(),
            output: out.printed(),
        })
    } else {
        Err(out.failed())
    }
}

/// supervisord's process states (`supervisor.states.ProcessStates`).
fn state_of(word: &str) -> Option<ServiceState> {
    Some(match word {
        "RUNNING" => ServiceState::Running,
        "STARTING" => ServiceState::Starting,
        "BACKOFF" => ServiceState::Backoff,
        "STOPPING" => ServiceState::Stopping,
        "STOPPED" | "EXITED" => ServiceState::Stopped,
        "FATAL" => ServiceState::Failed,
        "UNKNOWN" => ServiceState::Unknown,
        _ => return None,
    })
}

/// `pid 1234, uptime 1 day, 2:03:04` → (1234, 1 day 2 h 3 min 4 s). The uptime is
/// optional: a pid without a readable uptime still counts.
fn parse_pid_uptime(description: &str) -> Option<(u32, Option<Duration>)> {
    let rest = description.strip_prefix("pid ")?;
    let (pid_text, rest) = rest.split_once(',').unwrap_or((rest, ""));
    let pid: u32 = pid_text.trim().parse().ok()?;
    let uptime = rest.trim().strip_prefix("uptime ").and_then(parse_uptime);
    Some((pid, uptime))
}

/// Python's `str(timedelta)`: `H:MM:SS` or `D day[s], H:MM:SS`.
fn parse_uptime(text: &str) -> Option<Duration> {
    let (days, clock) = match text.split_once(',') {
        Some((days_text, clock)) => {
            let days_text = days_text.trim();
            let number = days_text
                .strip_suffix("days")
                .or_else(|| days_text.strip_suffix("day"))?;
            (number.trim().parse::<u64>().ok()?, clock.trim())
        }
        None => (0, text.trim()),
    };
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || minutes >= 60 || seconds >= 60 {
        return None;
    }
    let total = days
        .checked_mul(86_400)?
        .checked_add(hours.checked_mul(3600)?)?
        .checked_add(minutes * 60 + seconds)?;
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stdout: &str) -> Output {
        Output {
            command: "supervisorctl status x".into(),
            code: Some(code),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn running_line() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = parse_status(
            "x",
            &out(
                0,
                "x                                RUNNING   pid 24084, uptime 0:00:02\n",
            ),
            now,
        )
        .unwrap();
        assert_eq!(s.state, ServiceState::Running);
        assert_eq!(s.pid, Some(24084));
        assert_eq!(s.since, Some(now - Duration::from_secs(2)));
    }

    #[test]
    fn uptime_with_days() {
        assert_eq!(
            parse_uptime("1 day, 2:03:04"),
            Some(Duration::from_secs(86_400 + 2 * 3600 + 3 * 60 + 4))
        );
        assert_eq!(
            parse_uptime("12 days, 0:00:01"),
            Some(Duration::from_secs(12 * 86_400 + 1))
        );
        assert_eq!(parse_uptime("0:61:00"), None);
        assert_eq!(parse_uptime("1:2"), None);
        assert_eq!(parse_uptime("a day, 1:00:00"), None);
        assert_eq!(parse_uptime("1:00:00:00"), None);
        assert_eq!(parse_uptime("99999999999999999999 days, 1:00:00"), None);
    }

    #[test]
    fn states_words_from_supervisorctl() {
        let cases = [
            ("bad                              FATAL     Exited too quickly (process log may have details)", ServiceState::Failed),
            ("x                                STOPPED   Nov 28 02:35 AM", ServiceState::Stopped),
            ("x   EXITED    Nov 28 02:35 AM", ServiceState::Stopped),
            ("x   BACKOFF   Exited too quickly (process log may have details)", ServiceState::Backoff),
            ("x   STARTING", ServiceState::Starting),
            ("x   STOPPING", ServiceState::Stopping),
        ];
        for (line, state) in cases {
            let name = line.split_whitespace().next().unwrap();
            let s = parse_status(name, &out(3, line), SystemTime::now()).unwrap();
            assert_eq!(s.state, state, "{line}");
            assert_eq!(s.pid, None, "{line}");
        }
    }

    #[test]
    fn other_program_lines_are_not_ours() {
        let text = "xy   RUNNING   pid 1, uptime 0:00:01\nx   STOPPED   Not started\n";
        let s = parse_status("x", &out(3, text), SystemTime::now()).unwrap();
        assert_eq!(s.state, ServiceState::Stopped);
    }

    #[test]
    fn no_such_process() {
        let err = parse_status(
            "nope",
            &out(4, "nope: ERROR (no such process)\n"),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, AppError::NoSuchService { .. }), "{err}");
    }

    #[test]
    fn unreachable_socket_names_the_command_and_output() {
        let err = parse_status(
            "x",
            &out(4, "unix:///tmp/nosock no such file\n"),
            SystemTime::now(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("supervisorctl status x"), "{text}");
        assert!(text.contains("no such file"), "{text}");
        assert!(text.contains("exit status 4"), "{text}");
    }

    #[test]
    fn garbage_is_unexpected_output() {
        for text in [
            "",
            "x",
            "x WEIRD pid 3",
            "x RUNNING pid -1, uptime 0:00:01",
            "\u{0}\u{ffff}",
        ] {
            match parse_status("x", &out(0, text), SystemTime::now()) {
                Err(AppError::UnexpectedOutput { .. }) => {}
                // A RUNNING line with a bad pid is still RUNNING, without a pid.
                Ok(s) => {
                    assert_eq!(s.state, ServiceState::Running, "{text:?}");
                    assert_eq!(s.pid, None, "{text:?}");
                }
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn action_errors() {
        let spawn_error = out(7, "bad: ERROR (spawn error)\n");
        assert!(matches!(
            check_action("bad", &spawn_error),
            Err(AppError::CommandFailed { .. })
        ));
        let restarted_from_stopped = out(0, "x: ERROR (not running)\nx: started\n");
        assert!(check_action("x", &restarted_from_stopped).is_ok());
        let already = out(0, "x: ERROR (already started)\n");
        assert!(check_action("x", &already).is_ok());
        let none = out(1, "nope: ERROR (no such process)\n");
        assert!(matches!(
            check_action("nope", &none),
            Err(AppError::NoSuchService { .. })
        ));
        let failed_silently = out(2, "");
        assert!(check_action("x", &failed_silently).is_err());
    }
}
