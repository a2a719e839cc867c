//! The standalone manager with real programs (small shell scripts): init replaces the
//! config and the restarted program reads it; a crashing program is started again with a
//! doubling, capped backoff and its exit is reported; a program that ignores SIGTERM is
//! killed after the grace period; output reaches the log with the service name; dropping
//! the manager leaves no process of the group behind.
//!
//! Nothing here asserts timing: waits poll with a generous deadline.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::app::{
    AppController, AppError, LastExit, Principal, ServiceManager, ServiceState, ServiceStatus,
    Standalone, APP_CONF_NAME,
};
use gateway::config::control::StandaloneSettings;

const PATIENCE: Duration = Duration::from_secs(30);

const PRINCIPAL: Principal = Principal::Token { index: 0 };

/// Copies its PID and the app.conf it read at start to `$2`, then sleeps as the same
/// process (SIGTERM ends it).
const APP_SCRIPT: &str = r#"#!/bin/sh
conf="$1"
out="$2"
{ echo "pid=$$"; cat "$conf"; } > "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
exec sleep 1000
"#;

fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn settings(script: &Path, args: &[&Path]) -> StandaloneSettings {
    let mut s = StandaloneSettings::new("/bin/sh");
    s.args = std::iter::once(script.as_os_str().to_os_string())
        .chain(args.iter().map(|a| OsString::from(a.as_os_str())))
        .collect();
    s.grace_period = Duration::from_secs(5);
    s.backoff_initial = Duration::from_millis(100);
    s.backoff_max = Duration::from_millis(400);
    s
}

async fn wait_status(
    manager: &impl ServiceManager,
    what: &str,
    mut ok: impl FnMut(&ServiceStatus) -> bool,
) -> ServiceStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = manager.status().await.unwrap();
        if ok(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: last status {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_file(path: &Path, expected: &[u8]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = std::fs::read(path).unwrap_or_default();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: expected {:?}, got {:?}",
            path.display(),
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&got)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seen_text(pid: u32, conf: &[u8]) -> Vec<u8> {
    let mut v = format!("pid={pid}\n").into_bytes();
    v.extend_from_slice(conf);
    v
}

/// True once `pid` is gone or a zombie (exited, not yet reaped by whoever owns it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + PATIENCE;
    while !gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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

/// Log lines of this thread; `#[tokio::test]` runs every task on the test's thread.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn init_replaces_the_config_and_restarts_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let conf = storage.join(APP_CONF_NAME);
    std::fs::write(&conf, b"version = 1\n").unwrap();
    let seen = dir.path().join("seen");
    let app = script(dir.path(), "app.sh", APP_SCRIPT);
    let (logs, _guard) = capture_logs();

    let manager = Standalone::spawn("app", settings(&app, &[&conf, &seen]));
    let controller = AppController::new(manager, Some(storage.clone()), 1 << 20);
    let first = wait_status(controller.manager(), "first start", |s| {
        s.state == ServiceState::Running
    })
    .await;
    let old_pid = first.pid.unwrap();
    assert!(first.since.is_some());
    wait_file(&seen, &seen_text(old_pid, b"version = 1\n")).await;

    let secret = b"version = 2\ntoken = \"s3cr3t-value\"\n";
    let after = controller.init(&PRINCIPAL, secret).await.unwrap();
    assert_eq!(after.state, ServiceState::Running);
    let new_pid = after.pid.unwrap();
    assert_ne!(new_pid, old_pid);
    // The old program was stopped with SIGTERM, which ended it.
    assert_eq!(after.last_exit, Some(LastExit::Signal(libc::SIGTERM)));
    wait_gone(old_pid).await;
    wait_file(&seen, &seen_text(new_pid, secret)).await;

    let status = controller.status(&PRINCIPAL).await.unwrap();
    assert_eq!(status.pid, Some(new_pid));
    assert!(!logs.text().contains("s3cr3t"), "{}", logs.text());

    let stopped = controller.into_manager().shutdown().await.unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped);
    wait_gone(new_pid).await;
}

