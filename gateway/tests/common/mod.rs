//! Shared harness of the gateway's integration tests: a real `verigated` process (the
//! binary cargo built for this test run) on a free loopback port with a generated
//! config, its log captured to a file, killed when dropped; plus helpers to reach its
//! own endpoint. TLS backends and the client live in `testkit::tls`.
//!
//! Nothing here asserts timing: waits poll with a generous deadline ([`PATIENCE`]).

#![allow(dead_code)]

pub mod h2;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::ports::{free_port, wait_for_listener};
use testkit::process::ChildGuard;
use testkit::tls::{self, HelloDelivery, Session, TlsBackend};

/// How long a test waits for something that should happen (a log line, an exit)
/// before it fails; never a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The own endpoint's name in every generated config.
pub const DOMAIN: &str = "vm.example.com";

/// The bearer token of the generated configs: its SHA-256 is in `[api]
/// admin_token_sha256` unless the test brings its own `[api]` section. `/metrics` takes
/// it.
pub const TOKEN: &str = "common-test-token";

/// Lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A `[[route]]` table.
pub fn route(sni: &str, backend: impl std::fmt::Display) -> String {
    format!("[[route]]\nsni = \"{sni}\"\nbackend = \"{backend}\"\n\n")
}

/// A whole config: `[gateway]` listening on `addr` with `data_dir`, the extra
/// `[gateway]` lines, then `routes` (TOML text), then `[api]` with [`TOKEN`] unless
/// `routes` has an `[api]` section of its own.
pub fn config_text(addr: SocketAddr, data_dir: &Path, gateway_extra: &str, routes: &str) -> String {
    let api = if routes.contains("[api]") {
        String::new()
    } else {
        format!(
            "\n[api]\nadmin_token_sha256 = [\"{}\"]\n",
            sha256_hex(TOKEN)
        )
    };
    format!(
        "[gateway]\nlisten = [\"{addr}\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\
         {gateway_extra}\n\n[attestation]\ntee = \"none\"\ntpm = \"none\"\n\n{routes}{api}",
        data_dir.display()
    )
}

/// A running verigated.
pub struct Gateway {
    child: ChildGuard,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    log_path: PathBuf,
    gateway_extra: String,
}

impl Gateway {
    /// Starts verigated in `dir` (its data_dir) with the extra `[gateway]` lines and
    /// `routes`, on a free port of 127.0.0.1; waits until it accepts connections.
    pub fn start(dir: &Path, gateway_extra: &str, routes: &str) -> Gateway {
        Gateway::start_with_args(dir, gateway_extra, routes, &[])
    }

    /// Like [`Gateway::start`], with extra command-line arguments (`--log-format json`).
    pub fn start_with_args(
        dir: &Path,
        gateway_extra: &str,
        routes: &str,
        args: &[&str],
    ) -> Gateway {
        Gateway::start_with_tee(dir, gateway_extra, routes, args, "none")
    }

    /// Like [`Gateway::start_with_args`], with another `attestation.tee` than `none`.
    pub fn start_with_tee(
        dir: &Path,
        gateway_extra: &str,
        routes: &str,
        args: &[&str],
        tee: &str,
    ) -> Gateway {
        Gateway::start_with_attestation(
            dir,
            gateway_extra,
            routes,
            args,
            &format!("tee = \"{tee}\"\ntpm = \"none\"\n"),
        )
    }

