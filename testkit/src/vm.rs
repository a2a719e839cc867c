//! A simulated confidential VM for the CLI's end-to-end tests: verigated with the
//! simulated TEE, a real swtpm whose PCR 10 holds the extends of an IMA log written
//! here, TLS backends routed by SNI, a small tree for the snapshot's scan, all on
//! loopback in one temporary folder; and the `verigate` binary run against it as a user
//! runs it.
//!
//! verigated can be stopped, reconfigured and started again on the same data dir (same
//! own certificate, same simulated-TEE key), on the same address while it is free. The
//! binaries are the ones cargo built: `verigate` (the test's `CARGO_BIN_EXE_verigate`)
//! and `verigated` beside it (`cargo build -p gateway`, which the workspace build of
//! `scripts/test.sh` does).

use crate::ports::{free_port, wait_for_listener};
use crate::process::ChildGuard;
use crate::swtpm::Swtpm;
use crate::tls::TlsBackend;
use attest::ima::{binary, HashAlg, ImaEntry};
use serde_json::Value;
use sha2::Digest as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// verigated's own name in every test VM.
pub const DOMAIN: &str = "vm.example.com";
/// How long verigated may take to listen, or a reload to show.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// The simulated measurement a VM starts with: this byte, 48 times (hex).
pub const MEASUREMENT: &str = "5a";
/// The bearer token of a test VM unless a test sets its own ([`Vm::token`]): its
/// SHA-256 is in the generated `[api]` section. `verigate snapshot` and `/metrics` take
/// it.
pub const TOKEN: &str = "verigate-vm-test-token";
/// How often verigated is started on a new port when the chosen one was taken meanwhile.
const START_ATTEMPTS: u32 = 5;

/// The two binaries of the workspace the tests run.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `verigate` CLI the test was built with.
    pub verigate: PathBuf,
    /// The `verigated` daemon beside it.
    pub verigated: PathBuf,
}

impl Binaries {
    /// The binaries, when verigated is beside `verigate` (pass
    /// `env!("CARGO_BIN_EXE_verigate")`) and swtpm, tpm2-tools and `programs` are on
    /// PATH; `None` after [`crate::require`] said what is missing (it panics under CI).
    pub fn require(verigate: &str, programs: &[&str]) -> Option<Binaries> {
        let verigate = PathBuf::from(verigate);
        let verigated = verigate.with_file_name("verigated");
        let mut tools = vec!["swtpm", "tpm2_pcrextend"];
        tools.extend_from_slice(programs);
        let found = crate::require_path(&verigated, crate::require::install::VERIGATED)
            && crate::require_programs(
                &tools,
                "apt-get install swtpm swtpm-tools tpm2-tools openssl curl",
            );
        found.then_some(Binaries {
            verigate,
            verigated,
        })
    }
}

/// A certificate and key that replicas serve for one application name.
#[derive(Debug)]
pub struct SharedCertificate {
    /// The application name.
    pub name: String,
    /// Its certificate and key.
    pub identity: crate::tls::SelfSigned,
}

impl SharedCertificate {
    /// A fresh self-signed certificate for `name`.
    pub fn new(name: &str) -> SharedCertificate {
        SharedCertificate {
            name: name.to_string(),
            identity: crate::tls::self_signed(name).expect("certificate"),
        }
    }
}

/// What differs between the tests' VMs.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// One TLS backend per name, routed by SNI.
    pub apps: Vec<String>,
    /// The IMA log, extended into PCR 10 before verigated opens the TPM.
    pub entries: Vec<ImaEntry>,
    /// The scanned tree's one file is executable.
    pub executable_tool: bool,
    /// The loopback address verigated listens on (127.0.0.1 unless set), so that
    /// several VMs have distinct addresses.
    pub host: std::net::Ipv4Addr,
    /// Certificates the backends serve, by name, instead of fresh ones: replicas of
    /// one application share its certificate and key.
    pub certificates: Option<std::sync::Arc<Vec<SharedCertificate>>>,
}

impl VmOptions {
    /// `apps` as backends, and the log of a boot aggregate and two files.
    pub fn new(apps: &[&str]) -> VmOptions {
        VmOptions {
            apps: apps.iter().map(std::string::ToString::to_string).collect(),
            entries: vec![
                ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[0x11; 32]).expect("entry"),
                ImaEntry::measure("/usr/bin/app", HashAlg::Sha256, b"app v1").expect("entry"),
                ImaEntry::measure("/usr/lib/libc.so.6", HashAlg::Sha256, b"libc").expect("entry"),
            ],
            executable_tool: false,
            host: std::net::Ipv4Addr::LOCALHOST,
            certificates: None,
        }
    }
}

