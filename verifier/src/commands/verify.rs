//! `verigate verify`: proves, with one TEE report, that the VM behind `--url` is the one
//! a snapshot recorded and that every `--application` name is served from inside it.
//!
//! One connection to verigated carries a fresh nonce and brings back the evidence; the
//! certificate it presented is what `endpoint certificate` compares with the manifest.
//! Then one TLS handshake per application, all at once, each compared with the same
//! attested manifest. The checks themselves are `attest::verify`'s.

use crate::client::{cert_sha256, presented_leaf, split_host_port, Connection, Endpoint};
use crate::commands::key_change::KeyChangeArgs;
use crate::commands::online::{self, Online};
use crate::report::Outcome;
use anyhow::Context as _;
use attest::binding::{CertDigests, Nonce};
use attest::check::Check;
use attest::evidence::Evidence;
use attest::policy::{Identity, Policy};
use attest::snapshot::{FileIndex, Snapshot};
use attest::tee::snp::SnpCerts;
use attest::verify::policy::verify_against_policy;
use attest::verify::{check_application, verify_incremental, Expectations, ImaStart};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Arguments of `verigate verify`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  \
    verigate --url https://vm.example.com verify --snapshot verigate-snapshot-vm.example.com.json \\\n      \
    --application a.example.com --application b.example.com:8443\n\n\
    Exit status: 0 every check passed, 1 a check failed, 2 the checks could not run.")]
pub struct VerifyArgs {
    /// verigated's endpoint and how to check its certificate.
    #[command(flatten)]
    pub online: super::args::OnlineArgs,

    /// How to print the checks.
    #[command(flatten)]
    pub format: super::args::FormatArgs,

    /// The snapshot to compare with, as `verigate snapshot` wrote it.
    #[arg(short = 's', long, value_name = "FILE", required_unless_present_any = ["fleet", "policy"])]
    pub snapshot: Option<PathBuf>,

    /// Verify against a policy shared by replicas (`verigate policy from-snapshot`)
    /// instead of a snapshot: the VM's own identity (TPM key and counters) is not
    /// pinned, only reported. With a load balancer in front, each connection may reach
    /// another replica; each must attest what it presents. Use --fleet to enrol VMs.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["snapshot", "fleet"])]
    pub policy: Option<PathBuf>,

    /// Verify every VM of a fleet file instead (see `--fleet`'s options below).
    #[command(flatten)]
    pub fleet: crate::fleet::FleetArgs,

    /// A name the VM should serve, checked by a TLS handshake with that SNI: its
    /// certificate must be the one the VM attests for it. Port 443 unless given.
    /// Repeat for several names; the handshakes run concurrently.
    #[arg(short = 'a', long = "application", value_name = "NAME[:PORT]")]
    pub applications: Vec<String>,

    /// Send application handshakes to another address than DNS gives (like curl's
    /// --connect-to), for when DNS does not point at the VM. `HOST:PORT` sends every
    /// application there; `NAME:PORT:HOST:PORT` only the handshake for NAME:PORT (an
    /// empty NAME or PORT matches any), and wins over `HOST:PORT`. Repeatable. The
    /// --url connection follows only a rule that names its host (NAME:PORT:HOST:PORT),
    /// e.g. for --url https://app.example.com, reached through a routed name.
    #[arg(long = "connect-to", value_name = "[NAME:PORT:]HOST:PORT")]
    pub connect_to: Vec<String>,

    /// More accepted (path, digest) pairs for the IMA log: `path hex-digest` lines
    /// (`#` comments), a JSON list of [path, hex digest], or another snapshot.
    #[arg(short = 'w', long, value_name = "FILE")]
    pub whitelist: Option<PathBuf>,

    /// Accept the simulated TEE. It proves nothing about hardware: for tests and demos.
    #[arg(long)]
    pub allow_simulated_tee: bool,

    #[command(flatten)]
    pub key_change: KeyChangeArgs,

    /// A TDX TCB status to accept besides UpToDate (e.g. SWHardeningNeeded). Repeatable.
    #[arg(long = "allow-tcb-status", value_name = "NAME")]
    pub allow_tcb_status: Vec<String>,

    /// The VCEK or VLEK certificate (DER or PEM) for an SEV-SNP report whose evidence
    /// carries none, e.g. fetched from AMD KDS.
    #[arg(long, value_name = "FILE")]
    pub vcek: Option<PathBuf>,

