//! The snapshot API end to end: a real verigated (simulated TEE, a real swtpm when it
//! can start), a real TLS client, an IMA log written by the test and a scanned tree.
//! Shows: POST answers 202 at once and a second POST while the job runs is a 409 that
//! carries the running job's progress; GET polls 202 then 200 with a Snapshot whose
//! filehashes hold the IMA log's entries and the tree's executable and script with the
//! digests `sha256sum` prints (the data file absent, a non-UTF-8 name listed as skipped),
//! the manifest and the simulated TEE's policy; the snapshot survives a restart; a second
//! snapshot is answered from the cache; a missing root fails the job with a JSON 500
//! naming it; unknown paths and methods get JSON errors. POST and the skipped list take
//! the app-control credential: without it nothing starts and nothing on disk changes; a
//! failed job leaves the last good snapshot served. No timing is asserted.

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attest::ima::{binary, HashAlg, ImaEntry};
use attest::snapshot::{Snapshot, TeePolicy};
use attest::tee::simulated::{self, SimulatedTee};
use testkit::ports::{free_port, wait_for_listener};
use testkit::process::ChildGuard;
use testkit::swtpm::Swtpm;
use testkit::tls::{connect_prefixed, HelloDelivery};

const DOMAIN: &str = "vm.example.com";
const PATIENCE: Duration = Duration::from_secs(120);
/// The measurement the simulated TEE reports (`attestation.simulated_measurement`).
const MEASUREMENT: [u8; 48] = [0x5a; 48];
/// The bearer token whose SHA-256 the generated config lists in `[api]`.
const TOKEN: &str = "snapshot-test-token";

/// A running verigated with its own config (simulated TEE, optional swtpm, IMA log,
/// `[snapshot]` roots); killed on drop by the guard.
struct Gateway {
    child: ChildGuard,
    addr: SocketAddr,
    log_path: PathBuf,
}

fn config(addr: SocketAddr, data_dir: &Path, tpm: &str, ima_log: &Path, roots: &[&Path]) -> String {
    let roots: Vec<String> = roots
        .iter()
        .map(|r| format!("\"{}\"", r.display()))
        .collect();
    format!(
        "[gateway]\nlisten = [\"{addr}\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\n\
         [attestation]\ntee = \"simulated\"\ntpm = \"{tpm}\"\nima_log = \"{}\"\n\
         simulated_measurement = \"{}\"\n\n\
         [snapshot]\nroots = [{}]\nexclude = []\n\n\
         [api]\nadmin_token_sha256 = [\"{}\"]\n",
        data_dir.display(),
        ima_log.display(),
        hex::encode(MEASUREMENT),
        roots.join(", "),
        sha256_hex(TOKEN)
    )
}

