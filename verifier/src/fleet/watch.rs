//! Continuous verification (`verigate watch`): a round over the fleet every interval,
//! each VM asked only for the IMA entries after those it already replayed (incremental
//! IMA, the running PCR value kept here per VM); a log line and the optional
//! `--on-change` command on every change of a VM's verdict; Prometheus metrics served on
//! a listen address. Each round takes the state's lock for itself, so `fleet accept`
//! can run between rounds; a round that finds it held is skipped and counted.

use super::file::Fleet;
use super::metrics::{failing, FleetMetrics};
use super::run::{self, References, VmResult};
use super::state::{now_rfc3339, StateLock};
use crate::commands::verify::Plan;
use anyhow::Context as _;
use attest::check::Verdict;
use attest::verify::ImaStart;
use http_body_util::Full;
use hyper::body::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a watch needs besides the fleet.
pub struct WatchOptions {
    /// Time between the starts of two rounds.
    pub interval: Duration,
    /// Where the metrics are served.
    pub listen: SocketAddr,
    /// A shell command run on every change of a VM's verdict.
    pub on_change: Option<String>,
    /// How certificates are checked (`--allow-insecure-tls`, `--ca-cert`).
    pub trust: crate::client::Trust,
    /// VMs verified at once.
    pub parallel: usize,
}

/// Runs until interrupted (SIGINT or SIGTERM) or a setup error.
pub async fn watch(
    fleet: Fleet,
    refs: References,
    common: Plan,
    opts: WatchOptions,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Mutex::new(FleetMetrics::default()));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    println!(
        "{} watching {} VMs every {:?}; metrics on http://{}/metrics",
        now_rfc3339(),
        fleet.vms.len(),
        opts.interval,
        listener.local_addr().unwrap_or(opts.listen)
    );
    tokio::spawn(serve_metrics(listener, Arc::clone(&metrics)));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("watching SIGTERM")?;
    let mut ticks = tokio::time::interval(opts.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: HashMap<String, Verdict> = HashMap::new();
    let mut ima: HashMap<String, ImaStart> = HashMap::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        }
        let Some(results) = round(&fleet, &refs, &common, &opts, &ima, &metrics).await else {
            continue;
        };
        let mut m = metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in &results {
            keep_ima_start(&mut ima, r);
            m.update(r);
            let now = r.verdict();
            let was = previous.insert(r.name.clone(), now);
            if was != Some(now) {
                changed(r, was, &opts);
            }
        }
        m.rounds = m.rounds.saturating_add(1);
    }
}

/// Where the next round's IMA replay of `r`'s VM starts: after this round's entries
/// when they passed; from the start when the log could not be anchored (a reboot, a
/// rewritten log); unchanged when the VM was not reached or a new entry failed (those
/// entries are asked for again, and fail again until they are allowed).
fn keep_ima_start(ima: &mut HashMap<String, ImaStart>, r: &VmResult) {
    match (&r.ima_progress, &r.outcome) {
        (Some(p), _) => {
            ima.insert(r.name.clone(), p.clone());
        }
        (None, Ok(o))
            if o.checks
                .iter()
                .any(|c| c.name == attest::verify::names::IMA_REPLAY && !c.passed()) =>
        {
            ima.remove(&r.name);
        }
        (None, _) => {}
    }
}

/// One round under the state's lock; `None` when it was skipped (logged).
async fn round(
    fleet: &Fleet,
    refs: &References,
    common: &Plan,
    opts: &WatchOptions,
    ima: &HashMap<String, ImaStart>,
    metrics: &Mutex<FleetMetrics>,
) -> Option<Vec<VmResult>> {
    let skipped = |e: anyhow::Error| {
        eprintln!(
            "{} round skipped: {}",
            now_rfc3339(),
            causes::line(e.as_ref())
        );
        let mut m = metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.rounds_skipped = m.rounds_skipped.saturating_add(1);
        None
    };
    let lock = match StateLock::acquire(&fleet.state) {
        Ok(l) => l,
        Err(e) => return skipped(e),
    };
    let mut state = match lock.read() {
        Ok(s) => s,
        Err(e) => return skipped(e),
    };
    let mut results =
        run::verify_all(fleet, refs, common, &state, ima, &opts.trust, opts.parallel).await;
    if let Err(e) = run::record(&lock, &mut state, &mut results) {
        eprintln!(
            "{} recording enrolments: {}",
            now_rfc3339(),
            causes::line(e.as_ref())
        );
    }
    Some(results.into_iter().map(|(r, _)| r).collect())
}

fn word(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Pass) => "pass",
        Some(Verdict::Fail) => "fail",
        None => "unknown",
    }
}

/// Logs a change of verdict and runs `--on-change` with the VM in its environment.
fn changed(r: &VmResult, was: Option<Verdict>, opts: &WatchOptions) {
    let now = r.verdict();
    let failed = failing(r).join(",");
    let why = match (&r.outcome, now) {
        (Err(e), _) => format!(": {e}"),
        (Ok(_), Verdict::Fail) => format!(": failed {failed}"),
        (Ok(_), Verdict::Pass) => String::new(),
    };
    println!(
        "{} {} {} -> {}{why}",
        now_rfc3339(),
        r.name,
        word(was),
        word(Some(now))
    );
    let Some(cmd) = &opts.on_change else {
        return;
    };
    let spawned = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("VERIGATE_VM", &r.name)
        .env("VERIGATE_URL", &r.url)
        .env("VERIGATE_VERDICT", word(Some(now)))
        .env("VERIGATE_PREVIOUS", word(was))
        .env("VERIGATE_FAILED_CHECKS", &failed)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false)
        .spawn();
    match spawned {
        Ok(mut child) => {
            let vm = r.name.clone();
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(s) if s.success() => {}
                    Ok(s) => eprintln!("{} --on-change for {vm}: {s}", now_rfc3339()),
                    Err(e) => eprintln!("{} --on-change for {vm}: {e}", now_rfc3339()),
                }
            });
        }
        Err(e) => eprintln!("{} --on-change for {}: {e}", now_rfc3339(), r.name),
    }
}

/// Serves `GET /metrics` (anything else: 404) until the process ends.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Mutex<FleetMetrics>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = Arc::clone(&metrics);
                    async move {
                        let (status, body) = if req.uri().path() == "/metrics" {
                            let text = metrics
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .render();
                            (hyper::StatusCode::OK, text)
                        } else {
                            (
                                hyper::StatusCode::NOT_FOUND,
                                "not found: GET /metrics\n".into(),
                            )
                        };
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(60), served).await;
        });
    }
}
