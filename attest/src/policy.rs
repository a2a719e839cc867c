//! The policy: what replicas of one VM image share, so that one file verifies them all
//! (ARCHITECTURE.md, "Policy"). It is a snapshot without per-VM identity: the TEE
//! measurement and policy, whether the VMs have a TPM, where IMA is quoted, the allowed
//! file digests and the manifest entries of the names the replicas serve. Dropped: the
//! TPM key and its reset and restart counts, the simulated TEE's key and the own
//! endpoint's name and certificate, which each replica has its own of; a verifier
//! records those per VM at first contact ([`Identity`], trust on first use).
//!
//! A policy plus one VM's [`Identity`] gives back a [`Snapshot`]
//! ([`Policy::snapshot_for`]), so verification against a policy is verification
//! against a snapshot: the same checks, one implementation.

use crate::binding::{hex_digest, Manifest, ManifestEntry};
use crate::snapshot::{ImaPolicy, Snapshot, SnapshotError, TeePolicy, TpmPolicy};
use serde::{Deserialize, Serialize};

/// The only policy format this code reads and writes.
pub const POLICY_VERSION: u32 = 1;

/// The `tee_policy` fields that belong to one VM, not to the image: removed by
/// [`Policy::from_snapshot`], put back from the VM's [`Identity`].
pub const PER_VM_TEE_FIELDS: [&str; 1] = ["public_key_sha256"];

/// What replicas of one image share; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy format, always [`POLICY_VERSION`].
    pub version: u32,
    /// RFC 3339, UTC: when the snapshot it came from was taken.
    pub created_at: String,
    /// The snapshot's `tee_policy` without the fields of [`PER_VM_TEE_FIELDS`]:
    /// `kind` and the measurement fields of that kind.
    pub tee_policy: serde_json::Map<String, serde_json::Value>,
    /// Whether the VMs have a TPM (the snapshot had a `tpm_policy`); its key and
    /// counters are per VM.
    pub tpm: bool,
    /// Where the IMA log is quoted; absent without IMA.
    pub ima: Option<ImaPolicy>,
    /// The manifest entries of the names every replica serves (not the own endpoint's).
    pub manifest: Manifest,
    /// `[path, hex digest]`: the files the VMs may run.
    pub filehashes: Vec<(String, String)>,
}

/// What one VM has of its own, recorded at first contact from evidence that verified
/// against the policy, and required unchanged afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The TPM's attestation key and boot counters (a reboot raises `reset_count`).
    pub tpm: Option<TpmPolicy>,
    /// SHA-256 of the simulated TEE's public key (SPKI DER).
    #[serde(default, with = "opt_digest", skip_serializing_if = "Option::is_none")]
    pub tee_key_sha256: Option<[u8; 32]>,
    /// The SEV-SNP chip id, hex (64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip_id: Option<String>,
}

