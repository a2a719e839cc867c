//! `verigate snapshot`: asks verigated to build a snapshot of its VM, shows the job's
//! progress, then checks the result against fresh evidence before writing it.
//!
//! The snapshot's TEE and TPM policy must be what the VM's *verified* evidence proves
//! (same nonce-fresh connection, same certificate), not merely what the gateway claims:
//! a snapshot whose policy disagrees is refused and nothing is written.

use crate::client::{cert_sha256, Connection, Endpoint, TlsOptions};
use crate::commands::online::{self, describe_error, Online};
use crate::commands::verify::{parse_at, parse_connect_to_rules, read_override, route_for_url};
use crate::report::Outcome;
use anyhow::Context as _;
use attest::binding::Nonce;
use attest::check::Check;
use attest::evidence::Evidence;
use attest::snapshot::Snapshot;
use attest::tee::snp::SnpCerts;
use attest::verify::snapshot::check_snapshot_against_evidence;
use attest::verify::TeeOptions;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Without a terminal, one progress line at most this often (a log, not an animation).
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(5);
/// Connection failures tolerated in a row while polling (verigated may close an idle
/// keep-alive connection during a long scan); a new connection is opened each time.
const MAX_RECONNECTS: u32 = 3;

/// Arguments of `verigate snapshot`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  \
    verigate snapshot --url https://vm.example.com -o vm.json\n\n\
    Exit status: 0 snapshot written, 1 the VM's evidence disagrees with the snapshot \
    (nothing written), 2 it could not run.")]
pub struct SnapshotArgs {
    /// verigated's endpoint and how to check its certificate.
    #[command(flatten)]
    pub online: super::args::OnlineArgs,

    /// How to print the checks.
    #[command(flatten)]
    pub format: super::args::FormatOnly,

    /// Where to write the snapshot. Default: verigate-snapshot-<domain>-<UTC date>.json
    /// in the current folder.
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "out",
        value_name = "FILE"
    )]
    out: Option<PathBuf>,

    /// Send the --url connection to another address than DNS gives, as in `verify`:
    /// only a rule that names --url's host applies. Repeatable.
    #[arg(long = "connect-to", value_name = "NAME:PORT:HOST:PORT")]
    connect_to: Vec<String>,

    /// Accept a VM with the simulated TEE (it proves nothing about hardware).
    #[arg(long)]
    allow_simulated_tee: bool,

    /// A TDX TCB status to accept besides UpToDate. Repeatable.
    #[arg(long = "allow-tcb-status", value_name = "NAME")]
    allow_tcb_status: Vec<String>,

    /// The VCEK or VLEK certificate (DER or PEM) for an SEV-SNP report whose evidence
    /// carries none.
    #[arg(long, value_name = "FILE")]
    vcek: Option<PathBuf>,

    /// TDX collateral (Intel PCS collateral as JSON) to use instead of the collateral the
    /// evidence carries.
    #[arg(long, value_name = "FILE")]
    collateral: Option<PathBuf>,

    /// Check certificates and collateral as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// How long to wait for the snapshot job, e.g. `90s`, `30m`, `2h` (a bare number is
    /// seconds). A VM that still reports the job running after this is given up on
    /// (exit 2; the job may still finish on the VM).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    timeout: Duration,

    /// The admin token: starting a snapshot (a scan of the VM's whole disk) takes the
    /// credential of app control (its SHA-256 is in verigated's `[api]
    /// admin_token_sha256`). Prefer the environment variable: a command line is visible
    /// to other users.
    #[arg(
        long,
        env = "VERIGATE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

/// Parses `--timeout`: a positive whole number with an optional unit `s`, `m` or `h`.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("`{text}`: expected a number with an optional unit s, m or h (90s, 30m, 2h)")
    })?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        other => return Err(format!("`{text}`: unknown unit `{other}`; use s, m or h")),
    };
    match secs {
        Some(0) => Err("the timeout must be more than zero".into()),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("`{text}`: too long")),
    }
}

/// What `GET /v1/snapshot` answers while the job runs (202), as verigated's snapshot
/// job reports it (`gateway/src/snapshot`). Every field is optional here: progress is
/// only shown, so a gateway that reports less still works.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub state: Option<String>,
    /// `policy`, `walking`, `hashing`, `saving_cache`, `saving`, ...
    pub phase: Option<String>,
    pub files_seen: u64,
    pub files_done: u64,
    pub files_hashed: u64,
    pub files_from_cache: u64,
    pub bytes_hashed: u64,
    pub rate_bytes_per_s: Option<f64>,
    pub skipped: u64,
    pub elapsed_ms: Option<u64>,
}

