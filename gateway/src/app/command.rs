//! Running a service manager's command line tool (`supervisorctl`, `systemctl`) with a
//! deadline, keeping what it printed for error messages.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::AppError;

/// The most of a tool's output kept for an error message.
const MAX_OUTPUT_IN_ERROR: usize = 4096;

/// What a tool printed and how it ended.
pub(crate) struct Output {
    /// The command line, for messages.
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, shortened for an error message.
    pub fn printed(&self) -> String {
        let mut text = format!("{}{}", self.stdout, self.stderr).trim().to_string();
        if text.len() > MAX_OUTPUT_IN_ERROR {
            let mut cut = MAX_OUTPUT_IN_ERROR;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [...]");
        }
        if text.is_empty() {
            "(printed nothing)".into()
        } else {
            text
        }
    }

    /// An error naming the command, its exit status and what it printed.
    pub fn failed(&self) -> AppError {
        AppError::CommandFailed {
            command: self.command.clone(),
            status: match self.code {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".into(),
            },
            output: self.printed(),
        }
    }
}

/// Runs `program args...` with stdin closed, waiting at most `timeout`; the process is
/// killed if it takes longer.
pub(crate) async fn run(
    program: &Path,
    args: &[OsString],
    timeout: Duration,
) -> Result<Output, AppError> {
    let command = std::iter::once(program.as_os_str())
        .chain(args.iter().map(std::ffi::OsString::as_os_str))
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| AppError::Spawn {
            command: command.clone(),
            source,
        })?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(AppError::Spawn { command, source });
        }
        Err(_) => {
            return Err(AppError::Timeout {
                command,
                after: timeout,
            })
        }
    };
    Ok(Output {
        command,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
