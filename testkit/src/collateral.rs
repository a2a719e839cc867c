//! Stand-ins for the collateral services verigated asks, which cannot be reached from a
//! test: Intel's PCS (v4 API, served as a PCCS, which also serves the root CA CRL), AMD's
//! KDS, and Azure's instance metadata service's certification endpoint (THIM). Each is a real HTTP/1.1 server on a loopback port serving recorded
//! responses from `shared/evidence` at the paths and with the headers of the real
//! service (the issuer chains percent-encoded in their response headers); any other
//! path is a 404. Every request path is recorded, so a test sees what was asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::serve::Server;

/// One recorded response.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// A running stand-in service.
pub struct StandIn {
    server: Server,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn answer(
    mut tcp: tokio::net::TcpStream,
    routes: Arc<HashMap<String, Recorded>>,
    requests: Arc<Mutex<Vec<String>>>,
    required_header: Option<&'static str>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if let Ok(mut r) = requests.lock() {
        r.push(path.to_string());
    }
    // IMDS refuses a request without `Metadata: true` (so that a forwarded request from
    // outside the VM cannot reach it), with 400 and this body.
    let has_header = |h: &str| text.lines().any(|l| l.trim_end().eq_ignore_ascii_case(h));
    if let Some(h) = required_header.filter(|h| !has_header(h)) {
        let body =
            format!(r#"{{"error":"Bad request. Required metadata header not specified ({h})"}}"#);
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
        return;
    }
    let response = match routes.get(path).filter(|_| method == "GET") {
        Some(rec) => {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n",
                rec.body.len()
            );
            for (k, v) in &rec.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&rec.body);
            bytes
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    let _ = tcp.write_all(&response).await;
    let _ = tcp.shutdown().await;
}

impl StandIn {
    /// Serves `routes` (path with query → response) on a free loopback port.
    pub fn start(name: &str, routes: HashMap<String, Recorded>) -> std::io::Result<StandIn> {
        StandIn::start_requiring(name, routes, None)
    }

    /// [`StandIn::start`] for a service that answers 400 to a request without the header
    /// line `required_header` (IMDS: `Metadata: true`).
    pub fn start_requiring(
        name: &str,
        routes: HashMap<String, Recorded>,
        required_header: Option<&'static str>,
    ) -> std::io::Result<StandIn> {
        let routes = Arc::new(routes);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let server = Server::start(name, move |tcp| {
            answer(tcp, routes.clone(), seen.clone(), required_header)
        })?;
        Ok(StandIn { server, requests })
    }

    /// The base URL to configure (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The paths asked so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, as the PCS encodes
/// its issuer-chain headers.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The PCS responses for a quote whose PCK CA is `ca` and FMSPC `fmspc` (uppercase hex),
/// split from a recorded collateral JSON (dcap-qvl's `QuoteCollateralV3`: PEM chains, hex
/// CRLs and signatures, the signed JSON objects as text). The root CA CRL is served as a
/// PCCS serves it (hex text).
pub fn pcs_routes(
    collateral_json: &[u8],
    fmspc: &str,
    ca: &str,
) -> anyhow::Result<HashMap<String, Recorded>> {
    let c: serde_json::Value = serde_json::from_slice(collateral_json)?;
    let field = |k: &str| -> anyhow::Result<String> {
        Ok(c.get(k)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("collateral has no `{k}`"))?
            .to_string())
    };
    let chain = |header: &str, k: &str| -> anyhow::Result<Vec<(String, String)>> {
        Ok(vec![(header.to_string(), percent_encode(&field(k)?))])
    };
    let mut routes = HashMap::new();
    routes.insert(
        format!("/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
        Recorded {
            headers: chain("SGX-PCK-CRL-Issuer-Chain", "pck_crl_issuer_chain")?,
            body: hex::decode(field("pck_crl")?)?,
        },
    );
    routes.insert(
        format!("/tdx/certification/v4/tcb?fmspc={fmspc}"),
        Recorded {
            headers: chain("TCB-Info-Issuer-Chain", "tcb_info_issuer_chain")?,
            body: format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                field("tcb_info")?,
                field("tcb_info_signature")?
            )
            .into_bytes(),
        },
    );
    routes.insert(
        "/tdx/certification/v4/qe/identity?update=standard".to_string(),
        Recorded {
            headers: chain(
                "SGX-Enclave-Identity-Issuer-Chain",
                "qe_identity_issuer_chain",
            )?,
            body: format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                field("qe_identity")?,
                field("qe_identity_signature")?
            )
            .into_bytes(),
        },
    );
    routes.insert(
        "/sgx/certification/v4/rootcacrl".to_string(),
        Recorded {
            headers: Vec::new(),
            body: field("root_ca_crl")?.into_bytes(),
        },
    );
    Ok(routes)
}

/// The KDS responses for one VCEK: `vcek_path` (`/vcek/v1/{product}/{hwid}?...`) serves
/// the VCEK's DER, `/vcek/v1/{product}/cert_chain` the ASK and ARK as PEM.
pub fn kds_routes(
    vcek_path: &str,
    vcek_der: &[u8],
    product: &str,
    ask_ark_pem: &[u8],
) -> HashMap<String, Recorded> {
    let mut routes = HashMap::new();
    routes.insert(
        vcek_path.to_string(),
        Recorded {
            headers: vec![("Content-Type".into(), "application/x-x509-ca-cert".into())],
            body: vcek_der.to_vec(),
        },
    );
    routes.insert(
        format!("/vcek/v1/{product}/cert_chain"),
        Recorded {
            headers: vec![("Content-Type".into(), "application/x-pem-file".into())],
            body: ask_ark_pem.to_vec(),
        },
    );
    routes
}

/// The header line IMDS requires on every request.
pub const IMDS_HEADER: &str = "Metadata: true";
/// The path of Azure's certification endpoint (THIM) on IMDS.
pub const THIM_PATH: &str = "/metadata/THIM/amd/certification";

/// The THIM answer for one VCEK: JSON with the field names Azure documents for
/// `GET /metadata/THIM/amd/certification` (`vcekCert` and `certificateChain` as PEM,
/// `tcbm` the TCB the VCEK is for, `cacheControl` in seconds). No recording of a THIM
/// answer exists in `shared/evidence`, so this shape is taken from Azure's documentation
/// and its public clients; the certificates in it are the recorded ones.
pub fn thim_routes(vcek_pem: &str, chain_pem: &str, tcbm: &str) -> HashMap<String, Recorded> {
    let body = serde_json::json!({
        "vcekCert": vcek_pem,
        "tcbm": tcbm,
        "certificateChain": chain_pem,
        "cacheControl": "86400",
    })
    .to_string();
    let mut routes = HashMap::new();
    routes.insert(
        THIM_PATH.to_string(),
        Recorded {
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: body.into_bytes(),
        },
    );
    routes
}