/// A byte count for people: `1.5 GiB`.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = if n.is_finite() && n > 0.0 { n } else { 0.0 };
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// One line describing the job's progress; `waited` is used when the gateway does not
/// say how long the job has run.
pub fn progress_line(p: &Progress, waited: Duration) -> String {
    // The counters come from separate fields that a gateway may fill unevenly (or not
    // at all): a file hashed or taken from the cache is done, and a done file was seen,
    // so the line never reads "0/0 files" after files were hashed.
    let done = p
        .files_done
        .max(p.files_hashed.saturating_add(p.files_from_cache));
    let seen = p.files_seen.max(done);
    let phase = p.phase.as_deref().unwrap_or("running");
    let mut line = if seen == 0 {
        format!("snapshot [{phase}]: no files counted yet")
    } else {
        format!("snapshot [{phase}]: {done}/{seen} files")
    };
    if seen > 0 {
        let pct = (done as f64) * 100.0 / (seen as f64);
        line.push_str(&format!(" ({pct:.0}% of those found so far)"));
    }
    line.push_str(&format!(
        ", {} hashed ({} files, {} from cache)",
        human_bytes(p.bytes_hashed as f64),
        p.files_hashed,
        p.files_from_cache
    ));
    if let Some(rate) = p.rate_bytes_per_s.filter(|r| *r > 0.0) {
        line.push_str(&format!(", {}/s", human_bytes(rate)));
    }
    if p.skipped > 0 {
        line.push_str(&format!(", {} unreadable", p.skipped));
    }
    let secs = p.elapsed_ms.map_or(waited.as_secs(), |ms| ms / 1000);
    line.push_str(&format!(", {secs}s"));
    line
}

/// Draws progress on stderr: a line redrawn in place on a terminal, a plain line now
/// and then otherwise.
struct ProgressView {
    terminal: bool,
    started: Instant,
    last_plain: Option<Instant>,
    drawn: bool,
}

impl ProgressView {
    fn new() -> ProgressView {
        ProgressView {
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_plain: None,
            drawn: false,
        }
    }

    fn show(&mut self, p: &Progress) {
        // The phase is the VM's word: escaped before the line's own control sequences.
        let line = progress_line(p, self.started.elapsed());
        let line = crate::terminal::escape(&line);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // \x1b[K clears what a longer previous line left behind.
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
            self.drawn = true;
        } else if self
            .last_plain
            .is_none_or(|t| t.elapsed() >= PLAIN_LINE_INTERVAL)
        {
            let _ = writeln!(err, "{line}");
            self.last_plain = Some(Instant::now());
        }
    }

    fn finish(&mut self) {
        if self.terminal && self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

/// The default output file name.
pub fn default_out(domain: &str, now: time::OffsetDateTime) -> PathBuf {
    // The domain comes from the VM: keep only what is safe in a file name.
    let safe: String = domain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    PathBuf::from(format!(
        "verigate-snapshot-{}-{:04}-{:02}-{:02}.json",
        if safe.is_empty() { "vm" } else { safe },
        now.year(),
        u8::from(now.month()),
        now.day()
    ))
}

/// Writes `bytes` to `path` whole or not at all (see [`durable`]): the path holds either
/// the old content or the whole new one, also after a power loss.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    durable::write(path, bytes, 0o644).with_context(|| format!("writing `{}`", path.display()))
}

async fn reconnect(
    conn: &mut Connection,
    endpoint: &Endpoint,
    opts: &TlsOptions,
    failures: &mut u32,
    err: crate::client::ClientError,
) -> anyhow::Result<()> {
    *failures += 1;
    if *failures > MAX_RECONNECTS {
        return Err(err).context("polling /v1/snapshot");
    }
    *conn = Connection::open(endpoint, opts)
        .await
        .context("reconnecting to poll /v1/snapshot")?;
    Ok(())
}