impl Identity {
    /// Field-by-field differences from `now` (empty when equal), each naming the field
    /// and both values, for a check's detail.
    pub fn differences(&self, now: &Identity) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.tpm, &now.tpm) {
            (Some(a), Some(b)) => {
                if (a.reset_count, a.restart_count) != (b.reset_count, b.restart_count) {
                    out.push(format!(
                        "TPM resetCount/restartCount enrolled {}/{}, now {}/{} (a reboot)",
                        a.reset_count, a.restart_count, b.reset_count, b.restart_count
                    ));
                }
                if a.ak_sha256 != b.ak_sha256 {
                    out.push(format!(
                        "TPM key enrolled sha256 {}, now {}",
                        short(&a.ak_sha256),
                        short(&b.ak_sha256)
                    ));
                }
            }
            (None, None) => {}
            (Some(_), None) => out.push("a TPM was enrolled, the evidence has none".into()),
            (None, Some(_)) => out.push("no TPM was enrolled, the evidence has one".into()),
        }
        if self.tee_key_sha256 != now.tee_key_sha256 {
            out.push(format!(
                "simulated TEE key enrolled {}, now {}",
                self.tee_key_sha256.as_ref().map_or("none".into(), short),
                now.tee_key_sha256.as_ref().map_or("none".into(), short)
            ));
        }
        if self.chip_id != now.chip_id {
            let s = |c: &Option<String>| {
                c.as_deref()
                    .map_or("none".to_string(), |c| c.chars().take(16).collect())
            };
            out.push(format!(
                "chip id enrolled {}…, now {}…",
                s(&self.chip_id),
                s(&now.chip_id)
            ));
        }
        out
    }

    /// One line for a check's detail: what this identity pins.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.tpm {
            Some(t) => parts.push(format!(
                "TPM key sha256 {}, resetCount {}, restartCount {}",
                short(&t.ak_sha256),
                t.reset_count,
                t.restart_count
            )),
            None => parts.push("no TPM".into()),
        }
        if let Some(k) = &self.tee_key_sha256 {
            parts.push(format!("simulated TEE key sha256 {}", short(k)));
        }
        if let Some(c) = &self.chip_id {
            parts.push(format!(
                "chip id {}…",
                c.chars().take(16).collect::<String>()
            ));
        }
        parts.join(", ")
    }
}

fn short(d: &[u8; 32]) -> String {
    hex::encode(&d[..8])
}

/// Why a policy was refused, or could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The bytes are not JSON of the policy's shape; holds the parser's error.
    #[error("not a verigate policy: {0}")]
    Json(#[from] serde_json::Error),
    /// The `version` field is not [`POLICY_VERSION`].
    #[error("policy version {0} is not supported (this verigate reads version {POLICY_VERSION})")]
    UnsupportedVersion(u32),
    /// `tee_policy` with the VM's identity put back is not a valid snapshot `tee_policy`.
    #[error("tee_policy: {0}")]
    TeePolicy(String),
    /// The own endpoint's name, to be dropped, is not in the snapshot's manifest.
    #[error("the own endpoint's name `{0}` is not in the snapshot's manifest (give the name verigated serves its API on)")]
    NoSuchDomain(String),
    /// The rest of the policy, checked as a snapshot, was refused.
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
}

impl Policy {
    /// The policy of the image `snapshot` was taken of: everything but the per-VM
    /// identity and `domain`, the own endpoint's name.
    pub fn from_snapshot(snapshot: &Snapshot, domain: &str) -> Result<Policy, PolicyError> {
        let domain = domain.to_ascii_lowercase();
        if snapshot.manifest.get(&domain).is_none() {
            return Err(PolicyError::NoSuchDomain(domain));
        }
        let serde_json::Value::Object(mut tee_policy) = serde_json::to_value(&snapshot.tee_policy)?
        else {
            return Err(PolicyError::TeePolicy("not an object".into()));
        };
        for f in PER_VM_TEE_FIELDS {
            tee_policy.remove(f);
        }
        let shared: Vec<ManifestEntry> = snapshot
            .manifest
            .entries()
            .iter()
            .filter(|e| e.name != domain)
            .cloned()
            .collect();
        Ok(Policy {
            version: POLICY_VERSION,
            created_at: snapshot.created_at.clone(),
            tee_policy,
            tpm: snapshot.tpm_policy.is_some(),
            ima: snapshot.ima.clone(),
            manifest: Manifest::new(shared)
                .map_err(|e| PolicyError::TeePolicy(format!("manifest: {e}")))?,
            filehashes: snapshot.filehashes.clone(),
        })
    }