#[tokio::test]
async fn crashing_program_is_restarted_with_capped_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let crash = script(
        dir.path(),
        "crash.sh",
        "#!/bin/sh\necho run >> \"$1\"\nexit 3\n",
    );
    let manager = Standalone::spawn("crash", settings(&crash, &[&runs]));

    let mut waits = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = manager.status().await.unwrap();
        if status.state == ServiceState::Backoff {
            assert_eq!(status.last_exit, Some(LastExit::Code(3)), "{status:?}");
            if let Some(detail) = &status.detail {
                waits.insert(detail.clone());
            }
        }
        let count = std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if count >= 6 && waits.contains("restarting in 400ms") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs {count}, waits seen {waits:?}, last {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every wait seen is one of the doubling steps, never above the cap.
    for wait in &waits {
        assert!(
            [
                "restarting in 100ms",
                "restarting in 200ms",
                "restarting in 400ms"
            ]
            .contains(&wait.as_str()),
            "unexpected backoff: {wait} (all: {waits:?})"
        );
    }
    // A stop ends the retries.
    let stopped = manager.stop().await.unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped);
    let count = std::fs::read_to_string(&runs).unwrap().lines().count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap().lines().count(),
        count,
        "a stopped program must not be started again"
    );
    manager.shutdown().await.unwrap();
}

#[tokio::test]
async fn program_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let stubborn = script(
        dir.path(),
        "stubborn.sh",
        "#!/bin/sh\ntrap '' TERM\necho $$ > \"$1\"\nwhile :; do sleep 0.1; done\n",
    );
    let mut s = settings(&stubborn, &[&ready]);
    s.grace_period = Duration::from_millis(500);
    let (logs, _guard) = capture_logs();
    let manager = Standalone::spawn("stubborn", s);
    let running = wait_status(&manager, "start", |s| s.state == ServiceState::Running).await;
    let pid = running.pid.unwrap();
    // The trap is set before the PID is written.
    wait_file(&ready, format!("{pid}\n").as_bytes()).await;

    let stopped = manager.stop().await.unwrap();
    assert_eq!(stopped.state, ServiceState::Stopped);
    assert_eq!(stopped.last_exit, Some(LastExit::Signal(libc::SIGKILL)));
    assert_eq!(stopped.pid, None);
    wait_gone(pid).await;
    assert!(logs.text().contains("ignored SIGTERM"), "{}", logs.text());

    // start() after stop() runs it again.
    let again = manager.start().await.unwrap();
    assert_eq!(again.state, ServiceState::Running);
    assert_ne!(again.pid, Some(pid));
    let again_pid = again.pid.unwrap();
    drop(manager);
    wait_gone(again_pid).await;
}