impl Gateway {
    fn start(dir: &Path, tpm: &str, ima_log: &Path, roots: &[&Path]) -> Gateway {
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir).expect("data dir");
        let mut last_log = String::new();
        for attempt in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config_path = dir.join("verigated.toml");
            fs::write(&config_path, config(addr, &data_dir, tpm, ima_log, roots))
                .expect("write config");
            let log_path = dir.join(format!("verigated-{}-{attempt}.log", free_port()));
            let log = fs::File::create(&log_path).expect("log");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_verigated"));
            cmd.arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log);
            let mut child = ChildGuard::spawn("verigated", &mut cmd).expect("spawn verigated");
            if wait_for_listener(addr, PATIENCE) && child.is_running() {
                return Gateway {
                    child,
                    addr,
                    log_path,
                };
            }
            drop(child);
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("verigated did not start; its log:\n{last_log}");
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `method path` over HTTP/1.1 on the own endpoint; (status, body as JSON).
    fn call(&self, method: &str, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.call_raw(method, path);
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, json)
    }

    fn call_raw(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let (status, _, body) = self.call_as(method, path, Some(TOKEN));
        (status, body)
    }

    /// `method path` with `token` as the bearer credential (none: no header); returns
    /// (status, head, body).
    fn call_as(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut s = connect_prefixed(
            self.addr,
            b"",
            Some(DOMAIN),
            &["http/1.1"],
            HelloDelivery::Whole,
        )
        .expect("TLS to the own endpoint");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {DOMAIN}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.stream.write_all(req.as_bytes()).expect("send");
        let mut resp = Vec::new();
        let _ = s.stream.read_to_end(&mut resp);
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&resp)));
        let head = String::from_utf8_lossy(&resp[..split]).into_owned();
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{method} {path}: not JSON: {head}"
        );
        // Progress, results and errors all change: no answer may be served from a cache.
        assert!(
            head.to_ascii_lowercase()
                .contains("cache-control: no-store"),
            "{method} {path}: cacheable: {head}"
        );
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head}"));
        (status, head, resp[split + 4..].to_vec())
    }

    /// Polls `GET /v1/snapshot` while it answers 202 (each a progress report); returns
    /// the final status and body, and the progress reports seen.
    fn wait_snapshot(&self) -> (u16, serde_json::Value, Vec<serde_json::Value>) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let (status, body) = self.call("GET", "/v1/snapshot");
            if status != 202 {
                return (status, body, seen);
            }
            assert_eq!(body["state"], "running", "{body}");
            seen.push(body);
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the snapshot job never ended; log:\n{}", self.log());
    }

    fn stop(mut self) {
        self.child.signal(libc::SIGTERM);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if !self.child.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("verigated did not stop on SIGTERM; log:\n{}", self.log());
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn pairs_for<'a>(s: &'a Snapshot, path: &str) -> Vec<&'a str> {
    s.filehashes
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, d)| d.as_str())
        .collect()
}

/// The tree the scan looks at: an ELF executable (with a large sparse tail, so hashing
/// it takes a while and a second POST finds the job running), a script without exec bit,
/// a data file, and an executable whose name is not UTF-8.
struct Tree {
    root: PathBuf,
    tool: PathBuf,
    script: PathBuf,
    data: PathBuf,
}

fn make_tree(dir: &Path) -> Tree {
    let root = dir.join("tree");
    fs::create_dir_all(root.join("bin")).expect("mkdir");
    fs::create_dir_all(root.join("share")).expect("mkdir");
    let tool = root.join("bin/tool");
    let mut elf = vec![
        0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0,
    ];
    elf.extend_from_slice(b"verigate test tool");
    let f = fs::File::create(&tool).expect("tool");
    (&f).write_all(&elf).expect("write tool");
    // Sparse: no disk used, but every byte is read and hashed.
    f.set_len(256 * 1024 * 1024).expect("sparse tail");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = root.join("bin/run.sh");
    fs::write(&script, "#!/bin/sh\necho verigate\n").expect("script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).expect("chmod");
    let data = root.join("share/data.txt");
    fs::write(&data, "just data\n").expect("data");
    let odd = root.join(std::ffi::OsStr::from_bytes(b"bin/odd\xff"));
    fs::write(&odd, "#!/bin/sh\n").expect("odd name");
    fs::set_permissions(&odd, fs::Permissions::from_mode(0o755)).expect("chmod");
    Tree {
        root,
        tool,
        script,
        data,
    }
}

/// An ima-ng log: boot_aggregate, two files that ran, a violation, and the tree's tool
/// with a digest other than the one on disk (it was replaced after it ran).
fn write_ima_log(path: &Path, tool: &Path) -> Vec<(String, String)> {
    let boot = ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[0x11; 32]).expect("entry");
    let ran = [
        ("/usr/bin/logged-a", [0xa1; 32]),
        ("/usr/lib/logged-b.so", [0xb2; 32]),
        (tool.to_str().expect("utf-8 path"), [0xc3; 32]),
    ];
    let mut entries = vec![boot];
    for (p, d) in &ran {
        entries.push(ImaEntry::ima_ng(p, HashAlg::Sha256, d).expect("entry"));
    }
    entries.push(
        ImaEntry::violation("/var/log/opened-for-write", HashAlg::Sha256).expect("violation"),
    );
    fs::write(path, binary::serialize(&entries)).expect("write IMA log");
    ran.iter()
        .map(|(p, d)| (p.to_string(), hex::encode(d)))
        .collect()
}

