//! A stand-in for the kernel's configfs-tsm report interface
//! (`/sys/kernel/config/tsm/report`), which cannot run here: a temporary folder and a
//! thread that plays the kernel's part for every entry a client creates with `mkdir`.
//!
//! configfs creates an entry's attributes with the directory and produces the report
//! when `outblob` is read; a plain folder can do neither, so the stand-in makes
//! `generation`, `inblob`, `outblob` and `auxblob` named pipes (FIFOs) and answers each
//! open in the order the protocol takes: `generation` (0), then it reads `inblob` (the
//! 64 bytes of report data, recorded) and bumps the generation, `generation` (1),
//! `outblob` (the recorded report), `auxblob` (if given), `generation` (1). `provider`
//! is a plain file. A client that takes another order blocks, as a wrong client of the
//! real interface would fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running stand-in; stops watching when dropped (entries being served finish).
pub struct TsmStandIn {
    root: PathBuf,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    inblobs: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// What the stand-in answers every request with.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The `provider` attribute, e.g. `tdx_guest` or `sev_guest`.
    pub provider: String,
    /// The report every request gets (recorded: it cannot carry the request's data).
    pub outblob: Vec<u8>,
    /// The `auxblob` (an SEV-SNP host's certificate table); `None`: no such attribute.
    pub auxblob: Option<Vec<u8>>,
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    let status = Command::new("mkfifo").arg(path).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "mkfifo {} failed",
            path.display()
        )))
    }
}

fn serve_entry(dir: &Path, answer: &Answer, inblobs: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    std::fs::write(dir.join("provider"), format!("{}\n", answer.provider))?;
    let mut pipes = vec!["inblob", "outblob"];
    if answer.auxblob.is_some() {
        pipes.push("auxblob");
    }
    // `generation` last: the client waits for it before it starts.
    pipes.push("generation");
    for p in &pipes {
        mkfifo(&dir.join(p))?;
    }
    // Each write to a FIFO waits for the client to open it for reading, and ends (EOF)
    // when the stand-in closes it.
    std::fs::write(dir.join("generation"), b"0\n")?;
    let inblob = std::fs::read(dir.join("inblob"))?;
    if let Ok(mut v) = inblobs.lock() {
        v.push(inblob);
    }
    std::fs::write(dir.join("generation"), b"1\n")?;
    std::fs::write(dir.join("outblob"), &answer.outblob)?;
    if let Some(aux) = &answer.auxblob {
        std::fs::write(dir.join("auxblob"), aux)?;
    }
    std::fs::write(dir.join("generation"), b"1\n")?;
    Ok(())
}

impl TsmStandIn {
    /// Plays the kernel under `root` (created if needed), answering every request with
    /// `answer`.
    pub fn start(root: &Path, answer: Answer) -> std::io::Result<TsmStandIn> {
        std::fs::create_dir_all(root)?;
        let stop = Arc::new(AtomicBool::new(false));
        let inblobs = Arc::new(Mutex::new(Vec::new()));
        let watcher = {
            let (root, stop, inblobs) = (root.to_path_buf(), stop.clone(), inblobs.clone());
            std::thread::Builder::new()
                .name("tsm-stand-in".into())
                .spawn(move || {
                    let mut seen = std::collections::HashSet::new();
                    while !stop.load(Ordering::Relaxed) {
                        let entries = std::fs::read_dir(&root).into_iter().flatten().flatten();
                        for e in entries {
                            let dir = e.path();
                            if dir.is_dir() && seen.insert(dir.clone()) {
                                let (answer, inblobs) = (answer.clone(), inblobs.clone());
                                // One thread per entry: it blocks on the client's opens.
                                let _ = std::thread::Builder::new().name("tsm-entry".into()).spawn(
                                    move || {
                                        if let Err(e) = serve_entry(&dir, &answer, &inblobs) {
                                            eprintln!("tsm stand-in {}: {e}", dir.display());
                                        }
                                        // The client's rmdir fails on a plain folder
                                        // with files: clear it as configfs would.
                                        let _ = std::fs::remove_dir_all(&dir);
                                    },
                                );
                            }
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })?
        };
        Ok(TsmStandIn {
            root: root.to_path_buf(),
            stop,
            watcher: Some(watcher),
            inblobs,
        })
    }

    /// The folder to configure as the configfs-tsm root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The report data of every request so far, in order.
    pub fn inblobs(&self) -> Vec<Vec<u8>> {
        self.inblobs.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for TsmStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}