/// A simulated confidential VM; see the module documentation.
pub struct Vm {
    // Dropped in this order: verigated first, then what it talks to, then the files.
    gateway: Option<ChildGuard>,
    /// The TLS backends verigated routes to, one per app name, in the order given.
    pub backends: Vec<TlsBackend>,
    /// The software TPM verigated quotes with; its PCR 10 holds the IMA log's extends.
    pub tpm: Swtpm,
    /// The temporary folder that holds everything of this VM; removed on drop.
    pub dir: tempfile::TempDir,
    /// verigated's listening address on loopback; a new port if the old one was taken at a restart.
    pub addr: SocketAddr,
    /// verigated's data dir.
    pub data: PathBuf,
    /// The IMA log verigated reads.
    pub ima: PathBuf,
    /// What the IMA log holds (and PCR 10 has been extended with).
    pub entries: Vec<ImaEntry>,
    /// The simulated measurement, one byte repeated (hex); read at each start.
    pub measurement: String,
    /// TOML sections written between `[snapshot]` and the routes (`[api]`, `[app]`...);
    /// read at each start. Without an `[api]` section of its own, one listing the
    /// SHA-256 of [`Vm::token`] is written.
    pub extra_config: String,
    /// The credential `snapshot` and `/metrics` are called with; a test that writes its
    /// own `[api]` sets it to its own token.
    pub token: String,
    /// The binaries the VM runs.
    pub bins: Binaries,
    starts: u32,
}