#[test]
fn snapshot_job_end_to_end_survives_restart_and_uses_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = make_tree(dir.path());
    let ima_log = dir.path().join("binary_runtime_measurements");
    let logged = write_ima_log(&ima_log, &tree.tool);
    // A file enters the scan cache only once its ctime is 2 s old (racily-clean rule);
    // let the tree settle so that the second snapshot can be answered from the cache.
    std::thread::sleep(Duration::from_millis(2500));

    let swtpm = match Swtpm::start() {
        Ok(t) => Some(t),
        Err(e) => {
            println!("swtpm did not start ({e:#}); testing without a TPM");
            None
        }
    };
    let tpm = swtpm.as_ref().map_or("none".to_string(), Swtpm::tcti);
    let gw = Gateway::start(dir.path(), &tpm, &ima_log, &[&tree.root]);

    // Nothing yet: JSON 404s.
    let (status, body) = gw.call("GET", "/v1/snapshot");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "no snapshot", "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("POST")));
    assert_eq!(gw.call("GET", "/v1/snapshot/skipped").0, 404);
    assert_eq!(gw.call("GET", "/v1/snapshot/progress").0, 404);

    // POST: 202 at once with the job's progress.
    let (status, first) = gw.call("POST", "/v1/snapshot");
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["state"], "running", "{first}");
    for key in [
        "phase",
        "files_seen",
        "files_hashed",
        "files_from_cache",
        "bytes_hashed",
        "rate_bytes_per_s",
        "skipped",
        "elapsed_ms",
    ] {
        assert!(first.get(key).is_some(), "progress lacks {key}: {first}");
    }
    // A second POST while the job hashes 256 MiB: 409 with the running job's progress.
    let (status, second) = gw.call("POST", "/v1/snapshot");
    assert_eq!(status, 409, "{second}");
    assert_eq!(second["error"], "snapshot already running", "{second}");
    assert!(second["detail"].as_str().is_some());
    assert_eq!(second["progress"]["started_at"], first["started_at"]);

    let (status, body, progress) = gw.wait_snapshot();
    assert_eq!(status, 200, "{body}\nlog:\n{}", gw.log());
    assert!(!progress.is_empty(), "the job was never seen running");
    let snapshot =
        Snapshot::from_json(&serde_json::to_vec(&body).expect("json")).expect("a valid Snapshot");

    // The IMA log's entries, boot_aggregate and the violation excluded.
    for (path, digest) in &logged {
        assert!(
            pairs_for(&snapshot, path).contains(&digest.as_str()),
            "{path} {digest} missing from {:?}",
            snapshot.filehashes
        );
    }
    assert!(pairs_for(&snapshot, "boot_aggregate").is_empty());
    assert!(pairs_for(&snapshot, "/var/log/opened-for-write").is_empty());
    // The scanned tree: digests equal sha256sum's; the tool keeps both its logged and
    // its on-disk digest; the data file is not code.
    let tool = tree.tool.to_str().expect("utf-8");
    let mut tool_digests = pairs_for(&snapshot, tool);
    tool_digests.sort();
    let mut expected = vec![sha256sum(&tree.tool), "c3".repeat(32)];
    expected.sort();
    assert_eq!(tool_digests, expected);
    let script = tree.script.to_str().expect("utf-8");
    assert_eq!(pairs_for(&snapshot, script), vec![sha256sum(&tree.script)]);
    assert!(pairs_for(&snapshot, tree.data.to_str().expect("utf-8")).is_empty());
    assert!(
        snapshot.filehashes.windows(2).all(|w| w[0] < w[1]),
        "sorted, unique"
    );

    // Policy: IMA on PCR 10 with the log's algorithm; the simulated TEE with its key and
    // measurement; the manifest with the own domain; the TPM's when there is one.
    let ima = snapshot.ima.as_ref().expect("ima policy");
    assert_eq!((ima.pcr, ima.hash_algorithm), (10, HashAlg::Sha256));
    let key = SimulatedTee::load_or_create(&dir.path().join("data")).expect("simulated key");
    match &snapshot.tee_policy {
        TeePolicy::Simulated {
            measurement,
            public_key_sha256,
            ..
        } => {
            assert_eq!(measurement.as_slice(), MEASUREMENT.as_slice());
            assert_eq!(
                *public_key_sha256,
                simulated::public_key_sha256(&key.public_key_der())
            );
        }
        other => panic!("expected the simulated TEE policy, got {other:?}"),
    }
    assert!(
        snapshot.manifest.get(DOMAIN).is_some(),
        "{:?}",
        snapshot.manifest
    );
    assert_eq!(snapshot.tpm_policy.is_some(), swtpm.is_some());

    // Skipped: the non-UTF-8 name, with its reason.
    let (status, skipped) = gw.call("GET", "/v1/snapshot/skipped");
    assert_eq!(status, 200, "{skipped}");
    assert_eq!(skipped["created_at"], body["created_at"]);
    let list = skipped["skipped"].as_array().expect("list");
    assert!(
        list.iter().any(|s| s["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("bin/odd\\xff"))
            && s["reason"] == "non-UTF-8 path"),
        "{skipped}"
    );
    let (status, done) = gw.call("GET", "/v1/snapshot/progress");
    assert_eq!(status, 200);
    assert_eq!(
        (&done["state"], &done["phase"]),
        (&"done".into(), &"done".into())
    );
    assert!(done["files_hashed"].as_u64() >= Some(2), "{done}");
    assert_eq!(
        done["filehashes"].as_u64(),
        Some(snapshot.filehashes.len() as u64)
    );

    // Stored on disk: a restart serves the same bytes.
    let (_, first_raw) = gw.call_raw("GET", "/v1/snapshot");
    gw.stop();
    let gw = Gateway::start(dir.path(), &tpm, &ima_log, &[&tree.root]);
    let (status, after) = gw.call_raw("GET", "/v1/snapshot");
    assert_eq!(status, 200);
    assert_eq!(after, first_raw);
    assert_eq!(gw.call("GET", "/v1/snapshot/skipped").1, skipped);
    assert_eq!(
        gw.call("GET", "/v1/snapshot/progress").0,
        404,
        "no job since start"
    );

    // A second snapshot of the unchanged tree: every file from the cache, none hashed.
    let (status, _) = gw.call("POST", "/v1/snapshot");
    assert_eq!(status, 202);
    let (status, again, _) = gw.wait_snapshot();
    assert_eq!(status, 200, "{again}");
    let (_, done) = gw.call("GET", "/v1/snapshot/progress");
    assert_eq!(done["files_hashed"].as_u64(), Some(0), "{done}");
    assert!(done["files_from_cache"].as_u64() >= Some(3), "{done}");
    assert_eq!(done["bytes_hashed"].as_u64(), Some(0), "{done}");
    let again = Snapshot::from_json(&serde_json::to_vec(&again).expect("json")).expect("snapshot");
    assert_eq!(again.filehashes, snapshot.filehashes);
    gw.stop();
    drop(swtpm);
}

