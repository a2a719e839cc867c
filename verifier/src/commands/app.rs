//! `verigate app init|restart|status`: controls the application inside the VM through
//! verigated, after verifying the VM.
//!
//! Verify, then send, on one TLS connection: the CLI opens the connection, runs the
//! same checks as `verify` on it (fresh evidence whose manifest must hold the
//! certificate this very connection presented), and only if every check passes sends the
//! request — the configuration, which usually holds the application's secrets — on that
//! same connection. A connection that closes in between is not reopened: a new one would
//! not be the one that was attested, so nothing is sent. Without `--snapshot` there is
//! nothing to verify against, and the command refuses unless `--no-verify` says so.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use attest::check::{Report, Verdict};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{ClientIdentity, Connection};
use crate::commands::key_change::KeyChangeArgs;
use crate::commands::online::{self, Online};
use crate::commands::verify::{self, VerifyArgs};
use crate::report::{self, Outcome, OutputFormat};
use crate::terminal::escape;

/// Arguments of `verigate app`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    VERIGATE_TOKEN=... verigate --url https://vm.example.com app init --conf app.conf \\\n      \
    --snapshot verigate-snapshot-vm.example.com.json --application a.example.com\n  \
    verigate --url https://vm.example.com app status --snapshot snap.json --client-cert me.pem --client-key me.key\n\n\
    Exit status: 0 verified and done, 1 a check failed (nothing was sent), 2 the checks\n\
    could not run or verigated refused or failed the action.")]
pub struct AppArgs {
    /// verigated's endpoint and how to check its certificate (before the action).
    #[command(flatten)]
    pub online: super::args::OnlineArgs,

    /// How to print the checks (before the action).
    #[command(flatten)]
    pub format: super::args::FormatArgs,

    #[command(subcommand)]
    pub action: AppAction,

    #[command(flatten)]
    pub options: AppOptions,
}

/// What to ask verigated to do.
#[derive(clap::Subcommand, Debug)]
pub enum AppAction {
    /// Replace the application's configuration (`<app_storage>/app.conf`) with FILE and
    /// restart the application (start it if stopped).
    Init {
        /// The new configuration, sent as it is.
        #[arg(short = 'c', long, value_name = "FILE")]
        conf: PathBuf,
    },
    /// Restart the application (start it if stopped).
    Restart,
    /// Show the application's state: manager, state, PID, since when, last exit.
    Status,
}

/// Verification and credential options of `verigate app`.
#[derive(clap::Args, Debug)]
pub struct AppOptions {
    /// The snapshot to verify the VM against before sending anything (as for `verify`).
    /// Required unless --no-verify.
    #[arg(short = 's', long, value_name = "FILE", global = true)]
    pub snapshot: Option<PathBuf>,

    /// Send without verifying the VM first. The request then goes to whoever holds
    /// --url's certificate; only for a VM you reach by other trusted means.
    #[arg(long, global = true, conflicts_with = "snapshot")]
    pub no_verify: bool,

