//! `verigated.toml`: reading and validating the gateway's configuration.
//!
//! The file is parsed in two steps. serde reads the TOML into raw structs that refuse
//! unknown fields (a typo must not silently fall back to a default); then [`validate`]
//! turns them into a [`Config`] whose fields are typed (socket addresses, durations, SNI
//! patterns, absolute paths) and collects *every* problem it finds, each one naming the
//! field and what to write instead (``route[2].backend: expected host:port, got `8443` ``),
//! so that `verigated check-config` reports a broken file in one pass.
//!
//! Relative paths resolve under `gateway.data_dir`; a relative `data_dir` resolves
//! against the directory of the config file.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use passthrough::sni::SniPattern;
use serde::Deserialize;

pub mod account;
pub mod acme;
pub mod batching;
pub mod collateral;
pub mod connections;
pub mod control;
pub mod cosmian;
#[cfg(test)]
mod schema_fields;
pub mod storage;

/// Where `verigated` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/verigate/verigated.toml";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (reloads read it again).
    pub path: PathBuf,
    /// `[gateway]`: listeners, the own endpoint, limits and timeouts.
    pub gateway: GatewayConfig,
    /// Routes in file order (`route[0]` first), validated.
    pub routes: Vec<RouteConfig>,
    /// `[attestation]`: TEE, TPM and the certificate manifest.
    pub attestation: AttestationConfig,
    /// `[snapshot]`: what the filesystem snapshot covers.
    pub snapshot: SnapshotConfig,
    /// `[api]`: who may use app control.
    pub api: ApiConfig,
    /// `[api]`: the bounds of every connection to the own endpoint.
    pub endpoint: connections::EndpointBounds,
    /// `[app]`, when present: the application verigated may restart on request.
    pub app: Option<AppConfig>,
    /// The app-control keys of `[api]`, `[app]` and `[app.standalone]` beyond the two
    /// structs above (client CA, size limit, manager settings), validated.
    pub control: control::ValidatedControl,
    /// `[storage]`, when present: the data dir is an encrypted container, mounted.
    pub storage: Option<storage::StorageSettings>,
}

/// `[gateway]`: listeners, own endpoint, limits and timeouts.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where verigated accepts TLS connections (several allowed).
    pub listen: Vec<SocketAddr>,
    /// The SNI of verigated's own endpoint, lowercase.
    pub domain: String,
    /// Absolute.
    pub data_dir: PathBuf,
    /// Absolute; generated (self-signed) together with the key when both are absent.
    pub ssl_certificate: PathBuf,
    /// Absolute.
    pub ssl_private_key: PathBuf,
    /// Who must send a PROXY header, the per-source budget and the backend's first-byte
    /// limit.
    pub limits: connections::GatewayBounds,
    /// How long a client has to send its PROXY header and whole ClientHello.
    pub client_hello_timeout: Duration,
    /// Connections open at once (all routes and the own endpoint); more are closed at once.
    pub max_connections: usize,
    /// How long verigated waits for a backend to accept; a dead backend closes that client.
    pub backend_connect_timeout: Duration,
    /// A passthrough connection with no byte moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// After SIGTERM, how long open connections may take to finish.
    pub drain_grace_period: Duration,
    /// Forward with splice(2) on Linux (zero copy); false forces the portable copy.
    pub splice: bool,
    /// Data-plane threads ([`crate::data_plane`]); 0 is one per core the process may use.
    pub threads: usize,
    /// `[gateway.acme]`, when present: an ACME CA issues and renews `ssl_certificate`.
    pub acme: Option<acme::AcmeSettings>,
}

/// One `[[route]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The server name this route takes: exact, `*.` wildcard, or `*` for everything
    /// unmatched.
    pub sni: SniPattern,
    /// `host:port`, as written.
    pub backend: String,
    /// Prepend a PROXY v2 header (client address, SNI as Authority TLV) so the backend
    /// sees the real client; the backend must expect it.
    pub send_proxy_protocol: bool,
    /// Where the manifest reads this route's certificate (absolute), when set.
    pub certificate: Option<PathBuf>,
}

/// Which TEE to collect evidence from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    /// Azure's HCL report when the TPM has NV index 0x01400001, else configfs-tsm when
    /// the kernel offers it, else `/dev/sev-guest` (with the `snp` build), else no TEE;
    /// never the simulated one.
    #[default]
    Auto,
    /// AMD SEV-SNP (`sev-snp`).
    SevSnp,
    /// Intel TDX.
    Tdx,
    /// An Azure confidential VM on SEV-SNP: the HCL report of the paravisor's vTPM
    /// (`azure-sev-snp`).
    AzureSevSnp,
    /// An Azure confidential VM on TDX: the HCL report, and the TD quote from Azure's
    /// instance metadata service (`azure-tdx`).
    AzureTdx,
    /// A software stand-in for tests, which proves nothing; only when asked for.
    Simulated,
    /// No TEE: the evidence says `kind: none`.
    None,
}

/// `[attestation]`; used by the attestation endpoint (`crate::attestation`) and the
/// certificate manifest (`crate::manifest`).
#[derive(Debug, Clone)]
pub struct AttestationConfig {
    /// Which TEE signs report_data.
    pub tee: TeeKind,
    /// `auto`, `none`, or a TCTI such as `device:/dev/tpmrm0`.
    pub tpm: String,
    /// Absolute.
    pub ima_log: PathBuf,
    /// The TPM persistent handle of the attestation key; `None`: attest's default
    /// (0x81010100).
    pub ak_handle: Option<u32>,
    /// The SHA-256 PCRs the TPM quote covers, sorted, without duplicates.
    pub pcrs: Vec<u8>,
    /// With `tee = "simulated"`: the 48-byte measurement the simulated report carries
    /// instead of the SHA-384 of verigated's own executable.
    pub simulated_measurement: Option<[u8; 48]>,
    /// How often the certificate manifest is rebuilt (besides at start and on reload).
    pub manifest_refresh: Duration,
    /// Where collateral comes from and how often it is refreshed; where configfs-tsm is.
    pub collateral: collateral::CollateralConfig,
    /// How concurrent callers share hardware rounds (`batch_max_size`, `batch_max_waiting`).
    pub batch: batching::BatchSettings,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        AttestationConfig {
            tee: TeeKind::Auto,
            tpm: default_auto(),
            ima_log: default_ima_log(),
            ak_handle: None,
            pcrs: default_pcrs(),
            simulated_measurement: None,
            manifest_refresh: Duration::from_secs(60),
            collateral: collateral::CollateralConfig::default(),
            batch: batching::BatchSettings::default(),
        }
    }
}

