//! One structured log line per connection, in JSON with `--log-format json`: each
//! line parses, and carries the client address, SNI, route, bytes each way, duration
//! and outcome.

mod common;

use common::*;

#[test]
fn json_connection_lines_carry_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start_with_args(
        dir.path(),
        "",
        &routes_for(&backends),
        &["--log-format", "json"],
    );
    let mut s = gw.connect(Some("b.example.com")).unwrap();
    let client = s.stream.sock.local_addr().unwrap();
    assert_eq!(s.greeting().unwrap(), "hello from b.example.com");
    drop(s);
    gw.wait_for_log(&format!("\"client\":\"{client}\""));
    let line = gw
        .log()
        .lines()
        .find(|l| l.contains(&format!("\"client\":\"{client}\"")))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["target"], "verigated::connection");
    assert_eq!(v["sni"], "b.example.com");
    assert_eq!(v["route"], "b.example.com");
    assert_eq!(v["backend"], backends[1].addr.to_string());
    assert_eq!(v["outcome"], "closed");
    assert!(v["bytes_in"].as_u64().unwrap() > 0, "{line}");
    assert!(v["bytes_out"].as_u64().unwrap() > 0, "{line}");
    assert!(v["duration_ms"].is_u64(), "{line}");
    // Every line of the log is JSON.
    for l in gw.log().lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}