#[test]
fn a_missing_root_fails_the_job_with_a_json_500_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ima_log = dir.path().join("no-ima-log");
    let missing = dir.path().join("no-such-root");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&missing]);
    let (status, body) = gw.call("POST", "/v1/snapshot");
    assert_eq!(status, 202, "{body}");
    let (status, body, _) = gw.wait_snapshot();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "snapshot failed");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(&missing.display().to_string()), "{detail}");
    assert_eq!(body["progress"]["state"], "failed");
    // Nothing was stored; a new POST may start again (and fails the same way).
    assert!(!dir.path().join("data/snapshot.json").exists());
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    assert_eq!(gw.wait_snapshot().0, 500);
    gw.stop();
}

#[test]
fn unknown_paths_and_methods_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ima_log = dir.path().join("no-ima-log");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[dir.path()]);
    let (status, body) = gw.call("GET", "/v1/snapshot/nope");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "no such endpoint");
    assert!(body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("/v1/snapshot/nope")));
    let (status, body) = gw.call("DELETE", "/v1/snapshot");
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["detail"], "use GET, POST");
    let (status, body) = gw.call("POST", "/v1/snapshot/skipped");
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"], "method not allowed");
    gw.stop();
}

#[test]
fn a_corrupt_ima_log_fails_the_job_and_names_the_file() {
    // Without a TPM the evidence carries no log; the job reads the configured one, and a
    // log that does not parse is a failure that names the file and the entry.
    let dir = tempfile::tempdir().expect("tempdir");
    let ima_log = dir.path().join("binary_runtime_measurements");
    let mut bytes = binary::serialize(&[
        ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[1; 32]).expect("entry"),
        ImaEntry::ima_ng("/usr/bin/x", HashAlg::Sha256, &[2; 32]).expect("entry"),
    ]);
    bytes.truncate(bytes.len() - 5);
    fs::write(&ima_log, bytes).expect("write");
    let root = dir.path().join("empty");
    fs::create_dir(&root).expect("mkdir");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&root]);
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    let (status, body, _) = gw.wait_snapshot();
    assert_eq!(status, 500, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(&ima_log.display().to_string()), "{detail}");
    assert!(detail.contains("entry 1"), "{detail}");
    gw.stop();
}

