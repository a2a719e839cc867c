//! `verigate verify --fleet` and `verigate fleet enroll|accept|forget`: the commands
//! over a fleet file and its enrolment state (ARCHITECTURE.md, "Fleets"). The work is in
//! `crate::fleet`; this module parses, locks, runs and prints.

use crate::commands::args::OnlineArgs;
use crate::commands::online::{self, Online};
use crate::commands::verify::{common_plan, VerifyArgs};
use crate::fleet::file::{Fleet, ReferenceFile};
use crate::fleet::output;
use crate::fleet::run::{self, Enrolment, References};
use crate::fleet::state::{now_rfc3339, StateLock, VmState};
use crate::report::{Outcome, OutputFormat};
use anyhow::Context as _;
use attest::check::Check;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs `verigate verify --fleet FILE`: exit 0 every VM passed, 1 one failed (or could
/// not be reached), 2 the fleet could not be verified at all (bad files, a second run).
pub fn verify(args: &VerifyArgs, top: &OnlineArgs, format: OutputFormat) -> ExitCode {
    match verify_round(args, top) {
        Ok(results) => output::finish(&results, format),
        Err(e) => crate::report::finish(Err(e), format),
    }
}

fn verify_round(args: &VerifyArgs, top: &OnlineArgs) -> anyhow::Result<Vec<run::VmResult>> {
    let trust = Online::fleet_trust(&args.online, top)?;
    let path = args.fleet.fleet.as_ref().context("--fleet FILE")?;
    let fleet = Fleet::read(path)?;
    let common = common_plan(args)?;
    let refs = References::read(&fleet)?;
    let lock = StateLock::acquire(&fleet.state)?;
    let mut state = lock.read()?;
    let runtime = online::runtime()?;
    let mut results = runtime.block_on(run::verify_all(
        &fleet,
        &refs,
        &common,
        &state,
        &std::collections::HashMap::new(),
        &trust,
        usize::from(args.fleet.parallel),
    ));
    run::record(&lock, &mut state, &mut results)?;
    Ok(results.into_iter().map(|(r, _)| r).collect())
}

/// `verigate fleet ...`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    verigate --allow-insecure-tls fleet --fleet fleet.toml enroll vm1 --allow-simulated-tee\n  \
    verigate fleet --fleet fleet.toml accept vm1\n  \
    verigate fleet --fleet fleet.toml forget vm1")]
pub struct FleetArgs {
    /// The fleet file, as for `verify --fleet`.
    #[arg(long, value_name = "FLEET.toml")]
    fleet: PathBuf,

    #[command(subcommand)]
    action: FleetCmd,
}

/// What to do with one VM's enrolment.
#[derive(clap::Subcommand, Debug)]
enum FleetCmd {
    /// Verify the VM against its policy now and record its identity (TPM key and
    /// counters, chip id, simulated TEE key), replacing any enrolled one. Takes the
    /// options of `verify` (--allow-simulated-tee, --whitelist, ...).
    // The fleet file names each VM's URL: --url is not offered (and refused). `verify`
    // requires --snapshot unless --policy or --fleet; here the fleet file names the VM's
    // reference, so the VM's name (always given) stands in for them. --policy, --fleet
    // (verify's) and --parallel would be ignored: hidden, and refused by conflicting
    // with the name (a default value is no conflict, so only a given one is refused).
    #[command(mut_arg("url", |a| a.hide(true)))]
    #[command(mut_arg("snapshot", |a| a.required_unless_present("name").hide(true)))]
    #[command(mut_arg("policy", |a| a.hide(true).conflicts_with("name")))]
    #[command(mut_arg("fleet", |a| a.hide(true).conflicts_with("name")))]
    #[command(mut_arg("parallel", |a| a.hide(true).conflicts_with("name")))]
    // Not `verify`'s example, which `flatten` would otherwise bring along.
    #[command(after_help = "Example:\n  \
        verigate fleet --fleet fleet.toml enroll vm1 --allow-simulated-tee")]
    Enroll {
        /// The VM's name in the fleet file.
        name: String,
        #[command(flatten)]
        verify: Box<VerifyArgs>,
    },
    /// Record the identity the VM last presented (after a reboot, say), which passed
    /// its policy on its own, as reviewed by you. Offline.
    Accept {
        /// The VM's name in the fleet file.
        name: String,
    },
    /// Remove the VM's enrolment: its next contact enrols it again (trust on first use).
    Forget {
        /// The VM's name (in the state; it may be gone from the fleet file).
        name: String,
    },
}

impl FleetArgs {
    /// The output format `fleet enroll --format` asks for, if any.
    pub fn format(&self) -> Option<OutputFormat> {
        match &self.action {
            FleetCmd::Enroll { verify, .. } => verify.format.get(),
            _ => None,
        }
    }
}

/// Runs `verigate fleet ...`.
pub fn run(args: FleetArgs, top: &OnlineArgs) -> anyhow::Result<Outcome> {
    let fleet = Fleet::read(&args.fleet)?;
    let mut out = Outcome::default();
    out.facts
        .push(("state".into(), json!(fleet.state.display().to_string())));
    match args.action {
        FleetCmd::Enroll { name, verify } => {
            let vm = fleet.vm(&name)?.clone();
            if !matches!(vm.reference, ReferenceFile::Policy(_)) {
                anyhow::bail!("vm `{name}` is verified against its own snapshot, which pins its identity: nothing to enroll");
            }
            let trust = Online::fleet_trust(&verify.online, top)?;
            let common = common_plan(&verify)?;
            let one = Fleet {
                state: fleet.state.clone(),
                vms: vec![vm],
            };
            let refs = References::read(&one)?;
            let lock = StateLock::acquire(&fleet.state)?;
            let mut state = lock.read()?;
            // Enrolled afresh: verified as at first contact.
            state.vms.remove(&name);
            let runtime = online::runtime()?;
            let mut results = runtime.block_on(run::verify_all(
                &one,
                &refs,
                &common,
                &state,
                &std::collections::HashMap::new(),
                &trust,
                1,
            ));
            let Some((result, keep)) = results.pop() else {
                anyhow::bail!("no result for `{name}`");
            };
            let outcome = result
                .outcome
                .map_err(|e| anyhow::anyhow!("vm `{name}`: {e}"))?;
            out.facts.extend(outcome.facts);
            out.checks = outcome.checks;
            let (Enrolment::EnrolledNow(identity), Some((_, evidence))) = (result.enrolment, keep)
            else {
                out.checks
                    .push(Check::fail("enroll", "a check failed: nothing recorded"));
                return Ok(out);
            };
            let record = lock.keep_evidence(&name, &evidence)?;
            out.checks.push(Check::pass(
                "enroll",
                format!("recorded {}", identity.describe()),
            ));
            let previous = state.vms.insert(
                name,
                VmState {
                    identity,
                    how: "fleet enroll".into(),
                    enrolled_at: now_rfc3339(),
                    evidence: record,
                    pending: None,
                },
            );
            drop(previous);
            lock.write(&state)?;
        }
        FleetCmd::Accept { name } => {
            let lock = StateLock::acquire(&fleet.state)?;
            let mut state = lock.read()?;
            let vm = state.vms.get_mut(&name).with_context(|| {
                format!("`{name}` is not enrolled in `{}`", fleet.state.display())
            })?;
            let pending = vm.pending.take().with_context(|| {
                format!("`{name}` has no pending identity to accept: a `verify --fleet` records one when the VM presents another identity that passes its policy")
            })?;
            let detail = format!(
                "now requires {} (was {}), from evidence seen at {}",
                pending.identity.describe(),
                vm.identity.describe(),
                pending.seen_at
            );
            vm.identity = pending.identity;
            vm.evidence = pending.evidence;
            vm.enrolled_at = now_rfc3339();
            vm.how = "fleet accept".into();
            lock.write(&state)?;
            out.checks.push(Check::pass("accept", detail));
        }
        FleetCmd::Forget { name } => {
            let lock = StateLock::acquire(&fleet.state)?;
            let mut state = lock.read()?;
            if state.vms.remove(&name).is_none() {
                anyhow::bail!("`{name}` is not enrolled in `{}`", fleet.state.display());
            }
            lock.write(&state)?;
            out.checks.push(Check::pass(
                "forget",
                format!("`{name}` removed: its next contact enrols it again (trust on first use)"),
            ));
        }
    }
    Ok(out)
}