/// `[attestation]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttestation {
    #[serde(default)]
    tee: TeeKind,
    #[serde(default = "default_auto")]
    tpm: String,
    #[serde(default = "default_ima_log")]
    ima_log: PathBuf,
    #[serde(default)]
    ak_handle: Option<i64>,
    #[serde(default = "default_pcrs_raw")]
    pcrs: Vec<i64>,
    #[serde(default)]
    simulated_measurement: Option<String>,
    manifest_refresh: Option<RawDuration>,
    // The collateral keys (`config::collateral`).
    amd_kds_url: Option<String>,
    pccs_url: Option<String>,
    root_ca_crl_url: Option<String>,
    collateral_refresh: Option<RawDuration>,
    tsm_report_root: Option<PathBuf>,
    azure_imds_url: Option<String>,
    #[serde(default)]
    batch_max_size: Option<i64>,
    #[serde(default)]
    batch_max_waiting: Option<i64>,
}

impl Default for RawAttestation {
    fn default() -> Self {
        RawAttestation {
            tee: TeeKind::Auto,
            tpm: default_auto(),
            ima_log: default_ima_log(),
            ak_handle: None,
            pcrs: default_pcrs_raw(),
            simulated_measurement: None,
            manifest_refresh: None,
            amd_kds_url: None,
            pccs_url: None,
            root_ca_crl_url: None,
            collateral_refresh: None,
            tsm_report_root: None,
            azure_imds_url: None,
            batch_max_size: None,
            batch_max_waiting: None,
        }
    }
}

/// Default of `attestation.manifest_refresh`, as a user would write it.
pub const DEFAULT_MANIFEST_REFRESH: &str = "60s";

fn default_pcrs() -> Vec<u8> {
    vec![10]
}
fn default_pcrs_raw() -> Vec<i64> {
    vec![10]
}

/// `[snapshot]`; used by the snapshot builder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Trees the snapshot covers; default `/`.
    #[serde(default = "default_roots")]
    pub roots: Vec<PathBuf>,
    /// Trees left out of the snapshot (absolute); default the pseudo and temporary
    /// filesystems `/proc`, `/sys`, `/dev`, `/run`, `/tmp`, `/var/tmp`.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<PathBuf>,
    /// Hashing threads of the scan; 0 (the default) = one per available core.
    #[serde(default)]
    pub workers: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            roots: default_roots(),
            exclude: default_exclude(),
            workers: 0,
        }
    }
}

/// The most hashing threads `snapshot.workers` may ask for.
pub const MAX_SNAPSHOT_WORKERS: usize = 256;

/// Checks `[snapshot]`: roots and excludes must be absolute (a relative one would depend
/// on verigated's working directory, or never match).
fn validate_snapshot(s: &SnapshotConfig, problem: &mut impl FnMut(&str, String)) {
    if s.roots.is_empty() {
        problem(
            "snapshot.roots",
            "empty: list the trees to scan, e.g. [\"/\"]".into(),
        );
    }
    for (i, root) in s.roots.iter().enumerate() {
        if root.is_relative() {
            problem(
                &format!("snapshot.roots[{i}]"),
                format!("`{}` is relative: write it from /", root.display()),
            );
        }
    }
    if s.workers > MAX_SNAPSHOT_WORKERS {
        problem(
            "snapshot.workers",
            format!(
                "{} threads: at most {MAX_SNAPSHOT_WORKERS} (0 = one per core)",
                s.workers
            ),
        );
    }
    for (i, exclude) in s.exclude.iter().enumerate() {
        if exclude.is_relative() {
            problem(
                &format!("snapshot.exclude[{i}]"),
                format!("`{}` is relative: write it from /", exclude.display()),
            );
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Hex SHA-256 of accepted bearer tokens (lowercase after validation); empty = app
    /// control refused.
    #[serde(default)]
    pub admin_token_sha256: Vec<String>,
}

/// How the application is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    /// A systemd unit, driven through `systemctl`.
    Systemd,
    /// A supervisord program, driven through `supervisorctl`.
    Supervisor,
    /// verigated runs the application itself (`[app.standalone] command`).
    Standalone,
}

/// `[app]`; used by app control.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Which manager runs the application.
    pub service_type: ServiceType,
    /// The application's name in its manager (a unit or program name).
    pub service_name: String,
    /// Resolved under `data_dir` when relative (after validation).
    #[serde(default)]
    pub app_storage: Option<PathBuf>,
}

fn default_auto() -> String {
    "auto".to_string()
}
fn default_ima_log() -> PathBuf {
    PathBuf::from("/sys/kernel/security/integrity/ima/binary_runtime_measurements")
}
fn default_roots() -> Vec<PathBuf> {
    vec![PathBuf::from("/")]
}
fn default_exclude() -> Vec<PathBuf> {
    ["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"]
        .iter()
        .map(PathBuf::from)
        .collect()
}

// ---- raw (as written) ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway: RawGateway,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    attestation: RawAttestation,
    #[serde(default)]
    snapshot: SnapshotConfig,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    app: Option<RawApp>,
    #[serde(default)]
    storage: Option<storage::RawStorage>,
}

