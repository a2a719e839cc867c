//! The hash algorithms verigate knows, one enum for every place that names one: IMA file
//! digests and template hashes, TPM PCR banks, quote signature schemes and key names.
//!
//! Names are the kernel's and tpm2-tools' (`sha1`, `sha256`, ...), as they appear in
//! `d-ng` fields, in `*_runtime_measurements_sha256` file names, in PCR bank keys and in
//! verigate's JSON; the TPM knows them by their `TPM_ALG_ID`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `TPM_ALG_SHA1`.
pub(crate) const TPM_ALG_SHA1: u16 = 0x0004;
/// `TPM_ALG_SHA256`.
pub(crate) const TPM_ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_SHA384`.
pub(crate) const TPM_ALG_SHA384: u16 = 0x000c;
/// `TPM_ALG_SHA512`.
pub(crate) const TPM_ALG_SHA512: u16 = 0x000d;

/// A hash algorithm: of a file digest, a template hash, a PCR bank or a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    /// SHA-1 (`TPM_ALG_SHA1`, 20 bytes): IMA's original template hash and the legacy PCR bank.
    Sha1,
    /// SHA-256 (`TPM_ALG_SHA256`, 32 bytes).
    Sha256,
    /// SHA-384 (`TPM_ALG_SHA384`, 48 bytes).
    Sha384,
    /// SHA-512 (`TPM_ALG_SHA512`, 64 bytes).
    Sha512,
}

impl HashAlg {
    /// Every supported algorithm, in increasing digest size.
    pub const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    /// The digest of `data` under this algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The name in JSON, in the kernel's files and for tpm2-tools: `sha1`, `sha256`, ...
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// The algorithm whose digest is `size` bytes long, if any (each supported size is
    /// unique, which lets the ASCII IMA parser tell a `_sha256` list from a SHA-1 one).
    pub fn from_size(size: usize) -> Option<HashAlg> {
        HashAlg::ALL.into_iter().find(|a| a.size() == size)
    }

    /// From a `TPM_ALG_ID`; `None` for any other algorithm.
    pub fn from_tpm(id: u16) -> Option<HashAlg> {
        match id {
            TPM_ALG_SHA1 => Some(HashAlg::Sha1),
            TPM_ALG_SHA256 => Some(HashAlg::Sha256),
            TPM_ALG_SHA384 => Some(HashAlg::Sha384),
            TPM_ALG_SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The `TPM_ALG_ID`.
    pub fn tpm_id(self) -> u16 {
        match self {
            HashAlg::Sha1 => TPM_ALG_SHA1,
            HashAlg::Sha256 => TPM_ALG_SHA256,
            HashAlg::Sha384 => TPM_ALG_SHA384,
            HashAlg::Sha512 => TPM_ALG_SHA512,
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hash algorithm name that verigate does not support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown hash algorithm {0:?} (expected sha1, sha256, sha384 or sha512)")]
pub struct UnknownHashAlg(pub String);

impl FromStr for HashAlg {
    type Err = UnknownHashAlg;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashAlg::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownHashAlg(s.to_owned()))
    }
}

#[cfg(feature = "tpm-collect")]
impl From<HashAlg> for tss_esapi::interface_types::algorithm::HashingAlgorithm {
    fn from(alg: HashAlg) -> Self {
        use tss_esapi::interface_types::algorithm::HashingAlgorithm;
        match alg {
            HashAlg::Sha1 => HashingAlgorithm::Sha1,
            HashAlg::Sha256 => HashingAlgorithm::Sha256,
            HashAlg::Sha384 => HashingAlgorithm::Sha384,
            HashAlg::Sha512 => HashingAlgorithm::Sha512,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_sizes_and_json_agree() {
        for alg in HashAlg::ALL {
            assert_eq!(alg.to_string().parse::<HashAlg>(), Ok(alg));
            assert_eq!(alg.digest(b"x").len(), alg.size());
            assert_eq!(HashAlg::from_size(alg.size()), Some(alg));
            assert_eq!(HashAlg::from_tpm(alg.tpm_id()), Some(alg));
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{}\"", alg.name()));
            assert_eq!(serde_json::from_str::<HashAlg>(&json).unwrap(), alg);
        }
        assert_eq!(HashAlg::from_tpm(0x0010), None, "TPM_ALG_NULL");
        assert!("md5".parse::<HashAlg>().is_err());
        assert!("SHA256".parse::<HashAlg>().is_err());
    }
}
