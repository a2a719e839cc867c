//! Stand-ins for the collateral services verigated asks, which cannot be reached from a
//! test: Intel's PCS (v4 API) with the CRL distribution point of Intel's root CA, a
//! PCCS (the same API, which also serves the root CA CRL itself), AMD's KDS, and Azure's
//! instance metadata service's certification endpoint (THIM). Each is a real HTTP/1.1
//! server on a loopback port serving recorded
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

/// The responses of Intel's PCS v4 for a quote whose PCK CA is `ca` and FMSPC `fmspc`
/// (uppercase hex), split from a recorded collateral JSON (dcap-qvl's
/// `QuoteCollateralV3`: PEM chains, hex CRLs and signatures, the signed JSON objects as
/// text): `pckcrl` (DER), the TDX `tcb` and `qe/identity`, each with its issuer chain
/// percent-encoded in its header. Intel's PCS has no root CA CRL resource: that comes
/// from the root's CRL distribution point ([`root_ca_crl_routes`]).
pub fn intel_pcs_routes(
    collateral_json: &[u8],
    fmspc: &str,
    ca: &str,
) -> anyhow::Result<HashMap<String, Recorded>> {
    let c = RecordedCollateral::parse(collateral_json)?;
    let chain = |header: &str, k: &str| -> anyhow::Result<Vec<(String, String)>> {
        Ok(vec![(header.to_string(), percent_encode(&c.field(k)?))])
    };
    let with_type = |mut headers: Vec<(String, String)>, content_type: &str| {
        headers.push(("Content-Type".to_string(), content_type.to_string()));
        headers
    };
    let mut routes = HashMap::new();
    routes.insert(
        format!("/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
        Recorded {
            headers: with_type(
                chain("SGX-PCK-CRL-Issuer-Chain", "pck_crl_issuer_chain")?,
                "application/pkix-crl",
            ),
            body: hex::decode(c.field("pck_crl")?)?,
        },
    );
    routes.insert(
        format!("/tdx/certification/v4/tcb?fmspc={fmspc}"),
        Recorded {
            headers: with_type(
                chain("TCB-Info-Issuer-Chain", "tcb_info_issuer_chain")?,
                "application/json",
            ),
            body: format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                c.field("tcb_info")?,
                c.field("tcb_info_signature")?
            )
            .into_bytes(),
        },
    );
    routes.insert(
        "/tdx/certification/v4/qe/identity?update=standard".to_string(),
        Recorded {
            headers: with_type(
                chain(
                    "SGX-Enclave-Identity-Issuer-Chain",
                    "qe_identity_issuer_chain",
                )?,
                "application/json",
            ),
            body: format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                c.field("qe_identity")?,
                c.field("qe_identity_signature")?
            )
            .into_bytes(),
        },
    );
    Ok(routes)
}

/// The path of Intel's SGX Root CA CRL at its distribution point
/// (`https://certificates.trustedservices.intel.com/IntelSGXRootCA.der`).
pub const ROOT_CA_CRL_DISTRIBUTION_PATH: &str = "/IntelSGXRootCA.der";

/// The CRL distribution point of Intel's SGX Root CA: the recorded root CA CRL as DER at
/// [`ROOT_CA_CRL_DISTRIBUTION_PATH`].
pub fn root_ca_crl_routes(collateral_json: &[u8]) -> anyhow::Result<HashMap<String, Recorded>> {
    let c = RecordedCollateral::parse(collateral_json)?;
    let mut routes = HashMap::new();
    routes.insert(
        ROOT_CA_CRL_DISTRIBUTION_PATH.to_string(),
        Recorded {
            headers: vec![("Content-Type".into(), "application/pkix-crl".into())],
            body: hex::decode(c.field("root_ca_crl")?)?,
        },
    );
    Ok(routes)
}

/// The responses of a PCCS: Intel's PCS v4 paths ([`intel_pcs_routes`]) plus its own
/// root CA CRL resource, `/sgx/certification/v4/rootcacrl`, as hex text.
pub fn pccs_routes(
    collateral_json: &[u8],
    fmspc: &str,
    ca: &str,
) -> anyhow::Result<HashMap<String, Recorded>> {
    let c = RecordedCollateral::parse(collateral_json)?;
    let mut routes = intel_pcs_routes(collateral_json, fmspc, ca)?;
    routes.insert(
        "/sgx/certification/v4/rootcacrl".to_string(),
        Recorded {
            headers: Vec::new(),
            body: c.field("root_ca_crl")?.into_bytes(),
        },
    );
    Ok(routes)
}

/// A recorded collateral JSON, read field by field.
struct RecordedCollateral(serde_json::Value);

impl RecordedCollateral {
    fn parse(json: &[u8]) -> anyhow::Result<RecordedCollateral> {
        Ok(RecordedCollateral(serde_json::from_slice(json)?))
    }

    fn field(&self, k: &str) -> anyhow::Result<String> {
        Ok(self
            .0
            .get(k)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("collateral has no `{k}`"))?
            .to_string())
    }
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