/// `[api]` as written: [`ApiConfig`] plus the app-control keys of
/// [`control::RawApiControl`] (listed here because `deny_unknown_fields`
/// and `flatten` do not combine).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    admin_token_sha256: Vec<String>,
    #[serde(default)]
    client_ca: Option<PathBuf>,
    #[serde(default)]
    max_config_bytes: Option<i64>,
    // The own endpoint's connection bounds (`connections::RawEndpointBounds`).
    max_connections: Option<i64>,
    max_connections_per_source: Option<i64>,
    idle_timeout: Option<RawDuration>,
    max_connection_lifetime: Option<RawDuration>,
    header_read_timeout: Option<RawDuration>,
    request_timeout: Option<RawDuration>,
    send_timeout: Option<RawDuration>,
    http2_keepalive_interval: Option<RawDuration>,
    http2_keepalive_timeout: Option<RawDuration>,
    http2_max_concurrent_streams: Option<i64>,
}

/// `[app]` as written: [`AppConfig`] plus [`control::RawAppControl`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    service_type: ServiceType,
    service_name: String,
    #[serde(default)]
    app_storage: Option<PathBuf>,
    #[serde(default)]
    supervisor_socket: Option<String>,
    #[serde(default)]
    supervisor_conf: Option<PathBuf>,
    #[serde(default)]
    supervisorctl: Option<PathBuf>,
    #[serde(default)]
    systemctl: Option<PathBuf>,
    #[serde(default)]
    standalone: Option<control::RawStandalone>,
}

/// A duration as written: a string with a unit, or (refused with a hint) a bare number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Number(i64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    #[serde(default = "default_listen")]
    listen: Vec<String>,
    domain: String,
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_cert")]
    ssl_certificate: PathBuf,
    #[serde(default = "default_key")]
    ssl_private_key: PathBuf,
    #[serde(default)]
    accept_proxy_protocol: Option<bool>,
    #[serde(default)]
    accept_proxy_protocol_from: Vec<String>,
    max_connections_per_source: Option<i64>,
    backend_first_byte_timeout: Option<RawDuration>,
    client_hello_timeout: Option<RawDuration>,
    #[serde(default = "default_max_connections")]
    max_connections: i64,
    backend_connect_timeout: Option<RawDuration>,
    idle_timeout: Option<RawDuration>,
    drain_grace_period: Option<RawDuration>,
    #[serde(default = "default_true")]
    splice: bool,
    #[serde(default)]
    threads: i64,
    #[serde(default)]
    acme: Option<acme::RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    sni: String,
    backend: String,
    #[serde(default)]
    send_proxy_protocol: bool,
    #[serde(default)]
    certificate: Option<PathBuf>,
}

fn default_listen() -> Vec<String> {
    vec!["0.0.0.0:443".to_string()]
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/verigate")
}
fn default_cert() -> PathBuf {
    PathBuf::from("data/cert.pem")
}
fn default_key() -> PathBuf {
    PathBuf::from("data/key.pem")
}
/// The most data-plane threads `gateway.threads` may ask for: far beyond any core count
/// a VM has, low enough that a typo does not start a million threads.
const MAX_THREADS: usize = 1024;

fn default_max_connections() -> i64 {
    20_000
}
fn default_true() -> bool {
    true
}

/// Default of `client_hello_timeout`, as a user would write it.
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: &str = "5s";
/// Default of `backend_connect_timeout`, as a user would write it.
pub const DEFAULT_BACKEND_CONNECT_TIMEOUT: &str = "5s";
/// Default of `idle_timeout`, as a user would write it.
pub const DEFAULT_IDLE_TIMEOUT: &str = "5m";
/// Default of `drain_grace_period`, as a user would write it.
pub const DEFAULT_DRAIN_GRACE_PERIOD: &str = "30s";

// ---- errors ----