    /// Parses and checks a policy from untrusted bytes (a file the user passed): its
    /// shape, its version, and that it gives a valid snapshot for some identity.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, PolicyError> {
        if bytes.len() > crate::snapshot::MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                len: bytes.len(),
                max: crate::snapshot::MAX_SNAPSHOT_BYTES,
            }
            .into());
        }
        let p: Policy = serde_json::from_slice(bytes)?;
        if p.version != POLICY_VERSION {
            return Err(PolicyError::UnsupportedVersion(p.version));
        }
        for f in PER_VM_TEE_FIELDS {
            if p.tee_policy.contains_key(f) {
                return Err(PolicyError::TeePolicy(format!(
                    "`{f}` belongs to one VM, not in a policy"
                )));
            }
        }
        // Every field checked as the snapshot that a VM with a full identity gives.
        let probe = Identity {
            tpm: None,
            tee_key_sha256: Some([0; 32]),
            chip_id: None,
        };
        let snapshot = p.snapshot_for(&probe, None)?;
        let json = serde_json::to_vec(&snapshot)?;
        Snapshot::from_json(&json)?;
        Ok(p)
    }

    /// The policy as pretty JSON, as `verigate policy from-snapshot` writes it.
    pub fn to_json_pretty(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// The snapshot of one VM of this image: the policy plus the VM's `identity`, and
    /// `own` (the own endpoint's manifest entry, from the VM's verified evidence) unless
    /// the policy already lists that name, whose entry then wins. A TPM that the policy
    /// requires and the identity lacks stays required: the snapshot then pins an
    /// all-zero key that no evidence matches.
    pub fn snapshot_for(
        &self,
        identity: &Identity,
        own: Option<&ManifestEntry>,
    ) -> Result<Snapshot, PolicyError> {
        let mut tee = self.tee_policy.clone();
        if tee.get("kind").and_then(serde_json::Value::as_str) == Some("simulated") {
            let key = identity.tee_key_sha256.unwrap_or([0; 32]);
            tee.insert(
                "public_key_sha256".into(),
                serde_json::Value::String(hex::encode(key)),
            );
        }
        let tee_policy: TeePolicy = serde_json::from_value(serde_json::Value::Object(tee))
            .map_err(|e| PolicyError::TeePolicy(e.to_string()))?;
        let tpm_policy = match (self.tpm, &identity.tpm) {
            (true, Some(t)) => Some(t.clone()),
            (true, None) => Some(TpmPolicy {
                reset_count: 0,
                restart_count: 0,
                ak_sha256: [0; 32],
            }),
            (false, _) => None,
        };
        let mut entries = self.manifest.entries().to_vec();
        if let Some(own) = own {
            if self.manifest.get(&own.name).is_none() {
                entries.push(own.clone());
            }
        }
        Ok(Snapshot {
            version: crate::snapshot::SNAPSHOT_VERSION,
            created_at: self.created_at.clone(),
            tee_policy,
            tpm_policy,
            ima: self.ima.clone(),
            manifest: Manifest::new(entries)
                .map_err(|e| PolicyError::TeePolicy(format!("manifest: {e}")))?,
            filehashes: self.filehashes.clone(),
        })
    }
}

