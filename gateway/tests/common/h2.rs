//! Just enough HTTP/2 framing (RFC 9113 §4, §6) for a test client that must misbehave
//! in ways a real client library will not: send its preface, read the server's frames,
//! and answer (or not) what it chooses.

use std::io::{Read, Write};

use testkit::tls::Session;

/// The client preface and an empty SETTINGS frame: all a silent client sends.
pub const PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// Frame type SETTINGS.
pub const SETTINGS: u8 = 4;
/// Frame type PING.
pub const PING: u8 = 6;
/// The ACK flag of SETTINGS and PING.
pub const ACK: u8 = 1;
/// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2).
pub const MAX_CONCURRENT_STREAMS: u16 = 3;

/// One frame: (type, flags, payload).
pub fn read_frame(session: &mut Session) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    session.stream.read_exact(&mut head)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    session.stream.read_exact(&mut payload)?;
    Ok((head[3], head[4], payload))
}

/// Sends one frame on stream 0.
pub fn write_frame(session: &mut Session, kind: u8, flags: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    session.stream.write_all(&frame).unwrap();
    session.stream.flush().unwrap();
}

/// Reads frames until the server's SETTINGS frame; returns its parameters (id, value).
pub fn server_settings(session: &mut Session) -> Vec<(u16, u32)> {
    loop {
        let (kind, flags, payload) = read_frame(session).unwrap();
        if kind == SETTINGS && flags & ACK == 0 {
            return payload
                .chunks_exact(6)
                .map(|p| {
                    (
                        u16::from_be_bytes([p[0], p[1]]),
                        u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                    )
                })
                .collect();
        }
    }
}