#[test]
fn without_a_tpm_the_log_feeds_filehashes_but_ima_is_not_pinned() {
    // No TPM: nothing quotes the log, so the evidence carries none and verification
    // cannot require one; the snapshot says so with `ima: null`, while the files the log
    // lists are still known.
    let dir = tempfile::tempdir().expect("tempdir");
    let ima_log = dir.path().join("binary_runtime_measurements");
    let bytes = binary::serialize(&[
        ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[1; 32]).expect("entry"),
        ImaEntry::ima_ng("/usr/bin/x", HashAlg::Sha256, &[2; 32]).expect("entry"),
    ]);
    fs::write(&ima_log, bytes).expect("write");
    let root = dir.path().join("empty");
    fs::create_dir(&root).expect("mkdir");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&root]);
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    let (status, body, _) = gw.wait_snapshot();
    assert_eq!(status, 200, "{body}");
    assert!(body["ima"].is_null(), "{body}");
    assert!(body["tpm_policy"].is_null(), "{body}");
    let files = body["filehashes"].as_array().expect("filehashes");
    assert!(
        files
            .iter()
            .any(|f| f[0] == "/usr/bin/x" && f[1] == "02".repeat(32)),
        "{body}"
    );
    gw.stop();
}

#[test]
fn check_config_names_bad_snapshot_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("verigated.toml");
    fs::write(
        &path,
        format!(
            "[gateway]\nlisten = [\"127.0.0.1:1\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\n\
             [snapshot]\nroots = [\"/usr\", \"opt/app\"]\nexclude = [\"var/cache\"]\nworkers = 100000\n",
            dir.path().display()
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run verigated");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("snapshot.roots[1]: `opt/app` is relative"),
        "{err}"
    );
    assert!(
        err.contains("snapshot.exclude[0]: `var/cache` is relative"),
        "{err}"
    );
    assert!(err.contains("snapshot.workers: 100000 threads"), "{err}");
    assert!(!err.contains("snapshot.roots[0]"), "{err}");

    fs::write(
        &path,
        format!(
            "[gateway]\nlisten = [\"127.0.0.1:1\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\n\
             [snapshot]\nroots = []\n",
            dir.path().display()
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run verigated");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("snapshot.roots: empty"));
}

#[test]
fn a_job_interrupted_by_a_restart_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    fs::create_dir(&root).expect("mkdir");
    let big = root.join("big");
    let f = fs::File::create(&big).expect("big");
    (&f).write_all(b"#!/bin/sh\n").expect("write");
    f.set_len(2 << 30).expect("sparse");
    let ima_log = dir.path().join("no-ima-log");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&root]);
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    // SIGTERM while the job runs: verigated cancels it and exits (stop() waits for the
    // exit and fails the test if it never comes).
    gw.stop();
    assert!(!dir.path().join("data/snapshot.json").exists());
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&root]);
    let (status, body) = gw.call("GET", "/v1/snapshot");
    assert_eq!(status, 404, "{body}");
    assert_eq!(gw.call("GET", "/v1/snapshot/progress").0, 404);
    gw.stop();
}

