//! The systemd manager at its command boundary. systemd cannot run on the test machine
//! (it is not PID 1 there and the rules forbid starting it), so `systemctl` is the only
//! mock of these tests: a shell script that records its arguments and prints the
//! `systemctl show` text the test gives it. That text has the form systemd 252 prints
//! for `show -p ...`: one `Key=value` per line, in the order of the unit's properties
//! (not the order asked for), timestamps as `Day YYYY-MM-DD HH:MM:SS ZONE`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gateway::app::systemd::SHOW_PROPERTIES;
use gateway::app::{
    AppController, AppError, LastExit, Principal, ServiceManager, ServiceState, Systemd,
    APP_CONF_NAME,
};
use gateway::config::control::SystemdSettings;

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
# Test stand-in for systemctl (no systemd runs here): records each call, prints
# show.txt for `show`, fails `restart`/`start` when fail.txt exists.
dir=$(dirname "$0")
printf '%s\n' "$*" >> "$dir/calls"
case "$1" in
  show) cat "$dir/show.txt" ;;
  restart|start)
    if [ -f "$dir/fail.txt" ]; then cat "$dir/fail.txt" >&2; exit 1; fi
    if [ -f "$dir/after.txt" ]; then cp "$dir/after.txt" "$dir/show.txt"; fi
    ;;
  *) echo "unknown command $1" >&2; exit 1 ;;
esac
"#;

const RUNNING: &str = "MainPID=4242\nExecMainCode=0\nExecMainStatus=0\nLoadState=loaded\n\
ActiveState=active\nSubState=running\nActiveEnterTimestamp=Fri 2025-11-28 02:40:00 UTC\n";

const INACTIVE: &str = "MainPID=0\nExecMainCode=1\nExecMainStatus=0\nLoadState=loaded\n\
ActiveState=inactive\nSubState=dead\nActiveEnterTimestamp=Fri 2025-11-28 01:00:00 UTC\n";

const FAILED: &str = "MainPID=0\nExecMainCode=1\nExecMainStatus=2\nLoadState=loaded\n\
ActiveState=failed\nSubState=failed\nActiveEnterTimestamp=\n";

const NOT_FOUND: &str = "MainPID=0\nExecMainCode=0\nExecMainStatus=0\nLoadState=not-found\n\
ActiveState=inactive\nSubState=dead\nActiveEnterTimestamp=\n";

const JOB_FAILED: &str =
    "Job for app.service failed because the control process exited with error code.\n\
See \"systemctl status app.service\" and \"journalctl -xeu app.service\" for details.\n";

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new(show: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("systemctl");
        std::fs::write(&path, FAKE_SYSTEMCTL).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("show.txt"), show).unwrap();
        // Another test thread may fork while the script's write descriptor is open, and
        // its child holds that descriptor until it execs: running the script then fails
        // with ETXTBSY. Wait until it runs once, then forget that call.
        for _ in 0..100 {
            match std::process::Command::new(&path).arg("warm-up").output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        let _ = std::fs::remove_file(dir.path().join("calls"));
        Fake { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn manager(&self, unit: &str) -> Systemd {
        Systemd::new(
            unit,
            SystemdSettings {
                systemctl: self.path("systemctl"),
                ..SystemdSettings::default()
            },
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn show_call(unit: &str) -> String {
    format!("show -p {SHOW_PROPERTIES} -- {unit}")
}

#[tokio::test]
async fn restart_then_show() {
    let fake = Fake::new(RUNNING);
    let status = fake.manager("app").restart().await.unwrap();
    assert_eq!(
        fake.calls(),
        vec!["restart -- app".to_string(), show_call("app")]
    );
    assert_eq!(status.state, ServiceState::Running);
    assert_eq!(status.pid, Some(4242));
    assert_eq!(
        status.since,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_297_600))
    );
    assert_eq!(
        status.since_rfc3339().as_deref(),
        Some("2025-11-28T02:40:00Z")
    );
    assert_eq!(status.last_exit, None);
}

#[tokio::test]
async fn init_of_a_stopped_unit_starts_it() {
    let fake = Fake::new(INACTIVE);
    std::fs::write(fake.path("after.txt"), RUNNING).unwrap();
    let storage = fake.path("storage");
    let controller = AppController::new(fake.manager("app"), Some(storage.clone()), 1024);
    let status = controller
        .init(&Principal::Token { index: 0 }, b"key = 1\n")
        .await
        .unwrap();
    assert_eq!(
        fake.calls(),
        vec![
            show_call("app"),
            "start -- app".to_string(),
            show_call("app")
        ]
    );
    assert_eq!(status.state, ServiceState::Running);
    assert_eq!(
        std::fs::read(storage.join(APP_CONF_NAME)).unwrap(),
        b"key = 1\n"
    );
}

#[tokio::test]
async fn failed_restart_quotes_systemctl() {
    let fake = Fake::new(RUNNING);
    std::fs::write(fake.path("fail.txt"), JOB_FAILED).unwrap();
    let err = fake.manager("app").restart().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AppError::CommandFailed { .. }), "{text}");
    assert!(text.contains("systemctl restart -- app"), "{text}");
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("Job for app.service failed"), "{text}");
    // No status is read after a failed restart.
    assert_eq!(fake.calls(), vec!["restart -- app".to_string()]);
}

