//! `verigate app init|restart|status` against a real verigated: simulated TEE, a real
//! swtpm whose PCR 10 holds the extends of an IMA log written here, one TLS backend, and
//! `[app]` run by verigated's standalone manager (a shell script that records its PID and
//! the app.conf it read).
//!
//! Shows: after a passing verification, init replaces app.conf and the restarted program
//! reads it; status and restart report the program; a VM that fails verification (the
//! simulated TEE not allowed, a snapshot of another measurement) gets nothing — checked
//! on the server side: app.conf untouched, the same PID, and no `/v1/app/` request in
//! verigated's log; without `--snapshot` the CLI refuses (exit 2) and sends nothing;
//! `--no-verify` sends; a wrong token is refused by verigated (exit 2, nothing changed);
//! a client certificate from `[api] client_ca` is accepted; `--url` may name the
//! application, reached through a `--connect-to` rule naming it.
//!
//! The VM is `testkit::vm`. verigated is the binary `cargo build -p gateway` puts beside
//! `verigate`; without it, swtpm, tpm2-tools or openssl these tests say so and return,
//! or fail under CI (`testkit::require`).

use serde_json::Value;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::vm::{Binaries, Vm, VmOptions, PATIENCE};

const APP: &str = "a.example.com";
const TOKEN: &str = "operator-token-for-tests";

/// Records `pid=<its pid>` and the app.conf it read into `$2`, then sleeps as the same
/// process.
const APP_SCRIPT: &str = r#"#!/bin/sh
conf="$1"
out="$2"
{ echo "pid=$$"; cat "$conf"; } > "$out.tmp.$$" && mv "$out.tmp.$$" "$out"
exec sleep 1000
"#;

/// A CA and a client certificate it issued (openssl); returns (ca, cert, key).
fn client_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(f);
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
    let (ca, ca_key, cert, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("client.pem"),
        p("client.key"),
        p("client.csr"),
        p("client.ext"),
    );
    let s = |p: &PathBuf| p.display().to_string();
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let (ca_key_s, ca_s) = (s(&ca_key), s(&ca));
    args.extend([
        "-keyout",
        &ca_key_s,
        "-out",
        &ca_s,
        "-subj",
        "/CN=operators CA",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&args);
    let (key_s, csr_s, cert_s, ext_s) = (s(&key), s(&csr), s(&cert), s(&ext));
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key_s, "-out", &csr_s, "-subj", "/CN=operator"]);
    run(&args);
    run(&[
        "x509",
        "-req",
        "-in",
        &csr_s,
        "-CA",
        &ca_s,
        "-CAkey",
        &ca_key_s,
        "-CAcreateserial",
        "-out",
        &cert_s,
        "-days",
        "2",
        "-extfile",
        &ext_s,
    ]);
    (ca, cert, key)
}

/// The VM of `testkit::vm` (one backend, an IMA log of two entries) with verigated
/// running the app script under `[app]` and accepting the operator CA's clients.
struct AppVm {
    vm: Vm,
    conf: PathBuf,
    out: PathBuf,
    client: (PathBuf, PathBuf),
    pids: std::cell::RefCell<Vec<i32>>,
}