impl Vm {
    /// Everything but verigated: swtpm with the IMA log extended, the backends, the
    /// tree, the data dir. For a test that prepares files in [`Vm::dir`] first; then
    /// [`Vm::start_gateway`].
    pub fn prepare(bins: &Binaries, options: VmOptions) -> Vm {
        let dir = tempfile::tempdir().expect("temporary folder");
        let tpm = Swtpm::start().expect("swtpm");
        let ima = dir.path().join("binary_runtime_measurements");
        std::fs::write(&ima, binary::serialize(&options.entries)).expect("write IMA log");
        for e in &options.entries {
            extend(&tpm, e);
        }
        // The snapshot's scan: a small tree, not the whole machine.
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).expect("tree");
        std::fs::write(tree.join("tool"), b"#!/bin/sh\necho tool\n").expect("tool");
        if options.executable_tool {
            std::fs::set_permissions(
                tree.join("tool"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("chmod tool");
        }
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let shared = |n: &str| {
            options
                .certificates
                .as_ref()
                .and_then(|c| c.iter().find(|s| s.name == n))
        };
        let backends = options
            .apps
            .iter()
            .map(|n| match shared(n) {
                Some(s) => TlsBackend::start_with(n, &s.identity).expect("backend"),
                None => TlsBackend::start(n).expect("backend"),
            })
            .collect();
        Vm {
            gateway: None,
            backends,
            tpm,
            dir,
            addr: SocketAddr::from((options.host, free_port())),
            data,
            ima,
            entries: options.entries,
            measurement: MEASUREMENT.to_string(),
            extra_config: String::new(),
            token: TOKEN.to_string(),
            bins: bins.clone(),
            starts: 0,
        }
    }

    /// [`Vm::prepare`], then verigated.
    pub fn start(bins: &Binaries, options: VmOptions) -> Vm {
        let mut vm = Vm::prepare(bins, options);
        vm.start_gateway(None);
        vm
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("verigated.toml")
    }

    /// verigated's config as the VM stands: against `tpm` (the VM's own unless another
    /// is given), the current measurement, extra sections and backends.
    fn config(&self, tpm: &Swtpm) -> String {
        let api = if self.extra_config.contains("[api]") {
            String::new()
        } else {
            format!(
                "[api]\nadmin_token_sha256 = [\"{}\"]\n\n",
                hex::encode(sha2::Sha256::digest(self.token.as_bytes()))
            )
        };
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
        format!(
            "[gateway]\nlisten = [\"{}\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\n\
             [attestation]\ntee = \"simulated\"\nsimulated_measurement = \"{}\"\n\
             tpm = \"{}\"\nima_log = \"{}\"\n\n\
             [snapshot]\nroots = [\"{}\"]\nexclude = []\n\n{}{}{routes}",
            self.addr,
            self.data.display(),
            self.measurement.repeat(48),
            tpm.tcti(),
            self.ima.display(),
            self.dir.path().join("tree").display(),
            self.extra_config,
            api,
        )
    }

    /// Writes the config (against `other_tpm` if given) and starts verigated, on the
    /// same address as before when it is still free.
    pub fn start_gateway(&mut self, other_tpm: Option<&Swtpm>) {
        assert!(self.gateway.is_none(), "verigated already runs");
        let mut last_log = String::new();
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                self.addr = SocketAddr::new(self.addr.ip(), free_port());
            }
            let config = self.config_path();
            std::fs::write(&config, self.config(other_tpm.unwrap_or(&self.tpm)))
                .expect("write config");
            self.starts += 1;
            let log_path = self.log_path();
            if let Some(child) =
                start_verigated(&self.bins.verigated, &config, &log_path, self.addr)
            {
                self.gateway = Some(child);
                return;
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("verigated did not start; its log:\n{last_log}");
    }

    /// Kills verigated (and waits for it), which closes its TPM connection.
    pub fn stop_gateway(&mut self) {
        drop(self.gateway.take());
    }

    /// Stops verigated and starts it again with the current configuration.
    pub fn restart_gateway(&mut self) {
        self.stop_gateway();
        self.start_gateway(None);
    }

    /// A reboot: swtpm power-cycled on the same state (its resetCount goes up, PCR 10
    /// starts from zeros), the IMA log's entries extended again as the kernel measures
    /// the same files again, verigated started again.
    pub fn reboot(&mut self) {
        self.stop_gateway();
        self.tpm.restart().expect("swtpm restarts");
        for e in &self.entries {
            extend(&self.tpm, e);
        }
        self.start_gateway(None);
    }

    /// A new file measured (an executable that ran): IMA logs `entry` and extends it
    /// into PCR 10; verigated is stopped meanwhile (swtpm serves one client at a time).
    pub fn measure(&mut self, entry: ImaEntry) {
        self.stop_gateway();
        extend(&self.tpm, &entry);
        self.entries.push(entry);
        std::fs::write(&self.ima, binary::serialize(&self.entries)).expect("write IMA log");
        self.start_gateway(None);
    }

    /// Replaces the backend of `name` by a new one (a new certificate and a new key, as
    /// after a renewal inside the VM that did not keep its key), reloads verigated with
    /// SIGHUP and waits until its manifest holds the new certificate. Returns the new
    /// certificate's SHA-256 (hex).
    pub fn renew(&mut self, name: &str) -> String {
        let fresh = TlsBackend::start(name).expect("renewed backend");
        self.replace_backend(name, fresh)
    }

    /// As [`Vm::renew`], but the new certificate keeps the old one's key (a renewal with
    /// `certbot --reuse-key`).
    pub fn renew_keeping_key(&mut self, name: &str) -> String {
        let key_pem = self
            .backends
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.key_pem.clone())
            .expect("a backend of that name");
        let fresh = TlsBackend::start_with_key(name, &key_pem).expect("renewed backend");
        self.replace_backend(name, fresh)
    }

    fn replace_backend(&mut self, name: &str, fresh: TlsBackend) -> String {
        let sha = hex::encode(sha2::Sha256::digest(fresh.cert.as_ref()));
        if let Some(b) = self.backends.iter_mut().find(|b| b.name == name) {
            *b = fresh;
        }
        let config = self.config_path();
        let tmp = config.with_extension("tmp");
        std::fs::write(&tmp, self.config(&self.tpm)).expect("write config");
        std::fs::rename(&tmp, &config).expect("replace config");
        if let Some(g) = &self.gateway {
            g.signal(libc::SIGHUP);
        }
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.curl("/v1/manifest").contains(&sha) {
                return sha;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the manifest never showed the renewed certificate; log:\n{}",
            self.log()
        );
    }