#[tokio::test]
async fn failed_unit_and_unknown_unit() {
    let fake = Fake::new(FAILED);
    let status = fake.manager("app").status().await.unwrap();
    assert_eq!(status.state, ServiceState::Failed);
    assert_eq!(status.last_exit, Some(LastExit::Code(2)));
    assert_eq!(status.pid, None);
    assert_eq!(status.since, None);

    let fake = Fake::new(NOT_FOUND);
    let err = fake.manager("nope").status().await.unwrap_err();
    assert!(matches!(err, AppError::NoSuchService { .. }), "{err}");
}

#[tokio::test]
async fn a_unit_name_like_an_option_stays_a_name() {
    let fake = Fake::new(RUNNING);
    fake.manager("--force").restart().await.unwrap();
    assert_eq!(
        fake.calls().first().map(String::as_str),
        Some("restart -- --force")
    );
}

#[tokio::test]
async fn systemctl_missing_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing: &Path = &dir.path().join("systemctl");
    let err = Systemd::new(
        "app",
        SystemdSettings {
            systemctl: missing.to_path_buf(),
            ..SystemdSettings::default()
        },
    )
    .status()
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::Spawn { .. }), "{err}");
}

#[test]
fn status_serializes_for_the_api() {
    let mut status = gateway::app::ServiceStatus::new(
        gateway::app::ManagerKind::Systemd,
        "app",
        ServiceState::Backoff,
    );
    status.pid = Some(7);
    status.since = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_297_600));
    status.last_exit = Some(LastExit::Signal(9));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "manager": "systemd",
            "service": "app",
            "state": "backoff",
            "pid": 7,
            "since": "2025-11-28T02:40:00Z",
            "last_exit": {"signal": 9},
            "detail": null
        })
    );
}

#[tokio::test]
async fn refused_init_runs_no_systemctl() {
    let fake = Fake::new(RUNNING);
    let principal = Principal::Token { index: 0 };
    let nowhere = AppController::new(fake.manager("app"), None, 1024);
    let err = nowhere.init(&principal, b"x").await.unwrap_err();
    assert!(matches!(err, AppError::NoAppStorage), "{err}");
    let storage = fake.path("storage");
    let small = AppController::new(fake.manager("app"), Some(storage.clone()), 4);
    let err = small.init(&principal, b"12345").await.unwrap_err();
    assert!(
        matches!(err, AppError::ConfigTooLarge { got: 5, limit: 4 }),
        "{err}"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    assert!(!storage.exists());
}
