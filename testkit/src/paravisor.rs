//! A stand-in for Azure's paravisor, which cannot run here: it gives swtpm the vTPM
//! interface an Azure confidential VM's guest sees (ARCHITECTURE.md, "Azure confidential
//! VMs"), so that verigated's Azure collection runs against a real TPM.
//!
//! - [`provision`] plays the paravisor at boot: it persists an RSA-2048 restricted
//!   signing key at 0x81000003 (the HCL AK, made with tpm2-tools), and defines NV index
//!   0x01400001 holding an HCL report for user-data of zeros. NV index 0x01400002 is left
//!   undefined; a guest defines it, as Azure's own tooling does.
//! - [`ParavisorStandIn`] plays the paravisor at run time: a TPM-protocol proxy in front
//!   of swtpm (raw TPM 2.0 commands on one port, swtpm's control channel relayed on the
//!   next, as the tss2 `swtpm` TCTI expects). When a `TPM2_NV_Write` to 0x01400002
//!   succeeds, it makes a new HCL report carrying the written bytes as `user-data` and
//!   writes it into 0x01400001 before the guest sees the answer, as the paravisor does.
//!
//! - [`TdQuoteStandIn`] plays Azure's quote service (`POST /acc/tdquote` on IMDS) for a
//!   TDX VM.
//!
//! What cannot be real: on TDX, the TD report is a stand-in (only its REPORTDATA means
//! anything) and its "quote" is a recorded real TD quote whose REPORTDATA is overwritten
//! with the TD report's, so its signature no longer holds (a verifier refuses it there).
//! On SEV-SNP, the report inside the HCL report is signed by a
//! **stand-in VCEK**, a P-384 key made here with a self-signed certificate named `SEV-VCEK`,
//! not by an AMD chip; a verifier refuses it at the chain to AMD's pinned root, and tests
//! assert exactly that. Real HCL reports (`shared/evidence/azure`) prove the chain.
//!
//! libtpms caps an NV index at 2048 bytes, below Azure's 2600: the stand-in's index is
//! 2048 bytes, which holds its report because the runtime data carries `HCLAkPub` but
//! not Azure's `HCLEkPub` (the verifier does not use it).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use attest::tee::azure::hcl::HardwareKind;
use attest::tee::azure::HCL_AK_HANDLE;
use attest::tpm::collect::Tpm;
use attest::tpm::nv::{AZURE_HCL_REPORT_INDEX, AZURE_USER_DATA_INDEX};
use attest::tpm::quote::{AkKey, AkPublic};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p384::ecdsa::signature::Signer as _;
use rsa::traits::PublicKeyParts as _;
use sha2::Digest as _;

use crate::swtpm::Swtpm;

/// The stand-in's NV index size: libtpms's MAX_NV_INDEX_SIZE (Azure's index is 2600).
pub const STAND_IN_INDEX_SIZE: usize = 2048;
/// The launch measurement the stand-in's SEV-SNP reports carry.
pub const STAND_IN_MEASUREMENT: [u8; 48] = [0x4d; 48];

const TPM2_CC_NV_WRITE: u32 = 0x0000_0137;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_RH_OWNER: u32 = 0x4000_0001;
const TPM_RS_PW: u32 = 0x4000_0009;
/// Bytes per NV_Write the proxy sends (below swtpm's MAX_NV_BUFFER_SIZE of 1024).
const NV_CHUNK: usize = 512;

/// Makes HCL reports as the paravisor would, signed by the stand-in VCEK.
pub struct HclMaker {
    hardware: HardwareKind,
    vcek_key: p384::ecdsa::SigningKey,
    /// The stand-in VCEK's self-signed certificate (CN `SEV-VCEK`), PEM: what a THIM
    /// stand-in serves for this "chip".
    pub vcek_pem: String,
    /// The HCL AK's `TPMT_PUBLIC`, as verigated reads it from 0x81000003.
    pub ak_public: Vec<u8>,
    ak_jwk: serde_json::Value,
}

