//! End to end, with real processes: a simulated confidential VM (verigated with the
//! simulated TEE, a real swtpm whose PCR 10 holds the extends of an IMA log written
//! here, three TLS backends routed by SNI) and the `verigate` binary as a user runs it.
//!
//! One VM serves the whole sequence to keep the suite fast: each change a real attack
//! (or a reboot) would make is applied, `verify` must fail with exit status 1 naming
//! the check, and the change is undone so the next step starts from a VM that passes
//! again. The changes that cannot be undone (a reboot, a grown IMA log) come last; the
//! grown log then passes with a `--whitelist` of the new file's digest, not another's.
//! A VM that cannot attest (its IMA log gone) makes verify exit 2 with the reason.
//! Certificate changes, impostors, TLS-terminating proxies and HAProxy passthrough are
//! in `cli_verify_e2e.rs`; old nonces and altered report_data in-process in
//! `attest/tests/verify_*.rs` (and here: an old evidence body replayed by a server that
//! holds verigated's own TLS key).
//!
//! The VM is `testkit::vm`. verigated is the binary `cargo build -p gateway` puts beside
//! `verigate`. `cargo test --workspace` (scripts/test.sh) builds it; `cargo test -p
//! verifier` alone does not, so on a fresh tree run `cargo build -p gateway` first.
//! Without it, or without swtpm/tpm2-tools, the test says so and returns, or fails
//! under CI (`testkit::require`).

use attest::ima::{binary, HashAlg, ImaEntry};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use testkit::serve::Server;
use testkit::swtpm::Swtpm;
use testkit::vm::{extend, failed_checks, Binaries, Vm, VmOptions, MEASUREMENT};

const APPS: [&str; 3] = ["a.example.com", "b.example.com", "c.example.com"];

/// `verify --output json` of the three applications (through verigated) with `extra`,
/// against `url`; returns (exit status, report).
fn verify_at(vm: &Vm, url: &str, snapshot: &Path, extra: &[&str]) -> (i32, Value) {
    let gw = vm.addr.to_string();
    let mut args = vec![
        "verify",
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--connect-to",
        gw.as_str(),
    ];
    for a in APPS {
        args.extend(["--application", a]);
    }
    args.extend_from_slice(extra);
    vm.verify_json(url, &args)
}

/// `verify` with `--allow-simulated-tee`: (exit status, failed checks, report).
fn verify(vm: &Vm, snapshot: &Path) -> (i32, Vec<String>, Value) {
    let (code, report) = verify_at(vm, &vm.url(), snapshot, &["--allow-simulated-tee"]);
    (code, failed_checks(&report), report)
}

fn assert_passes(vm: &Vm, snapshot: &Path, after: &str) {
    let (code, failed, report) = verify(vm, snapshot);
    assert_eq!(
        (code, failed),
        (0, Vec::<String>::new()),
        "{after}: the VM should pass again: {report:#}\nverigated log:\n{}",
        vm.log()
    );
}