    /// TDX collateral (Intel PCS collateral as JSON, as `verigate report verify` reads it)
    /// to use instead of the collateral the evidence carries. Checked against Intel's
    /// pinned root like the evidence's own.
    #[arg(long, value_name = "FILE")]
    pub collateral: Option<PathBuf>,

    /// Check certificates and collateral as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
}

/// An `--application` argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub name: String,
    pub port: u16,
}

/// Parses `NAME[:PORT]` (port 443 by default).
pub fn parse_application(s: &str) -> anyhow::Result<Application> {
    let (name, port) = split_host_port(s, 443)
        .map_err(|_| anyhow::anyhow!("--application `{s}`: expected NAME[:PORT]"))?;
    let name =
        attest::binding::normalize_name(&name).with_context(|| format!("--application `{s}`"))?;
    if name.contains('*') || name.parse::<std::net::IpAddr>().is_ok() {
        anyhow::bail!(
            "--application `{s}`: give a DNS name the VM serves, not a pattern or an address"
        );
    }
    Ok(Application { name, port })
}

/// One `--connect-to` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTo {
    /// Which handshakes it applies to: `None` = any name / any port.
    pub name: Option<String>,
    pub port: Option<u16>,
    /// Where they go, `HOST:PORT` (IPv6 in brackets).
    pub target: String,
}

/// Parses `HOST:PORT` or `NAME:PORT:HOST:PORT`.
pub fn parse_connect_to(s: &str) -> anyhow::Result<ConnectTo> {
    let bad = || anyhow::anyhow!("--connect-to `{s}`: expected HOST:PORT or NAME:PORT:HOST:PORT");
    let target_of = |t: &str| -> anyhow::Result<String> {
        let (host, port) = split_host_port(t, 0).map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    };
    // A bracketed IPv6 target, or a single colon: the short form.
    if s.starts_with('[') || s.matches(':').count() == 1 {
        return Ok(ConnectTo {
            name: None,
            port: None,
            target: target_of(s)?,
        });
    }
    let (name, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, target) = rest.split_once(':').ok_or_else(bad)?;
    let name = if name.is_empty() {
        None
    } else {
        Some(attest::binding::normalize_name(name).map_err(|_| bad())?)
    };
    let port = if port.is_empty() {
        None
    } else {
        Some(port.parse::<u16>().map_err(|_| bad())?)
    };
    Ok(ConnectTo {
        name,
        port,
        target: target_of(target)?,
    })
}

/// Parses every `--connect-to` rule.
pub fn parse_connect_to_rules(rules: &[String]) -> anyhow::Result<Vec<ConnectTo>> {
    rules.iter().map(|c| parse_connect_to(c)).collect()
}

/// Where the handshake for `app` goes: the first rule naming it (or its port), else the
/// first rule for any name, else `None` (resolve the name).
pub fn route_for(app: &Application, rules: &[ConnectTo]) -> Option<String> {
    let specific = rules.iter().find(|r| {
        (r.name.is_some() || r.port.is_some())
            && r.name.as_deref().is_none_or(|n| n == app.name)
            && r.port.is_none_or(|p| p == app.port)
    });
    specific
        .or_else(|| rules.iter().find(|r| r.name.is_none() && r.port.is_none()))
        .map(|r| r.target.clone())
}

/// Reads the file an override flag (`--vcek`, `--collateral`) names, if given.
pub fn read_override(
    flag: &str,
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|p| std::fs::read(p).with_context(|| format!("reading {flag} `{}`", p.display())))
        .transpose()
}

/// Where the `--url` connection goes: the first rule that names its host (and its port
/// or any), else `None` (resolve the name). A rule for any name is for the applications
/// only, as it always was.
pub fn route_for_url(endpoint: &Endpoint, rules: &[ConnectTo]) -> Option<String> {
    let host = endpoint.host.to_ascii_lowercase();
    rules
        .iter()
        .find(|r| {
            r.name.as_deref() == Some(host.as_str()) && r.port.is_none_or(|p| p == endpoint.port)
        })
        .map(|r| r.target.clone())
}

/// Parses `--at`.
pub fn parse_at(s: &str) -> anyhow::Result<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--at `{s}`: expected RFC 3339, e.g. 2026-11-28T12:00:00Z"))?;
    Ok(SystemTime::from(t))
}

/// What a VM is compared with: its own snapshot, or the policy of its image with its
/// enrolled identity (`None` before first contact).
/// Shared (`Arc`) so that the VMs of a fleet verified against one file share one copy.
#[derive(Clone)]
pub enum Reference {
    Snapshot(Arc<Snapshot>),
    Policy {
        policy: Arc<Policy>,
        enrolled: Option<Identity>,
    },
}

