//! `verigate snapshot` then `verigate verify` against a real verigated: simulated TEE, a
//! real swtpm whose PCR 10 holds the extends of an IMA log written here, three TLS
//! backends routed by SNI, and the CLI binary as a user runs it.
//!
//! verigated is the binary `cargo build -p gateway` puts beside `verigate`
//! (`target/<profile>/verigated`); the workspace build of `scripts/test.sh` makes it.
//! When it is absent (e.g. `cargo test -p verifier` alone on a fresh tree) these tests
//! print why and return, as they do without swtpm or tpm2-tools.
//!
//! Shows: an untouched VM passes every check with three `--application`s, in one call
//! and one TEE report; an impostor for one name (its handshake lands, via a per-name
//! `--connect-to`, on a server outside the VM) fails that application only; simulated
//! evidence without `--allow-simulated-tee` fails `tee`; a snapshot whose measurement
//! was edited fails `tee measurement`.

use serde_json::Value;
use sha2::Digest as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use testkit::ports::{free_port, wait_for_listener};
use testkit::process::ChildGuard;
use testkit::swtpm::Swtpm;
use testkit::tls::TlsBackend;

const DOMAIN: &str = "vm.example.com";
const APPS: [&str; 3] = ["a.example.com", "b.example.com", "c.example.com"];
const PATIENCE: Duration = Duration::from_secs(60);

fn verigated_binary() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_BIN_EXE_verigate")).with_file_name("verigated");
    if bin.exists() {
        Some(bin)
    } else {
        eprintln!(
            "skipping: {} absent (run `cargo build -p gateway` first)",
            bin.display()
        );
        None
    }
}

fn tools_available() -> bool {
    let ok = ["swtpm", "tpm2_pcrextend"].iter().all(|t| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        eprintln!("skipping: swtpm or tpm2-tools not installed");
    }
    ok
}

