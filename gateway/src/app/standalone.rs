//! The `standalone` manager: verigated runs the application itself, for VMs without
//! systemd or supervisord. One tokio task owns the child process and serves requests
//! (start, restart, stop, shutdown) sent over a channel, so that there is never more than
//! one child and every state change happens in one place.
//!
//! The child runs in its own process group, so that stopping it reaches the helpers it
//! started: stop is SIGTERM to the group, then SIGKILL after the grace period. When the
//! program exits on its own it is started again after a backoff that doubles up to a cap
//! (and starts over after a run longer than the cap). Its stdout and stderr are logged
//! line by line (bounded) with the service name. Dropping the [`Standalone`] kills the
//! group, so verigated leaves no orphan behind.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustix::io::Errno;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::control::StandaloneSettings;

use super::{AppError, LastExit, ManagerKind, ServiceManager, ServiceState, ServiceStatus};

/// The longest line of the program's output logged as one event; longer ones are split.
pub const MAX_LOG_LINE: usize = 16 * 1024;

type Reply = oneshot::Sender<Result<ServiceStatus, AppError>>;

enum Request {
    Start(Reply),
    Restart(Reply),
    Stop(Reply),
    Shutdown(Reply),
}

/// State read without asking the task.
struct Shared {
    status: Mutex<ServiceStatus>,
    /// The child's process group (its PID), 0 when none runs; read by `Drop`.
    pgid: AtomicI32,
}