impl std::ops::Deref for AppVm {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl Drop for AppVm {
    fn drop(&mut self) {
        self.vm.stop_gateway();
        // The program last started may not have been seen yet (a test that failed early).
        if let Some(pid) = std::fs::read_to_string(&self.out)
            .ok()
            .and_then(|t| t.lines().next()?.strip_prefix("pid=")?.parse::<i32>().ok())
        {
            self.pids.borrow_mut().push(pid);
        }
        // A verigated killed with SIGKILL cannot stop the program it started: stop the
        // process groups of the PIDs this test saw (programs it made verigated start).
        for pid in self.pids.borrow().iter().filter(|p| **p > 1) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl AppVm {
    fn start(bins: &Binaries) -> AppVm {
        let mut options = VmOptions::new(&[APP]);
        options.entries.truncate(2); // boot aggregate and the app
        let mut vm = Vm::prepare(bins, options);
        let dir = vm.dir.path().to_path_buf();
        let (ca, cert, key) = client_pki(&dir);
        let storage = vm.data.join("app");
        std::fs::create_dir_all(&storage).unwrap();
        let conf = storage.join("app.conf");
        std::fs::write(&conf, "version=1\n").unwrap();
        let script = dir.join("app.sh");
        std::fs::write(&script, APP_SCRIPT).unwrap();
        let out = dir.join("program-read");
        vm.token = TOKEN.to_string();
        vm.extra_config = format!(
            "[api]\nadmin_token_sha256 = [\"{}\"]\nclient_ca = \"{}\"\n\n\
             [app]\nservice_type = \"standalone\"\nservice_name = \"demo\"\napp_storage = \"app\"\n\n\
             [app.standalone]\ncommand = [\"/bin/sh\", \"{}\", \"{}\", \"{}\"]\nstop_grace_period = \"5s\"\n\n",
            hex::encode(sha2::Sha256::digest(TOKEN.as_bytes())),
            ca.display(),
            script.display(),
            conf.display(),
            out.display(),
        );
        vm.start_gateway(None);
        let vm = AppVm {
            vm,
            conf,
            out,
            client: (cert, key),
            pids: Default::default(),
        };
        vm.program(None);
        vm
    }

    /// The PID and config the program last recorded, waiting for a start whose PID is
    /// not `not_pid`.
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
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs verigate with `--url`, `--allow-insecure-tls` and `env` set.
    fn verigate(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.vm.verigate_at(&self.vm.url(), env, args)
    }

    fn snapshot(&self) -> PathBuf {
        self.vm.snapshot("snap.json")
    }

    fn new_conf(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("new.conf");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The number of app-control requests verigated received.
    fn app_requests(&self) -> usize {
        self.log().matches("app control request").count()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn init_after_verification_replaces_the_config_and_restarts_the_program() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["openssl"]) else {
        return;
    };
    let vm = AppVm::start(&bins);
    let snap = vm.snapshot();
    let (before, _) = vm.program(None);
    let conf = vm.new_conf("version=2\npassword=hunter2\n");
    let addr = vm.addr.to_string();
    let verification = [
        "--snapshot",
        snap.to_str().unwrap(),
        "--allow-simulated-tee",
        "--application",
        APP,
        "--connect-to",
        &addr,
    ];

    let mut args = vec!["app", "init", "--conf", conf.to_str().unwrap()];
    args.extend(verification);
    let out = vm.verigate(&[("VERIGATE_TOKEN", TOKEN)], &args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "log:\n{}", vm.log());
    assert!(text.contains("[PASS] tee measurement"), "{text}");
    assert!(
        text.contains(&format!("[PASS] application {APP}")),
        "{text}"
    );
    assert!(text.contains("verdict: PASS"), "{text}");
    assert!(text.contains("app init: done"), "{text}");
    assert!(text.contains("state: running"), "{text}");
    let (after, read) = vm.program(Some(before));
    assert_eq!(read, "version=2\npassword=hunter2\n");
    assert!(text.contains(&format!("pid: {after}")), "{text}");
    assert_eq!(
        std::fs::read_to_string(&vm.conf).unwrap(),
        "version=2\npassword=hunter2\n"
    );
    assert!(
        !vm.log().contains("hunter2"),
        "the configuration was logged"
    );
    assert!(!vm.log().contains(TOKEN), "the token was logged");

    // status, in JSON: the checks and the application's status in one document.
    let mut args = vec!["--output", "json", "app", "status", "--token", TOKEN];
    args.extend(verification);
    let out = vm.verigate(&[], &args);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(v["facts"]["app"]["pid"], after, "{v}");
    assert_eq!(v["facts"]["app"]["manager"], "standalone", "{v}");

    // restart with a client certificate instead of a token.
    let (cert, key) = &vm.client;
    let mut args = vec![
        "app",
        "restart",
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ];
    args.extend(verification);
    let out = vm.verigate(&[], &args);
    assert_eq!(out.status.code(), Some(0), "log:\n{}", vm.log());
    let (third, read) = vm.program(Some(after));
    assert_eq!(read, "version=2\npassword=hunter2\n");
    assert!(stdout(&out).contains(&format!("pid: {third}")));
    assert!(vm.log().contains("client certificate"), "{}", vm.log());

    // One DNS name: --url names the application, reached (ALPN verigate/1) through a
    // --connect-to rule that names it, as `verify` does; nothing resolves `a.example.com`.
    let port = vm.addr.port();
    let rule = format!("{APP}:{port}:{addr}");
    let out = vm.verigate_at(
        &format!("https://{APP}:{port}"),
        &[],
        &[
            "--output",
            "json",
            "app",
            "status",
            "--token",
            TOKEN,
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &rule,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "log:\n{}", vm.log());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["facts"]["app"]["pid"], third, "{v}");
}

#[test]
fn a_vm_that_fails_verification_is_sent_nothing() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["openssl"]) else {
        return;
    };
    let vm = AppVm::start(&bins);
    let snap = vm.snapshot();
    let (pid, _) = vm.program(None);
    let conf = vm.new_conf("version=evil\n");
    let conf = conf.to_str().unwrap();

    // The simulated TEE is not allowed: `tee` fails.
    let out = vm.verigate(
        &[("VERIGATE_TOKEN", TOKEN)],
        &[
            "app",
            "init",
            "--conf",
            conf,
            "--snapshot",
            snap.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("[FAIL] tee"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("app init: done"));

    // A snapshot of another measurement: `tee measurement` fails.
    let mut v: Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    v["tee_policy"]["measurement"] = "5b".repeat(48).into();
    let other = vm.dir.path().join("other.json");
    std::fs::write(&other, serde_json::to_vec(&v).unwrap()).unwrap();
    for action in [
        vec!["app", "init", "--conf", conf],
        vec!["app", "restart"],
        vec!["app", "status"],
    ] {
        let mut args = action.clone();
        args.extend([
            "--snapshot",
            other.to_str().unwrap(),
            "--allow-simulated-tee",
        ]);
        let out = vm.verigate(&[("VERIGATE_TOKEN", TOKEN)], &args);
        assert_eq!(out.status.code(), Some(1), "{action:?}");
        assert!(
            stdout(&out).contains("[FAIL] tee measurement"),
            "{}",
            stdout(&out)
        );
    }

    // Server side: verigated was asked for evidence but never for app control.
    let log = vm.log();
    assert_eq!(
        vm.app_requests(),
        0,
        "an app-control request arrived:\n{log}"
    );
    assert!(!log.contains("/v1/app/"), "{log}");
    assert_eq!(std::fs::read_to_string(&vm.conf).unwrap(), "version=1\n");
    assert_eq!(vm.program(None).0, pid, "the program was restarted");
}

#[test]
fn without_snapshot_it_refuses_unless_no_verify_and_verigated_still_checks_the_token() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["openssl"]) else {
        return;
    };
    let vm = AppVm::start(&bins);
    let (pid, _) = vm.program(None);
    let conf = vm.new_conf("version=unverified\n");
    let conf = conf.to_str().unwrap();

    let out = vm.verigate(
        &[("VERIGATE_TOKEN", TOKEN)],
        &["app", "init", "--conf", conf],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--snapshot") && err.contains("--no-verify"),
        "{err}"
    );
    assert_eq!(vm.app_requests(), 0, "{}", vm.log());

    // --client-cert without --client-key is a usage error.
    let (cert, _) = &vm.client;
    let out = vm.verigate(
        &[],
        &[
            "app",
            "status",
            "--no-verify",
            "--client-cert",
            cert.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));

    // A wrong token: verigated refuses, the CLI says so (exit 2), nothing changes.
    let out = vm.verigate(
        &[("VERIGATE_TOKEN", "not-the-token")],
        &["app", "init", "--no-verify", "--conf", conf],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&vm.conf).unwrap(), "version=1\n");
    assert_eq!(vm.program(None).0, pid);

    // --no-verify sends, with a warning.
    let out = vm.verigate(
        &[("VERIGATE_TOKEN", TOKEN)],
        &["app", "init", "--no-verify", "--conf", conf],
    );
    assert_eq!(out.status.code(), Some(0), "log:\n{}", vm.log());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-verify"));
    assert!(stdout(&out).contains("verification: skipped"));
    assert_eq!(vm.program(Some(pid)).1, "version=unverified\n");
}