#[tokio::test]
async fn output_is_logged_with_the_service_name() {
    let dir = tempfile::tempdir().unwrap();
    let talk = script(
        dir.path(),
        "talk.sh",
        "#!/bin/sh\necho hello-from-stdout\necho hello-from-stderr >&2\n\
         printf 'no newline at the end'\nexec sleep 1000\n",
    );
    let (logs, _guard) = capture_logs();
    let manager = Standalone::spawn("talker", settings(&talk, &[]));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = logs.text();
        let lines: Vec<&str> = text.lines().collect();
        let has = |needle: &str, stream: &str| {
            lines.iter().any(|l| {
                l.contains(needle) && l.contains("service=\"talker\"") && l.contains(stream)
            })
        };
        if has("hello-from-stdout", "stream=\"stdout\"")
            && has("hello-from-stderr", "stream=\"stderr\"")
        {
            break;
        }
        assert!(Instant::now() < deadline, "output not logged: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The unterminated line is logged once the stream closes.
    manager.shutdown().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !logs.text().contains("no newline at the end") {
        assert!(
            Instant::now() < deadline,
            "last line not logged: {}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn dropping_the_manager_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let parent = script(
        dir.path(),
        "parent.sh",
        "#!/bin/sh\nsleep 1000 &\necho \"$$ $!\" > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"\nwait\n",
    );
    let manager = Standalone::spawn("family", settings(&parent, &[&pids]));
    let deadline = Instant::now() + PATIENCE;
    let (leader, helper) = loop {
        let text = std::fs::read_to_string(&pids).unwrap_or_default();
        let numbers: Vec<u32> = text
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [leader, helper] = numbers[..] {
            break (leader, helper);
        }
        assert!(Instant::now() < deadline, "no pids written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!gone(leader) && !gone(helper));
    drop(manager);
    wait_gone(leader).await;
    wait_gone(helper).await;
}

#[tokio::test]
async fn missing_program_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = StandaloneSettings::new(dir.path().join("no-such-program"));
    s.autostart = false;
    s.backoff_initial = Duration::from_millis(100);
    s.backoff_max = Duration::from_millis(200);
    let manager = Standalone::spawn("ghost", s);
    assert_eq!(manager.status().await.unwrap().state, ServiceState::Stopped);
    let err = manager.start().await.unwrap_err();
    assert!(matches!(err, AppError::StartFailed { .. }), "{err}");
    assert!(err.to_string().contains("no-such-program"), "{err}");
    let status = manager.status().await.unwrap();
    assert_eq!(status.state, ServiceState::Backoff);
    assert!(status
        .detail
        .unwrap_or_default()
        .contains("no-such-program"));
    manager.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_inits_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let conf = storage.join(APP_CONF_NAME);
    std::fs::write(&conf, b"start\n").unwrap();
    let seen = dir.path().join("seen");
    let app = script(dir.path(), "app.sh", APP_SCRIPT);
    let controller = AppController::new(
        Standalone::spawn("app", settings(&app, &[&conf, &seen])),
        Some(storage.clone()),
        1 << 20,
    );
    wait_status(controller.manager(), "first start", |s| {
        s.state == ServiceState::Running
    })
    .await;
    let (a, b) = tokio::join!(
        controller.init(&PRINCIPAL, b"from a\n"),
        controller.init(&PRINCIPAL, b"from b\n")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.pid, b.pid);
    let last = controller.status(&PRINCIPAL).await.unwrap();
    // The init whose restart came last wrote the config the running program read.
    let winner: &[u8] = if last.pid == a.pid {
        b"from a\n"
    } else {
        assert_eq!(last.pid, b.pid, "{last:?} is neither {a:?} nor {b:?}");
        b"from b\n"
    };
    assert_eq!(std::fs::read(&conf).unwrap(), winner);
    wait_file(&seen, &seen_text(last.pid.unwrap(), winner)).await;
    controller.into_manager().shutdown().await.unwrap();
}

#[tokio::test]
async fn environment_and_working_directory_reach_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = dir.path().join("out");
    let env_script = script(
        dir.path(),
        "env.sh",
        "#!/bin/sh\nprintf '%s %s\\n' \"$VERIGATE_APP_TEST\" \"$(pwd)\" > \"$1\"\nexec sleep 1000\n",
    );
    let mut s = settings(&env_script, &[&out]);
    s.env = vec![("VERIGATE_APP_TEST".into(), "value with spaces".into())];
    s.working_dir = Some(work.clone());
    let manager = Standalone::spawn("env", s);
    wait_file(
        &out,
        format!("value with spaces {}\n", work.display()).as_bytes(),
    )
    .await;
    manager.shutdown().await.unwrap();
}

/// The running program's identity, as `id` prints it, and the process's own groups.
const WHOAMI_SCRIPT: &str = r#"#!/bin/sh
out="$1"
{ echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; } > "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
exec sleep 1000
"#;

#[tokio::test]
async fn a_program_with_user_and_group_runs_without_root() {
    // Changing to another user takes root (CAP_SETUID), as verigated has in its unit.
    let root = rustix::process::geteuid().is_root();
    if !testkit::require(
        root,
        "root, to start a program as another user",
        "run the tests as root",
    ) {
        return;
    }
    let resolve = |user: &str, group: Option<&str>| {
        gateway::config::account::resolve(
            user,
            group,
            gateway::config::account::AccountFiles::system(),
        )
    };
    // `nobody` exists on every Debian-like system.
    let Ok(nobody) = resolve("nobody", None) else {
        testkit::require(false, "a user `nobody` in /etc/passwd", "useradd nobody");
        return;
    };
    // The script and its output folder must be reachable by nobody.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let app = script(dir.path(), "whoami.sh", WHOAMI_SCRIPT);
    let out = dir.path().join("identity");
    let mut s = settings(&app, &[&out]);
    s.run_as = Some(nobody);
    let manager = Standalone::spawn("unprivileged", s);
    wait_status(&manager, "running", |s| s.state == ServiceState::Running).await;
    let expected = format!(
        "uid={} gid={} groups={}\n",
        nobody.uid, nobody.gid, nobody.gid
    );
    // Root's supplementary groups are gone: the only group is the one configured.
    wait_file(&out, expected.as_bytes()).await;
    manager.shutdown().await.unwrap();

    // And a group of its own: `group` wins over the user's primary group.
    let Ok(with_group) = resolve("nobody", Some("0")) else {
        panic!("group 0 by number");
    };
    assert_eq!((with_group.uid, with_group.gid), (nobody.uid, 0));
}
