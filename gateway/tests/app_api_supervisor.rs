//! App control over HTTP with a real supervisord running the application: init with a
//! valid token replaces app.conf and supervisord restarts the program, which reads the
//! new config; a wrong token changes nothing (same app.conf, same PID). Without
//! supervisord it skips with a message, or fails under CI (`testkit::require`).

mod common;

use std::process::Command;
use std::time::Instant;

use common::{Gateway, PATIENCE};
use sha2::{Digest, Sha256};
use testkit::supervisord::{Program, Supervisord};

const TOKEN: &str = "supervised-app-token";

/// (PID, config) the program last recorded in `out`, waiting for one whose PID is not
/// `not_pid`.
fn recorded(out: &std::path::Path, not_pid: Option<i32>) -> (i32, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(out) {
            if let Some((first, rest)) = text.split_once('\n') {
                if let Some(pid) = first.strip_prefix("pid=").and_then(|p| p.parse().ok()) {
                    if Some(pid) != not_pid {
                        return (pid, rest.to_string());
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the program never recorded a new start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn curl(gw: &Gateway, method: &str, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "90", "-X", method])
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{}{path}", gw.addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn init_over_http_restarts_a_supervisord_program_with_the_new_config() {
    if !testkit::require_programs(
        &["supervisord", "supervisorctl"],
        testkit::require::install::SUPERVISOR,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("app");
    std::fs::create_dir_all(&storage).unwrap();
    let conf = storage.join("app.conf");
    std::fs::write(&conf, "version=1\n").unwrap();
    let out = dir.path().join("program-read");
    let script = dir.path().join("app.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"pid=$$\"; cat \"{}\"; }} > \"{o}.tmp.$$\" && mv \"{o}.tmp.$$\" \"{o}\"\nexec sleep 1000\n",
            conf.display(),
            o = out.display()
        ),
    )
    .unwrap();
    let sup = Supervisord::start(&Program::new(
        "app",
        &format!("/bin/sh {}", script.display()),
    ))
    .expect("supervisord");
    let (before, read) = recorded(&out, None);
    assert_eq!(read, "version=1\n");

    let extra = format!(
        "[api]\nadmin_token_sha256 = [\"{}\"]\n\n[app]\nservice_type = \"supervisor\"\nservice_name = \"app\"\n\
         app_storage = \"app\"\nsupervisor_socket = \"{}\"\n",
        hex::encode(Sha256::digest(TOKEN.as_bytes())),
        sup.socket().display()
    );
    let gw = Gateway::start(dir.path(), "", &extra);

    let new_conf = dir.path().join("new.conf");
    std::fs::write(&new_conf, "version=2\n").unwrap();
    let data = format!("@{}", new_conf.display());

    let (code, body) = curl(
        &gw,
        "POST",
        "/v1/app/init",
        &["-H", "Authorization: Bearer wrong", "--data-binary", &data],
    );
    assert_eq!(code, 401, "{body}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "version=1\n");
    assert_eq!(recorded(&out, None).0, before);

    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = curl(
        &gw,
        "POST",
        "/v1/app/init",
        &["-H", &auth, "--data-binary", &data],
    );
    assert_eq!(code, 200, "{body}; log:\n{}", gw.log());
    let (after, read) = recorded(&out, Some(before));
    assert_eq!(
        read, "version=2\n",
        "the restarted program read the new config"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["manager"], "supervisor");
    assert_eq!(v["state"], "running", "{body}");
    assert_eq!(v["pid"], after, "{body}");

    let (code, body) = curl(&gw, "GET", "/v1/app/status", &["-H", &auth]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["pid"],
        after
    );
}