/// A program run and supervised by verigated.
pub struct Standalone {
    name: String,
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Standalone {
    /// Starts supervising (and, with `autostart`, starts the program). Must be called
    /// inside a tokio runtime.
    pub fn spawn(name: &str, settings: StandaloneSettings) -> Standalone {
        let shared = Arc::new(Shared {
            status: Mutex::new(ServiceStatus::new(
                ManagerKind::Standalone,
                name,
                ServiceState::Stopped,
            )),
            pgid: AtomicI32::new(0),
        });
        let (requests, receiver) = mpsc::channel(8);
        let runner = Runner {
            name: name.to_string(),
            want_running: settings.autostart,
            backoff: settings.backoff_initial,
            settings,
            shared: shared.clone(),
            child: None,
            next_start: None,
            last_exit: None,
        };
        let task = tokio::spawn(runner.run(receiver));
        Standalone {
            name: name.to_string(),
            requests,
            shared,
            task: Some(task),
        }
    }

    async fn ask(&self, make: fn(Reply) -> Request) -> Result<ServiceStatus, AppError> {
        let gone = || AppError::ManagerGone {
            service: self.name.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Stops the program (SIGTERM, then SIGKILL after the grace period) and keeps it
    /// stopped until `start` or `restart`.
    pub async fn stop(&self) -> Result<ServiceStatus, AppError> {
        self.ask(Request::Stop).await
    }

    /// Stops the program as [`Standalone::stop`] does and ends the supervising task.
    pub async fn shutdown(mut self) -> Result<ServiceStatus, AppError> {
        let status = self.ask(Request::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        status
    }

    /// The current status without waiting for the supervising task.
    fn snapshot(&self) -> ServiceStatus {
        lock(&self.shared.status).clone()
    }
}

impl ServiceManager for Standalone {
    async fn restart(&self) -> Result<ServiceStatus, AppError> {
        self.ask(Request::Restart).await
    }

    async fn start(&self) -> Result<ServiceStatus, AppError> {
        self.ask(Request::Start).await
    }

    async fn status(&self) -> Result<ServiceStatus, AppError> {
        Ok(self.snapshot())
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        // Without a graceful shutdown, kill the whole group now: this runs even when the
        // runtime is going away and the task will never run again. The task, if it does
        // run, sees the closed channel and reaps the child.
        let pgid = self.shared.pgid.swap(0, Ordering::SeqCst);
        if pgid > 0 {
            signal_group(pgid, Signal::KILL);
        }
    }
}

fn lock(m: &Mutex<ServiceStatus>) -> std::sync::MutexGuard<'_, ServiceStatus> {
    // A panic while holding the lock leaves a status that is still a whole value.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `sig` to every process of the group `pgid`, the group our own child leads.
fn signal_group(pgid: i32, sig: Signal) {
    if pgid <= 1 {
        // kill(0, ..) and kill(-1, ..) would reach our own group or every process.
        return;
    }
    let Some(group) = Pid::from_raw(pgid) else {
        return;
    };
    match kill_process_group(group, sig) {
        // ESRCH: the group is already empty, which is the goal.
        Ok(()) | Err(Errno::SRCH) => {}
        Err(e) => {
            let sig = sig.as_raw();
            tracing::warn!(pgid, sig, error = %e, "could not signal the application's process group");
        }
    }
}

struct Running {
    child: Child,
    pgid: i32,
    started: Instant,
}

enum Event {
    Request(Option<Request>),
    Exited(std::io::Result<ExitStatus>),
    StartDue,
}

/// The supervising task's state.
struct Runner {
    name: String,
    settings: StandaloneSettings,
    shared: Arc<Shared>,
    child: Option<Running>,
    want_running: bool,
    /// The wait before the next start after an exit.
    backoff: Duration,
    next_start: Option<Instant>,
    last_exit: Option<LastExit>,
}

async fn wait_child(child: &mut Option<Running>) -> std::io::Result<ExitStatus> {
    match child {
        Some(running) => running.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

impl Runner {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        if self.want_running {
            if let Err(e) = self.spawn_child() {
                tracing::warn!(service = %self.name, error = %e, "application did not start");
            }
        }
        loop {
            let event = tokio::select! {
                req = requests.recv() => Event::Request(req),
                exit = wait_child(&mut self.child) => Event::Exited(exit),
                () = sleep_until(self.next_start) => Event::StartDue,
            };
            match event {
                Event::Request(None) => {
                    self.want_running = false;
                    self.stop_child().await;
                    return;
                }
                Event::Request(Some(req)) => {
                    if self.handle(req).await {
                        return;
                    }
                }
                Event::Exited(exit) => self.exited(exit),
                Event::StartDue => {
                    self.next_start = None;
                    if self.want_running && self.child.is_none() {
                        if let Err(e) = self.spawn_child() {
                            tracing::warn!(service = %self.name, error = %e, "application did not start");
                        }
                    }
                }
            }
        }
    }

    /// Serves one request; true when the task should end.
    async fn handle(&mut self, req: Request) -> bool {
        let (reply, result, done) = match req {
            Request::Start(reply) => {
                self.want_running = true;
                let result = if self.child.is_some() {
                    Ok(())
                } else {
                    self.fresh_start()
                };
                (reply, result, false)
            }
            Request::Restart(reply) => {
                self.stop_child().await;
                self.want_running = true;
                (reply, self.fresh_start(), false)
            }
            Request::Stop(reply) => {
                self.want_running = false;
                self.next_start = None;
                self.stop_child().await;
                (reply, Ok(()), false)
            }
            Request::Shutdown(reply) => {
                self.want_running = false;
                self.next_start = None;
                self.stop_child().await;
                (reply, Ok(()), true)
            }
        };
        let answer = result.map(|()| lock(&self.shared.status).clone());
        let _ = reply.send(answer);
        done
    }

    /// A start asked for by a caller: the backoff starts over.
    fn fresh_start(&mut self) -> Result<(), AppError> {
        self.backoff = self.settings.backoff_initial;
        self.next_start = None;
        self.spawn_child()
    }

    fn set_status(&self, state: ServiceState, pid: Option<u32>, detail: Option<String>) {
        let mut status = lock(&self.shared.status);
        status.state = state;
        status.pid = pid;
        status.since = Some(SystemTime::now());
        status.last_exit = self.last_exit;
        status.detail = detail;
    }

    fn spawn_child(&mut self) -> Result<(), AppError> {
        let s = &self.settings;
        let mut cmd = Command::new(&s.program);
        cmd.args(&s.args)
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: signals for the group reach its helpers, and a Ctrl-C meant
            // for verigated's terminal does not reach it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &s.working_dir {
            cmd.current_dir(dir);
        }
        // Not root, when configured: in the child, before exec, std sets the group ID,
        // drops every supplementary group (setgroups with none) and then sets the user
        // ID, in that order (after setuid it could no longer change the others).
        if let Some(run_as) = s.run_as {
            cmd.gid(run_as.gid).uid(run_as.uid);
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(source) => {
                let err = AppError::StartFailed {
                    program: s.program.display().to_string(),
                    source,
                };
                self.schedule_retry(Some(err.to_string()));
                return Err(err);
            }
        };
        let pid = child.id();
        let pgid = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        self.shared.pgid.store(pgid, Ordering::SeqCst);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(log_output(self.name.clone(), "stdout", out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(log_output(self.name.clone(), "stderr", err));
        }
        tracing::info!(service = %self.name, pid, "application started");
        self.child = Some(Running {
            child,
            pgid,
            started: Instant::now(),
        });
        self.set_status(ServiceState::Running, pid, None);
        Ok(())
    }

    /// The program ended on its own.
    fn exited(&mut self, exit: std::io::Result<ExitStatus>) {
        let Some(running) = self.child.take() else {
            return;
        };
        self.shared.pgid.store(0, Ordering::SeqCst);
        // Helpers it left behind in its group go with it.
        signal_group(running.pgid, Signal::KILL);
        self.last_exit = exit.as_ref().ok().and_then(last_exit_of);
        let ran = running.started.elapsed();
        tracing::warn!(
            service = %self.name,
            pid = running.pgid,
            exit = %self.last_exit.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into()),
            ran_ms = u64::try_from(ran.as_millis()).unwrap_or(u64::MAX),
            "application exited"
        );
        if ran > self.settings.backoff_max {
            self.backoff = self.settings.backoff_initial;
        }
        if self.want_running {
            self.schedule_retry(None);
        } else {
            self.set_status(ServiceState::Stopped, None, None);
        }
    }

    /// Waits `backoff` before the next start and doubles it (capped).
    fn schedule_retry(&mut self, detail: Option<String>) {
        let wait = self.backoff;
        self.next_start = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(self.settings.backoff_max);
        let detail = detail.unwrap_or_else(|| format!("restarting in {wait:?}"));
        self.set_status(ServiceState::Backoff, None, Some(detail));
    }

    /// SIGTERM to the group, SIGKILL after the grace period, then reap.
    async fn stop_child(&mut self) {
        let Some(mut running) = self.child.take() else {
            if !self.want_running {
                self.set_status(ServiceState::Stopped, None, None);
            }
            return;
        };
        self.set_status(ServiceState::Stopping, running.child.id(), None);
        signal_group(running.pgid, Signal::TERM);
        let exit =
            match tokio::time::timeout(self.settings.grace_period, running.child.wait()).await {
                Ok(exit) => exit,
                Err(_) => {
                    tracing::warn!(
                        service = %self.name,
                        grace_period = ?self.settings.grace_period,
                        "application ignored SIGTERM; sending SIGKILL"
                    );
                    signal_group(running.pgid, Signal::KILL);
                    running.child.wait().await
                }
            };
        self.shared.pgid.store(0, Ordering::SeqCst);
        // Members of the group that survived SIGTERM after the leader exited. The
        // leader was reaped a moment ago; its PID is reused only after the group is
        // empty, which is what this kill achieves anyway.
        signal_group(running.pgid, Signal::KILL);
        self.last_exit = exit.as_ref().ok().and_then(last_exit_of);
        tracing::info!(
            service = %self.name,
            exit = %self.last_exit.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into()),
            "application stopped"
        );
        self.set_status(ServiceState::Stopped, None, None);
    }
}

fn last_exit_of(status: &ExitStatus) -> Option<LastExit> {
    match (status.code(), status.signal()) {
        (Some(code), _) => Some(LastExit::Code(code)),
        (None, Some(sig)) => Some(LastExit::Signal(sig)),
        _ => None,
    }
}

/// Logs each line of `reader` with the service name; a line longer than
/// [`MAX_LOG_LINE`] is logged in pieces, and bytes that are not UTF-8 are replaced.
async fn log_output<R: AsyncRead + Unpin>(service: String, stream: &'static str, reader: R) {
    let result = read_lines(reader, MAX_LOG_LINE, |line| emit(&service, stream, line)).await;
    if let Err(e) = result {
        tracing::debug!(service = %service, stream, error = %e, "output closed");
    }
}

/// Calls `on_line` for each line of `reader` (without its `\n`), splitting lines longer
/// than `max` bytes so that memory stays bounded whatever the program prints. A last
/// line without `\n` is passed on at the end of the stream.
async fn read_lines<R: AsyncRead + Unpin>(
    reader: R,
    max: usize,
    mut on_line: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let max = max.max(1);
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    // Set when a piece was cut at `max`: a newline right after it ends that same line
    // and must not produce an empty one.
    let mut just_split = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(e) => {
                if !line.is_empty() {
                    on_line(&line);
                }
                return Err(e);
            }
        };
        if buf.is_empty() {
            break;
        }
        if just_split && buf.first() == Some(&b'\n') {
            just_split = false;
            reader.consume(1);
            continue;
        }
        just_split = false;
        let room = max.saturating_sub(line.len());
        let newline = buf.iter().take(room).position(|b| *b == b'\n');
        let used = match newline {
            Some(i) => {
                line.extend_from_slice(buf.get(..i).unwrap_or_default());
                i + 1
            }
            None => {
                let n = buf.len().min(room);
                line.extend_from_slice(buf.get(..n).unwrap_or_default());
                n
            }
        };
        reader.consume(used);
        if newline.is_some() {
            on_line(&line);
            line.clear();
        } else if line.len() >= max {
            on_line(&line);
            line.clear();
            just_split = true;
        }
    }
    if !line.is_empty() {
        on_line(&line);
    }
    Ok(())
}

fn emit(service: &str, stream: &'static str, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    tracing::info!(
        target: "verigated::app::output",
        service,
        stream,
        "{}",
        String::from_utf8_lossy(line)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        read_lines(input, max, |l| lines.push(l.to_vec()))
            .await
            .unwrap();
        lines
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        assert_eq!(
            lines_of(b"a\r\nbb\n\nlast", 8).await,
            vec![
                b"a\r".to_vec(),
                b"bb".to_vec(),
                b"".to_vec(),
                b"last".to_vec()
            ]
        );
        // Exactly `max` bytes then a newline: one line, no empty one after it.
        assert_eq!(
            lines_of(b"12345678\nx\n", 8).await,
            vec![b"12345678".to_vec(), b"x".to_vec()]
        );
        let long = [b'x'; 20];
        assert_eq!(
            lines_of(&[&long[..], b"\n"].concat(), 8).await,
            vec![vec![b'x'; 8], vec![b'x'; 8], vec![b'x'; 4]]
        );
        assert!(lines_of(b"", 8).await.is_empty());
        // Not UTF-8: passed on as bytes (emit replaces them).
        assert_eq!(lines_of(b"\xff\xfe\n", 8).await, vec![vec![0xff, 0xfe]]);
    }

    #[tokio::test]
    async fn a_large_output_without_newlines_stays_bounded() {
        let big = vec![b'y'; 3 * MAX_LOG_LINE + 5];
        let lines = lines_of(&big, MAX_LOG_LINE).await;
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.len() <= MAX_LOG_LINE));
        assert_eq!(lines.iter().map(Vec::len).sum::<usize>(), big.len());
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(
            last_exit_of(&ExitStatus::from_raw(3 << 8)),
            Some(LastExit::Code(3))
        );
        assert_eq!(
            last_exit_of(&ExitStatus::from_raw(libc::SIGKILL)),
            Some(LastExit::Signal(libc::SIGKILL))
        );
    }
}