/// One thing wrong with the file: the field (`route[2].backend`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as the operator would find it in the file (`route[2].backend`).
    pub field: String,
    /// What is wrong with its value, and the fix.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a configuration file cannot be used.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// Not TOML, an unknown field, or a value of the wrong type (toml's message names the
    /// line and the key).
    #[error("{path}: {message}")]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// toml's message, with line and key.
        message: String,
    },
    /// A Cosmian VM `agent.toml`: each of its keys with its verigated equivalent.
    #[error(
        "{path}: a Cosmian VM agent.toml, not a verigated.toml; write verigated.toml \
         (/etc/verigate/verigated.toml) with these equivalents:\n{}\n  {}",
        equivalents.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"),
        cosmian::ALSO_NEEDED
    )]
    CosmianAgent {
        /// The configuration file.
        path: PathBuf,
        /// Each key of the file and its equivalent, sorted by section and key.
        equivalents: Vec<cosmian::Equivalent>,
    },
    /// Well-formed TOML with values that cannot work; every problem found is listed.
    #[error("{path}: {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Every problem found, each naming its field.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates `text` as if read from `path` (which anchors a relative `data_dir`).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| match cosmian::recognize(text) {
            Some(equivalents) => ConfigError::CosmianAgent {
                path: path.to_path_buf(),
                equivalents,
            },
            None => ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().to_string(),
            },
        })?;
        validate(raw, path).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Parses a duration written as a number and a unit: `250ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = || format!("expected a duration such as \"5s\" or \"250ms\", got `{text}`");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(hint)?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(hint());
    }
    let n: u64 = digits.parse().map_err(|_| hint())?;
    let seconds_per_unit = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(hint()),
    };
    n.checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration `{text}` is too large"))
}

/// Checks a `host:port` backend address without resolving it (resolution happens per
/// connection, so a name may point elsewhere later).
pub fn check_host_port(text: &str) -> Result<(), String> {
    let hint = || format!("expected host:port, got `{text}`");
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(hint)?;
    if host.is_empty() || host.contains(':') || host.contains(char::is_whitespace) {
        return Err(hint());
    }
    if host.starts_with('[') {
        return Err(format!(
            "expected host:port, got `{text}` (the IPv6 address in brackets is not valid)"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(format!("port 0 in `{text}`: expected a port of 1..=65535")),
        Ok(_) => {
            if wire::dns::is_dns_name(host) {
                Ok(())
            } else {
                Err(format!(
                    "`{host}` in `{text}` is neither an IP address nor a host name"
                ))
            }
        }
        Err(_) => Err(format!(
            "expected host:port with a port of 1..=65535, got `{text}`"
        )),
    }
}

fn validate(raw: RawConfig, path: &Path) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: field.to_string(),
            message,
        });
    };
    let g = raw.gateway;

    let mut listen = Vec::new();
    if g.listen.is_empty() {
        problem(
            "gateway.listen",
            "no address: add one such as \"0.0.0.0:443\"".into(),
        );
    }
    for (i, text) in g.listen.iter().enumerate() {
        match text.parse::<SocketAddr>() {
            Ok(addr) if listen.contains(&addr) => problem(
                &format!("gateway.listen[{i}]"),
                format!("`{text}` is listed twice"),
            ),
            Ok(addr) => listen.push(addr),
            Err(_) => problem(
                &format!("gateway.listen[{i}]"),
                format!("expected ip:port such as \"0.0.0.0:443\" or \"[::]:443\", got `{text}`"),
            ),
        }
    }

    let domain = g.domain.to_ascii_lowercase();
    if !wire::dns::is_dns_name(&domain) {
        problem(
            "gateway.domain",
            format!(
                "expected a DNS name such as \"vm.example.com\" (no wildcard, no port), got `{}`",
                g.domain
            ),
        );
    }

    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let data_dir = if g.data_dir.is_absolute() {
        g.data_dir.clone()
    } else {
        base.join(&g.data_dir)
    };
    let ssl_certificate = data_dir.join(&g.ssl_certificate);
    let ssl_private_key = data_dir.join(&g.ssl_private_key);
    match (ssl_certificate.exists(), ssl_private_key.exists()) {
        (false, false) => {} // generated at start
        (true, true) => {
            if let Err(e) = crate::certificate::read_certificate_chain(&ssl_certificate) {
                problem("gateway.ssl_certificate", e.to_string());
            }
            if let Err(e) = crate::certificate::read_private_key(&ssl_private_key) {
                problem("gateway.ssl_private_key", e.to_string());
            }
        }
        (true, false) => problem(
            "gateway.ssl_private_key",
            format!(
                "{} does not exist while the certificate {} does: give the key's path, or \
                 remove both files to have a self-signed pair generated",
                ssl_private_key.display(),
                ssl_certificate.display()
            ),
        ),
        (false, true) => problem(
            "gateway.ssl_certificate",
            format!(
                "{} does not exist while the key {} does: give the certificate's path, or \
                 remove both files to have a self-signed pair generated",
                ssl_certificate.display(),
                ssl_private_key.display()
            ),
        ),
    }

    let mut duration = |field: &str, value: Option<RawDuration>, default: &str, zero_ok: bool| {
        let value = value.unwrap_or_else(|| RawDuration::Text(default.to_string()));
        match value {
            RawDuration::Number(n) => {
                problem(
                    &format!("gateway.{field}"),
                    format!("expected a string with a unit such as \"{n}s\" or \"{n}ms\", got the number {n}"),
                );
                Duration::ZERO
            }
            RawDuration::Text(t) => match parse_duration(&t) {
                Ok(d) if d.is_zero() && !zero_ok => {
                    problem(
                        &format!("gateway.{field}"),
                        format!("must be more than zero, got `{t}`"),
                    );
                    d
                }
                Ok(d) => d,
                Err(e) => {
                    problem(&format!("gateway.{field}"), e);
                    Duration::ZERO
                }
            },
        }
    };
    let client_hello_timeout = duration(
        "client_hello_timeout",
        g.client_hello_timeout,
        DEFAULT_CLIENT_HELLO_TIMEOUT,
        false,
    );
    let backend_connect_timeout = duration(
        "backend_connect_timeout",
        g.backend_connect_timeout,
        DEFAULT_BACKEND_CONNECT_TIMEOUT,
        false,
    );
    // Zero turns the idle timeout off; zero grace means "close at once".
    let idle_timeout = duration("idle_timeout", g.idle_timeout, DEFAULT_IDLE_TIMEOUT, true);
    let drain_grace_period = duration(
        "drain_grace_period",
        g.drain_grace_period,
        DEFAULT_DRAIN_GRACE_PERIOD,
        true,
    );

    let max_connections = match usize::try_from(g.max_connections) {
        Ok(n) if n > 0 => n,
        _ => {
            problem(
                "gateway.max_connections",
                format!(
                    "expected a positive number of connections such as 20000, got {}",
                    g.max_connections
                ),
            );
            1
        }
    };

    let threads = match usize::try_from(g.threads) {
        Ok(n) if n <= MAX_THREADS => n,
        _ => {
            problem(
                "gateway.threads",
                format!(
                    "expected 0 (one per core) or a number of threads up to {MAX_THREADS}, got {}",
                    g.threads
                ),
            );
            0
        }
    };

    let (limits, endpoint) = connections::validate(
        connections::RawGatewayBounds {
            accept_proxy_protocol: g.accept_proxy_protocol,
            accept_proxy_protocol_from: g.accept_proxy_protocol_from,
            max_connections_per_source: g.max_connections_per_source,
            backend_first_byte_timeout: g.backend_first_byte_timeout,
        },
        connections::RawEndpointBounds {
            max_connections: raw.api.max_connections,
            max_connections_per_source: raw.api.max_connections_per_source,
            idle_timeout: raw.api.idle_timeout,
            max_connection_lifetime: raw.api.max_connection_lifetime,
            header_read_timeout: raw.api.header_read_timeout,
            request_timeout: raw.api.request_timeout,
            send_timeout: raw.api.send_timeout,
            http2_keepalive_interval: raw.api.http2_keepalive_interval,
            http2_keepalive_timeout: raw.api.http2_keepalive_timeout,
            http2_max_concurrent_streams: raw.api.http2_max_concurrent_streams,
        },
        idle_timeout,
        &mut problem,
    );

    let mut routes = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.route.into_iter().enumerate() {
        let field = |name: &str| format!("route[{i}].{name}");
        let sni = match SniPattern::parse(&r.sni) {
            Ok(sni) => Some(sni),
            Err(e) => {
                problem(&field("sni"), e.to_string());
                None
            }
        };
        if let Some(sni) = &sni {
            let key = sni.as_str().to_string();
            if let Some(first) = seen.get(&key) {
                problem(
                    &field("sni"),
                    format!("`{key}` is already the sni of route[{first}]: merge the two routes or remove one"),
                );
            } else {
                seen.insert(key, i);
            }
            if matches!(sni, SniPattern::Exact(name) if *name == domain) {
                problem(
                    &field("sni"),
                    format!("`{domain}` is gateway.domain, which verigated serves itself: use another name"),
                );
            }
        }
        if let Err(e) = check_host_port(&r.backend) {
            problem(&field("backend"), e);
        }
        let certificate = r.certificate.map(|c| data_dir.join(c));
        if let Some(c) = &certificate {
            if let Err(e) = crate::certificate::read_certificate_chain(c) {
                problem(&field("certificate"), e.to_string());
            }
        }
        if let Some(sni) = sni {
            routes.push(RouteConfig {
                sni,
                backend: r.backend,
                send_proxy_protocol: r.send_proxy_protocol,
                certificate,
            });
        }
    }

    let attestation = validate_attestation(raw.attestation, &data_dir, &mut problem);
    let raw_api_control = control::RawApiControl {
        client_ca: raw.api.client_ca,
        max_config_bytes: raw.api.max_config_bytes,
    };
    let mut api = ApiConfig {
        admin_token_sha256: raw.api.admin_token_sha256,
    };
    for (i, token) in api.admin_token_sha256.iter_mut().enumerate() {
        let lower = token.to_ascii_lowercase();
        if lower.len() != 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            problem(
                &format!("api.admin_token_sha256[{i}]"),
                format!("expected 64 hex digits (the SHA-256 of a token, e.g. `printf %s TOKEN | sha256sum`), got {} characters", token.len()),
            );
        }
        *token = lower;
    }
    let (mut app, raw_app_control) = match raw.app {
        Some(a) => (
            Some(AppConfig {
                service_type: a.service_type,
                service_name: a.service_name,
                app_storage: a.app_storage,
            }),
            control::RawAppControl {
                supervisor_socket: a.supervisor_socket,
                supervisor_conf: a.supervisor_conf,
                supervisorctl: a.supervisorctl,
                systemctl: a.systemctl,
                standalone: a.standalone,
            },
        ),
        None => (None, control::RawAppControl::default()),
    };
    let control = control::validate(
        &raw_api_control,
        &raw_app_control,
        app.as_ref().map(|a| a.service_type),
        &data_dir,
    )
    .unwrap_or_else(|found| {
        for p in found {
            problem(&p.field, p.message);
        }
        control::ValidatedControl {
            settings: control::AppControlSettings::default(),
            client_ca: None,
        }
    });
    if let Some(app) = &mut app {
        if app.service_name.trim().is_empty() {
            problem(
                "app.service_name",
                "empty: name the service to control".into(),
            );
        }
        if let Some(storage) = &app.app_storage {
            app.app_storage = Some(data_dir.join(storage));
        }
    }

    validate_snapshot(&raw.snapshot, &mut problem);
    let acme = g.acme.map(|a| acme::validate(a, &data_dir, &mut problem));
    let storage = raw
        .storage
        .map(|s| storage::validate(s, &data_dir, &mut problem));

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Config {
        path: path.to_path_buf(),
        gateway: GatewayConfig {
            listen,
            domain,
            data_dir,
            ssl_certificate,
            ssl_private_key,
            limits,
            client_hello_timeout,
            max_connections,
            backend_connect_timeout,
            idle_timeout,
            drain_grace_period,
            splice: g.splice,
            threads,
            acme,
        },
        routes,
        attestation,
        snapshot: raw.snapshot,
        api,
        endpoint,
        app,
        control,
        storage,
    })
}

/// Checks `[attestation]`, reporting each problem through `problem`.
fn validate_attestation(
    raw: RawAttestation,
    data_dir: &Path,
    problem: &mut impl FnMut(&str, String),
) -> AttestationConfig {
    let ima_log = if raw.ima_log.is_relative() {
        data_dir.join(&raw.ima_log)
    } else {
        raw.ima_log
    };
    if raw.tpm.trim().is_empty() {
        problem(
            "attestation.tpm",
            "empty: write \"auto\", \"none\" or a TCTI such as \"device:/dev/tpmrm0\"".into(),
        );
    }
    // The owner range of persistent handles (TPM 2.0 Part 2, 2.2: 0x81000000..0x81FFFFFF).
    let ak_handle = raw.ak_handle.and_then(|h| match u32::try_from(h) {
        Ok(h) if (0x8100_0000..=0x81ff_ffff).contains(&h) => Some(h),
        _ => {
            problem(
                "attestation.ak_handle",
                format!(
                    "expected a persistent handle 0x81000000..=0x81ffffff such as 0x81010100, got {h:#x}"
                ),
            );
            None
        }
    });
    use attest::tee::azure::HCL_AK_HANDLE as AZURE_AK_HANDLE;
    let azure = matches!(raw.tee, TeeKind::AzureSevSnp | TeeKind::AzureTdx);
    if let Some(h) = ak_handle.filter(|&h| azure && h != AZURE_AK_HANDLE) {
        problem(
            "attestation.ak_handle",
            format!(
                "on Azure the quote must come from the paravisor's HCL AK at {AZURE_AK_HANDLE:#010x}, \
                 the key the HCL report vouches for, got {h:#010x}: remove ak_handle"
            ),
        );
    }
    if azure && raw.tpm.trim() == "none" {
        problem(
            "attestation.tpm",
            "\"none\", but on Azure the HCL report is read from the paravisor's vTPM: set tpm = \"auto\""
                .into(),
        );
    }
    let mut pcrs = Vec::new();
    if raw.pcrs.is_empty() {
        problem(
            "attestation.pcrs",
            "empty: list the PCRs to quote, such as [10] (IMA's PCR)".into(),
        );
    }
    for (i, &p) in raw.pcrs.iter().enumerate() {
        match u8::try_from(p) {
            Ok(p) if p <= 23 && pcrs.contains(&p) => problem(
                &format!("attestation.pcrs[{i}]"),
                format!("PCR {p} is listed twice"),
            ),
            Ok(p) if p <= 23 => pcrs.push(p),
            _ => problem(
                &format!("attestation.pcrs[{i}]"),
                format!("expected a PCR index of 0..=23, got {p}"),
            ),
        }
    }
    pcrs.sort_unstable();
    let simulated_measurement = raw.simulated_measurement.and_then(|text| {
        let mut m = [0u8; 48];
        if raw.tee != TeeKind::Simulated {
            problem(
                "attestation.simulated_measurement",
                "only used with tee = \"simulated\": remove it or set tee = \"simulated\"".into(),
            );
            return None;
        }
        match hex::decode_to_slice(&text, &mut m) {
            Ok(()) => Some(m),
            Err(_) => {
                problem(
                    "attestation.simulated_measurement",
                    format!(
                        "expected 96 hex digits (a SHA-384), got {} characters",
                        text.chars().count()
                    ),
                );
                None
            }
        }
    });
    let manifest_refresh = match raw.manifest_refresh {
        None => Duration::from_secs(60),
        Some(RawDuration::Number(n)) => {
            problem(
                "attestation.manifest_refresh",
                format!("expected a string with a unit such as \"{n}s\" or \"{n}m\", got the number {n}"),
            );
            Duration::from_secs(60)
        }
        Some(RawDuration::Text(t)) => match parse_duration(&t) {
            Ok(d) if d.is_zero() => {
                problem(
                    "attestation.manifest_refresh",
                    format!("must be more than zero, got `{t}`"),
                );
                Duration::from_secs(60)
            }
            Ok(d) => d,
            Err(e) => {
                problem("attestation.manifest_refresh", e);
                Duration::from_secs(60)
            }
        },
    };
    let collateral = collateral::validate(
        collateral::RawCollateral {
            amd_kds_url: raw.amd_kds_url,
            pccs_url: raw.pccs_url,
            root_ca_crl_url: raw.root_ca_crl_url,
            collateral_refresh: raw.collateral_refresh,
            tsm_report_root: raw.tsm_report_root,
            azure_imds_url: raw.azure_imds_url,
        },
        problem,
    );
    let batch = batching::validate(raw.batch_max_size, raw.batch_max_waiting, problem);
    AttestationConfig {
        tee: raw.tee,
        tpm: raw.tpm,
        ima_log,
        ak_handle,
        pcrs,
        simulated_measurement,
        manifest_refresh,
        collateral,
        batch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/nonexistent-dir/verigated.toml"))
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    const HEAD: &str = "[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"VM.example.com\"\n";

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse(HEAD).unwrap();
        assert_eq!(c.gateway.domain, "vm.example.com");
        assert_eq!(c.gateway.client_hello_timeout, Duration::from_secs(5));
        assert_eq!(c.gateway.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.gateway.max_connections, 20_000);
        assert!(c.gateway.splice);
        assert_eq!(
            c.gateway.ssl_certificate,
            Path::new("/var/lib/verigate/data/cert.pem")
        );
        assert!(c.routes.is_empty());
        assert_eq!(c.attestation.tee, TeeKind::Auto);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "5",
            "s",
            "5 parsecs",
            "-1s",
            "1.5s",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_without_host_names_the_field() {
        let p = problems(&format!(
            "{HEAD}[[route]]\nsni=\"a.example.com\"\nbackend=\"127.0.0.1:1\"\n\
             [[route]]\nsni=\"b.example.com\"\nbackend=\"127.0.0.1:2\"\n\
             [[route]]\nsni=\"c.example.com\"\nbackend=\"8443\"\n"
        ));
        assert_eq!(p, vec!["route[2].backend: expected host:port, got `8443`"]);
    }

    #[test]
    fn host_port_forms() {
        for ok in [
            "127.0.0.1:8443",
            "[::1]:443",
            "backend.internal:8443",
            "localhost:1",
        ] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "8443",
            ":443",
            "host:",
            "host:0",
            "host:70000",
            "::1:443",
            "a b:1",
            "[::1:443",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn duplicate_sni_case_insensitive() {
        let p = problems(&format!(
            "{HEAD}[[route]]\nsni=\"A.example.com\"\nbackend=\"127.0.0.1:1\"\n\
             [[route]]\nsni=\"a.EXAMPLE.com\"\nbackend=\"127.0.0.1:2\"\n"
        ));
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("route[1].sni: `a.example.com` is already the sni of route[0]"));
    }

    #[test]
    fn wildcard_placement() {
        for (sni, ok) in [
            ("*.example.com", true),
            ("*", true),
            ("a.*.example.com", false),
            ("*example.com", false),
            ("*.*.example.com", false),
            ("foo*.example.com", false),
            ("*.", false),
            ("", false),
        ] {
            let text = format!("{HEAD}[[route]]\nsni=\"{sni}\"\nbackend=\"127.0.0.1:1\"\n");
            match parse(&text) {
                Ok(_) => assert!(ok, "{sni} accepted"),
                Err(ConfigError::Invalid { problems, .. }) => {
                    assert!(!ok, "{sni} refused: {problems:?}");
                    assert_eq!(problems[0].field, "route[0].sni");
                }
                Err(e) => panic!("{sni}: {e}"),
            }
        }
    }

    #[test]
    fn route_on_own_domain_refused() {
        let p = problems(&format!(
            "{HEAD}[[route]]\nsni=\"vm.example.com\"\nbackend=\"127.0.0.1:1\"\n"
        ));
        assert!(p[0].contains("is gateway.domain"), "{p:?}");
    }

    #[test]
    fn bad_listen_and_numbers_as_durations() {
        let p = problems(
            "[gateway]\nlisten = [\"localhost:443\", \"127.0.0.1:1\", \"127.0.0.1:1\"]\ndomain=\"x.test\"\n\
             client_hello_timeout = 5\nidle_timeout=\"soon\"\nmax_connections = 0\n",
        );
        let joined = p.join("\n");
        assert!(
            joined.contains("gateway.listen[0]: expected ip:port"),
            "{joined}"
        );
        assert!(
            joined.contains("gateway.listen[2]: `127.0.0.1:1` is listed twice"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "gateway.client_hello_timeout: expected a string with a unit such as \"5s\""
            ),
            "{joined}"
        );
        assert!(
            joined.contains("gateway.idle_timeout: expected a duration"),
            "{joined}"
        );
        assert!(joined.contains("gateway.max_connections"), "{joined}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        for text in [
            format!("{HEAD}listn = []\n"),
            format!("{HEAD}[[route]]\nsni=\"a.test\"\nbackend=\"127.0.0.1:1\"\nsend_proxy=true\n"),
            format!("{HEAD}[attestation]\ntee=\"sgx\"\n"),
            format!("{HEAD}[unknown]\n"),
            "[gateway]\nlisten=[]\n".to_string(),
            "not toml at all [".to_string(),
        ] {
            match parse(&text) {
                Err(ConfigError::Syntax { message, .. }) => assert!(!message.is_empty()),
                other => panic!("{text}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn cert_without_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "x").unwrap();
        let text = format!(
            "[gateway]\nlisten=[\"127.0.0.1:1\"]\ndomain=\"x.test\"\ndata_dir=\"{}\"\n\
             ssl_certificate=\"cert.pem\"\nssl_private_key=\"key.pem\"\n",
            dir.path().display()
        );
        let p = problems(&text);
        assert!(p[0].starts_with("gateway.ssl_private_key:"), "{p:?}");
    }

    #[test]
    fn garbage_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), "not a pem").unwrap();
        std::fs::write(dir.path().join("key.pem"), "not a pem").unwrap();
        let text = format!(
            "[gateway]\nlisten=[\"127.0.0.1:1\"]\ndomain=\"x.test\"\ndata_dir=\"{}\"\n\
             ssl_certificate=\"cert.pem\"\nssl_private_key=\"key.pem\"\n\
             [[route]]\nsni=\"a.test\"\nbackend=\"127.0.0.1:1\"\ncertificate=\"missing.pem\"\n",
            dir.path().display()
        );
        let p = problems(&text).join("\n");
        assert!(p.contains("gateway.ssl_certificate:"), "{p}");
        assert!(p.contains("gateway.ssl_private_key:"), "{p}");
        assert!(p.contains("route[0].certificate:"), "{p}");
    }

    #[test]
    fn attestation_defaults_and_problems() {
        let c = parse(HEAD).unwrap();
        assert_eq!(c.attestation.pcrs, vec![10]);
        assert_eq!(c.attestation.manifest_refresh, Duration::from_secs(60));
        assert_eq!(c.attestation.ak_handle, None);
        let ok = parse(&format!(
            "{HEAD}[attestation]\ntee=\"simulated\"\nak_handle=0x81010101\npcrs=[10, 7]\n\
             manifest_refresh=\"2s\"\nsimulated_measurement=\"{}\"\n",
            "AB".repeat(48)
        ))
        .unwrap();
        assert_eq!(ok.attestation.ak_handle, Some(0x8101_0101));
        assert_eq!(ok.attestation.pcrs, vec![7, 10]);
        assert_eq!(ok.attestation.manifest_refresh, Duration::from_secs(2));
        assert_eq!(ok.attestation.simulated_measurement, Some([0xab; 48]));
        let p = problems(&format!(
            "{HEAD}[attestation]\ntee=\"none\"\ntpm=\"\"\nak_handle=0x1000\npcrs=[10, 24, 10]\n\
             manifest_refresh=\"0s\"\nsimulated_measurement=\"ab\"\n"
        ))
        .join("\n");
        for needle in [
            "attestation.tpm: empty",
            "attestation.ak_handle: expected a persistent handle",
            "attestation.pcrs[1]: expected a PCR index of 0..=23, got 24",
            "attestation.pcrs[2]: PCR 10 is listed twice",
            "attestation.manifest_refresh: must be more than zero",
            "attestation.simulated_measurement: only used with tee = \"simulated\"",
        ] {
            assert!(p.contains(needle), "{needle} missing:\n{p}");
        }
        let p = problems(&format!(
            "{HEAD}[attestation]\ntee=\"simulated\"\nsimulated_measurement=\"xyz\"\nmanifest_refresh=5\npcrs=[]\n"
        ))
        .join("\n");
        assert!(p.contains("attestation.simulated_measurement: expected 96 hex digits (a SHA-384), got 3 characters"), "{p}");
        assert!(
            p.contains("attestation.manifest_refresh: expected a string with a unit"),
            "{p}"
        );
        assert!(p.contains("attestation.pcrs: empty"), "{p}");
    }

    #[test]
    fn azure_kinds_parse_and_keep_the_paravisor_ak() {
        for (text, kind) in [
            ("azure-sev-snp", TeeKind::AzureSevSnp),
            ("azure-tdx", TeeKind::AzureTdx),
        ] {
            let c = parse(&format!(
                "{HEAD}[attestation]\ntee=\"{text}\"\nazure_imds_url=\"http://127.0.0.1:9\"\n"
            ))
            .unwrap();
            assert_eq!(c.attestation.tee, kind);
            assert_eq!(
                c.attestation.collateral.azure_imds_url,
                "http://127.0.0.1:9"
            );
        }
        let ok = parse(&format!(
            "{HEAD}[attestation]\ntee=\"azure-tdx\"\nak_handle=0x81000003\n"
        ))
        .unwrap();
        assert_eq!(
            ok.attestation.ak_handle,
            Some(attest::tee::azure::HCL_AK_HANDLE)
        );
        let p = problems(&format!(
            "{HEAD}[attestation]\ntee=\"azure-sev-snp\"\ntpm=\"none\"\nak_handle=0x81010100\n"
        ))
        .join("\n");
        assert!(
            p.contains("attestation.ak_handle: on Azure the quote must come from the paravisor's HCL AK at 0x81000003"),
            "{p}"
        );
        assert!(p.contains("attestation.tpm: \"none\", but on Azure"), "{p}");
    }

    #[test]
    fn connection_bounds_defaults() {
        let c = parse(HEAD).unwrap();
        assert!(c.gateway.limits.accept_proxy_protocol_from.is_empty());
        assert!(!c
            .gateway
            .limits
            .trusts_proxy_from("127.0.0.1".parse().unwrap()));
        assert_eq!(c.gateway.limits.max_connections_per_source, 256);
        assert_eq!(
            c.gateway.limits.backend_first_byte_timeout,
            Duration::from_secs(10)
        );
        let e = c.endpoint;
        assert_eq!((e.max_connections, e.max_connections_per_source), (256, 16));
        // api.idle_timeout follows gateway.idle_timeout unless set.
        assert_eq!(e.idle_timeout, Duration::from_secs(300));
        assert_eq!(e.max_connection_lifetime, Duration::from_secs(600));
        assert_eq!(e.header_read_timeout, Duration::from_secs(10));
        assert_eq!(e.request_timeout, Duration::from_secs(180));
        assert_eq!(e.send_timeout, Duration::from_secs(30));
        assert_eq!(e.http2_keepalive_interval, Duration::from_secs(30));
        assert_eq!(e.http2_keepalive_timeout, Duration::from_secs(10));
        assert_eq!(e.http2_max_concurrent_streams, 16);
        let c = parse(&format!("{HEAD}idle_timeout = \"0s\"\n")).unwrap();
        assert_eq!(c.endpoint.idle_timeout, Duration::from_secs(300));
        let c = parse(&format!(
            "{HEAD}idle_timeout = \"1m\"\naccept_proxy_protocol_from = [\"10.0.0.0/8\", \"::1\"]\n\
             [api]\nidle_timeout = \"20s\"\nhttp2_max_concurrent_streams = 32\n"
        ))
        .unwrap();
        assert_eq!(c.endpoint.idle_timeout, Duration::from_secs(20));
        assert_eq!(c.endpoint.http2_max_concurrent_streams, 32);
        assert!(c
            .gateway
            .limits
            .trusts_proxy_from("10.9.8.7".parse().unwrap()));
        assert!(c.gateway.limits.trusts_proxy_from("::1".parse().unwrap()));
        assert!(!c
            .gateway
            .limits
            .trusts_proxy_from("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn bad_connection_bounds_name_field_and_fix() {
        for (lines, needle) in [
            ("max_connections_per_source = 0", "gateway.max_connections_per_source: expected a number of connections of 1.."),
            ("max_connections_per_source = -3", "gateway.max_connections_per_source: expected a number of connections of 1.."),
            ("threads = -1", "gateway.threads: expected 0 (one per core) or a number of threads up to 1024, got -1"),
            ("threads = 5000", "gateway.threads: expected 0 (one per core) or a number of threads up to 1024, got 5000"),
            ("backend_first_byte_timeout = \"0s\"", "gateway.backend_first_byte_timeout: must be more than zero"),
            ("backend_first_byte_timeout = 10", "gateway.backend_first_byte_timeout: expected a string with a unit such as \"10s\""),
            ("backend_first_byte_timeout = \"soon\"", "gateway.backend_first_byte_timeout: expected a duration"),
            ("accept_proxy_protocol = true", "gateway.accept_proxy_protocol: true would trust a PROXY header from any peer"),
            ("accept_proxy_protocol = false\naccept_proxy_protocol_from = [\"10.0.0.5\"]", "gateway.accept_proxy_protocol: false contradicts"),
            ("accept_proxy_protocol_from = [\"10.0.0.5/8\"]", "gateway.accept_proxy_protocol_from[0]: `10.0.0.5/8` has bits set after the prefix: write `10.0.0.0/8`"),
            ("accept_proxy_protocol_from = [\"10.0.0.0/8\", \"lb.internal\"]", "gateway.accept_proxy_protocol_from[1]: expected an address block"),
            ("accept_proxy_protocol_from = [\"10.0.0.0/40\"]", "gateway.accept_proxy_protocol_from[0]: `10.0.0.0/40`: expected a prefix length of 0..=32"),
            ("[api]\nmax_connections = 0", "api.max_connections: expected a number of connections of 1.."),
            ("[api]\nmax_connections_per_source = 0", "api.max_connections_per_source: expected a number of connections of 1.."),
            ("[api]\nidle_timeout = \"0s\"", "api.idle_timeout: must be more than zero"),
            ("[api]\nmax_connection_lifetime = \"0s\"", "api.max_connection_lifetime: must be more than zero"),
            ("[api]\nheader_read_timeout = 5", "api.header_read_timeout: expected a string with a unit"),
            ("[api]\nrequest_timeout = \"never\"", "api.request_timeout: expected a duration"),
            ("[api]\nsend_timeout = \"0ms\"", "api.send_timeout: must be more than zero"),
            ("[api]\nhttp2_keepalive_interval = \"0s\"", "api.http2_keepalive_interval: must be more than zero"),
            ("[api]\nhttp2_keepalive_timeout = \"x\"", "api.http2_keepalive_timeout: expected a duration"),
            ("[api]\nhttp2_max_concurrent_streams = 0", "api.http2_max_concurrent_streams: expected 1..=128 streams such as 16, got 0"),
            ("[api]\nhttp2_max_concurrent_streams = 1000", "api.http2_max_concurrent_streams: expected 1..=128 streams such as 16, got 1000"),
        ] {
            let p = problems(&format!("{HEAD}{lines}\n")).join("\n");
            assert!(p.contains(needle), "{lines}: expected `{needle}`, got:\n{p}");
        }
    }

    #[test]
    fn admin_tokens_are_hex_sha256() {
        let p = problems(&format!("{HEAD}[api]\nadmin_token_sha256=[\"abc\"]\n"));
        assert!(p[0].starts_with("api.admin_token_sha256[0]"), "{p:?}");
        let ok = parse(&format!(
            "{HEAD}[api]\nadmin_token_sha256=[\"{}\"]\n",
            "AB".repeat(32)
        ))
        .unwrap();
        assert_eq!(ok.api.admin_token_sha256[0], "ab".repeat(32));
    }
}
