//! `verigate watch --fleet FLEET.toml`: continuous verification of a fleet, with
//! Prometheus metrics and a log line on every change of verdict (the loop is
//! `crate::fleet::watch`).

use crate::commands::args::OnlineArgs;
use crate::commands::online::Online;
use crate::commands::verify::{common_plan, VerifyArgs};
use crate::fleet::file::Fleet;
use crate::fleet::run::References;
use crate::fleet::watch::{watch, WatchOptions};
use crate::report::Outcome;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::time::Duration;

/// Arguments of `verigate watch`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  \
    verigate watch --fleet fleet.toml --interval 30s --listen 127.0.0.1:9464 \\\n      \
    --on-change 'logger -t verigate \"$VERIGATE_VM is now $VERIGATE_VERDICT ($VERIGATE_FAILED_CHECKS)\"'\n\n\
    --on-change runs with VERIGATE_VM, VERIGATE_URL, VERIGATE_VERDICT (pass|fail), \
    VERIGATE_PREVIOUS (pass|fail|unknown) and VERIGATE_FAILED_CHECKS (comma-separated) \
    in its environment.")]
// The fleet file names each VM's URL and a watch prints log lines, not a report: the
// options of `verify` that say otherwise are not offered (and --url is refused).
#[command(mut_arg("url", |a| a.hide(true)))]
#[command(mut_arg("format", |a| a.hide(true)))]
#[command(mut_arg("output", |a| a.hide(true)))]
pub struct WatchArgs {
    /// Time between two rounds over the fleet: `500ms`, `30s`, `5m`. Default 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    interval: Duration,

    /// Where the Prometheus metrics are served (`GET /metrics`). Default 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    listen: SocketAddr,

    /// A shell command (/bin/sh -c) run on every change of a VM's verdict, the first
    /// verdict included.
    #[arg(long, value_name = "CMD")]
    on_change: Option<String>,

    /// The fleet and the options of `verify` (--fleet is required).
    #[command(flatten)]
    verify: VerifyArgs,
}

/// Parses `500ms`, `30s`, `5m`, `1h` (at least 100 ms).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit (ms, s, m, h), e.g. 30s"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("`{s}`: the unit is one of ms, s, m, h, e.g. 30s")),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("`{s}`: at least 100ms"));
    }
    Ok(d)
}

/// Runs `verigate watch` until interrupted.
pub fn run(args: WatchArgs, top: &OnlineArgs) -> anyhow::Result<Outcome> {
    let trust = Online::fleet_trust(&args.verify.online, top)?;
    let path = args
        .verify
        .fleet
        .fleet
        .as_ref()
        .context("watch needs --fleet FLEET.toml")?;
    let fleet = Fleet::read(path)?;
    let common = common_plan(&args.verify)?;
    let refs = References::read(&fleet)?;
    let runtime = crate::commands::online::runtime()?;
    runtime.block_on(watch(
        fleet,
        refs,
        common,
        WatchOptions {
            interval: args.interval,
            listen: args.listen,
            on_change: args.on_change,
            trust,
            parallel: usize::from(args.verify.fleet.parallel),
        },
    ))?;
    Ok(Outcome::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_a_unit() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "30", "s", "10ms", "3d", "-1s", "1.5s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