/// What one verification needs, read and parsed from [`VerifyArgs`] before any network
/// traffic (a problem here is a usage error, exit 2).
#[derive(Clone)]
pub struct Plan {
    /// The snapshot's or the policy's file, for the report.
    pub reference_path: PathBuf,
    pub reference: Reference,
    pub whitelist: Option<Arc<FileIndex>>,
    pub applications: Vec<Application>,
    pub connect_to: Vec<ConnectTo>,
    pub vcek: Option<Vec<u8>>,
    pub collateral: Option<Vec<u8>>,
    pub at: SystemTime,
    pub allow_simulated_tee: bool,
    pub allow_key_change: bool,
    pub allow_tcb_status: Vec<String>,
    /// Incremental IMA (`watch`): where this verifier's replay of the VM's log stands.
    pub ima_start: Option<ImaStart>,
}

/// Reads the snapshot and every other file `args` names, and parses the options.
pub fn plan(args: &VerifyArgs) -> anyhow::Result<Plan> {
    let mut plan = common_plan(args)?;
    if let Some(path) = &args.policy {
        plan.reference = Reference::Policy {
            policy: Arc::new(read_policy(path)?),
            enrolled: None,
        };
        plan.reference_path = path.clone();
        return Ok(plan);
    }
    let path = args
        .snapshot
        .as_ref()
        .context("give --snapshot FILE (from `verigate snapshot`)")?;
    plan.reference = Reference::Snapshot(Arc::new(read_snapshot(path)?));
    plan.reference_path = path.clone();
    Ok(plan)
}

/// Reads and checks a snapshot file.
pub fn read_snapshot(path: &std::path::Path) -> anyhow::Result<Snapshot> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading snapshot `{}`", path.display()))?;
    Snapshot::from_json(&bytes).with_context(|| format!("snapshot `{}`", path.display()))
}

/// Reads and checks a policy file.
pub fn read_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading policy `{}`", path.display()))?;
    Policy::from_json(&bytes).with_context(|| format!("policy `{}`", path.display()))
}

