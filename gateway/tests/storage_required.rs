//! With `[storage]` set, verigated refuses to start on a data dir that is not the
//! mounted container, before it binds or writes anything (it would otherwise make a new
//! certificate on the bare disk). The mounted case needs device-mapper, which this
//! machine lacks: `tmpfs::is_mounted_from` is tested on mountinfo text instead.

use std::process::Command;

#[test]
fn verigated_refuses_a_data_dir_that_is_not_the_mounted_volume() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let config = dir.path().join("verigated.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = [\"127.0.0.1:0\"]\ndomain = \"vm.example.com\"\n\
             data_dir = \"{}\"\n[attestation]\ntee = \"none\"\ntpm = \"none\"\n\
             [storage]\nsize = \"64M\"\n",
            data.display()
        ),
    )
    .expect("config");
    // The file itself is valid: check-config accepts it.
    let checked = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(&config)
        .output()
        .expect("verigated");
    assert!(checked.status.success(), "{checked:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("verigated");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not the mounted encrypted volume") && err.contains("storage open"),
        "{err}"
    );
    // Nothing was written to the bare data dir (no certificate made).
    assert_eq!(std::fs::read_dir(&data).expect("read").count(), 0);
}
