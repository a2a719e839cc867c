//! `verigate dist-files DIR` (hidden): the man pages and shell completions the Debian
//! package ships, generated from this binary's clap definitions by `scripts/package.sh`
//! so they cannot drift from what it accepts. verigated has the same command
//! (`gateway::dist`); the verifier does not depend on the gateway, hence two callers of
//! the same two library functions.

use std::path::Path;

/// Writes `DIR/man/*.1` and `DIR/completions/{verigate,_verigate,verigate.fish}`.
pub fn write(command: clap::Command, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(command.clone(), &man)?;
    let mut command = command;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut command, "verigate", &completions)?;
    }
    Ok(())
}