/// The plan of `args` without its reference (an empty policy stands in): what every VM
/// of a fleet shares.
pub fn common_plan(args: &VerifyArgs) -> anyhow::Result<Plan> {
    let whitelist = match &args.whitelist {
        Some(p) => {
            let bytes =
                std::fs::read(p).with_context(|| format!("reading whitelist `{}`", p.display()))?;
            Some(Arc::new(
                FileIndex::from_whitelist_json(&bytes)
                    .with_context(|| format!("whitelist `{}`", p.display()))?,
            ))
        }
        None => None,
    };
    let applications = args
        .applications
        .iter()
        .map(|a| parse_application(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let connect_to = parse_connect_to_rules(&args.connect_to)?;
    let vcek = read_override("--vcek", args.vcek.as_deref())?;
    let collateral = read_override("--collateral", args.collateral.as_deref())?;
    let at = match &args.at {
        Some(s) => parse_at(s)?,
        None => SystemTime::now(),
    };
    Ok(Plan {
        reference_path: PathBuf::new(),
        reference: Reference::Snapshot(Arc::new(Snapshot {
            version: attest::snapshot::SNAPSHOT_VERSION,
            created_at: String::new(),
            tee_policy: attest::snapshot::TeePolicy::None,
            tpm_policy: None,
            ima: None,
            manifest: attest::binding::Manifest::default(),
            filehashes: Vec::new(),
        })),
        whitelist,
        applications,
        connect_to,
        vcek,
        collateral,
        at,
        allow_simulated_tee: args.allow_simulated_tee,
        allow_key_change: args.key_change.allowed(),
        allow_tcb_status: args.allow_tcb_status.clone(),
        ima_start: None,
    })
}

/// Runs `verigate verify`.
pub fn run(online: &Online, args: VerifyArgs) -> anyhow::Result<Outcome> {
    // Everything that stops the checks from running is an error (exit 2), found before
    // any network traffic.
    let endpoint = online.endpoint()?;
    let plan = plan(&args)?;
    let runtime = online::runtime()?;
    let url_opts = online.tls_options(route_for_url(&endpoint, &plan.connect_to));
    runtime.block_on(async {
        let mut conn = Connection::open(&endpoint, &url_opts)
            .await
            .with_context(|| format!("connecting to {}", online.url()))?;
        check_connection(&mut conn, online, &plan).await
    })
}

/// Verifies the VM behind `conn` against `plan`: fresh evidence on `conn` (whose
/// certificate `endpoint certificate` compares with the manifest), then one handshake
/// per application. `conn` stays open, so that a caller (`verigate app`) can send on the
/// connection that was just attested. An `Err` means the checks could not run.
pub async fn check_connection(
    conn: &mut Connection,
    online: &Online,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    Ok(check_connection_enrolling(conn, online, plan)
        .await?
        .outcome)
}

/// What [`check_connection_enrolling`] found.
pub struct Checked {
    /// The facts and checks of the VM.
    pub outcome: Outcome,
    /// Against a policy: the identity the evidence proves when it may be enrolled (first
    /// contact, every check passed) or accepted (it differs from the enrolled one but
    /// passes on its own).
    pub acceptable: Option<Identity>,
    /// The evidence as received, to keep beside an enrolment.
    pub evidence: hyper::body::Bytes,
    /// Where the replay of the VM's IMA log stands after this evidence, for the next
    /// incremental call.
    pub ima_progress: Option<ImaStart>,
    /// The size of the evidence's IMA log (only the new entries on an incremental call).
    pub ima_log_bytes: usize,
}

/// [`check_connection`], also returning what a fleet's enrolment needs.
pub async fn check_connection_enrolling(
    conn: &mut Connection,
    online: &Online,
    plan: &Plan,
) -> anyhow::Result<Checked> {
    let nonce = Nonce::random();
    let applications = &plan.applications;
    let (evidence, endpoint_sha, app_results) = {
        let endpoint_sha = cert_sha256(conn.leaf());
        // The handshakes run while the evidence is fetched: each is compared, after
        // both are in, with the manifest bound to this call's nonce. A certificate
        // renewed in between can only make a check fail, never pass.
        let mut set = tokio::task::JoinSet::new();
        for (i, app) in applications.iter().enumerate() {
            let app = app.clone();
            let opts = online.tls_options(route_for(&app, &plan.connect_to));
            set.spawn(async move {
                let r = presented_leaf(&app.name, app.port, &opts).await;
                (
                    i,
                    r.map_err(|e| e.to_string()).and_then(|leaf| {
                        CertDigests::of(&app.name, &leaf).map_err(|e| e.to_string())
                    }),
                )
            });
        }
        let ima_from = plan.ima_start.as_ref().map_or(0, |s| s.entries);
        let body = online::get_attestation_from(conn, &nonce, ima_from).await?;
        let mut results = vec![None; applications.len()];
        while let Some(joined) = set.join_next().await {
            let (i, r) = joined.context("an application handshake task failed")?;
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
        (body, endpoint_sha, results)
    };
    let mut out = Outcome::default();
    out.facts.push(("url".into(), json!(online.url())));
    let body_bytes = evidence;
    let evidence = match Evidence::from_json(&body_bytes) {
        Ok(e) => e,
        Err(e) => {
            // verigated answered, but not with evidence we can read: that is the VM's
            // failure, not the user's, so it is a failed check (exit 1).
            out.checks.push(Check::fail("evidence", e.to_string()));
            return Ok(Checked {
                outcome: out,
                acceptable: None,
                evidence: body_bytes,
                ima_progress: None,
                ima_log_bytes: 0,
            });
        }
    };
    let name_check = crate::pki::check_deferred_name(conn, &evidence.domain);
    let ima_log_bytes = evidence.ima_log.as_ref().map_or(0, |l| l.0.len());
    out.facts.push(("domain".into(), json!(evidence.domain)));
    out.facts.push(("tee".into(), json!(evidence.tee.kind())));
    let reference_kind = match plan.reference {
        Reference::Snapshot(_) => "snapshot",
        Reference::Policy { .. } => "policy",
    };
    out.facts.push((
        reference_kind.into(),
        json!(plan.reference_path.display().to_string()),
    ));

    let mut expect = Expectations::new(nonce, plan.at);
    expect.endpoint_cert_sha256 = Some(endpoint_sha);
    expect.url_host = Some(conn.endpoint().host.clone());
    expect.whitelist = plan.whitelist.as_deref();
    expect.allow_simulated_tee = plan.allow_simulated_tee;
    expect.allow_key_change = plan.allow_key_change;
    expect.allowed_tdx_tcb_statuses = plan.allow_tcb_status.clone();
    expect.snp_certs = plan.vcek.clone().map(|v| SnpCerts {
        vcek_or_vlek: Some(v),
        chain_pem: None,
    });
    expect.tdx_collateral = plan.collateral.clone();
    expect.applications = applications.iter().map(|a| a.name.clone()).collect();
    expect.ima_start = plan.ima_start.clone();
    let (snapshot, acceptable, ima_progress) = match &plan.reference {
        Reference::Snapshot(s) => {
            expect.snapshot = Some(s);
            let (checks, progress) = verify_incremental(&evidence, &expect);
            out.checks = checks;
            (Some(Arc::clone(s)), None, progress)
        }
        Reference::Policy { policy, enrolled } => {
            let v = verify_against_policy(&evidence, &expect, policy, enrolled.as_ref());
            out.checks = v.checks;
            (v.snapshot.map(Arc::new), v.acceptable, v.ima_progress)
        }
    };

    // Only when the Web PKI name check waited for the attested domain (see crate::pki).
    out.checks.extend(name_check);
    for (app, result) in applications.iter().zip(app_results) {
        out.checks.push(match result {
            Some(Ok(presented)) => check_application(
                &app.name,
                &presented,
                &evidence.manifest,
                snapshot.as_deref(),
                plan.allow_key_change,
            ),
            Some(Err(e)) => Check::fail(
                format!("application {}", app.name),
                format!("TLS handshake on port {} failed: {e}", app.port),
            ),
            None => Check::fail(
                format!("application {}", app.name),
                "the handshake did not report back",
            ),
        });
    }
    Ok(Checked {
        outcome: out,
        acceptable,
        evidence: body_bytes,
        ima_progress,
        ima_log_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applications_parse_with_default_port() {
        assert_eq!(
            parse_application("A.example.com").unwrap(),
            Application {
                name: "a.example.com".into(),
                port: 443
            }
        );
        assert_eq!(parse_application("a.example.com:8443").unwrap().port, 8443);
        for bad in [
            "",
            "a.example.com:x",
            "a.example.com:70000",
            "*.example.com",
            "127.0.0.1",
            "a b",
        ] {
            assert!(parse_application(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn connect_to_rules_parse_and_route() {
        let all = parse_connect_to("127.0.0.1:9443").unwrap();
        assert_eq!(all.target, "127.0.0.1:9443");
        assert_eq!(parse_connect_to("[::1]:9443").unwrap().target, "[::1]:9443");
        let one = parse_connect_to("B.example.com:443:127.0.0.2:8443").unwrap();
        assert_eq!(one.name.as_deref(), Some("b.example.com"));
        assert_eq!(one.port, Some(443));
        let any_name = parse_connect_to(":8443:[::1]:1").unwrap();
        assert_eq!((any_name.name, any_name.port), (None, Some(8443)));
        for bad in [
            "",
            "host",
            "host:",
            ":443",
            "a:b:c",
            "a:443:host",
            "a:x:host:1",
            "a:443:host:0",
            "a b:443:host:1",
        ] {
            assert!(parse_connect_to(bad).is_err(), "{bad:?} should be refused");
        }

        let rules = [
            parse_connect_to("127.0.0.1:1").unwrap(),
            parse_connect_to("b.example.com:443:127.0.0.2:2").unwrap(),
        ];
        let app = |n: &str, port| Application {
            name: n.into(),
            port,
        };
        assert_eq!(
            route_for(&app("b.example.com", 443), &rules).as_deref(),
            Some("127.0.0.2:2")
        );
        assert_eq!(
            route_for(&app("b.example.com", 8443), &rules).as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            route_for(&app("a.example.com", 443), &rules).as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(route_for(&app("a.example.com", 443), &rules[1..]), None);

        let url = |host: &str, port| Endpoint {
            host: host.into(),
            port,
        };
        assert_eq!(
            route_for_url(&url("B.example.com", 443), &rules).as_deref(),
            Some("127.0.0.2:2")
        );
        // A rule for any name is the applications': the --url connection resolves.
        assert_eq!(route_for_url(&url("a.example.com", 443), &rules), None);
        assert_eq!(route_for_url(&url("b.example.com", 8443), &rules), None);
    }

    #[test]
    fn at_parses_rfc3339_only() {
        assert!(parse_at("2026-11-28T12:00:00Z").is_ok());
        assert!(parse_at("2026-11-28").is_err());
        assert!(parse_at("yesterday").is_err());
    }
}
