//! The fleet file (ARCHITECTURE.md, "Fleets"): TOML listing the VMs, each with its own
//! endpoint's URL, the policy (or snapshot) it is verified against, the application
//! names it serves and where their handshakes go. Relative paths are relative to the
//! fleet file's folder. Parsed whole before any traffic; every problem names the VM and
//! the field.

use crate::commands::verify::{parse_application, parse_connect_to, Application, ConnectTo};
use anyhow::Context as _;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFileWire {
    state: Option<PathBuf>,
    #[serde(default)]
    vm: Vec<VmWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmWire {
    name: String,
    url: String,
    policy: Option<PathBuf>,
    snapshot: Option<PathBuf>,
    #[serde(default)]
    applications: Vec<String>,
    #[serde(default)]
    connect_to: Vec<String>,
    ca_cert: Option<PathBuf>,
}

/// What a VM is verified against, as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceFile {
    /// A policy shared by replicas; the VM's identity is enrolled.
    Policy(PathBuf),
    /// The VM's own snapshot, which pins its identity itself.
    Snapshot(PathBuf),
}

/// One VM of the fleet.
#[derive(Debug, Clone)]
pub struct FleetVm {
    /// Its name in the fleet and the state file.
    pub name: String,
    /// verigated's own endpoint.
    pub url: String,
    /// What it is verified against.
    pub reference: ReferenceFile,
    /// The names it serves, checked by a handshake each.
    pub applications: Vec<Application>,
    /// Where those handshakes go (as `--connect-to`).
    pub connect_to: Vec<ConnectTo>,
    /// Roots for this VM's certificates besides Mozilla's, in place of `--ca-cert`
    /// (a VM whose own endpoint has a certificate from a private CA of its own).
    pub ca_cert: Option<PathBuf>,
}

/// A parsed fleet file.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The enrolment state file.
    pub state: PathBuf,
    /// The VMs, in the file's order.
    pub vms: Vec<FleetVm>,
}

/// The longest a VM's name may be (it names files beside the state).
const MAX_NAME: usize = 64;

impl Fleet {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> anyhow::Result<Fleet> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading fleet file `{}`", path.display()))?;
        Fleet::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("fleet file `{}`", path.display()))
    }

    /// Parses a fleet file's text; relative paths are taken from `base`.
    pub fn parse(text: &str, base: &Path) -> anyhow::Result<Fleet> {
        let wire: FleetFileWire = toml::from_str(text)?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        if wire.vm.is_empty() {
            anyhow::bail!("no [[vm]]: list the VMs to verify");
        }
        let mut vms: Vec<FleetVm> = Vec::with_capacity(wire.vm.len());
        for (i, v) in wire.vm.into_iter().enumerate() {
            let at = format!("vm[{i}]");
            valid_name(&v.name).with_context(|| format!("{at}.name"))?;
            if vms.iter().any(|o| o.name == v.name) {
                anyhow::bail!("{at}.name: `{}` is listed twice", v.name);
            }
            let at = format!("vm `{}`", v.name);
            v.url
                .parse::<crate::client::Endpoint>()
                .with_context(|| format!("{at}: url"))?;
            let reference = match (v.policy, v.snapshot) {
                (Some(p), None) => ReferenceFile::Policy(resolve(p)),
                (None, Some(s)) => ReferenceFile::Snapshot(resolve(s)),
                _ => anyhow::bail!("{at}: give exactly one of `policy` and `snapshot`"),
            };
            let applications = v
                .applications
                .iter()
                .map(|a| parse_application(a))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("{at}: applications"))?;
            let connect_to = v
                .connect_to
                .iter()
                .map(|c| parse_connect_to(c))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("{at}: connect_to"))?;
            vms.push(FleetVm {
                name: v.name,
                url: v.url,
                reference,
                applications,
                connect_to,
                ca_cert: v.ca_cert.map(resolve),
            });
        }
        Ok(Fleet {
            state: resolve(
                wire.state
                    .unwrap_or_else(|| PathBuf::from("fleet-state.json")),
            ),
            vms,
        })
    }

    /// The VM called `name`.
    pub fn vm(&self, name: &str) -> anyhow::Result<&FleetVm> {
        self.vms.iter().find(|v| v.name == name).with_context(|| {
            format!(
                "no VM `{name}` in the fleet (it lists: {})",
                self.vms
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// A VM name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn valid_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "`{}`: a VM name is 1 to {MAX_NAME} letters, digits, `.`, `_` or `-`, not starting with `.`",
            name.chars().take(80).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
state = "state/fleet.json"
[[vm]]
name = "vm1"
url = "https://10.0.0.5"
policy = "golden.policy.json"
applications = ["a.example.com", "b.example.com:8443"]
connect_to = ["10.0.0.5:443"]
ca_cert = "roots/vm1.pem"
[[vm]]
name = "vm2"
url = "https://10.0.0.6"
snapshot = "/abs/vm2.json"
"#;

    #[test]
    fn the_issue_example_parses() {
        let f = Fleet::parse(GOOD, Path::new("/etc/fleet")).unwrap();
        assert_eq!(f.state, Path::new("/etc/fleet/state/fleet.json"));
        assert_eq!(f.vms.len(), 2);
        assert_eq!(
            f.vms[0].reference,
            ReferenceFile::Policy("/etc/fleet/golden.policy.json".into())
        );
        assert_eq!(f.vms[0].applications[1].port, 8443);
        assert_eq!(f.vms[0].connect_to[0].target, "10.0.0.5:443");
        assert_eq!(
            f.vms[0].ca_cert.as_deref(),
            Some(Path::new("/etc/fleet/roots/vm1.pem"))
        );
        assert_eq!(f.vms[1].ca_cert, None);
        assert_eq!(
            f.vms[1].reference,
            ReferenceFile::Snapshot("/abs/vm2.json".into())
        );
        assert!(f.vm("vm3").unwrap_err().to_string().contains("vm1, vm2"));
        let default = Fleet::parse(
            "[[vm]]\nname = \"a\"\nurl = \"https://h\"\npolicy = \"p\"\n",
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(default.state, Path::new("/x/fleet-state.json"));
    }

    #[test]
    fn each_bad_fleet_file_names_the_problem() {
        let vm = |extra: &str| format!("[[vm]]\nname = \"vm1\"\nurl = \"https://h\"\n{extra}\n");
        for (text, needle) in [
            (String::new(), "no [[vm]]"),
            (vm(""), "exactly one of"),
            (vm("policy = \"p\"\nsnapshot = \"s\""), "exactly one of"),
            (vm("policy = \"p\"\ncolour = 1"), "colour"),
            (
                vm("policy = \"p\"\napplications = [\"*.x\"]"),
                "applications",
            ),
            (vm("policy = \"p\"\nconnect_to = [\"x\"]"), "connect_to"),
            (format!("{0}{0}", vm("policy = \"p\"")), "twice"),
            (
                "[[vm]]\nname = \"../x\"\nurl = \"https://h\"\npolicy = \"p\"\n".into(),
                "vm[0].name",
            ),
            (
                "[[vm]]\nname = \"a\"\nurl = \"ftp://h\"\npolicy = \"p\"\n".into(),
                "url",
            ),
            ("state = 3".into(), "state"),
        ] {
            let e = format!("{:#}", Fleet::parse(&text, Path::new("/")).unwrap_err());
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