    /// Like [`Gateway::start_with_args`], with `attestation` (TOML lines) as the whole
    /// `[attestation]` section.
    pub fn start_with_attestation(
        dir: &Path,
        gateway_extra: &str,
        routes: &str,
        args: &[&str],
        attestation: &str,
    ) -> Gateway {
        let mut last_log = String::new();
        // The port was free a moment ago; another process may take it first, so retry.
        for attempt in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config_path = dir.join("verigated.toml");
            let text = config_text(addr, dir, gateway_extra, routes)
                .replace("tee = \"none\"\ntpm = \"none\"\n", attestation);
            std::fs::write(&config_path, text).expect("write config");
            let log_path = dir.join(format!("verigated-{attempt}.log"));
            let log = File::create(&log_path).expect("create log");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_verigated"));
            cmd.arg("--config")
                .arg(&config_path)
                .args(args)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log);
            let mut child = ChildGuard::spawn("verigated", &mut cmd).expect("spawn verigated");
            if wait_for_listener(addr, PATIENCE) && child.is_running() {
                let gw = Gateway {
                    child,
                    addr,
                    dir: dir.to_path_buf(),
                    config_path,
                    log_path,
                    gateway_extra: gateway_extra.to_string(),
                };
                // wait_for_listener's probe is a connection too; let its line pass.
                gw.wait_for_log("closed_before_client_hello");
                return gw;
            }
            drop(child);
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("verigated did not start listening; its log:\n{last_log}");
    }

    /// Everything verigated logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log's connection lines (one per connection).
    pub fn connection_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("verigated::connection"))
            .map(str::to_string)
            .collect()
    }

    /// Waits until the log contains `needle`; panics with the log if it never does.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "verigated never logged `{needle}`; its log:\n{}",
            self.log()
        );
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_for_log_count(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.log().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "verigated logged `{needle}` fewer than {count} times; its log:\n{}",
            self.log()
        );
    }

    /// Rewrites the config file with new routes (same `[gateway]` section).
    pub fn rewrite_routes(&self, routes: &str) {
        self.rewrite(&config_text(
            self.addr,
            &self.dir,
            &self.gateway_extra,
            routes,
        ));
    }

    /// Replaces the config file (atomically, as an editor or a deploy tool would).
    pub fn rewrite(&self, text: &str) {
        let tmp = self.dir.join("verigated.toml.tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    /// Sends `sig` to this verigated (by PID).
    pub fn signal(&self, sig: i32) {
        self.child.signal(sig);
    }

    /// Waits for the process to exit, up to [`PATIENCE`].
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A TLS session through the gateway with `sni`, the hello in one write.
    pub fn connect(&self, sni: Option<&str>) -> anyhow::Result<Session> {
        tls::connect(self.addr, sni, &[], HelloDelivery::Whole)
    }

    /// `GET path` on the own endpoint over HTTP/1.1; returns (status line, body).
    pub fn get(&self, path: &str) -> (String, String) {
        self.request(path, None, "127.0.0.1".parse().expect("an address"))
    }

    /// `GET path` with `token` as the bearer credential (none: no header).
    pub fn get_as(&self, path: &str, token: Option<&str>) -> (String, String) {
        self.request(path, token, "127.0.0.1".parse().expect("an address"))
    }

    /// [`Gateway::get`] from the loopback address `source` (127.0.0.2 stands for a
    /// second client machine).
    pub fn get_from(&self, source: std::net::IpAddr, path: &str) -> (String, String) {
        self.request(path, None, source)
    }

    /// [`Gateway::get_from`] with `token` as the bearer credential.
    pub fn get_from_as(
        &self,
        source: std::net::IpAddr,
        path: &str,
        token: Option<&str>,
    ) -> (String, String) {
        self.request(path, token, source)
    }

    /// `GET path` from `source`, with `token` as the bearer credential if any.
    fn request(
        &self,
        path: &str,
        token: Option<&str>,
        source: std::net::IpAddr,
    ) -> (String, String) {
        // When the test's own address is a listed load balancer
        // (`accept_proxy_protocol_from`), a PROXY v2 LOCAL header (as a load balancer's
        // health check sends) gets the request in.
        let prefix: &[u8] = if self.gateway_extra.contains("accept_proxy_protocol_from") {
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"
        } else {
            b""
        };
        let sock = testkit::ports::connect_from(source, self.addr).expect("connect");
        let mut session = tls::connect_over(
            sock,
            prefix,
            Some(DOMAIN),
            &["http/1.1"],
            HelloDelivery::Whole,
        )
        .expect("connect to the own endpoint");
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\n{authorization}Connection: close\r\n\r\n"
        );
        session
            .stream
            .write_all(request.as_bytes())
            .expect("send request");
        let mut response = Vec::new();
        // A peer that closes without close_notify still delivered its bytes.
        let _ = session.stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, body.to_string())
    }

    /// The value of a metric line (`name{labels}` exactly as rendered).
    pub fn metric(&self, series: &str) -> Option<u64> {
        let (_, body) = self.get_as("/metrics", Some(TOKEN));
        metric_value(&body, series)
    }
}

/// Finds `series value` in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Three TLS backends with distinct certificates, named `a.example.com`,
/// `b.example.com` and `c.example.com`.
pub fn three_backends() -> [TlsBackend; 3] {
    ["a.example.com", "b.example.com", "c.example.com"]
        .map(|name| TlsBackend::start(name).expect("start backend"))
}

/// Routes for `backends`, each on its own name.
pub fn routes_for(backends: &[TlsBackend]) -> String {
    backends.iter().map(|b| route(&b.name, b.addr)).collect()
}

/// Reads from a raw socket until the peer closes or `PATIENCE` passes; returns the bytes
/// and whether the peer closed (EOF or reset).
pub fn read_until_closed(sock: &mut TcpStream) -> (Vec<u8>, bool) {
    sock.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (out, false)
            }
            Err(_) => return (out, true),
        }
    }
}

/// A raw TCP connection to the gateway.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let sock = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    sock
}

/// Reads a TLS session until the server ends it (close, reset or error), up to
/// [`PATIENCE`]; returns whether it ended. Writes nothing: a silent client.
pub fn ended(session: &mut Session) -> bool {
    session
        .stream
        .sock
        .set_read_timeout(Some(PATIENCE))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match session.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}
