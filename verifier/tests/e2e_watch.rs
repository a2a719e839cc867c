//! `verigate watch` end to end: a simulated confidential VM (verigated, its own swtpm
//! and IMA log) watched every second. The metrics on the listen address show the
//! verdict and, once the first round has replayed the whole log, that later evidence
//! carries only the IMA entries added since (incremental IMA, measured in bytes: none,
//! then exactly the one new entry). An executable added to the log is reported by the
//! first round that starts after the change (a log line, `--on-change` with the VM and
//! verdict in its environment, the failing check as a metric label). Needs verigated
//! built beside verigate (`cargo build -p gateway`), swtpm and tpm2-tools.

use attest::ima::{binary, HashAlg, ImaEntry};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::process::ChildGuard;
use testkit::vm::{Binaries, Vm, VmOptions};

/// `GET /metrics` on `addr`, or an empty string while it does not answer.
fn metrics(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls the metrics until `ready` holds for them; panics after a minute.
fn wait_for(
    addr: SocketAddr,
    log: &std::path::Path,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics(addr);
        if ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; metrics:\n{text}\nwatch log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_reports_a_change_in_the_next_round_and_fetches_only_new_ima_entries() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &[]) else {
        return;
    };
    let mut vm = Vm::start(&bins, VmOptions::new(&["a.example.com"]));
    let snap = vm.snapshot("snap.json");
    let dir = vm.dir.path().to_path_buf();
    std::fs::write(
        dir.join("fleet.toml"),
        format!(
            "[[vm]]\nname = \"vm1\"\nurl = \"{}\"\nsnapshot = \"{}\"\n\
             applications = [\"a.example.com\"]\nconnect_to = [\"{}\"]\n",
            vm.url(),
            snap.display(),
            vm.addr
        ),
    )
    .unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], testkit::ports::free_port()));
    let out = std::fs::File::create(dir.join("watch.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_verigate"));
    cmd.args(["--allow-insecure-tls", "watch", "--fleet", "fleet.toml"])
        .args(["--interval", "1s", "--listen", &listen.to_string()])
        .args(["--allow-simulated-tee", "--on-change"])
        .arg("echo \"$VERIGATE_VM $VERIGATE_PREVIOUS $VERIGATE_VERDICT $VERIGATE_FAILED_CHECKS\" >> changes.log")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let watch = ChildGuard::spawn("verigate watch", &mut cmd).expect("watch starts");

    // Two rounds: the first replays the whole log, the second gets no IMA entry.
    let text = wait_for(listen, &dir.join("watch.log"), "two rounds", |t| {
        sample(t, "verigate_watch_rounds_total").is_some_and(|r| r >= 2.0)
    });
    assert_eq!(
        sample(&text, "verigate_vm_verdict{vm=\"vm1\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "verigate_vm_ima_entries_replayed{vm=\"vm1\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "verigate_vm_ima_log_bytes{vm=\"vm1\"}"),
        Some(0.0),
        "the second round sends no IMA entry: {text}"
    );
    assert!(sample(&text, "verigate_vm_last_pass_timestamp_seconds{vm=\"vm1\"}").is_some());

    // An executable runs: IMA logs it and extends PCR 10.
    let miner = ImaEntry::measure("/usr/local/bin/miner", HashAlg::Sha256, b"miner").unwrap();
    vm.measure(miner.clone());
    let back = sample(&metrics(listen), "verigate_watch_rounds_total").unwrap_or(0.0);
    let failing = "verigate_vm_failing_check{vm=\"vm1\",check=\"ima entries\"}";
    let text = wait_for(listen, &dir.join("watch.log"), "the miner reported", |t| {
        sample(t, failing) == Some(1.0)
    });
    let seen = sample(&text, "verigate_watch_rounds_total").unwrap();
    // The round running when verigated came back may have started before it did; the
    // next one starts after the change and reports it.
    assert!(seen <= back + 2.0, "rounds {back} -> {seen}: {text}");
    assert_eq!(sample(&text, "verigate_vm_verdict{vm=\"vm1\"}"), Some(0.0));
    // Only the new entry crossed the network: the replay resumed after the 3 entries.
    assert_eq!(
        sample(&text, "verigate_vm_ima_log_bytes{vm=\"vm1\"}"),
        Some(binary::serialize(&[miner]).len() as f64),
        "{text}"
    );
    // --on-change runs beside the watch: give its last run a moment to write.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !std::fs::read_to_string(dir.join("changes.log"))
            .unwrap_or_default()
            .contains("ima entries")
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(watch);

    let changes = std::fs::read_to_string(dir.join("changes.log")).unwrap_or_default();
    let log = std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default();
    eprintln!("changes:\n{changes}\nwatch log:\n{log}");
    assert!(
        changes.lines().next() == Some("vm1 unknown pass "),
        "{changes}"
    );
    assert!(
        changes
            .lines()
            .any(|l| l.starts_with("vm1 pass fail") || l.contains("fail ima entries")),
        "{changes}"
    );
    assert!(changes.contains("ima entries"), "{changes}");
    assert!(log.contains("vm1 unknown -> pass"), "{log}");
    assert!(log.contains("failed ima entries"), "{log}");
}
