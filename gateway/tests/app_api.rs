//! App control over HTTP against a real verigated whose `[app]` is a standalone program
//! (a shell script that records its PID and the app.conf it read): calls without a
//! credential configured (403), without one sent or with a wrong one (401) change
//! nothing — same app.conf, same PID; init with a valid token replaces app.conf and the
//! restarted program reads the new one; status reports it; a body over
//! `max_config_bytes` is refused (413) whether announced or streamed, and nothing is
//! written; a client certificate from `[api] client_ca` is a credential, one from
//! another CA is not; without `[app]` the calls answer 409. curl is the client (it sends
//! no SNI to 127.0.0.1, which reaches the own endpoint).
//!
//! Nothing here asserts timing: waits poll with a generous deadline.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{Gateway, PATIENCE};
use sha2::{Digest, Sha256};

const TOKEN: &str = "s3cret-operator-token";

/// Records `pid=<its pid>` and the app.conf it read into `$2`, then sleeps as the same
/// process.
const APP_SCRIPT: &str = r#"#!/bin/sh
conf="$1"
out="$2"
{ echo "pid=$$"; cat "$conf"; } > "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
exec sleep 1000
"#;

/// A verigated running the script, plus the paths the test checks; on drop stops
/// verigated and, should its standalone child outlive it, that child's group too.
struct Vm {
    gw: Option<Gateway>,
    conf: PathBuf,
    out: PathBuf,
    pids: std::cell::RefCell<Vec<i32>>,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(gw) = self.gw.take() {
            drop(gw);
        }
        // The program last started may not have been seen yet (a test that failed early).
        if let Some(pid) = std::fs::read_to_string(&self.out)
            .ok()
            .and_then(|t| t.lines().next()?.strip_prefix("pid=")?.parse::<i32>().ok())
        {
            self.pids.borrow_mut().push(pid);
        }
        // verigated killed with SIGKILL cannot stop the program it started: stop the
        // groups of the PIDs this test saw (each one a program the test made it start).
        for pid in self.pids.borrow().iter() {
            if *pid > 1 {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

impl Vm {
    fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("gateway")
    }

    /// The PID and config the program last recorded, waiting until it wrote one whose
    /// PID is not `not_pid`.
    fn program(&self, not_pid: Option<i32>) -> (i32, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.out) {
                if let Some((first, rest)) = text.split_once('\n') {
                    if let Some(pid) = first.strip_prefix("pid=").and_then(|p| p.parse().ok()) {
                        self.pids.borrow_mut().push(pid);
                        if Some(pid) != not_pid {
                            return (pid, rest.to_string());
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the program never recorded a new start; verigated's log:\n{}",
                self.gw().log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The `[api]`, `[app]` and `[app.standalone]` sections for the script in `dir`.
fn sections(dir: &Path, api: &str, grace: &str) -> String {
    let conf = dir.join("app").join("app.conf");
    format!(
        "[api]\n{api}\n\n[app]\nservice_type = \"standalone\"\nservice_name = \"demo\"\napp_storage = \"app\"\n\n\
         [app.standalone]\ncommand = [\"/bin/sh\", \"{}\", \"{}\", \"{}\"]\nstop_grace_period = \"{grace}\"\n",
        dir.join("app.sh").display(),
        conf.display(),
        dir.join("program-read").display()
    )
}

/// Starts verigated in `dir` with `api` lines under `[api]` and a standalone `[app]`.
fn start(dir: &Path, api: &str) -> Vm {
    let storage = dir.join("app");
    std::fs::create_dir_all(&storage).unwrap();
    let conf = storage.join("app.conf");
    std::fs::write(&conf, "version=1\n").unwrap();
    let script = dir.join("app.sh");
    std::fs::write(&script, APP_SCRIPT).unwrap();
    let out = dir.join("program-read");
    let extra = sections(dir, api, "5s");
    let vm = Vm {
        gw: Some(Gateway::start(dir, "", &extra)),
        conf,
        out,
        pids: Default::default(),
    };
    vm.program(None);
    vm
}

/// A curl call to the own endpoint; returns (HTTP status, body).
fn curl(gw: &Gateway, method: &str, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "60", "-X", method])
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{}{path}", gw.addr))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Every control call answers `status` with an error JSON, and the program and its
/// app.conf are as before.
fn assert_all_refused(vm: &Vm, args: &[&str], status: u16, detail_has: &str) {
    let (pid, _) = vm.program(None);
    let new_conf = vm.gw().dir.join("new.conf");
    std::fs::write(&new_conf, "version=evil\n").unwrap();
    let data = format!("@{}", new_conf.display());
    for (method, path) in [
        ("POST", "/v1/app/init"),
        ("POST", "/v1/app/restart"),
        ("GET", "/v1/app/status"),
    ] {
        let mut all = args.to_vec();
        if path == "/v1/app/init" {
            all.extend(["--data-binary", &data]);
        }
        let (code, body) = curl(vm.gw(), method, path, &all);
        assert_eq!(code, status, "{method} {path}: {body}");
        let v = json(&body);
        assert!(v["error"].is_string(), "{body}");
        assert!(
            v["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(detail_has),
            "{method} {path}: {body}"
        );
    }
    assert_eq!(std::fs::read_to_string(&vm.conf).unwrap(), "version=1\n");
    assert_eq!(vm.program(None).0, pid, "the program was restarted");
    assert!(!vm.gw().log().contains(TOKEN), "a token reached the log");
}

#[test]
fn without_a_configured_credential_every_call_is_403_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let vm = start(dir.path(), "");
    assert_all_refused(&vm, &["-H", &bearer(TOKEN)], 403, "admin_token_sha256");
    assert_all_refused(&vm, &[], 403, "admin_token_sha256");
}

#[test]
fn missing_or_wrong_tokens_are_401_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vm = start(
        dir.path(),
        &format!("admin_token_sha256 = [\"{}\"]", sha256_hex(TOKEN)),
    );
    assert_all_refused(&vm, &[], 401, "no credential");
    assert_all_refused(&vm, &["-H", &bearer("not-the-token")], 401, "not accepted");
    assert_all_refused(
        &vm,
        &["-H", &format!("Authorization: Basic {TOKEN}")],
        401,
        "Bearer",
    );
    let h = bearer(TOKEN);
    assert_all_refused(
        &vm,
        &["-H", &h, "-H", "Authorization: Bearer other"],
        401,
        "2 Authorization headers",
    );
    let log = vm.gw().log();
    assert!(
        log.contains("outcome=\"refused\"") || log.contains("outcome=refused"),
        "{log}"
    );
}

#[test]
fn init_with_a_valid_token_replaces_the_config_and_restarts_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let vm = start(
        dir.path(),
        &format!(
            "admin_token_sha256 = [\"{}\", \"{}\"]",
            sha256_hex("other"),
            sha256_hex(TOKEN)
        ),
    );
    let (before, read) = vm.program(None);
    assert_eq!(read, "version=1\n");

    let h = bearer(TOKEN);
    let (code, body) = curl(vm.gw(), "GET", "/v1/app/status", &["-H", &h]);
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["manager"], "standalone");
    assert_eq!(v["service"], "demo");
    assert_eq!(v["state"], "running");
    assert_eq!(v["pid"], before);
    assert!(
        v["since"].as_str().is_some_and(|s| s.contains('T')),
        "{body}"
    );

    let new_conf = dir.path().join("new.conf");
    std::fs::write(&new_conf, "version=2\nsecret=hunter2\n").unwrap();
    let data = format!("@{}", new_conf.display());
    let (code, body) = curl(
        vm.gw(),
        "POST",
        "/v1/app/init",
        &["-H", &h, "--data-binary", &data],
    );
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["state"], "running", "{body}");
    let (after, read) = vm.program(Some(before));
    assert_eq!(
        read, "version=2\nsecret=hunter2\n",
        "the restarted program read the new config"
    );
    assert_eq!(v["pid"], after, "{body}");
    assert_eq!(
        std::fs::read_to_string(&vm.conf).unwrap(),
        "version=2\nsecret=hunter2\n"
    );
    let log = vm.gw().log();
    assert!(
        !log.contains("hunter2"),
        "the configuration reached the log:\n{log}"
    );
    assert!(!log.contains(TOKEN), "the token reached the log");
    assert!(
        log.contains("admin_token_sha256[1]"),
        "the principal is logged:\n{log}"
    );

    let (code, body) = curl(vm.gw(), "POST", "/v1/app/restart", &["-H", &h]);
    assert_eq!(code, 200, "{body}");
    let (third, read) = vm.program(Some(after));
    assert_eq!(json(&body)["pid"], third);
    assert_eq!(read, "version=2\nsecret=hunter2\n");

    // Wrong methods and unknown paths are JSON too.
    let (code, body) = curl(vm.gw(), "GET", "/v1/app/init", &["-H", &h]);
    assert_eq!(code, 405, "{body}");
    assert_eq!(json(&body)["error"], "method not allowed");
    let (code, body) = curl(vm.gw(), "GET", "/v1/app/nothing", &["-H", &h]);
    assert_eq!(code, 404, "{body}");
    assert!(json(&body)["error"].is_string());
}

#[test]
fn a_body_over_the_limit_is_413_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let vm = start(
        dir.path(),
        &format!(
            "admin_token_sha256 = [\"{}\"]\nmax_config_bytes = 64",
            sha256_hex(TOKEN)
        ),
    );
    let (pid, _) = vm.program(None);
    let h = bearer(TOKEN);
    let big = dir.path().join("big.conf");
    std::fs::write(&big, "x".repeat(65)).unwrap();
    let data = format!("@{}", big.display());
    // Announced by Content-Length, then streamed in chunks with no length.
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let mut args = vec!["-H", h.as_str(), "--data-binary", data.as_str()];
        args.extend_from_slice(extra);
        let (code, body) = curl(vm.gw(), "POST", "/v1/app/init", &args);
        assert_eq!(code, 413, "{extra:?}: {body}");
        assert!(
            json(&body)["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("64"),
            "{body}"
        );
        assert_eq!(std::fs::read_to_string(&vm.conf).unwrap(), "version=1\n");
        assert_eq!(vm.program(None).0, pid);
    }
    // Far larger than anything verigated reads: refused (413, or a closed connection
    // once the bounded drain gives up), nothing written, and verigated still serves.
    std::fs::write(&big, vec![b'z'; 3 << 20]).unwrap();
    let (code, body) = curl(
        vm.gw(),
        "POST",
        "/v1/app/init",
        &[
            "-H",
            &h,
            "--data-binary",
            &data,
            "-H",
            "Transfer-Encoding: chunked",
        ],
    );
    assert!(code == 413 || code == 0, "{code}: {body}");
    assert_eq!(std::fs::read_to_string(&vm.conf).unwrap(), "version=1\n");
    assert_eq!(vm.program(None).0, pid);
    assert!(vm.gw().get("/healthz").0.contains("200"));

    // Exactly the limit passes.
    std::fs::write(&big, "y".repeat(64)).unwrap();
    let (code, body) = curl(
        vm.gw(),
        "POST",
        "/v1/app/init",
        &["-H", &h, "--data-binary", &data],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(vm.program(Some(pid)).1, "y".repeat(64));
}

/// A CA and a client certificate it issued, made with openssl; returns (ca, cert, key).
fn client_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: &PathBuf| p.display().to_string();
    let (ca, ca_key, cert, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("client.pem"),
        p("client.key"),
        p("client.csr"),
        p("ext"),
    );
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
        "-subj",
        &format!("/CN={name} operators CA"),
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        "/CN=operator",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-out",
        &s(&cert),
        "-days",
        "2",
        "-extfile",
        &s(&ext),
    ]);
    (ca, cert, key)
}

