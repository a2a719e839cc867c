//! A TPM whose quote is held until the test lets it go: a stand-in for a slow hardware
//! TPM (where a quote takes 30-150 ms), put in front of a real swtpm. It speaks swtpm's
//! own TCP protocol on two consecutive ports (commands, and the control channel relayed
//! as is), so the TCTI `swtpm:host=127.0.0.1,port=PORT` reaches it. Every command and
//! response passes through unchanged; only the response to TPM2_Quote waits while the
//! gate is closed. Nothing here measures time: a test closes the gate, waits until a
//! quote is held ([`HeldTpm::wait_held`]), does what it needs while the round cannot end,
//! and opens the gate.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;

/// The command code of TPM2_Quote (TPM 2.0 Part 2, 6.5.2).
const TPM2_CC_QUOTE: u32 = 0x158;

/// A TPM command or response larger than this is not swtpm's; the relay stops there.
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Default)]
struct Gate {
    closed: bool,
    /// Quote responses waiting for the gate right now.
    held: usize,
}

#[derive(Default)]
struct Shared {
    gate: Mutex<Gate>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The stand-in, listening on `port()` and `port() + 1` until dropped (its relay
/// threads end when their connections close).
pub struct HeldTpm {
    port: u16,
    shared: Arc<Shared>,
}

impl HeldTpm {
    /// Listens in front of the swtpm whose command port is `swtpm_port` (its control
    /// port is the next one). The gate starts open.
    pub fn start(swtpm_port: u16) -> anyhow::Result<HeldTpm> {
        let (commands, control) = bind_pair()?;
        let port = commands.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let relay_shared = shared.clone();
        std::thread::spawn(move || {
            for client in commands.incoming().flatten() {
                let shared = relay_shared.clone();
                std::thread::spawn(move || {
                    let _ = relay_commands(client, swtpm_port, &shared);
                });
            }
        });
        std::thread::spawn(move || {
            for client in control.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = relay_raw(client, swtpm_port + 1);
                });
            }
        });
        Ok(HeldTpm { port, shared })
    }

    /// The TCTI that reaches the TPM through this stand-in.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Quote responses from now on wait until [`HeldTpm::open`].
    pub fn close(&self) {
        self.shared.lock().closed = true;
    }

    /// Lets every held quote response through, and the ones after it.
    pub fn open(&self) {
        self.shared.lock().closed = false;
        self.shared.changed.notify_all();
    }

    /// Waits until a quote response is held, up to `patience` (a guard against a hang,
    /// not a measurement); returns whether one is.
    pub fn wait_held(&self, patience: Duration) -> bool {
        let gate = self.shared.lock();
        let (gate, _) = self
            .shared
            .changed
            .wait_timeout_while(gate, patience, |g| g.held == 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        gate.held > 0
    }
}

impl Drop for HeldTpm {
    fn drop(&mut self) {
        // A held response must not keep a relay thread (and the TPM) waiting forever.
        self.open();
    }
}

/// Two listeners on consecutive ports, as the swtpm TCTI expects.
fn bind_pair() -> anyhow::Result<(TcpListener, TcpListener)> {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0")?;
        let port = first.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        if let Ok(second) = TcpListener::bind(("127.0.0.1", port + 1)) {
            return Ok((first, second));
        }
    }
    anyhow::bail!("no two consecutive free ports on 127.0.0.1")
}

/// Reads one whole TPM message (its header says its size).
fn read_message(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut message = vec![0u8; 10];
    stream.read_exact(&mut message)?;
    let size = u32::from_be_bytes([message[2], message[3], message[4], message[5]]) as usize;
    anyhow::ensure!(
        (10..=MAX_MESSAGE).contains(&size),
        "TPM message of {size} bytes"
    );
    message.resize(size, 0);
    stream.read_exact(&mut message[10..])?;
    Ok(message)
}

/// Relays commands one by one, holding the response to a quote while the gate is closed.
fn relay_commands(mut client: TcpStream, swtpm_port: u16, shared: &Shared) -> anyhow::Result<()> {
    let mut tpm = TcpStream::connect(("127.0.0.1", swtpm_port)).context("connect swtpm")?;
    loop {
        let command = read_message(&mut client)?;
        let code = u32::from_be_bytes([command[6], command[7], command[8], command[9]]);
        tpm.write_all(&command)?;
        let response = read_message(&mut tpm)?;
        if code == TPM2_CC_QUOTE {
            let mut gate = shared.lock();
            if gate.closed {
                gate.held += 1;
                shared.changed.notify_all();
                let mut gate = shared
                    .changed
                    .wait_while(gate, |g| g.closed)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                gate.held -= 1;
            }
        }
        client.write_all(&response)?;
    }
}

/// Relays bytes both ways, unchanged (swtpm's control channel).
fn relay_raw(client: TcpStream, port: u16) -> anyhow::Result<()> {
    let upstream = TcpStream::connect(("127.0.0.1", port)).context("connect swtpm control")?;
    let (mut c_in, mut u_out) = (client.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_in, &mut u_out);
        let _ = u_out.shutdown(Shutdown::Write);
    });
    let (mut u_in, mut c_out) = (upstream, client);
    let _ = std::io::copy(&mut u_in, &mut c_out);
    let _ = c_out.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}
