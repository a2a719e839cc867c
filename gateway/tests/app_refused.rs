//! Refused control requests change nothing: with a real program run by the standalone
//! manager, `init_as`/`restart_as` with no credential configured, no header, a wrong
//! token, or a configured digest one bit off the token's leave `app.conf` and the running
//! program (same PID) alone, and are logged as refused without the token or the
//! configuration; the right token then goes through and the restarted program reads the
//! new configuration.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::app::auth::credentials_from;
use gateway::app::{
    ApiAuthConfig, AppController, AuthError, ControlError, ServiceManager, ServiceState,
    Standalone, APP_CONF_NAME,
};
use gateway::config::control::StandaloneSettings;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use sha2::{Digest, Sha256};

const PATIENCE: Duration = Duration::from_secs(30);
const TOKEN: &str = "tok-7f3a9c-operator";

const APP_SCRIPT: &str = r#"#!/bin/sh
{ echo "pid=$$"; cat "$1"; } > "$2.tmp.$$" && mv "$2.tmp.$$" "$2"
exec sleep 1000
"#;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn wait_file(path: &Path, expected: &[u8]) {
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read(path).unwrap_or_default() != expected {
        assert!(
            Instant::now() < deadline,
            "{} never became {:?}",
            path.display(),
            String::from_utf8_lossy(expected)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn refused_requests_change_nothing() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );

    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let conf = storage.join(APP_CONF_NAME);
    std::fs::write(&conf, b"original\n").unwrap();
    let seen = dir.path().join("seen");
    let script = dir.path().join("app.sh");
    std::fs::write(&script, APP_SCRIPT).unwrap();
    let mut settings = StandaloneSettings::new("/bin/sh");
    settings.args = vec![
        OsString::from(&script),
        OsString::from(&conf),
        OsString::from(&seen),
    ];
    settings.grace_period = Duration::from_secs(5);
    let controller = AppController::new(
        Standalone::spawn("app", settings),
        Some(storage.clone()),
        1 << 20,
    );
    let deadline = Instant::now() + PATIENCE;
    let pid = loop {
        let s = controller.manager().status().await.unwrap();
        if let (ServiceState::Running, Some(pid)) = (s.state, s.pid) {
            break pid;
        }
        assert!(Instant::now() < deadline, "never running: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_file(&seen, format!("pid={pid}\noriginal\n").as_bytes()).await;

    let right_digest: [u8; 32] = Sha256::digest(TOKEN.as_bytes()).into();
    let mut one_bit_off = right_digest;
    one_bit_off[31] ^= 0x01;
    let configured = ApiAuthConfig {
        token_digests: vec![right_digest],
        client_ca: None,
    };
    let unconfigured = ApiAuthConfig::default();
    let off_by_one_bit = ApiAuthConfig {
        token_digests: vec![one_bit_off],
        client_ca: None,
    };
    let none = HeaderMap::new();
    let wrong = bearer("tok-7f3a9c-operatoR");
    let right = bearer(TOKEN);
    let cases: [(&str, &HeaderMap, &ApiAuthConfig, AuthError); 4] = [
        (
            "unconfigured",
            &right,
            &unconfigured,
            AuthError::Unconfigured,
        ),
        ("no header", &none, &configured, AuthError::Missing),
        ("wrong token", &wrong, &configured, AuthError::WrongToken),
        (
            "digest one bit off",
            &right,
            &off_by_one_bit,
            AuthError::WrongToken,
        ),
    ];
    let new_config = b"replaced = \"secret-config-bytes\"\n";
    for (what, headers, auth, expected) in cases {
        let creds = credentials_from(headers, None);
        let err = controller
            .init_as(&creds, auth, new_config)
            .await
            .unwrap_err();
        match &err {
            ControlError::Refused(e) => assert_eq!(e, &expected, "{what}"),
            other => panic!("{what}: {other}"),
        }
        assert!(matches!(err.http_status(), 401 | 403), "{what}");
        let err = controller.restart_as(&creds, auth).await.unwrap_err();
        assert!(matches!(err, ControlError::Refused(_)), "{what}: {err}");
        assert_eq!(std::fs::read(&conf).unwrap(), b"original\n", "{what}");
        let status = controller.manager().status().await.unwrap();
        assert_eq!(status.pid, Some(pid), "{what}: the program was restarted");
    }
    let names: Vec<_> = std::fs::read_dir(&storage).unwrap().collect();
    assert_eq!(names.len(), 1, "only app.conf in the storage folder");

    // The right token goes through.
    let creds = credentials_from(&right, None);
    let status = controller
        .init_as(&creds, &configured, new_config)
        .await
        .unwrap();
    let new_pid = status.pid.unwrap();
    assert_ne!(new_pid, pid);
    let mut expected = format!("pid={new_pid}\n").into_bytes();
    expected.extend_from_slice(new_config);
    wait_file(&seen, &expected).await;
    let status = controller.status_as(&creds, &configured).await.unwrap();
    assert_eq!(status.pid, Some(new_pid));

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert_eq!(logs.matches("outcome=\"refused\"").count(), 8, "{logs}");
    assert!(logs.contains("outcome=\"ok\""), "{logs}");
    assert!(!logs.contains(TOKEN), "token in the log: {logs}");
    assert!(!logs.contains("operatoR"), "wrong token in the log: {logs}");
    assert!(
        !logs.contains("secret-config-bytes"),
        "config in the log: {logs}"
    );

    controller.into_manager().shutdown().await.unwrap();
}
