//! The runtime-data JSON of an HCL report: the vTPM's attestation key `HCLAkPub` (an RSA
//! JWK), the `user-data` the guest wrote to NV index 0x01400002 (hex), and the VM's
//! configuration as the paravisor reports it.
//!
//! The JSON is covered by the hardware report (its hash is the start of report_data), so
//! it is read leniently: fields this code does not use are ignored rather than refused,
//! since the paravisor adds some over time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

/// The `kid` of the vTPM attestation key in `keys`.
pub const HCL_AK_KID: &str = "HCLAkPub";

/// Why the runtime data is unusable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// Not JSON of the expected shape; holds the parser's message.
    #[error("runtime data is not the expected JSON: {0}")]
    Json(String),
    /// `keys` holds no key with kid `HCLAkPub`.
    #[error("runtime data has no key with kid \"HCLAkPub\"")]
    NoAkPub,
    /// `keys` holds more than one `HCLAkPub`.
    #[error("runtime data has more than one key with kid \"HCLAkPub\"")]
    DuplicateAkPub,
    /// The `HCLAkPub` JWK is not a usable RSA key.
    #[error("HCLAkPub: {0}")]
    Jwk(String),
    /// `user-data` is missing.
    #[error("runtime data has no \"user-data\"")]
    NoUserData,
    /// `user-data` is not hex.
    #[error("runtime data \"user-data\" is not hex: {0}")]
    UserDataHex(String),
}

/// The runtime data, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeData {
    /// The vTPM attestation key (persisted at 0x81000003) that signs quotes.
    pub ak_pub: rsa::RsaPublicKey,
    /// The bytes the guest wrote to NV index 0x01400002 (decoded from hex).
    pub user_data: Vec<u8>,
    /// The `vm-configuration` object as the paravisor reported it, if any (secure boot,
    /// TPM enabled, console enabled...).
    pub vm_configuration: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Wire {
    keys: Vec<Jwk>,
    #[serde(rename = "user-data")]
    user_data: Option<String>,
    #[serde(rename = "vm-configuration")]
    vm_configuration: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses the runtime-data JSON.
pub fn parse(json: &[u8]) -> Result<RuntimeData, RuntimeError> {
    let wire: Wire = serde_json::from_slice(json).map_err(|e| RuntimeError::Json(e.to_string()))?;
    let mut aks = wire
        .keys
        .iter()
        .filter(|k| k.kid.as_deref() == Some(HCL_AK_KID));
    let ak = aks.next().ok_or(RuntimeError::NoAkPub)?;
    if aks.next().is_some() {
        return Err(RuntimeError::DuplicateAkPub);
    }
    let ak_pub = rsa_from_jwk(ak)?;
    let user_data = wire.user_data.ok_or(RuntimeError::NoUserData)?;
    let user_data =
        hex::decode(user_data.trim()).map_err(|e| RuntimeError::UserDataHex(e.to_string()))?;
    Ok(RuntimeData {
        ak_pub,
        user_data,
        vm_configuration: wire.vm_configuration,
    })
}

fn rsa_from_jwk(jwk: &Jwk) -> Result<rsa::RsaPublicKey, RuntimeError> {
    if jwk.kty.as_deref() != Some("RSA") {
        return Err(RuntimeError::Jwk(format!(
            "kty is {:?}, not \"RSA\"",
            jwk.kty.as_deref().unwrap_or("missing")
        )));
    }
    let part = |name: &str, v: &Option<String>| -> Result<rsa::BigUint, RuntimeError> {
        let text = v
            .as_deref()
            .ok_or_else(|| RuntimeError::Jwk(format!("no \"{name}\"")))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|e| RuntimeError::Jwk(format!("\"{name}\" is not base64url: {e}")))?;
        Ok(rsa::BigUint::from_bytes_be(&bytes))
    };
    rsa::RsaPublicKey::new(part("n", &jwk.n)?, part("e", &jwk.e)?)
        .map_err(|e| RuntimeError::Jwk(format!("not an RSA public key: {e}")))
}

/// The key as PEM SubjectPublicKeyInfo, as `verigate report verify` prints it.
pub fn ak_pub_pem(key: &rsa::RsaPublicKey) -> String {
    use rsa::pkcs8::EncodePublicKey as _;
    key.to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap_or_else(|e| format!("(cannot encode: {e})"))
}