/// Writes an IMA log (boot aggregate and two files) to `path` and extends each entry
/// into swtpm's SHA-256 PCR 10 with tpm2-tools, before verigated opens the TPM (swtpm
/// serves one client at a time).
fn write_ima_log(tpm: &Swtpm, path: &Path) {
    use attest::ima::{binary, HashAlg, ImaEntry};
    let entries = vec![
        ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[0x11; 32]).unwrap(),
        ImaEntry::measure("/usr/bin/app", HashAlg::Sha256, b"app v1").unwrap(),
        ImaEntry::measure("/usr/lib/libc.so.6", HashAlg::Sha256, b"libc").unwrap(),
    ];
    std::fs::write(path, binary::serialize(&entries)).unwrap();
    for e in &entries {
        let out = Command::new("tpm2_pcrextend")
            .args([
                "-T",
                &tpm.tcti(),
                &format!("10:sha256={}", hex::encode(e.extend_value(HashAlg::Sha256))),
            ])
            .output()
            .expect("run tpm2_pcrextend");
        assert!(
            out.status.success(),
            "tpm2_pcrextend: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// swtpm, the IMA log, three backends and verigated routing to them.
struct Vm {
    dir: tempfile::TempDir,
    // Dropped in this order: verigated first, then what it talks to.
    gateway: ChildGuard,
    addr: SocketAddr,
    log_path: PathBuf,
    /// The config file, and its text without the routes.
    config: PathBuf,
    base: String,
    backends: Vec<TlsBackend>,
    tpm: Swtpm,
}

impl Vm {
    fn start(bin: &Path) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let tpm = Swtpm::start().expect("swtpm");
        let ima = dir.path().join("ima.bin");
        write_ima_log(&tpm, &ima);
        // A small tree for the snapshot's scan: one executable.
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("tool"), b"#!/bin/sh\necho tool\n").unwrap();
        std::fs::set_permissions(
            tree.join("tool"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let backends: Vec<TlsBackend> = APPS
            .iter()
            .map(|n| TlsBackend::start(n).expect("backend"))
            .collect();
        let routes: String = backends
            .iter()
            .map(|b| {
                format!(
                    "[[route]]\nsni = \"{}\"\nbackend = \"{}\"\n\n",
                    b.name, b.addr
                )
            })
            .collect();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut last_log = String::new();
        for attempt in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config = dir.path().join("verigated.toml");
            let base = format!(
                "[gateway]\nlisten = [\"{addr}\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\n\
                     [attestation]\ntee = \"simulated\"\nsimulated_measurement = \"{}\"\n\
                     tpm = \"{}\"\nima_log = \"{}\"\n\n\
                     [snapshot]\nroots = [\"{}\"]\nexclude = []\n\n",
                data.display(),
                "5a".repeat(48),
                tpm.tcti(),
                ima.display(),
                tree.display()
            );
            std::fs::write(&config, format!("{base}{routes}")).unwrap();
            let log_path = dir.path().join(format!("verigated-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(bin);
            cmd.arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let mut child = ChildGuard::spawn("verigated", &mut cmd).expect("spawn verigated");
            if wait_for_listener(addr, PATIENCE) && child.is_running() {
                return Vm {
                    dir,
                    gateway: child,
                    addr,
                    log_path,
                    config,
                    base,
                    backends,
                    tpm,
                };
            }
            drop(child);
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("verigated did not start; its log:\n{last_log}");
    }

    /// Replaces the backend of `name` by a new one (a new certificate, as after a
    /// renewal inside the VM), reloads verigated with SIGHUP and waits until its
    /// manifest holds the new certificate. Returns the new certificate's SHA-256.
    fn renew(&mut self, name: &str) -> String {
        let fresh = TlsBackend::start(name).expect("renewed backend");
        let sha = hex::encode(sha2::Sha256::digest(fresh.cert.as_ref()));
        if let Some(b) = self.backends.iter_mut().find(|b| b.name == name) {
            *b = fresh;
        }
        let routes: String = self
            .backends
            .iter()
            .map(|b| {
                format!(
                    "[[route]]\nsni = \"{}\"\nbackend = \"{}\"\n\n",
                    b.name, b.addr
                )
            })
            .collect();
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, format!("{}{routes}", self.base)).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
        self.gateway.signal(1); // SIGHUP
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "--max-time",
                    "30",
                    &format!("{}/v1/manifest", self.url()),
                ])
                .output()
                .expect("run curl");
            if String::from_utf8_lossy(&out.stdout).contains(&sha) {
                return sha;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the manifest never showed the renewed certificate; log:\n{}",
            self.log()
        );
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `verigated_attestation_calls_total` from `/metrics` (read with curl): calls of
    /// `GET /v1/attestation`.
    fn attestation_calls(&self) -> u64 {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "30",
                &format!("{}/metrics", self.url()),
            ])
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("verigated_attestation_calls_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no attestation counter in /metrics:\n{text}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs verigate with `--url` and `--allow-insecure-tls` (verigated's certificate is
    /// self-signed; attestation pins it).
    fn verigate(&self, args: &[&str]) -> Output {
        let url = self.url();
        let mut all = vec!["--url", url.as_str(), "--allow-insecure-tls"];
        all.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
            .args(&all)
            .current_dir(self.dir.path())
            .output()
            .expect("run verigate");
        eprintln!(
            "$ verigate {}\nexit {:?}\n{}{}",
            all.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `snapshot` into `snap.json`, which must succeed.
    fn snapshot(&self) -> PathBuf {
        let path = self.dir.path().join("snap.json");
        let out = self.verigate(&[
            "snapshot",
            "--allow-simulated-tee",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "snapshot failed; verigated log:\n{}",
            self.log()
        );
        path
    }

    /// `verify --output json` with `args`; (exit status, report).
    fn verify(&self, snapshot: &Path, args: &[&str]) -> (i32, Value) {
        let mut all = vec![
            "--output",
            "json",
            "verify",
            "--snapshot",
            snapshot.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let out = self.verigate(&all);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}); verigated log:\n{}",
                self.log()
            )
        });
        (out.status.code().expect("exit status"), report)
    }
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn application_args(addr: SocketAddr) -> Vec<String> {
    let mut args = vec!["--connect-to".to_string(), addr.to_string()];
    for a in APPS {
        args.push("--application".into());
        args.push(a.into());
    }
    args
}

#[test]
fn snapshot_then_verify_passes_and_an_impostor_fails_only_its_name() {
    let (Some(bin), true) = (verigated_binary(), tools_available()) else {
        return;
    };
    let vm = Vm::start(&bin);
    let snap = vm.snapshot();
    let parsed = attest::snapshot::Snapshot::from_json(&std::fs::read(&snap).unwrap())
        .expect("the written file is a snapshot");
    assert_eq!(parsed.tee_policy.kind(), "simulated");
    assert!(parsed.tpm_policy.is_some(), "swtpm gives a TPM policy");
    for a in APPS {
        assert!(parsed.manifest.get(a).is_some(), "{a} in the manifest");
    }

    // Untouched: every check passes, three applications included.
    let mut args = application_args(vm.addr);
    args.push("--allow-simulated-tee".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let calls_before = vm.attestation_calls();
    let (code, report) = vm.verify(&snap, &argv);
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!((code, report["verdict"].as_str()), (0, Some("pass")));
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for a in APPS {
        assert!(names.contains(&format!("application {a}").as_str()));
    }
    // One attestation for the three names.
    assert_eq!(vm.attestation_calls() - calls_before, 1);

    // An impostor for b.example.com: a server outside the VM with its own certificate,
    // reached because DNS (here --connect-to for that name) points there.
    let impostor = TlsBackend::start("b.example.com").expect("impostor");
    let rule = format!("b.example.com:443:{}", impostor.addr);
    let mut args = application_args(vm.addr);
    args.extend(["--connect-to".into(), rule, "--allow-simulated-tee".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = vm.verify(&snap, &argv);
    assert_eq!(failed(&report), ["application b.example.com"], "{report:#}");
    assert_eq!(code, 1);
    let detail = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "application b.example.com")
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("outside the VM"), "{detail}");

    // Simulated evidence is refused unless allowed.
    let args = application_args(vm.addr);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = vm.verify(&snap, &argv);
    assert_eq!((code, failed(&report)), (1, vec!["tee".to_string()]));

    // A snapshot of another measurement.
    let mut v: Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    v["tee_policy"]["measurement"] = "5b".repeat(48).into();
    let other = vm.dir.path().join("other.json");
    std::fs::write(&other, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, report) = vm.verify(&other, &["--allow-simulated-tee"]);
    assert_eq!(
        (code, failed(&report)),
        (1, vec!["tee measurement".to_string()])
    );

    // A second snapshot without --out goes to the default name, in the current folder.
    let out = vm.verigate(&["snapshot", "--allow-simulated-tee"]);
    assert_eq!(out.status.code(), Some(0));
    let written: Vec<String> = std::fs::read_dir(vm.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("verigate-snapshot-vm.example.com-") && n.ends_with(".json"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");

    // Text output: one line per check and the verdict.
    let out = vm.verigate(&[
        "verify",
        "--snapshot",
        snap.to_str().unwrap(),
        "--allow-simulated-tee",
        "--connect-to",
        &vm.addr.to_string(),
        "--application",
        "a.example.com",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[PASS] application a.example.com: "),
        "{text}"
    );
    assert!(text.contains("[PASS] tpm reboot: "), "{text}");
    assert!(text.trim_end().ends_with("verdict: PASS"), "{text}");
}

/// A TLS-terminating proxy: it presents its own certificate for verigated's name,
/// decrypts, and relays over a new TLS connection to verigated, as a load balancer that
/// terminates TLS (or an attacker in the middle) would. Stops on drop.
struct TerminatingProxy {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TerminatingProxy {
    fn start(upstream: SocketAddr) -> TerminatingProxy {
        let own = testkit::tls::self_signed(DOMAIN).expect("proxy certificate");
        let mut server = rustls::ServerConfig::builder_with_provider(testkit::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![own.cert], own.key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let connector =
            tokio_rustls::TlsConnector::from(testkit::tls::client_config(&["http/1.1"]).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let (acceptor, connector) = (acceptor.clone(), connector.clone());
                        tokio::spawn(async move {
                            let Ok(mut down) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let Ok(up_tcp) = tokio::net::TcpStream::connect(upstream).await else {
                                return;
                            };
                            let name = rustls::pki_types::ServerName::try_from(DOMAIN)
                                .expect("a DNS name");
                            let Ok(mut up) = connector.connect(name, up_tcp).await else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        TerminatingProxy {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TerminatingProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_tls_terminating_proxy_fails_the_endpoint_certificate() {
    let (Some(bin), true) = (verigated_binary(), tools_available()) else {
        return;
    };
    let vm = Vm::start(&bin);
    let snap = vm.snapshot();
    let proxy = TerminatingProxy::start(vm.addr);
    let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args([
            "--url",
            &format!("https://{}", proxy.addr),
            "--allow-insecure-tls",
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
        ])
        .output()
        .expect("run verigate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(failed(&report), ["endpoint certificate"], "{report:#}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_certificate_renewed_inside_the_vm_fails_its_application_unless_allowed() {
    let (Some(bin), true) = (verigated_binary(), tools_available()) else {
        return;
    };
    let mut vm = Vm::start(&bin);
    let snap = vm.snapshot();
    let sha = vm.renew("c.example.com");
    let mut args = application_args(vm.addr);
    args.push("--allow-simulated-tee".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = vm.verify(&snap, &argv);
    // The VM attests the new certificate, so the handshake matches the manifest; what
    // differs is the snapshot: the application and the manifest comparison say so.
    assert_eq!(
        failed(&report),
        ["manifest", "application c.example.com"],
        "{report:#}"
    );
    assert_eq!(code, 1);
    assert!(report.to_string().contains(&sha[..16]), "{report:#}");

    args.push("--allow-certificate-change".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = vm.verify(&snap, &argv);
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}"
    );
}

#[test]
fn verification_passes_through_haproxy_in_tcp_passthrough() {
    let (Some(bin), true) = (verigated_binary(), tools_available()) else {
        return;
    };
    if !testkit::haproxy::available() {
        eprintln!("skipping: haproxy not installed");
        return;
    }
    let vm = Vm::start(&bin);
    let snap = vm.snapshot();
    // The example config users copy, unchanged: TCP mode, TLS untouched.
    let config = testkit::haproxy::examples_dir().join("passthrough.cfg");
    let lb = testkit::haproxy::Haproxy::start(&config, vm.addr).expect("haproxy");
    let front = lb.front().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args([
            "--url",
            &format!("https://{front}"),
            "--allow-insecure-tls",
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &front,
            "--application",
            "a.example.com",
            "--application",
            "b.example.com",
        ])
        .output()
        .expect("run verigate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        failed(&report),
        Vec::<String>::new(),
        "{report:#}\n{}",
        lb.log()
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_reboot_fails_the_reboot_check() {
    let (Some(bin), true) = (verigated_binary(), tools_available()) else {
        return;
    };
    let mut vm = Vm::start(&bin);
    let snap = vm.snapshot();
    // Power-cycle the TPM under the running verigated (it reopens the TPM on the next
    // quote): resetCount goes up and PCR 10 starts from zeros again.
    vm.tpm.restart().expect("swtpm restarts");
    let (code, report) = vm.verify(&snap, &["--allow-simulated-tee"]);
    let failed = failed(&report);
    assert!(failed.contains(&"tpm reboot".to_string()), "{report:#}");
    assert_eq!(code, 1);
}