    /// A name the VM should serve, checked as in `verify`. Repeatable.
    #[arg(
        short = 'a',
        long = "application",
        value_name = "NAME[:PORT]",
        global = true
    )]
    pub applications: Vec<String>,

    /// Where application handshakes go, as in `verify`. Repeatable.
    #[arg(
        long = "connect-to",
        value_name = "[NAME:PORT:]HOST:PORT",
        global = true
    )]
    pub connect_to: Vec<String>,

    /// More accepted (path, digest) pairs for the IMA log, as in `verify`.
    #[arg(short = 'w', long, value_name = "FILE", global = true)]
    pub whitelist: Option<PathBuf>,

    /// Accept the simulated TEE (tests and demos only).
    #[arg(long, global = true)]
    pub allow_simulated_tee: bool,

    #[command(flatten)]
    pub key_change: KeyChangeArgs,

    /// A TDX TCB status to accept besides UpToDate. Repeatable.
    #[arg(long = "allow-tcb-status", value_name = "NAME", global = true)]
    pub allow_tcb_status: Vec<String>,

    /// The VCEK or VLEK certificate for an SEV-SNP report whose evidence carries none.
    #[arg(long, value_name = "FILE", global = true)]
    pub vcek: Option<PathBuf>,

    /// Check certificates and collateral as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339", global = true)]
    pub at: Option<String>,

    /// The admin token (its SHA-256 is in verigated's `[api] admin_token_sha256`).
    /// Prefer the environment variable: a command line is visible to other users.
    #[arg(
        long,
        env = "VERIGATE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true,
        conflicts_with = "client_cert"
    )]
    pub token: Option<String>,

    /// A client certificate (PEM, leaf first) issued by verigated's `[api] client_ca`.
    #[arg(long, value_name = "FILE", requires = "client_key", global = true)]
    pub client_cert: Option<PathBuf>,

    /// The key of --client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert", global = true)]
    pub client_key: Option<PathBuf>,
}

/// What the action came to.
enum Sent {
    /// Verification failed: nothing was sent.
    NotSent,
    /// verigated answered 200 with this status; `verified` is false under --no-verify.
    Done { status: Value, verified: bool },
}

/// Runs `verigate app`, prints the checks and the application's status, and returns the
/// exit status.
pub fn run(online: &Online, args: AppArgs, format: OutputFormat) -> ExitCode {
    match execute(online, &args) {
        Ok((outcome, Sent::NotSent)) => report::finish(Ok(outcome), format),
        Ok((
            outcome,
            Sent::Done {
                status,
                verified: false,
            },
        )) => {
            // No checks ran, so there is no verdict to print: the facts say why.
            match format {
                OutputFormat::Json => {
                    let mut v: serde_json::Map<String, Value> = outcome.facts.into_iter().collect();
                    v.insert("app".into(), status);
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json!({"verdict": "unverified", "facts": v}))
                            .unwrap_or_default()
                    );
                }
                OutputFormat::Text => {
                    report::print_facts(&outcome.facts);
                    println!();
                    print_status(action_name(&args.action), &status);
                }
            }
            ExitCode::SUCCESS
        }
        Ok((mut outcome, Sent::Done { status, .. })) => match format {
            OutputFormat::Json => {
                outcome.facts.push(("app".into(), status));
                report::finish(Ok(outcome), format)
            }
            OutputFormat::Text => {
                let code = report::finish(Ok(outcome), format);
                println!();
                print_status(action_name(&args.action), &status);
                code
            }
        },
        Err(e) => report::finish(Err(e), format),
    }
}

fn action_name(action: &AppAction) -> &'static str {
    match action {
        AppAction::Init { .. } => "init",
        AppAction::Restart => "restart",
        AppAction::Status => "status",
    }
}

