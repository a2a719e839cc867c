//! One round over a fleet: every VM verified concurrently (at most `parallel` at once)
//! with `verify`'s checks, then the enrolment state updated under its lock. A VM that
//! cannot be reached, or whose verification cannot run, is a failed VM with the reason;
//! it never stops the others.

use super::file::{Fleet, FleetVm, ReferenceFile};
use super::state::{now_rfc3339, Pending, State, StateLock, VmState};
use crate::client::{Connection, Trust};
use crate::commands::online::Online;
use crate::commands::verify::{
    check_connection_enrolling, read_policy, read_snapshot, Plan, Reference,
};
use crate::report::Outcome;
use anyhow::Context as _;
use attest::check::Verdict;
use attest::policy::Identity;
use attest::verify::ImaStart;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest one VM may take, connection and handshakes included.
pub const VM_TIMEOUT: Duration = Duration::from_secs(120);

/// What happened to a VM's enrolment in this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// Verified against its own snapshot: nothing to enrol.
    Snapshot,
    /// First contact: its identity was recorded now (trust on first use).
    EnrolledNow(Identity),
    /// Its enrolled identity was required.
    Enrolled,
    /// Its identity differs from the enrolled one but passes the policy on its own:
    /// recorded as pending, for `verigate fleet accept`.
    PendingRecorded,
    /// Not enrolled, and nothing to enrol (it failed).
    NotEnrolled,
}

/// An identity to record (enrol, or keep as pending) and the evidence it came from.
pub type ToRecord = Option<(Identity, hyper::body::Bytes)>;

/// One VM's result.
#[derive(Debug)]
pub struct VmResult {
    /// The VM's name in the fleet.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its checks, or why they could not run (a failed VM).
    pub outcome: Result<Outcome, String>,
    /// What happened to its enrolment.
    pub enrolment: Enrolment,
    /// How long connecting and fetching the evidence took.
    pub fetch: Duration,
    /// Evidence bytes received.
    pub evidence_bytes: usize,
    /// IMA log bytes in that evidence (only the new entries on an incremental call).
    pub ima_log_bytes: usize,
    /// Where the replay of its IMA log stands now, for the next incremental call.
    pub ima_progress: Option<ImaStart>,
}

impl VmResult {
    /// Pass only if the checks ran and all passed.
    pub fn verdict(&self) -> Verdict {
        match &self.outcome {
            Ok(o) => Verdict::of(&o.checks),
            Err(_) => Verdict::Fail,
        }
    }
}

/// The files every VM's reference comes from, each read and checked once.
pub struct References {
    by_path: HashMap<std::path::PathBuf, Reference>,
    /// The roots of the VMs that name their own `ca_cert`, by VM name.
    roots_by_vm: HashMap<String, Arc<rustls::RootCertStore>>,
}

impl References {
    /// Reads every policy, snapshot and `ca_cert` file `fleet` names (before any
    /// traffic: a bad file is a usage error).
    pub fn read(fleet: &Fleet) -> anyhow::Result<References> {
        let mut by_path = HashMap::new();
        let mut roots_by_vm = HashMap::new();
        for vm in &fleet.vms {
            if let Some(ca_cert) = &vm.ca_cert {
                let roots = crate::pki::roots(Some(ca_cert))
                    .with_context(|| format!("vm `{}`: ca_cert", vm.name))?;
                roots_by_vm.insert(vm.name.clone(), Arc::new(roots));
            }
            let (path, is_policy) = match &vm.reference {
                ReferenceFile::Policy(p) => (p, true),
                ReferenceFile::Snapshot(p) => (p, false),
            };
            if by_path.contains_key(path) {
                continue;
            }
            let r = if is_policy {
                Reference::Policy {
                    policy: Arc::new(
                        read_policy(path).with_context(|| format!("vm `{}`", vm.name))?,
                    ),
                    enrolled: None,
                }
            } else {
                Reference::Snapshot(Arc::new(
                    read_snapshot(path).with_context(|| format!("vm `{}`", vm.name))?,
                ))
            };
            by_path.insert(path.clone(), r);
        }
        Ok(References {
            by_path,
            roots_by_vm,
        })
    }

    /// How `vm`'s certificates are checked: against its own `ca_cert` roots when it
    /// names one, else as `trust` says. `--allow-insecure-tls` holds for every VM.
    fn trust_for(&self, vm: &FleetVm, trust: &Trust) -> Trust {
        match (trust, self.roots_by_vm.get(&vm.name)) {
            (Trust::Roots(_), Some(roots)) => Trust::Roots(Arc::clone(roots)),
            _ => trust.clone(),
        }
    }

    fn plan_for(
        &self,
        vm: &FleetVm,
        common: &Plan,
        state: &State,
        ima: &HashMap<String, ImaStart>,
    ) -> Option<Plan> {
        let path = match &vm.reference {
            ReferenceFile::Policy(p) | ReferenceFile::Snapshot(p) => p,
        };
        let mut reference = self.by_path.get(path)?.clone();
        if let Reference::Policy { enrolled, .. } = &mut reference {
            *enrolled = state.vms.get(&vm.name).map(|v| v.identity.clone());
        }
        let mut plan = common.clone();
        plan.reference_path = path.clone();
        plan.reference = reference;
        plan.applications = vm.applications.clone();
        plan.connect_to = vm.connect_to.clone();
        plan.ima_start = ima.get(&vm.name).cloned();
        Some(plan)
    }
}