/// Every file under `dir` with its content, to show that nothing changed.
fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn an_unauthenticated_post_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    fs::create_dir(&root).expect("mkdir");
    write_script(&root.join("run"));
    let ima_log = dir.path().join("no-ima-log");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&root]);
    let data = dir.path().join("data");
    let before = files_under(&data);

    for token in [None, Some("not-the-token")] {
        let (status, head, body) = gw.call_as("POST", "/v1/snapshot", token);
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
    }
    // No job started, nothing was written.
    assert_eq!(gw.call("GET", "/v1/snapshot/progress").0, 404);
    assert_eq!(gw.call("GET", "/v1/snapshot").0, 404);
    assert_eq!(files_under(&data), before);
    assert!(gw.log().contains("credential refused"), "{}", gw.log());

    // The skipped list names files of the VM: the credential too.
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    assert_eq!(gw.wait_snapshot().0, 200);
    assert_eq!(gw.call_as("GET", "/v1/snapshot/skipped", None).0, 401);
    assert_eq!(gw.call("GET", "/v1/snapshot/skipped").0, 200);
    // The snapshot itself is public: what verifiers compare against.
    assert_eq!(gw.call_as("GET", "/v1/snapshot", None).0, 200);
    gw.stop();
}

#[test]
fn a_failed_job_leaves_the_last_good_snapshot_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    fs::create_dir(&root).expect("mkdir");
    write_script(&root.join("run"));
    let ima_log = dir.path().join("no-ima-log");
    let gw = Gateway::start(dir.path(), "none", &ima_log, &[&root]);
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    assert_eq!(gw.wait_snapshot().0, 200);
    let (_, head, good) = gw.call_as("GET", "/v1/snapshot", None);
    assert!(
        !head.to_ascii_lowercase().contains("verigate-last-job"),
        "{head}"
    );

    // The root disappears: the next job fails.
    fs::remove_dir_all(&root).expect("rm root");
    assert_eq!(gw.call("POST", "/v1/snapshot").0, 202);
    let (status, body, _) = gw.wait_snapshot();
    assert_eq!(status, 200, "the good snapshot is no longer served: {body}");
    let (status, head, served) = gw.call_as("GET", "/v1/snapshot", None);
    assert_eq!(status, 200);
    assert_eq!(served, good);
    assert!(
        head.to_ascii_lowercase()
            .contains("verigate-last-job: failed"),
        "{head}"
    );
    let (_, progress) = gw.call("GET", "/v1/snapshot/progress");
    assert_eq!(progress["state"], "failed", "{progress}");
    gw.stop();
}

fn write_script(path: &Path) {
    fs::write(path, "#!/bin/sh\n").expect("script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}