impl HclMaker {
    /// The HCL report carrying `user_data`, zero-padded to [`STAND_IN_INDEX_SIZE`].
    pub fn report(&self, user_data: &[u8; 64]) -> Vec<u8> {
        let runtime = serde_json::json!({
            "keys": [self.ak_jwk],
            "vm-configuration": {
                "console-enabled": false,
                "secure-boot": true,
                "tpm-enabled": true,
                "vmUniqueId": "stand-in-paravisor",
            },
            "user-data": hex::encode_upper(user_data),
        })
        .to_string()
        .into_bytes();
        let json_len = u32::try_from(runtime.len()).expect("small JSON");
        let data_size = 20 + json_len;
        let mut out = Vec::with_capacity(STAND_IN_INDEX_SIZE);
        out.extend_from_slice(b"HCLA");
        for v in [2u32, 32 + 1184 + data_size, 2, 0, 0, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut report_data = [0u8; 64];
        report_data[..32].copy_from_slice(&sha2::Sha256::digest(&runtime));
        let report_type = match self.hardware {
            HardwareKind::SevSnp => {
                out.extend_from_slice(&self.snp_report(&report_data));
                2
            }
            HardwareKind::Tdx => {
                out.extend_from_slice(&td_report(&report_data));
                out.extend_from_slice(&[0; 1184 - 1024]);
                4
            }
        };
        for v in [data_size, 1, report_type, 1, json_len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&runtime);
        assert!(
            out.len() <= STAND_IN_INDEX_SIZE,
            "the stand-in HCL report ({} bytes) must fit libtpms's NV index",
            out.len()
        );
        out.resize(STAND_IN_INDEX_SIZE, 0);
        out
    }

    /// A version-2 SEV-SNP report (1184 bytes) for `report_data`, signed by the stand-in
    /// VCEK: guest policy without debug, VMPL 0, SIGNING_KEY 0 (VCEK).
    fn snp_report(&self, report_data: &[u8; 64]) -> Vec<u8> {
        let mut r = vec![0u8; 1184];
        let mut put = |at: usize, bytes: &[u8]| r[at..at + bytes.len()].copy_from_slice(bytes);
        put(0x00, &2u32.to_le_bytes());
        // Bit 17 is reserved and must be set; bit 16 allows SMT; bit 19 (debug) is clear.
        put(0x08, &0x3_0000u64.to_le_bytes());
        put(0x34, &1u32.to_le_bytes());
        put(0x50, report_data);
        put(0x90, &STAND_IN_MEASUREMENT);
        put(0x180, &[3, 0, 0, 0, 0, 0, 8, 115]);
        put(0x1A0, &[0x5a; 64]);
        let signature: p384::ecdsa::Signature = self.vcek_key.sign(&r[..0x2A0]);
        let (sr, ss) = signature.split_bytes();
        // The report stores r and s little-endian in 72-byte fields.
        for (i, b) in sr.iter().rev().enumerate() {
            r[0x2A0 + i] = *b;
        }
        for (i, b) in ss.iter().rev().enumerate() {
            r[0x2A0 + 72 + i] = *b;
        }
        r
    }
}

/// A TD report (1024 bytes) with `report_data` as REPORTDATA (offset 128). The TDX module
/// MACs a real one for this CPU; nothing checks the stand-in's other bytes, which are a
/// fixed pattern.
fn td_report(report_data: &[u8; 64]) -> Vec<u8> {
    let mut r = vec![0x7d; 1024];
    r[128..192].copy_from_slice(report_data);
    r
}

fn tpm2(tpm: &Swtpm, dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {} (Debian package tpm2-tools)", args[0]))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Plays the paravisor of an SEV-SNP VM at boot on `tpm` (see the module
/// documentation); returns the maker of its HCL reports. Nothing may be connected to
/// `tpm` meanwhile.
pub fn provision(tpm: &Swtpm) -> anyhow::Result<HclMaker> {
    provision_as(tpm, HardwareKind::SevSnp)
}

/// [`provision`] for a VM on `hardware`: on TDX the HCL report holds a stand-in TD
/// report, whose quote comes from [`TdQuoteStandIn`].
pub fn provision_as(tpm: &Swtpm, hardware: HardwareKind) -> anyhow::Result<HclMaker> {
    let dir = tempfile::tempdir()?;
    tpm2(
        tpm,
        dir.path(),
        &[
            "tpm2_createprimary",
            "-C",
            "e",
            "-g",
            "sha256",
            "-G",
            "rsa2048:rsassa-sha256:null",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda",
            "-c",
            "ak.ctx",
        ],
    )?;
    let handle = format!("{HCL_AK_HANDLE:#010x}");
    tpm2(
        tpm,
        dir.path(),
        &["tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", &handle],
    )?;
    // No resource manager: the tools leave the transient copy loaded.
    tpm2(tpm, dir.path(), &["tpm2_flushcontext", "-t"])?;

    let mut t = Tpm::open(&tpm.tcti())?;
    let ak_public = t.existing_attestation_key(HCL_AK_HANDLE, "made just above")?;
    let AkKey::Rsa(rsa) = AkPublic::from_tpmt(&ak_public)?.key else {
        bail!("the HCL AK is not RSA");
    };
    let ak_jwk = serde_json::json!({
        "kid": "HCLAkPub",
        "key_ops": ["sign"],
        "kty": "RSA",
        "e": URL_SAFE_NO_PAD.encode(rsa.e().to_bytes_be()),
        "n": URL_SAFE_NO_PAD.encode(rsa.n().to_bytes_be()),
    });
    let (vcek_key, vcek_pem) = stand_in_vcek()?;
    let maker = HclMaker {
        hardware,
        vcek_key,
        vcek_pem,
        ak_public,
        ak_jwk,
    };
    if t.nv_exists(AZURE_USER_DATA_INDEX)? {
        bail!("NV index 0x01400002 exists already: provision a fresh swtpm");
    }
    t.nv_define(AZURE_HCL_REPORT_INDEX, STAND_IN_INDEX_SIZE)?;
    t.nv_write(AZURE_HCL_REPORT_INDEX, &maker.report(&[0; 64]))?;
    Ok(maker)
}

/// A P-384 key and a self-signed certificate for it named `SEV-VCEK`, as AMD names a
/// VCEK: the stand-in chip.
fn stand_in_vcek() -> anyhow::Result<(p384::ecdsa::SigningKey, String)> {
    use p384::pkcs8::DecodePrivateKey as _;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let key = p384::ecdsa::SigningKey::from_pkcs8_der(&pair.serialize_der())
        .map_err(|e| anyhow::anyhow!("stand-in VCEK key: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "SEV-VCEK");
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "stand-in paravisor, not AMD",
    );
    let cert = params.self_signed(&pair)?;
    Ok((key, cert.pem()))
}

/// The paravisor at run time: a proxy in front of swtpm (see the module documentation),
/// stopped on drop.
pub struct ParavisorStandIn {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl ParavisorStandIn {
    /// Serves `tpm` through the proxy, making HCL reports with `maker`.
    pub fn start(tpm: &Swtpm, maker: Arc<HclMaker>) -> anyhow::Result<ParavisorStandIn> {
        let (data, ctrl) = bind_pair()?;
        let port = data.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let upstream: SocketAddr = ([127, 0, 0, 1], tpm.port()).into();
        let upstream_ctrl: SocketAddr = ([127, 0, 0, 1], tpm.ctrl_port()).into();
        let s = stop.clone();
        std::thread::spawn(move || {
            accept_loop(&data, &s, |client| {
                let maker = maker.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_commands(client, upstream, &maker) {
                        eprintln!("paravisor stand-in: {e:#}");
                    }
                });
            });
        });
        let s = stop.clone();
        std::thread::spawn(move || {
            accept_loop(&ctrl, &s, |client| {
                if let Ok(server) = TcpStream::connect(upstream_ctrl) {
                    relay(client, server);
                }
            });
        });
        Ok(ParavisorStandIn { port, stop })
    }

    /// The TCTI reaching swtpm through the stand-in.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for ParavisorStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both accept loops so they see the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = TcpStream::connect(("127.0.0.1", self.port + 1));
    }
}

/// Two listeners on consecutive loopback ports (the TCTI's control port is the next).
fn bind_pair() -> anyhow::Result<(TcpListener, TcpListener)> {
    for _ in 0..100 {
        let data = TcpListener::bind("127.0.0.1:0")?;
        let port = data.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(ctrl) = TcpListener::bind(("127.0.0.1", port + 1)) {
            return Ok((data, ctrl));
        }
    }
    bail!("no two consecutive free ports on 127.0.0.1")
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, mut each: impl FnMut(TcpStream)) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(c) = conn {
            each(c);
        }
    }
}

fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b, &mut a);
        let _ = a.shutdown(Shutdown::Write);
    });
}

/// One TPM command or response, read whole (its header gives its size).
fn read_message(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut msg = vec![0u8; 10];
    s.read_exact(&mut msg)?;
    let size = u32::from_be_bytes([msg[2], msg[3], msg[4], msg[5]]) as usize;
    if !(10..=1 << 20).contains(&size) {
        return Err(std::io::Error::other(format!(
            "TPM message of {size} bytes"
        )));
    }
    msg.resize(size, 0);
    s.read_exact(&mut msg[10..])?;
    Ok(msg)
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The data of a `TPM2_NV_Write` to 0x01400002 at offset 0, if `command` is one.
fn user_data_write(command: &[u8]) -> Option<[u8; 64]> {
    if be_u32(command, 6)? != TPM2_CC_NV_WRITE || be_u32(command, 14)? != AZURE_USER_DATA_INDEX {
        return None;
    }
    let auth_size = be_u32(command, 18)? as usize;
    let at = 22 + auth_size;
    let len = usize::from(be_u16(command, at)?);
    let data = command.get(at + 2..at + 2 + len)?;
    let offset = be_u16(command, at + 2 + len)?;
    (offset == 0).then(|| data.try_into().ok()).flatten()
}

/// `TPM2_NV_Write` of `data` at `offset` of 0x01400001, owner-authorized with the
/// empty password.
fn nv_write_command(data: &[u8], offset: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&TPM2_CC_NV_WRITE.to_be_bytes());
    body.extend_from_slice(&TPM_RH_OWNER.to_be_bytes());
    body.extend_from_slice(&AZURE_HCL_REPORT_INDEX.to_be_bytes());
    // A password session: handle, empty nonce, attributes 0, empty password.
    body.extend_from_slice(&9u32.to_be_bytes());
    body.extend_from_slice(&TPM_RS_PW.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0]);
    body.extend_from_slice(&u16::try_from(data.len()).expect("chunk").to_be_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(&offset.to_be_bytes());
    let mut out = TPM_ST_SESSIONS.to_be_bytes().to_vec();
    out.extend_from_slice(&u32::try_from(body.len() + 6).expect("small").to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn serve_commands(
    mut client: TcpStream,
    upstream: SocketAddr,
    maker: &HclMaker,
) -> anyhow::Result<()> {
    let mut tpm = TcpStream::connect(upstream)?;
    loop {
        // The guest closed its connection (or sent garbage): this connection is done.
        let Ok(command) = read_message(&mut client) else {
            return Ok(());
        };
        tpm.write_all(&command)?;
        let response = read_message(&mut tpm)?;
        if let (Some(user_data), Some(0)) = (user_data_write(&command), be_u32(&response, 6)) {
            let report = maker.report(&user_data);
            for (i, chunk) in report.chunks(NV_CHUNK).enumerate() {
                let offset = u16::try_from(i * NV_CHUNK)?;
                tpm.write_all(&nv_write_command(chunk, offset))?;
                let answer = read_message(&mut tpm)?;
                if be_u32(&answer, 6) != Some(0) {
                    bail!("writing the HCL report: TPM answered {answer:02x?}");
                }
            }
        }
        client.write_all(&response)?;
    }
}

/// Offset of REPORTDATA in a TDX quote v4: the 48-byte header, then the TD report body
/// up to REPORTDATA (TEE_TCB_SVN .. RTMR3, 520 bytes).
pub const TD_QUOTE_REPORT_DATA_OFFSET: usize = 48 + 520;

/// Azure's quote service as IMDS serves it, `POST /acc/tdquote` with
/// `{"report": base64url(TD report)}` and `Metadata: true`, answered
/// `{"quote": base64url(quote)}`. The quote is `recorded` (a real TD quote) with its
/// REPORTDATA replaced by the TD report's: the link the Attester checks holds, the
/// quote's signature does not. Every TD report asked for is recorded.
pub struct TdQuoteStandIn {
    server: crate::serve::Server,
    asked: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl TdQuoteStandIn {
    /// Serves quotes made from `recorded` on a free loopback port.
    pub fn start(recorded: Vec<u8>) -> anyhow::Result<TdQuoteStandIn> {
        anyhow::ensure!(
            recorded.len() >= TD_QUOTE_REPORT_DATA_OFFSET + 64,
            "not a TD quote"
        );
        let recorded = Arc::new(recorded);
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        let server = crate::serve::Server::start("tdquote-stand-in", move |tcp| {
            answer_td_quote(tcp, recorded.clone(), seen.clone())
        })?;
        Ok(TdQuoteStandIn { server, asked })
    }

    /// The base URL to configure as `azure_imds_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The TD reports asked for so far.
    pub fn asked(&self) -> Vec<Vec<u8>> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

async fn answer_td_quote(
    mut tcp: tokio::net::TcpStream,
    recorded: Arc<Vec<u8>>,
    asked: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_len, body_len) = loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while got.len() < head_len + body_len {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&got[..head_len]).to_string();
    let report = serde_json::from_slice::<serde_json::Value>(&got[head_len..head_len + body_len])
        .ok()
        .and_then(|j| j["report"].as_str().map(str::to_string))
        .and_then(|r| URL_SAFE_NO_PAD.decode(r.trim_end_matches('=')).ok());
    let (status, body) = match report {
        Some(report)
            if head.starts_with("POST /acc/tdquote ")
                && head.lines().any(|l| l.trim_end() == "Metadata: true")
                && report.len() == 1024 =>
        {
            let mut quote = recorded.to_vec();
            quote[TD_QUOTE_REPORT_DATA_OFFSET..TD_QUOTE_REPORT_DATA_OFFSET + 64]
                .copy_from_slice(&report[128..192]);
            if let Ok(mut a) = asked.lock() {
                a.push(report);
            }
            (
                "200 OK",
                serde_json::json!({ "quote": URL_SAFE_NO_PAD.encode(&quote) }).to_string(),
            )
        }
        _ => ("400 Bad Request", r#"{"error":"bad request"}"#.to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nv_write_command_is_recognized_only_for_the_user_data_index() {
        let mut cmd = nv_write_command(&[7; 64], 0);
        assert_eq!(
            user_data_write(&cmd),
            None,
            "0x01400001 is not the user-data"
        );
        cmd[14..18].copy_from_slice(&AZURE_USER_DATA_INDEX.to_be_bytes());
        assert_eq!(user_data_write(&cmd), Some([7; 64]));
        let at_offset = {
            let mut c = nv_write_command(&[7; 64], 8);
            c[14..18].copy_from_slice(&AZURE_USER_DATA_INDEX.to_be_bytes());
            c
        };
        assert_eq!(user_data_write(&at_offset), None);
        assert_eq!(user_data_write(&cmd[..30]), None, "truncated");
    }
}