/// Verifies every VM of `fleet` (at most `parallel` at once) against its reference and
/// `state`'s enrolments, with `common`'s options and `trust`, asking each VM
/// only for the IMA entries after its start in `ima` (incremental IMA; empty: whole
/// logs); returns the results in the fleet's order and the evidence of those that may
/// be enrolled.
pub async fn verify_all(
    fleet: &Fleet,
    refs: &References,
    common: &Plan,
    state: &State,
    ima: &HashMap<String, ImaStart>,
    trust: &Trust,
    parallel: usize,
) -> Vec<(VmResult, ToRecord)> {
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, vm) in fleet.vms.iter().enumerate() {
        let plan = refs.plan_for(vm, common, state, ima);
        let trust = refs.trust_for(vm, trust);
        let vm = vm.clone();
        let gate = Arc::clone(&gate);
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, verify_one(vm, plan, trust).await)
        });
    }
    let mut results: Vec<Option<(VmResult, ToRecord)>> =
        (0..fleet.vms.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
    }
    results
        .into_iter()
        .zip(&fleet.vms)
        .map(|(r, vm)| {
            r.unwrap_or_else(|| {
                (
                    VmResult {
                        name: vm.name.clone(),
                        url: vm.url.clone(),
                        outcome: Err("its verification task failed".into()),
                        enrolment: Enrolment::NotEnrolled,
                        fetch: Duration::ZERO,
                        evidence_bytes: 0,
                        ima_log_bytes: 0,
                        ima_progress: None,
                    },
                    None,
                )
            })
        })
        .collect()
}

async fn verify_one(vm: FleetVm, plan: Option<Plan>, trust: Trust) -> (VmResult, ToRecord) {
    let mut result = VmResult {
        name: vm.name.clone(),
        url: vm.url.clone(),
        outcome: Err(String::new()),
        enrolment: Enrolment::NotEnrolled,
        fetch: Duration::ZERO,
        evidence_bytes: 0,
        ima_log_bytes: 0,
        ima_progress: None,
    };
    let Some(plan) = plan else {
        result.outcome = Err("its policy or snapshot was not read".into());
        return (result, None);
    };
    let online = Online {
        url: Some(vm.url.clone()),
        trust,
    };
    let started = Instant::now();
    let run = async {
        let endpoint = online.endpoint()?;
        let mut conn = Connection::open(&endpoint, &online.tls_options(None))
            .await
            .with_context(|| format!("connecting to {}", vm.url))?;
        check_connection_enrolling(&mut conn, &online, &plan).await
    };
    let checked = match tokio::time::timeout(VM_TIMEOUT, run).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            result.fetch = started.elapsed();
            result.outcome = Err(causes::line(e.as_ref()));
            return (result, None);
        }
        Err(_) => {
            result.fetch = started.elapsed();
            result.outcome = Err(format!("no result within {} s", VM_TIMEOUT.as_secs()));
            return (result, None);
        }
    };
    result.fetch = started.elapsed();
    result.evidence_bytes = checked.evidence.len();
    result.ima_log_bytes = checked.ima_log_bytes;
    result.ima_progress = checked.ima_progress.clone();
    let enrolled = match &plan.reference {
        Reference::Snapshot(_) => None,
        Reference::Policy { enrolled, .. } => Some(enrolled.is_some()),
    };
    result.enrolment = match enrolled {
        None => Enrolment::Snapshot,
        Some(true) if Verdict::of(&checked.outcome.checks) == Verdict::Pass => Enrolment::Enrolled,
        Some(true) if checked.acceptable.is_some() => Enrolment::PendingRecorded,
        Some(false) => match &checked.acceptable {
            Some(id) => Enrolment::EnrolledNow(id.clone()),
            None => Enrolment::NotEnrolled,
        },
        Some(true) => Enrolment::Enrolled,
    };
    let keep = checked.acceptable.map(|id| (id, checked.evidence));
    result.outcome = Ok(checked.outcome);
    (result, keep)
}

/// Records, under `lock`, what the round enrolled (first contact) or saw pending (an
/// identity that passes the policy on its own but is not the enrolled one); returns
/// whether the state changed.
pub fn record(
    lock: &StateLock,
    state: &mut State,
    results: &mut [(VmResult, ToRecord)],
) -> anyhow::Result<bool> {
    let mut changed = false;
    for (r, keep) in results.iter_mut() {
        let Some((identity, evidence)) = keep.take() else {
            continue;
        };
        let record = lock.keep_evidence(&r.name, &evidence)?;
        match &r.enrolment {
            Enrolment::EnrolledNow(_) => {
                state.vms.insert(
                    r.name.clone(),
                    VmState {
                        identity,
                        how: "first contact (trust on first use)".into(),
                        enrolled_at: now_rfc3339(),
                        evidence: record,
                        pending: None,
                    },
                );
                changed = true;
            }
            Enrolment::PendingRecorded => {
                if let Some(vm) = state.vms.get_mut(&r.name) {
                    vm.pending = Some(Pending {
                        identity,
                        seen_at: now_rfc3339(),
                        evidence: record,
                    });
                    changed = true;
                }
            }
            _ => {}
        }
    }
    if changed {
        lock.write(state)?;
    }
    Ok(changed)
}
