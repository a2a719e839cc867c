//! A real `supervisord -n -c CONF` for app-control tests: its own config, unix socket,
//! pidfile and logs in a temporary directory, one `[program:NAME]` running a given
//! command. It is stopped (by its PID, never by name) when the guard drops, and its
//! program with it: supervisord stops its children when it receives SIGTERM; a SIGKILL
//! follows if it does not exit in time.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ChildGuard;

/// How long [`Supervisord::start`] waits for `supervisorctl status` to answer.
const READY_PATIENCE: Duration = Duration::from_secs(30);

/// True when `supervisord` and `supervisorctl` run here; tests hand it to
/// [`crate::require`].
pub fn available() -> bool {
    // Looked up on PATH: `supervisorctl --version` exits 2 on supervisor 4.2, so running
    // the programs would wrongly skip every test.
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["supervisord", "supervisorctl"]
        .iter()
        .all(|program| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What the one program of the test's supervisord runs.
#[derive(Debug, Clone)]
pub struct Program {
    /// `[program:NAME]`.
    pub name: String,
    /// The `command=` line, passed to supervisord as written (it splits it shell-like).
    pub command: String,
    /// `startsecs=`: how long the program must stay up to count as RUNNING.
    pub startsecs: u32,
    /// `autostart=`.
    pub autostart: bool,
    /// `directory=`, when set.
    pub directory: Option<PathBuf>,
}

impl Program {
    /// A program started at once that counts as RUNNING after one second.
    pub fn new(name: &str, command: &str) -> Program {
        Program {
            name: name.to_string(),
            command: command.to_string(),
            startsecs: 1,
            autostart: true,
            directory: None,
        }
    }
}

/// A running supervisord; stopped when dropped.
pub struct Supervisord {
    child: ChildGuard,
    conf: PathBuf,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Supervisord {
    /// Writes the config, starts `supervisord -n -c CONF` and waits until
    /// `supervisorctl status` answers.
    pub fn start(program: &Program) -> anyhow::Result<Supervisord> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("supervisor.sock");
        let conf = dir.path().join("supervisord.conf");
        let mut text = String::new();
        let d = dir.path().display();
        writeln!(
            text,
            "[unix_http_server]\nfile={}\nchmod=0700\n",
            socket.display()
        )?;
        writeln!(
            text,
            "[supervisord]\nnodaemon=true\nuser=root\npidfile={d}/supervisord.pid\n\
             logfile={d}/supervisord.log\nchildlogdir={d}\n"
        )?;
        writeln!(
            text,
            "[rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        )?;
        writeln!(
            text,
            "[supervisorctl]\nserverurl=unix://{}\n",
            socket.display()
        )?;
        writeln!(
            text,
            "[program:{}]\ncommand={}\nautostart={}\nautorestart=false\nstartsecs={}\n\
             startretries=0\nstopwaitsecs=5\nstopasgroup=true\nkillasgroup=true\n\
             stdout_logfile={d}/{}.out\nstderr_logfile={d}/{}.err",
            program.name,
            program.command,
            program.autostart,
            program.startsecs,
            program.name,
            program.name
        )?;
        if let Some(directory) = &program.directory {
            writeln!(text, "directory={}", directory.display())?;
        }
        std::fs::write(&conf, text)?;

        let log = File::create(dir.path().join("supervisord.stdout"))?;
        let mut cmd = Command::new("supervisord");
        cmd.arg("-n")
            .arg("-c")
            .arg(&conf)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = ChildGuard::spawn("supervisord", &mut cmd)?;

        let deadline = Instant::now() + READY_PATIENCE;
        loop {
            if !child.is_running() {
                anyhow::bail!(
                    "supervisord exited at start: {}",
                    std::fs::read_to_string(dir.path().join("supervisord.stdout"))
                        .unwrap_or_default()
                );
            }
            let out = Command::new("supervisorctl")
                .arg("-c")
                .arg(&conf)
                .arg("status")
                .output()?;
            // Exit status 3 means "a program is not running", which is an answer too; 4
            // means no connection yet (the socket is not there).
            let answered = matches!(out.status.code(), Some(0 | 3));
            if answered {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "supervisorctl status did not answer within {READY_PATIENCE:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Supervisord {
            child,
            conf,
            socket,
            dir,
        })
    }

    /// The config file, for `supervisorctl -c`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The unix socket, for `supervisorctl -s unix://...`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://` URL of the socket.
    pub fn server_url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// supervisord's temporary directory (logs, config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// supervisord's own PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// supervisord's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("supervisord.log")).unwrap_or_default()
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        // SIGTERM lets supervisord stop its program (stopasgroup) before it exits; the
        // guard's SIGKILL then only reaps, or ends a supervisord that hung.
        self.child.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
