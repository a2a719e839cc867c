//! App control with a real supervisord (testkit): `init` replaces `app.conf` and restarts
//! the program, and the restarted program reads the new config (it copies what it read,
//! with its PID, to a file the test checks); status reports RUNNING with the new PID; a
//! stopped program is started; a failed write or an oversized config leaves the program
//! and the previous config alone; supervisorctl's failures are reported with its words;
//! each action is logged without the configuration bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::app::{
    AppController, AppError, Principal, ServiceManager, ServiceState, Supervisor, APP_CONF_NAME,
};
use gateway::config::control::SupervisorSettings;
use testkit::supervisord::{self, Program, Supervisord};

/// How long to wait for something that should happen; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

const PRINCIPAL: Principal = Principal::Token { index: 0 };

/// The application: copies its PID and the app.conf it read at start to `$2`
/// (atomically, so the test never reads half a file), then sleeps as the same process.
const APP_SCRIPT: &str = r#"#!/bin/sh
conf="$1"
out="$2"
{ echo "pid=$$"; cat "$conf"; } > "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
exec sleep 1000
"#;

struct Setup {
    dir: tempfile::TempDir,
    storage: PathBuf,
    seen: PathBuf,
}

impl Setup {
    fn new(initial: &[u8]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        std::fs::write(storage.join(APP_CONF_NAME), initial).unwrap();
        std::fs::write(dir.path().join("app.sh"), APP_SCRIPT).unwrap();
        let seen = dir.path().join("seen");
        Setup { dir, storage, seen }
    }

    fn command(&self) -> String {
        format!(
            "/bin/sh {} {} {}",
            self.dir.path().join("app.sh").display(),
            self.storage.join(APP_CONF_NAME).display(),
            self.seen.display()
        )
    }
}