fn detail<'a>(report: &'a Value, check: &str) -> &'a str {
    testkit::vm::check(report, check)["detail"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn each_change_to_the_vm_fails_its_check_and_undoing_it_passes_again() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &[]) else {
        return;
    };
    let mut vm = Vm::start(&bins, VmOptions::new(&APPS));
    let snap = vm.snapshot("snap.json");

    // Untouched: every check passes, the three applications included.
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!((code, &failed), (0, &Vec::new()), "{report:#}");
    for a in APPS {
        assert_eq!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["name"] == format!("application {a}"))
                .count(),
            1,
            "{report:#}"
        );
    }

    // Simulated evidence without --allow-simulated-tee: `tee` fails, nothing else.
    let (code, report) = verify_at(&vm, &vm.url(), &snap, &[]);
    assert_eq!((code, failed_checks(&report)), (1, vec!["tee".to_string()]));

    // The IMA log edited after the fact: one file's digest rewritten, no extend. The
    // log no longer replays to the quoted PCR 10; the edited digest is also unknown.
    let original = std::fs::read(&vm.ima).unwrap();
    let mut edited = vm.entries.clone();
    edited[1] = ImaEntry::measure("/usr/bin/app", HashAlg::Sha256, b"app v2").unwrap();
    std::fs::write(&vm.ima, binary::serialize(&edited)).unwrap();
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!(
        (code, failed),
        (1, vec!["ima replay".to_string(), "ima entries".to_string()]),
        "{report:#}"
    );
    assert!(
        detail(&report, "ima replay").contains("PCR 10"),
        "{report:#}"
    );
    std::fs::write(&vm.ima, &original).unwrap();
    assert_passes(&vm, &snap, "IMA log restored");

    // The IMA log gone (unreadable): verigated cannot attest; verify must not pass.
    std::fs::rename(&vm.ima, vm.ima.with_extension("moved")).unwrap();
    let gw = vm.addr.to_string();
    let out = vm.verigate_at(
        &vm.url(),
        &[],
        &[
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &gw,
            "--application",
            APPS[0],
        ],
    );
    assert_eq!(out.status.code(), Some(2), "verify could not run");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IMA log"), "{text}");
    std::fs::rename(vm.ima.with_extension("moved"), &vm.ima).unwrap();
    assert_passes(&vm, &snap, "IMA log back");

    // Another measurement (another image booted): `tee measurement`.
    vm.measurement = "5b".into();
    vm.restart_gateway();
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!(
        (code, failed),
        (1, vec!["tee measurement".to_string()]),
        "{report:#}"
    );
    vm.measurement = MEASUREMENT.into();
    vm.restart_gateway();
    assert_passes(&vm, &snap, "measurement restored");

    // Another simulated-TEE key (as another VM would have): verigated makes a new one
    // when its key file is gone. The report is still well signed, by a key that is not
    // the snapshot's.
    let key = vm.data.join(attest::tee::simulated::KEY_FILE);
    let saved = std::fs::read(&key).expect("verigated keeps its simulated-TEE key");
    std::fs::remove_file(&key).unwrap();
    vm.restart_gateway();
    assert_ne!(std::fs::read(&key).expect("a new key"), saved);
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(failed, ["tee measurement"], "{report:#}");
    assert!(
        detail(&report, "tee measurement").contains("key"),
        "{report:#}"
    );
    std::fs::write(&key, &saved).unwrap();
    vm.restart_gateway();
    assert_passes(&vm, &snap, "simulated-TEE key restored");

    // Another TPM attestation key: verigated against a fresh swtpm whose PCR 10 holds
    // the same IMA log (the log replays, only the key differs).
    let other = Swtpm::start().expect("second swtpm");
    for e in &vm.entries {
        extend(&other, e);
    }
    vm.stop_gateway();
    vm.start_gateway(Some(&other));
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!(
        (code, failed),
        (1, vec!["tpm key".to_string()]),
        "{report:#}"
    );
    vm.stop_gateway();
    drop(other);
    vm.start_gateway(None);
    assert_passes(&vm, &snap, "back on the VM's own TPM");

    // An old evidence body replayed by a server that even holds verigated's own TLS key
    // (so `endpoint certificate` passes): the nonce gives it away.
    let old = fetch_evidence(&vm, &"ab".repeat(32));
    let replayer = Replayer::start(&vm.data, old);
    let (code, report) = verify_at(
        &vm,
        &format!("https://{}", replayer.addr),
        &snap,
        &["--allow-simulated-tee"],
    );
    let failed = failed_checks(&report);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(failed[..2], ["nonce", "binding"], "{report:#}");
    assert!(!failed.contains(&"endpoint certificate".to_string()));
    assert!(detail(&report, "nonce").contains("replayed"), "{report:#}");
    drop(replayer);

    // A reboot: swtpm power-cycled on the same state; the kernel measures the same
    // files again, so the log replays and only `tpm reboot` tells.
    vm.reboot();
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!(
        (code, failed),
        (1, vec!["tpm reboot".to_string()]),
        "{report:#}"
    );

    // After a reboot the user takes a new snapshot; then a new executable runs: IMA
    // logs it and extends PCR 10. The log replays; the file is not in the snapshot.
    let snap = vm.snapshot("after-reboot.json");
    assert_passes(&vm, &snap, "new snapshot after the reboot");
    let miner = ImaEntry::measure("/usr/local/bin/miner", HashAlg::Sha256, b"miner").unwrap();
    vm.measure(miner);
    let (code, failed, report) = verify(&vm, &snap);
    assert_eq!(
        (code, failed),
        (1, vec!["ima entries".to_string()]),
        "{report:#}"
    );
    assert!(
        detail(&report, "ima entries").contains("/usr/local/bin/miner"),
        "{report:#}"
    );

    // The user reviews it and accepts that one file with --whitelist: verify passes.
    let whitelist = vm.dir.path().join("whitelist.json");
    let digest = hex::encode(HashAlg::Sha256.digest(b"miner"));
    std::fs::write(
        &whitelist,
        serde_json::to_vec(&serde_json::json!([["/usr/local/bin/miner", digest]])).unwrap(),
    )
    .unwrap();
    let (code, report) = verify_at(
        &vm,
        &vm.url(),
        &snap,
        &[
            "--allow-simulated-tee",
            "--whitelist",
            whitelist.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (code, failed_checks(&report)),
        (0, Vec::<String>::new()),
        "{report:#}"
    );
    // A whitelist entry of another digest for the same path does not cover it.
    let other = hex::encode(HashAlg::Sha256.digest(b"miner v2"));
    std::fs::write(
        &whitelist,
        serde_json::to_vec(&serde_json::json!([["/usr/local/bin/miner", other]])).unwrap(),
    )
    .unwrap();
    let (code, report) = verify_at(
        &vm,
        &vm.url(),
        &snap,
        &[
            "--allow-simulated-tee",
            "--whitelist",
            whitelist.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (code, failed_checks(&report)),
        (1, vec!["ima entries".to_string()]),
        "{report:#}"
    );
}

/// `GET /v1/attestation?nonce=` with curl: the evidence body verigated answers.
fn fetch_evidence(vm: &Vm, nonce: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--fail",
            "--max-time",
            "60",
            &format!("{}/v1/attestation?nonce={nonce}", vm.url()),
        ])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl: {:?}", out.status);
    out.stdout
}

/// A server that presents verigated's own certificate (with its key, read from the
/// data dir, as an attacker who stole it would) and answers every HTTP/1.1 request with
/// one recorded evidence body. Stops on drop.
struct Replayer {
    addr: SocketAddr,
    _server: Server,
}

impl Replayer {
    fn start(data_dir: &Path, body: Vec<u8>) -> Replayer {
        let cert_pem = std::fs::read(data_dir.join("data/cert.pem")).expect("own certificate");
        let key_pem = std::fs::read(data_dir.join("data/key.pem")).expect("own key");
        let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .unwrap()
            .expect("a private key");
        let mut server = rustls::ServerConfig::builder_with_provider(testkit::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let body = std::sync::Arc::new(body);
        let server = Server::start("replayer", move |tcp| {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            async move {
                let _ = answer(acceptor, tcp, &body).await;
            }
        })
        .expect("replayer server");
        Replayer {
            addr: server.addr(),
            _server: server,
        }
    }
}

/// Reads one request's head and answers it with `body` as JSON, then closes.
async fn answer(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    body: &[u8],
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = acceptor.accept(tcp).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(reply.as_bytes()).await?;
    tls.write_all(body).await?;
    tls.shutdown().await
}