#[test]
fn a_client_certificate_from_the_client_ca_is_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_pki(dir.path(), "good");
    let (_, other_cert, other_key) = client_pki(dir.path(), "other");
    let vm = start(dir.path(), &format!("client_ca = \"{}\"", ca.display()));
    let (pid, _) = vm.program(None);

    // No certificate and no token: 401 (a credential is configured).
    assert_all_refused(&vm, &[], 401, "no credential");
    // A certificate from another CA: the handshake fails or the call is refused.
    let (code, body) = curl(
        vm.gw(),
        "POST",
        "/v1/app/restart",
        &[
            "--cert",
            &other_cert.display().to_string(),
            "--key",
            &other_key.display().to_string(),
        ],
    );
    assert!(
        code == 0 || code == 401,
        "another CA's certificate got {code}: {body}"
    );
    assert_eq!(vm.program(None).0, pid);

    let c = cert.display().to_string();
    let k = key.display().to_string();
    let (code, body) = curl(
        vm.gw(),
        "GET",
        "/v1/app/status",
        &["--cert", &c, "--key", &k],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["pid"], pid);
    let new_conf = dir.path().join("new.conf");
    std::fs::write(&new_conf, "version=cert\n").unwrap();
    let data = format!("@{}", new_conf.display());
    let (code, body) = curl(
        vm.gw(),
        "POST",
        "/v1/app/init",
        &["--cert", &c, "--key", &k, "--data-binary", &data],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(vm.program(Some(pid)).1, "version=cert\n");
    assert!(
        vm.gw().log().contains("client certificate"),
        "the principal is logged"
    );

    // Attestation clients without a certificate still reach the rest of the endpoint.
    let (status, _) = vm.gw().get("/healthz");
    assert!(status.contains("200"), "{status}");
}