fn execute(online: &Online, args: &AppArgs) -> anyhow::Result<(Outcome, Sent)> {
    let o = &args.options;
    // Everything that stops the command is found before any network traffic.
    let endpoint = online.endpoint()?;
    let plan = match (&o.snapshot, o.no_verify) {
        (Some(snapshot), _) => Some(verify::plan(&VerifyArgs {
            online: Default::default(),
            format: Default::default(),
            snapshot: Some(snapshot.clone()),
            policy: None,
            fleet: crate::fleet::FleetArgs::default(),
            applications: o.applications.clone(),
            connect_to: o.connect_to.clone(),
            whitelist: o.whitelist.clone(),
            allow_simulated_tee: o.allow_simulated_tee,
            key_change: o.key_change.clone(),
            allow_tcb_status: o.allow_tcb_status.clone(),
            vcek: o.vcek.clone(),
            collateral: None,
            at: o.at.clone(),
        })?),
        (None, true) => None,
        (None, false) => anyhow::bail!(
            "refusing to send to an unverified VM: give --snapshot FILE (from `verigate snapshot`) \
             so that the VM is verified first, or --no-verify to send without verifying"
        ),
    };
    let (method, path, body) = match &args.action {
        AppAction::Init { conf } => {
            let bytes = std::fs::read(conf)
                .with_context(|| format!("reading --conf `{}`", conf.display()))?;
            (Method::POST, "/v1/app/init", Some(bytes))
        }
        AppAction::Restart => (Method::POST, "/v1/app/restart", None),
        AppAction::Status => (Method::GET, "/v1/app/status", None),
    };
    // The --url connection follows a rule that names its host, as in `verify`.
    let connect_to = verify::parse_connect_to_rules(&o.connect_to)?;
    let identity = match (&o.client_cert, &o.client_key) {
        (Some(cert), Some(key)) => Some(ClientIdentity::load(cert, key)?),
        _ => None,
    };
    if plan.is_none() {
        eprintln!("warning: --no-verify: sending without verifying the VM");
    }

    let runtime = online::runtime()?;
    runtime.block_on(async {
        let url_opts = online.tls_options(verify::route_for_url(&endpoint, &connect_to));
        let mut conn = Connection::open_as(&endpoint, &url_opts, identity.as_ref())
            .await
            .with_context(|| format!("connecting to {}", online.url()))?;
        let outcome = match &plan {
            Some(plan) => {
                let outcome = verify::check_connection(&mut conn, online, plan).await?;
                // Report::new decides the verdict exactly as `verify` prints it.
                let verdict = Report::new(outcome.checks.clone()).verdict;
                if verdict != Verdict::Pass || outcome.checks.is_empty() {
                    return Ok((outcome, Sent::NotSent));
                }
                outcome
            }
            None => {
                crate::pki::require_checked_name(&conn, "the unverified request")?;
                let mut outcome = Outcome::default();
                outcome.facts.push(("url".into(), json!(online.url())));
                outcome
                    .facts
                    .push(("verification".into(), json!("skipped (--no-verify)")));
                outcome
            }
        };
        let status = send(&mut conn, method, path, body, o.token.as_deref()).await?;
        Ok((
            outcome,
            Sent::Done {
                status,
                verified: plan.is_some(),
            },
        ))
    })
}

/// Sends the control request on the attested connection; a non-200 answer is an error.
async fn send(
    conn: &mut Connection,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> anyhow::Result<Value> {
    let res = match tokio::time::timeout(
        online::REQUEST_TIMEOUT,
        conn.request(method.clone(), path, body, token),
    )
    .await
    {
        Ok(r) => r.with_context(|| {
            format!("{method} {path} on the attested connection (not retried on another)")
        })?,
        Err(_) => anyhow::bail!(
            "{method} {path}: no answer within {} s",
            online::REQUEST_TIMEOUT.as_secs()
        ),
    };
    if res.status != StatusCode::OK {
        anyhow::bail!("{path}: {}", online::describe_error(res.status, &res.body));
    }
    serde_json::from_slice(&res.body).with_context(|| format!("{path}: the answer is not JSON"))
}

/// Prints a `GET /v1/app/status`-shaped answer for people.
fn print_status(action: &str, status: &Value) {
    println!("app {action}: done");
    let text = |k: &str| match status.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    for (label, key) in [
        ("manager", "manager"),
        ("service", "service"),
        ("state", "state"),
        ("pid", "pid"),
        ("since", "since"),
        ("detail", "detail"),
    ] {
        if let Some(v) = text(key) {
            // The status is the VM's answer: printed escaped.
            println!("  {label}: {}", escape(&v));
        }
    }
    if let Some(exit) = status.get("last_exit").filter(|v| !v.is_null()) {
        let described = match (exit.get("code"), exit.get("signal")) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => exit.to_string(),
        };
        println!("  last exit: {}", escape(&described));
    }
}
