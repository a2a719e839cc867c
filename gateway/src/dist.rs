//! The files the Debian package ships beside the binary that come from its clap
//! definitions: one man page per (sub)command and the bash, zsh and fish completions.
//! They are generated from the parser itself (`verigated dist-files DIR`, hidden, run by
//! `scripts/package.sh`), so they cannot drift from what the binary accepts.

use std::path::Path;

/// The shells whose completions the package installs.
pub const SHELLS: [clap_complete::Shell; 3] = [
    clap_complete::Shell::Bash,
    clap_complete::Shell::Zsh,
    clap_complete::Shell::Fish,
];

/// Writes `DIR/man/*.1` and `DIR/completions/{bin,_bin,bin.fish}` for `command`.
pub fn write(command: clap::Command, bin: &str, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(command.clone(), &man)?;
    let mut command = command;
    for shell in SHELLS {
        clap_complete::generate_to(shell, &mut command, bin, &completions)?;
    }
    Ok(())
}