/// `Option<[u8; 32]>` as hex or absent.
mod opt_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::hex_digest::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => {
                let bytes = hex::decode(&s).map_err(serde::de::Error::custom)?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| serde::de::Error::custom("expected 32 bytes of hex"))?;
                Ok(Some(arr))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::ManifestEntry;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: crate::snapshot::SNAPSHOT_VERSION,
            created_at: "2026-12-04T00:00:00Z".into(),
            tee_policy: TeePolicy::Simulated {
                measurement: vec![0x5a; 48],
                policy: 0x30000,
                public_key_sha256: [7; 32],
            },
            tpm_policy: Some(TpmPolicy {
                reset_count: 3,
                restart_count: 0,
                ak_sha256: [9; 32],
            }),
            ima: Some(ImaPolicy {
                pcr: 10,
                hash_algorithm: crate::ima::HashAlg::Sha256,
            }),
            manifest: Manifest::new(vec![
                ManifestEntry {
                    name: "vm.example.com".into(),
                    cert_sha256: [1; 32],
                    spki_sha256: [0x54; 32],
                },
                ManifestEntry {
                    name: "a.example.com".into(),
                    cert_sha256: [2; 32],
                    spki_sha256: [0x57; 32],
                },
            ])
            .unwrap(),
            filehashes: vec![("/usr/bin/app".into(), hex::encode([3; 32]))],
        }
    }

    #[test]
    fn a_policy_drops_the_identity_and_gives_it_back() {
        let s = snapshot();
        let p = Policy::from_snapshot(&s, "VM.example.com").unwrap();
        let json = String::from_utf8(p.to_json_pretty().unwrap()).unwrap();
        for gone in [
            hex::encode([7; 32]),
            hex::encode([9; 32]),
            hex::encode([1; 32]),
        ] {
            assert!(!json.contains(&gone), "{json}");
        }
        assert!(
            !json.contains("vm.example.com") && !json.contains("reset_count"),
            "{json}"
        );
        assert_eq!(Policy::from_json(json.as_bytes()).unwrap(), p);

        // The policy plus the VM's own identity and endpoint is the snapshot again.
        let identity = Identity {
            tpm: s.tpm_policy.clone(),
            tee_key_sha256: Some([7; 32]),
            chip_id: None,
        };
        let own = s.manifest.get("vm.example.com").cloned();
        assert_eq!(p.snapshot_for(&identity, own.as_ref()).unwrap(), s);
    }

    #[test]
    fn a_required_tpm_stays_required_without_an_identity() {
        let p = Policy::from_snapshot(&snapshot(), "vm.example.com").unwrap();
        let s = p.snapshot_for(&Identity::default(), None).unwrap();
        assert_eq!(s.tpm_policy.unwrap().ak_sha256, [0; 32]);
    }

    #[test]
    fn bad_policies_are_refused_naming_the_problem() {
        assert!(matches!(
            Policy::from_snapshot(&snapshot(), "other.example.com"),
            Err(PolicyError::NoSuchDomain(_))
        ));
        let p = Policy::from_snapshot(&snapshot(), "vm.example.com").unwrap();
        let good = serde_json::to_value(&p).unwrap();

        let mut v = good.clone();
        v["version"] = 2.into();
        assert!(matches!(
            Policy::from_json(v.to_string().as_bytes()),
            Err(PolicyError::UnsupportedVersion(2))
        ));
        let mut v = good.clone();
        v["tee_policy"]["public_key_sha256"] = hex::encode([7; 32]).into();
        assert!(matches!(
            Policy::from_json(v.to_string().as_bytes()),
            Err(PolicyError::TeePolicy(_))
        ));
        let mut v = good.clone();
        v["tee_policy"]["measurement"] = "5a5a".into();
        let e = Policy::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("measurement"), "{e}");
        let mut v = good.clone();
        v["tee_policy"]["kind"] = "quantum".into();
        assert!(Policy::from_json(v.to_string().as_bytes()).is_err());
        let mut v = good.clone();
        v["filehashes"] = serde_json::json!([["/x", "zz"]]);
        assert!(Policy::from_json(v.to_string().as_bytes()).is_err());
        let mut v = good;
        v["reset_count"] = 1.into();
        assert!(matches!(
            Policy::from_json(v.to_string().as_bytes()),
            Err(PolicyError::Json(_))
        ));
        assert!(Policy::from_json(b"\xff not json").is_err());
    }

    #[test]
    fn identity_differences_name_the_field() {
        let a = Identity {
            tpm: Some(TpmPolicy {
                reset_count: 1,
                restart_count: 0,
                ak_sha256: [1; 32],
            }),
            tee_key_sha256: Some([2; 32]),
            chip_id: Some("ab".repeat(64)),
        };
        assert!(a.differences(&a).is_empty());
        let mut rebooted = a.clone();
        if let Some(t) = &mut rebooted.tpm {
            t.reset_count = 2;
        }
        let d = a.differences(&rebooted);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("reboot"), "{d:?}");
        let mut other = a.clone();
        other.chip_id = Some("cd".repeat(64));
        other.tee_key_sha256 = None;
        assert_eq!(a.differences(&other).len(), 2);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), a);
    }
}
