//! `verigated check-config FILE`: exit 0 on a valid file (the committed example among
//! them), non-zero on an invalid one with every problem named by field, value and fix.

use std::path::Path;
use std::process::Command;

fn check(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verigated.toml");
    std::fs::write(&path, text).unwrap();
    check_file(&path)
}

fn check_file(path: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HEAD: &str =
    "[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"vm.example.com\"\ndata_dir = \"/nonexistent-verigate\"\n";

#[test]
fn the_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/verigated.toml");
    let (ok, stdout, stderr) = check_file(&example);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("valid (2 route(s), domain vm.example.com"),
        "{stdout}"
    );
}

#[test]
fn every_problem_is_named() {
    let text = format!(
        "{HEAD}client_hello_timeout = \"5 seconds\"\n\
         [[route]]\nsni = \"a.example.com\"\nbackend = \"127.0.0.1:1\"\n\
         [[route]]\nsni = \"A.example.com\"\nbackend = \"127.0.0.1:2\"\n\
         [[route]]\nsni = \"b.example.com\"\nbackend = \"8443\"\n\
         [[route]]\nsni = \"c.*.example.com\"\nbackend = \"127.0.0.1:3\"\n"
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    for expected in [
        "4 problem(s)",
        "gateway.client_hello_timeout: expected a duration such as \"5s\" or \"250ms\", got `5 seconds`",
        "route[1].sni: `a.example.com` is already the sni of route[0]",
        "route[2].backend: expected host:port, got `8443`",
        "route[3].sni: wildcard in the wrong place in `c.*.example.com`",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
}

/// A route's sni follows the rule the ClientHello parser applies to what clients send:
/// an address is never an SNI (RFC 6066), so a route for one could never match and is
/// refused with the reason rather than accepted and silently dead.
#[test]
fn an_address_as_a_route_sni_is_refused() {
    let text = format!(
        "{HEAD}[[route]]\nsni = \"10.0.0.1\"\nbackend = \"127.0.0.1:1\"\n\
         [[route]]\nsni = \"*.10.0.0.1\"\nbackend = \"127.0.0.1:2\"\n"
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    for expected in [
        "2 problem(s)",
        "route[0].sni: expected a DNS name such as \"app.example.com\", got `10.0.0.1`: an IP \
         address literal",
        "route[1].sni: expected a DNS name such as \"app.example.com\", got `*.10.0.0.1`",
        "the route would never match",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn unknown_field_and_bad_toml_are_located() {
    let (ok, _, stderr) = check(&format!("{HEAD}acept_proxy_protocol = true\n"));
    assert!(!ok);
    assert!(stderr.contains("acept_proxy_protocol"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    let (ok, _, stderr) = check("[gateway\n");
    assert!(!ok);
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn unreadable_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "garbage").unwrap();
    std::fs::write(dir.path().join("key.pem"), "garbage").unwrap();
    let text = format!(
        "[gateway]\nlisten = [\"127.0.0.1:8443\"]\ndomain = \"vm.example.com\"\ndata_dir = \"{}\"\n\
         ssl_certificate = \"cert.pem\"\nssl_private_key = \"key.pem\"\n",
        dir.path().display()
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    assert!(stderr.contains("gateway.ssl_certificate:"), "{stderr}");
    assert!(
        stderr.contains("cert.pem: no `CERTIFICATE` PEM block"),
        "{stderr}"
    );
    assert!(stderr.contains("gateway.ssl_private_key:"), "{stderr}");
}

#[test]
fn missing_file_is_an_error() {
    let (ok, _, stderr) = check_file(Path::new("/nonexistent/verigated.toml"));
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/verigated.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn bad_listen_address_refuses_to_start() {
    // A valid file whose port is taken: verigated says which address and exits 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verigated.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = [\"{}\"]\ndomain = \"vm.example.com\"\ndata_dir = \"{}\"\n",
            taken.local_addr().unwrap(),
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.listen: cannot listen on 127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn bad_connection_bounds_are_named_in_one_pass() {
    let text = format!(
        "{HEAD}accept_proxy_protocol = true\nmax_connections_per_source = 0\n\
         backend_first_byte_timeout = \"0s\"\n\
         [api]\nmax_connections = -1\nidle_timeout = \"0s\"\nsend_timeout = 30\n\
         http2_max_concurrent_streams = 500\n"
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    for expected in [
        "7 problem(s)",
        "gateway.accept_proxy_protocol: true would trust a PROXY header from any peer",
        "gateway.max_connections_per_source: expected a number of connections of 1..",
        "gateway.backend_first_byte_timeout: must be more than zero",
        "api.max_connections: expected a number of connections of 1..",
        "api.idle_timeout: must be more than zero",
        "api.send_timeout: expected a string with a unit such as \"30s\"",
        "api.http2_max_concurrent_streams: expected 1..=128 streams such as 16, got 500",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    let (ok, _, stderr) = check(&format!(
        "{HEAD}accept_proxy_protocol_from = [\"10.0.0.0/8\", \"192.0.2.1/24\", \"lb\"]\n"
    ));
    assert!(!ok);
    assert!(
        stderr.contains("gateway.accept_proxy_protocol_from[1]: `192.0.2.1/24` has bits set after the prefix: write `192.0.2.0/24`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gateway.accept_proxy_protocol_from[2]: expected an address block"),
        "{stderr}"
    );
}

#[test]
fn a_cosmian_agent_toml_names_each_equivalent() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cosmian-agent.toml");
    let (ok, _, stderr) = check_file(&agent);
    assert!(!ok, "an agent.toml is not a verigated.toml");
    for expected in [
        "a Cosmian VM agent.toml, not a verigated.toml",
        "agent.data_storage = \"/var/lib/cosmian_vm/data\" -> [gateway] data_dir = \"/var/lib/cosmian_vm/data\"",
        "agent.host = \"0.0.0.0\" -> [gateway] listen = [\"0.0.0.0:5555\"]",
        "agent.port = 5555 -> [gateway] listen = [\"0.0.0.0:5555\"]",
        "agent.ssl_certificate = \"/var/lib/cosmian_vm/data/cert.pem\" -> [gateway] ssl_certificate = \"/var/lib/cosmian_vm/data/cert.pem\"",
        "agent.ssl_private_key = \"/var/lib/cosmian_vm/data/key.pem\" -> [gateway] ssl_private_key = \"/var/lib/cosmian_vm/data/key.pem\"",
        "agent.tpm_device = \"/dev/tpmrm0\" -> [attestation] tpm = \"device:/dev/tpmrm0\"",
        "app.service_type = \"supervisor\" -> [app] service_type = \"supervisor\"",
        "app.service_name = \"cosmian_kms\" -> [app] service_name = \"cosmian_kms\"",
        "app.app_storage = \"/var/lib/cosmian_vm/app\" -> [app] app_storage = \"/var/lib/cosmian_vm/app\"",
        "also needed: [gateway] domain",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
    // A verigated.toml with a typo is still told about the typo, not about Cosmian VM.
    let (ok, _, stderr) = check(&format!("{HEAD}agent = 1\n"));
    assert!(!ok);
    assert!(!stderr.contains("Cosmian"), "{stderr}");
}

#[test]
fn acme_problems_are_named_and_a_good_section_passes() {
    let text = format!(
        "{HEAD}\n[gateway.acme]\ndirectory = \"http://acme.example/dir\"\n\
         contact = [\"ops@example.com\"]\nrenew_before = \"a month\"\n"
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    for expected in [
        "gateway.acme.directory: expected an https:// URL with a host, got `http://acme.example/dir`",
        "gateway.acme.contact[0]: expected \"mailto:name@example.com\", got `ops@example.com`",
        "gateway.acme.terms_of_service_agreed: must be true",
        "gateway.acme.renew_before: expected a duration",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
    let text = format!(
        "{HEAD}\n[gateway.acme]\ndirectory = \"https://acme-v02.api.letsencrypt.org/directory\"\n\
         contact = [\"mailto:ops@example.com\"]\nterms_of_service_agreed = true\n\
         renew_before = \"30d\"\n"
    );
    let (ok, _, stderr) = check(&text);
    assert!(ok, "{stderr}");
}