    /// The body of `GET path` on verigated's own name (read with curl).
    fn curl(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "30", &format!("{}{path}", self.url())])
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `verigated_attestation_calls_total` from `/metrics`: calls of
    /// `GET /v1/attestation`.
    pub fn attestation_calls(&self) -> u64 {
        let text = self.curl("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("verigated_attestation_calls_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no attestation counter in /metrics:\n{text}"))
    }

    /// The log of verigated's last start.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("verigated-{}.log", self.starts))
    }

    /// The log of verigated's last start; empty when there is none yet.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// verigated's base URL, `https://` and its address.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Runs verigate against verigated with `args`; see [`Vm::verigate_at`].
    pub fn verigate(&self, args: &[&str]) -> Output {
        self.verigate_at(&self.url(), &[], args)
    }

    /// Runs verigate in the VM's folder with `--url URL --allow-insecure-tls`
    /// (verigated's certificate is self-signed; attestation pins it), `env` set and no
    /// `VERIGATE_TOKEN` from the test's own environment, then `args`; prints the run.
    pub fn verigate_at(&self, url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.verigate_trusting(url, &["--allow-insecure-tls"], env, args)
    }

    /// Runs verigate as [`Vm::verigate_at`] does, with `trust` (e.g. `--ca-cert FILE`, or
    /// nothing: Mozilla's roots) instead of `--allow-insecure-tls`.
    pub fn verigate_trusting(
        &self,
        url: &str,
        trust: &[&str],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        let mut all = vec!["--url", url];
        all.extend_from_slice(trust);
        all.extend_from_slice(args);
        let mut cmd = Command::new(&self.bins.verigate);
        cmd.args(&all)
            .current_dir(self.dir.path())
            .env_remove("VERIGATE_TOKEN")
            .env_remove("VERIGATE_CA_CERT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        crate::cli::logged(&mut cmd)
    }

    /// `snapshot --allow-simulated-tee` into `name` in the VM's folder, which must
    /// succeed.
    pub fn snapshot(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let out = self.verigate_at(
            &self.url(),
            &[("VERIGATE_TOKEN", &self.token)],
            &[
                "snapshot",
                "--allow-simulated-tee",
                "--out",
                path.to_str().expect("UTF-8 path"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "snapshot failed; verigated log:\n{}",
            self.log()
        );
        path
    }

    /// A snapshot of this VM made into the policy of its image (`policy from-snapshot`),
    /// written to `out`, which must succeed: what a fleet of its replicas is verified
    /// against.
    pub fn policy(&self, out: &std::path::Path) {
        let snap = self.snapshot("policy-source.snapshot.json");
        let run = crate::cli::logged(Command::new(&self.bins.verigate).args([
            "policy",
            "from-snapshot",
            snap.to_str().expect("UTF-8 path"),
            "--domain",
            DOMAIN,
            "--out",
            out.to_str().expect("UTF-8 path"),
        ]));
        assert_eq!(run.status.code(), Some(0), "policy from-snapshot failed");
    }

    /// `--output json` then `args`, against `url`: (exit status, report).
    pub fn verify_json(&self, url: &str, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.verigate_at(url, &[], &all);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}); verigated log:\n{}",
                self.log()
            )
        });
        (out.status.code().expect("exit status"), report)
    }
}

/// Starts `verigated --config CONFIG` with its output in `log_path`; the process once
/// it listens on `addr`, `None` (process stopped) when it exits or does not listen
/// within [`PATIENCE`] (the address was taken meanwhile, or the config is refused: the
/// log says which).
pub fn start_verigated(
    verigated: &std::path::Path,
    config: &std::path::Path,
    log_path: &std::path::Path,
    addr: SocketAddr,
) -> Option<ChildGuard> {
    let log = std::fs::File::create(log_path).expect("log file");
    let mut cmd = Command::new(verigated);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    let mut child = ChildGuard::spawn("verigated", &mut cmd).expect("spawn verigated");
    (wait_for_listener(addr, PATIENCE) && child.is_running()).then_some(child)
}

/// Extends `entry` into `tpm`'s SHA-256 PCR 10 with tpm2-tools, as the kernel does when
/// it logs it. swtpm serves one client at a time: verigated must be stopped meanwhile.
pub fn extend(tpm: &Swtpm, entry: &ImaEntry) {
    let out = Command::new("tpm2_pcrextend")
        .args([
            "-T",
            &tpm.tcti(),
            &format!(
                "10:sha256={}",
                hex::encode(entry.extend_value(HashAlg::Sha256))
            ),
        ])
        .output()
        .expect("run tpm2_pcrextend");
    assert!(
        out.status.success(),
        "tpm2_pcrextend: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The check named `name` of a JSON report; `null` (whose fields are `null` too) when
/// the report has none.
pub fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    static NONE: Value = Value::Null;
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or(&NONE)
}

/// The names of the checks of a JSON report that did not pass.
pub fn failed_checks(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["outcome"] != "pass")
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}