#[test]
fn without_an_app_section_calls_answer_409() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        "",
        &format!("[api]\nadmin_token_sha256 = [\"{}\"]\n", sha256_hex(TOKEN)),
    );
    let (code, body) = curl(&gw, "GET", "/v1/app/status", &["-H", &bearer(TOKEN)]);
    assert_eq!(code, 409, "{body}");
    assert_eq!(json(&body)["error"], "no [app] configured");
    // Authentication still comes first.
    let (code, _) = curl(&gw, "POST", "/v1/app/restart", &[]);
    assert_eq!(code, 401);
}

#[test]
fn check_config_names_the_app_control_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verigated.toml");
    std::fs::write(
        &path,
        "[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"vm.example.com\"\ndata_dir = \"/nonexistent-verigate\"\n\
         [api]\nmax_config_bytes = 0\nclient_ca = \"/nonexistent/ca.pem\"\n\
         [app]\nservice_type = \"standalone\"\nservice_name = \"demo\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for field in ["api.max_config_bytes", "api.client_ca", "app.standalone"] {
        assert!(text.contains(field), "{field} not named:\n{text}");
    }
    std::fs::write(&path, "[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"vm.example.com\"\n[app]\nservice_type = \"supervisor\"\nservice_name = \"demo\"\nunknown_key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown_key")
            || String::from_utf8_lossy(&out.stdout).contains("unknown_key")
    );
}