/// Waits until the program has written `pid=PID` followed by `conf`.
fn wait_seen(seen: &Path, pid: u32, conf: &[u8]) {
    let mut expected = format!("pid={pid}\n").into_bytes();
    expected.extend_from_slice(conf);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = std::fs::read(seen).unwrap_or_default();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the program did not report reading the config: expected {:?}, got {:?}",
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(&got)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_supervisord(setup: &Setup) -> Option<Supervisord> {
    if !testkit::require(
        supervisord::available(),
        "supervisord and supervisorctl",
        testkit::require::install::SUPERVISOR,
    ) {
        return None;
    }
    Some(Supervisord::start(&Program::new("app", &setup.command())).expect("supervisord"))
}

/// Polls until supervisord reports the program RUNNING (it is STARTING for `startsecs`
/// after supervisord starts it).
async fn wait_running(manager: &Supervisor) -> gateway::app::ServiceStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = manager.status().await.unwrap();
        if status.state == ServiceState::Running {
            return status;
        }
        assert!(Instant::now() < deadline, "never RUNNING: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn via_conf(sv: &Supervisord) -> SupervisorSettings {
    SupervisorSettings {
        conf: Some(sv.conf().to_path_buf()),
        ..SupervisorSettings::default()
    }
}

/// Collects the log lines of the current thread (the tests run on a current-thread
/// runtime, so the controller logs there).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

#[tokio::test]
async fn init_replaces_the_config_and_restarts_the_program() {
    let setup = Setup::new(b"version = 1\n");
    let Some(sv) = start_supervisord(&setup) else {
        return;
    };
    let (logs, _guard) = capture_logs();
    let controller = AppController::new(
        Supervisor::new("app", via_conf(&sv)),
        Some(setup.storage.clone()),
        1 << 20,
    );

    wait_running(controller.manager()).await;
    let before = controller.status(&PRINCIPAL).await.unwrap();
    assert_eq!(
        before.state,
        ServiceState::Running,
        "{before:?}\n{}",
        sv.log()
    );
    let old_pid = before.pid.expect("a running program has a pid");
    assert!(before.since.is_some());
    wait_seen(&setup.seen, old_pid, b"version = 1\n");

    let secret = b"version = 2\npassword = \"hunter2-very-secret\"\n";
    let after = controller.init(&PRINCIPAL, secret).await.unwrap();
    assert_eq!(
        after.state,
        ServiceState::Running,
        "{after:?}\n{}",
        sv.log()
    );
    let new_pid = after.pid.expect("pid after restart");
    assert_ne!(new_pid, old_pid, "init must restart the program");
    // The restarted program read the new config.
    wait_seen(&setup.seen, new_pid, secret);
    assert_eq!(
        std::fs::read(setup.storage.join(APP_CONF_NAME)).unwrap(),
        secret
    );

    let status = controller.status(&PRINCIPAL).await.unwrap();
    assert_eq!(status.state, ServiceState::Running);
    assert_eq!(status.pid, Some(new_pid));

    let text = logs.text();
    assert!(text.contains("action=\"init\""), "{text}");
    assert!(text.contains("outcome=\"ok\""), "{text}");
    assert!(text.contains("token admin_token_sha256[0]"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the configuration reached the log: {text}"
    );
}

#[tokio::test]
async fn init_through_the_socket_starts_a_stopped_program() {
    let setup = Setup::new(b"a\n");
    let Some(sv) = start_supervisord(&setup) else {
        return;
    };
    // Only `-s unix://...`, no config file.
    let settings = SupervisorSettings {
        server_url: Some(sv.server_url()),
        ..SupervisorSettings::default()
    };
    let manager = Supervisor::new("app", settings);
    wait_running(&manager).await;
    let stop = std::process::Command::new("supervisorctl")
        .arg("-s")
        .arg(sv.server_url())
        .args(["stop", "app"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    let stopped = manager.status().await.unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped);
    assert_eq!(stopped.pid, None);

    let controller = AppController::new(manager, Some(setup.storage.clone()), 1 << 20);
    let after = controller.init(&PRINCIPAL, b"b\n").await.unwrap();
    assert_eq!(
        after.state,
        ServiceState::Running,
        "{after:?}\n{}",
        sv.log()
    );
    wait_seen(&setup.seen, after.pid.unwrap(), b"b\n");

    // restart() of a running program gives it a new PID.
    let again = controller.restart(&PRINCIPAL).await.unwrap();
    assert_eq!(again.state, ServiceState::Running);
    assert_ne!(again.pid, after.pid);
}

#[tokio::test]
async fn refused_config_leaves_program_and_file_alone() {
    let setup = Setup::new(b"keep me\n");
    let Some(sv) = start_supervisord(&setup) else {
        return;
    };
    let controller = AppController::new(
        Supervisor::new("app", via_conf(&sv)),
        Some(setup.storage.clone()),
        16,
    );
    let before = wait_running(controller.manager()).await;
    wait_seen(&setup.seen, before.pid.unwrap(), b"keep me\n");

    // Too large.
    let err = controller.init(&PRINCIPAL, &[b'x'; 17]).await.unwrap_err();
    assert!(
        matches!(err, AppError::ConfigTooLarge { got: 17, limit: 16 }),
        "{err}"
    );

    // A write that fails: the storage folder is immutable (chattr +i; root ignores
    // permission bits).
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&setup.storage)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if immutable {
        let result = controller.init(&PRINCIPAL, b"new\n").await;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&setup.storage)
            .status();
        let err = result.unwrap_err();
        assert!(matches!(err, AppError::Write(_)), "{err}");
    } else {
        // Only the failed-write half needs chattr; the rest of the test still runs.
        testkit::require(
            false,
            "a working `chattr +i` (the failed-write half of this test)",
            testkit::require::install::E2FSPROGS,
        );
    }

    let after = controller.status(&PRINCIPAL).await.unwrap();
    assert_eq!(
        after.pid, before.pid,
        "a refused init must not restart the program"
    );
    assert_eq!(
        std::fs::read(setup.storage.join(APP_CONF_NAME)).unwrap(),
        b"keep me\n"
    );
    let names: Vec<_> = std::fs::read_dir(&setup.storage).unwrap().collect();
    assert_eq!(names.len(), 1, "only app.conf remains");
}

#[tokio::test]
async fn unknown_program_and_dead_socket_are_named() {
    let setup = Setup::new(b"x\n");
    let Some(sv) = start_supervisord(&setup) else {
        return;
    };
    let err = Supervisor::new("nope", via_conf(&sv))
        .status()
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::NoSuchService { .. }), "{err}");
    let err = Supervisor::new("nope", via_conf(&sv))
        .restart()
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::NoSuchService { .. }), "{err}");

    let dead = SupervisorSettings {
        server_url: Some(format!("unix://{}/no.sock", setup.dir.path().display())),
        ..SupervisorSettings::default()
    };
    let err = Supervisor::new("app", dead).status().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("supervisorctl -s unix://"), "{text}");
    assert!(text.contains("no.sock"), "{text}");

    let missing_tool = SupervisorSettings {
        supervisorctl: setup.dir.path().join("no-such-supervisorctl"),
        ..via_conf(&sv)
    };
    let err = Supervisor::new("app", missing_tool)
        .status()
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Spawn { .. }), "{err}");
}

#[tokio::test]
async fn a_program_that_cannot_start_is_failed_and_restart_says_why() {
    if !testkit::require(
        supervisord::available(),
        "supervisord and supervisorctl",
        testkit::require::install::SUPERVISOR,
    ) {
        return;
    }
    let sv = Supervisord::start(&Program::new("crash", "/bin/sh -c 'exit 3'")).unwrap();
    let manager = Supervisor::new("crash", via_conf(&sv));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let status = manager.status().await.unwrap();
        if status.state == ServiceState::Failed {
            break status;
        }
        assert!(Instant::now() < deadline, "never FATAL: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.pid, None);
    assert!(status
        .detail
        .unwrap_or_default()
        .contains("Exited too quickly"));

    let err = manager.restart().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AppError::CommandFailed { .. }), "{text}");
    assert!(text.contains("restart crash"), "{text}");
    assert!(text.contains("spawn error"), "{text}");
}