/// Starts the job (with `token` as the credential) and polls until the snapshot is
/// ready, for at most `timeout`; returns it and the connection it came on.
async fn build_remote(
    endpoint: &Endpoint,
    opts: &TlsOptions,
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(Vec<u8>, Connection)> {
    let deadline = Instant::now() + timeout;
    let mut conn = Connection::open(endpoint, opts)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    // The token goes out before any evidence names the domain the certificate must be
    // valid for.
    crate::pki::require_checked_name(&conn, "the snapshot request and its token")?;
    let res = match tokio::time::timeout(
        online::REQUEST_TIMEOUT,
        conn.request(Method::POST, "/v1/snapshot", None, token),
    )
    .await
    {
        Ok(r) => r.context("POST /v1/snapshot")?,
        Err(_) => anyhow::bail!(
            "POST /v1/snapshot: no answer within {} s",
            online::REQUEST_TIMEOUT.as_secs()
        ),
    };
    // 202: started. 409: one is already running, whose result is as good.
    if res.status != StatusCode::ACCEPTED && res.status != StatusCode::CONFLICT {
        anyhow::bail!(
            "POST /v1/snapshot: {}",
            describe_error(res.status, &res.body)
        );
    }
    let mut view = ProgressView::new();
    let mut failures = 0u32;
    loop {
        // A VM that answers 202 forever must not hold the CLI forever.
        if Instant::now() >= deadline {
            view.finish();
            anyhow::bail!(
                "gave up after --timeout {}: verigated still reports the snapshot job running \
                 (it may still finish on the VM; run again with a longer --timeout to wait for it)",
                describe_duration(timeout)
            );
        }
        // No poll outlives --timeout either.
        let wait = online::REQUEST_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let polled =
            tokio::time::timeout(wait, conn.request(Method::GET, "/v1/snapshot", None, None)).await;
        let res = match polled {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                reconnect(&mut conn, endpoint, opts, &mut failures, e).await?;
                continue;
            }
            Err(_) => anyhow::bail!("GET /v1/snapshot: no answer within {} s", wait.as_secs()),
        };
        failures = 0;
        match res.status {
            StatusCode::OK => {
                view.finish();
                return Ok((res.body.to_vec(), conn));
            }
            StatusCode::ACCEPTED => {
                // Progress is informative only: a body we cannot read is not an error.
                let p: Progress = serde_json::from_slice(&res.body).unwrap_or_default();
                view.show(&p);
            }
            other => {
                view.finish();
                anyhow::bail!("GET /v1/snapshot: {}", describe_error(other, &res.body));
            }
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// `timeout` as the user would write it.
fn describe_duration(timeout: Duration) -> String {
    let secs = timeout.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Runs `verigate snapshot`.
pub fn run(online: &Online, args: SnapshotArgs) -> anyhow::Result<Outcome> {
    let endpoint = online.endpoint()?;
    let vcek = read_override("--vcek", args.vcek.as_deref())?;
    let collateral = read_override("--collateral", args.collateral.as_deref())?;
    let at = match &args.at {
        Some(s) => parse_at(s)?,
        None => SystemTime::now(),
    };
    let rules = parse_connect_to_rules(&args.connect_to)?;
    let opts = online.tls_options(route_for_url(&endpoint, &rules));
    let nonce = Nonce::random();
    let runtime = online::runtime()?;
    let (snapshot_bytes, evidence_bytes, endpoint_sha, name_check) = runtime.block_on(async {
        let (snapshot, mut conn) = build_remote(
            &endpoint,
            &opts,
            online.url(),
            args.token.as_deref(),
            args.timeout,
        )
        .await?;
        // Evidence on the connection the snapshot came on, so both are from the
        // certificate that is then checked against the attested manifest. A server may
        // close a connection after an answer: then once more on a new connection,
        // whose certificate is the one checked.
        let evidence = match online::get_attestation(&mut conn, &nonce).await {
            Ok(e) => e,
            Err(first) => {
                conn = Connection::open(&endpoint, &opts).await.with_context(|| {
                    format!("{}; then reconnecting", causes::line(first.as_ref()))
                })?;
                online::get_attestation(&mut conn, &nonce).await?
            }
        };
        // A connection reopened above might have had its name check deferred too.
        let name_check = Evidence::from_json(&evidence)
            .ok()
            .and_then(|e| crate::pki::check_deferred_name(&conn, &e.domain));
        anyhow::Ok((snapshot, evidence, cert_sha256(conn.leaf()), name_check))
    })?;

    let mut out = Outcome::default();
    out.facts.push(("url".into(), json!(online.url())));
    let snapshot = match Snapshot::from_json(&snapshot_bytes) {
        Ok(s) => s,
        Err(e) => {
            out.checks.push(Check::fail("snapshot", e.to_string()));
            return Ok(out);
        }
    };
    let evidence = match Evidence::from_json(&evidence_bytes) {
        Ok(e) => e,
        Err(e) => {
            out.checks.push(Check::fail("evidence", e.to_string()));
            return Ok(out);
        }
    };
    out.facts.push(("domain".into(), json!(evidence.domain)));
    out.facts.push(("tee".into(), json!(evidence.tee.kind())));
    out.facts
        .push(("files".into(), json!(snapshot.filehashes.len())));

    let checks = check_snapshot_against_evidence(
        &snapshot,
        &evidence,
        &nonce,
        endpoint_sha,
        Some(&endpoint.host),
        &TeeOptions {
            snp_certs: vcek
                .map(|v| SnpCerts {
                    vcek_or_vlek: Some(v),
                    chain_pem: None,
                })
                .as_ref(),
            tdx_collateral: collateral.as_deref(),
            allowed_tdx_tcb_statuses: &args.allow_tcb_status,
            at,
        },
        args.allow_simulated_tee,
    );
    let mut checks = checks;
    checks.extend(name_check);
    let all_passed = checks.iter().all(Check::passed);
    out.checks = checks;
    if all_passed {
        let path = args
            .out
            .clone()
            .unwrap_or_else(|| default_out(&evidence.domain, time::OffsetDateTime::now_utc()));
        write_atomically(&path, &snapshot.to_json())?;
        out.facts
            .push(("written".into(), json!(path.display().to_string())));
    } else {
        out.facts.push((
            "written".into(),
            json!("nothing: the snapshot disagrees with what the VM proves"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_their_unit() {
        assert_eq!(parse_timeout("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_timeout("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("").is_err());
        assert!(parse_timeout("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_timeout("-1s").is_err());
        assert!(parse_timeout("99999999999999999999h").is_err());
        assert_eq!(describe_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(describe_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn progress_reads_the_gateways_shape_and_tolerates_less() {
        // As verigated's snapshot job serializes its JobProgress.
        let p: Progress = serde_json::from_str(
            r#"{"state":"running","phase":"hashing","started_at":"2026-11-28T03:00:00Z",
                "elapsed_ms":3500,"ima_entries":12,"files_seen":40,"files_done":10,
                "files_hashed":8,"files_from_cache":2,"bytes_hashed":2048,
                "rate_bytes_per_s":1048576,"skipped":1}"#,
        )
        .unwrap();
        assert_eq!(
            progress_line(&p, Duration::from_secs(99)),
            "snapshot [hashing]: 10/40 files (25% of those found so far), 2.0 KiB hashed \
             (8 files, 2 from cache), 1.0 MiB/s, 1 unreadable, 3s"
        );
        let p: Progress = serde_json::from_str(r#"{"phase":null}"#).unwrap();
        assert_eq!(
            progress_line(&p, Duration::from_secs(2)),
            "snapshot [running]: no files counted yet, 0 B hashed (0 files, 0 from cache), 2s"
        );
        // Hashed files but no seen/done counters: counted from what was hashed.
        let p: Progress =
            serde_json::from_str(r#"{"files_hashed":7,"files_from_cache":3}"#).unwrap();
        let line = progress_line(&p, Duration::from_secs(1));
        assert!(
            line.starts_with("snapshot [running]: 10/10 files (100%"),
            "{line}"
        );
        assert!(!line.contains("0/0 files"), "{line}");
        // A body that is not progress is shown as no progress, not an error.
        assert!(serde_json::from_str::<Progress>(r#"{"files_seen":"many"}"#).is_err());
    }

    #[test]
    fn human_bytes_handles_odd_input() {
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(-5.0), "0 B");
        assert_eq!(human_bytes(f64::NAN), "0 B");
        assert_eq!(human_bytes(1536.0 * 1024.0 * 1024.0), "1.5 GiB");
    }

    #[test]
    fn default_out_names_domain_and_date_safely() {
        let t = time::Date::from_calendar_date(2026, time::Month::November, 28)
            .unwrap()
            .with_hms(3, 0, 0)
            .unwrap()
            .assume_utc();
        assert_eq!(
            default_out("vm.example.com", t),
            PathBuf::from("verigate-snapshot-vm.example.com-2026-11-28.json")
        );
        assert_eq!(
            default_out("../../etc/passwd", t),
            PathBuf::from("verigate-snapshot-_.._etc_passwd-2026-11-28.json")
        );
        assert!(!default_out("a/b", t).to_string_lossy().contains('/'));
    }

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = write_atomically(&dir.path().join("missing/s.json"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("missing/s.json"), "{err:#}");
    }
}