#[test]
fn the_application_survives_a_reload_and_new_tokens_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let old_token = format!("admin_token_sha256 = [\"{}\"]", sha256_hex(TOKEN));
    let vm = start(dir.path(), &old_token);
    let (pid, _) = vm.program(None);

    // Another token, same [app]: the program keeps running; the new token works at once.
    vm.gw().rewrite_routes(&sections(
        dir.path(),
        &format!("admin_token_sha256 = [\"{}\"]", sha256_hex("new-token")),
        "5s",
    ));
    vm.gw().signal(1); // SIGHUP
    vm.gw().wait_for_log("configuration reloaded");
    let (code, body) = curl(vm.gw(), "GET", "/v1/app/status", &["-H", &bearer(TOKEN)]);
    assert_eq!(code, 401, "the old token still works: {body}");
    let (code, body) = curl(
        vm.gw(),
        "GET",
        "/v1/app/status",
        &["-H", &bearer("new-token")],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["pid"], pid, "the reload restarted the program");
    assert!(!vm.gw().log().contains("keeps the settings it started with"));

    // A changed [app.standalone]: kept as started, and the log says a restart is needed.
    vm.gw().rewrite_routes(&sections(
        dir.path(),
        &format!("admin_token_sha256 = [\"{}\"]", sha256_hex("new-token")),
        "7s",
    ));
    vm.gw().signal(1);
    vm.gw().wait_for_log_count("configuration reloaded", 2);
    vm.gw()
        .wait_for_log("keeps the settings it started with until verigated restarts");
    let (code, body) = curl(
        vm.gw(),
        "GET",
        "/v1/app/status",
        &["-H", &bearer("new-token")],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["pid"], pid);
    assert_eq!(vm.program(None).0, pid);
}
