//! The ClientHello peek: decides, from the first bytes a client sends, whether they are a
//! TLS ClientHello and, if so, which server name (SNI) and application protocols (ALPN) it
//! asks for. It is a pure function over untrusted bytes — no I/O, no panics — with three
//! different answers: "need more bytes", "not what we expected" and "found it". The peek
//! ([`crate::peek`]) asks again each time more bytes arrive, through a [`Reassembler`] that
//! keeps its place in the records, so a hello cut into many small records costs linear
//! work, not a walk of the whole buffer per record.
//!
//! What is accepted, and why:
//! - Records: content type 22 (handshake) with record version 0x0301..=0x0303, a length of
//!   1..=2^14 (RFC 8446 §5.1). The hello may be split across several consecutive handshake
//!   records (any fragmentation, down to one byte per record); a record of another type
//!   before the hello is complete is refused, since no client interleaves one there.
//! - Bound: every record that holds part of the hello must end within
//!   [`MAX_CLIENT_HELLO_BYTES`] of the start of the buffer. So `Ok(None)` is only ever
//!   returned for a buffer shorter than the bound, and a caller that caps its buffer at
//!   the bound never has to guess.
//! - SNI: exactly one entry, of type host_name (RFC 6066 §3 forbids two names of one type
//!   and defines no other type), holding a DNS name by the one rule of [`wire::dns`]
//!   (letters, digits, `-`, `_`; labels of 1..=63 bytes; at most 253 bytes; no trailing
//!   dot; not an IPv4 literal), which route patterns follow too. It is returned lowercased.
//! - Fields are read through [`wire::Reader`]; a field that runs past its vector or the
//!   message is reported as [`ClientHelloError::Malformed`], naming the field.
//! - Any other malformation (lengths that do not add up, a repeated extension, bytes after
//!   the hello in its last record) is refused: the gateway routes on these bytes, and two
//!   parsers that disagree on an ambiguous hello are how routing gets confused.
//!
//! Offsets in errors are byte offsets in the buffer the caller passed (the client's
//! stream), even when the hello was reassembled from several records.

#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

use wire::dns::{self, DnsNameError};
use wire::{Reader, Truncated};

/// The most bytes the peek buffers before giving up: every record holding the hello must
/// end within this many bytes. Real hellos are 0.2–2 KiB (2 KiB with a post-quantum key
/// share), so this leaves room while bounding the memory an unauthenticated peer can pin.
pub const MAX_CLIENT_HELLO_BYTES: usize = 16 * 1024;

/// TLS record header: content type (1), legacy version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Handshake header: message type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes.
const MAX_RECORD_PAYLOAD: usize = 1 << 14;

const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const EXTENSION_ALPN: u16 = 16;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What the peeked ClientHello says about routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The host_name from the server_name extension, lowercased and validated as a DNS
    /// name; `None` when the client sent no server_name extension (it dialed an address).
    pub sni: Option<String>,
    /// The ALPN protocol names in the client's order; empty without an ALPN extension.
    pub alpn: Vec<Vec<u8>>,
    /// Bytes of the TLS records that hold the hello, from the start of the buffer. Bytes
    /// after this offset are the client's next records, not part of the hello.
    pub consumed: usize,
}

/// Why the first bytes of a connection are not a TLS record stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTlsReason {
    /// The record's content type is not handshake (22); an HTTP request lands here
    /// (`G` = 71), and so does an alert (21) sent first.
    ContentType(u8),
    /// The first byte has its high bit set: an SSLv2-framed (or SSLv2-compatible) hello,
    /// which no TLS 1.2/1.3 server accepts.
    Sslv2Framing,
    /// The record's legacy version is outside 0x0301..=0x0303.
    RecordVersion(u16),
}

impl fmt::Display for NotTlsReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ContentType(t) => write!(
                f,
                "record content type {t} ({}), expected 22 (handshake)",
                content_type_name(*t)
            ),
            Self::Sslv2Framing => f.write_str("SSLv2-style record header (high bit set)"),
            Self::RecordVersion(v) => {
                write!(f, "record version {v:#06x}, expected 0x0301..=0x0303")
            }
        }
    }
}

fn content_type_name(t: u8) -> &'static str {
    match t {
        20 => "change_cipher_spec",
        21 => "alert",
        22 => "handshake",
        23 => "application_data",
        b'A'..=b'Z' => "ASCII letter, e.g. a plain HTTP request",
        _ => "unknown",
    }
}

/// Why a buffer is not a ClientHello the gateway can route on. Every variant is final:
/// more bytes will not change the answer.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ClientHelloError {
    /// The record at `offset` is not a TLS handshake record (plain HTTP, SSLv2, an alert
    /// first, a record version TLS does not use).
    #[error("not TLS at byte {offset}: {reason}")]
    NotTls {
        /// What about the record header is not TLS.
        reason: NotTlsReason,
        /// Offset of the record header in the buffer.
        offset: usize,
    },
    /// A record of another type arrived after the hello had started and before it ended.
    #[error(
        "record at byte {offset} has content type {content_type} ({}) inside the ClientHello; \
         expected 22 (handshake)",
        content_type_name(*content_type)
    )]
    UnexpectedRecord {
        /// The record's content type (21 alert, 23 application_data, ...).
        content_type: u8,
        /// Offset of the record header in the buffer.
        offset: usize,
    },
    /// The first handshake message is not a ClientHello (type 1).
    #[error(
        "handshake message at byte {offset} has type {handshake_type}, expected 1 (client_hello)"
    )]
    NotClientHello {
        /// The message's handshake type byte.
        handshake_type: u8,
        /// Offset of the handshake message header in the buffer.
        offset: usize,
    },
    /// The hello (or a record holding it) would end past [`MAX_CLIENT_HELLO_BYTES`].
    #[error("ClientHello needs at least {needed} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Bytes from the start of the buffer the hello needs at least, as its headers tell.
        needed: usize,
        /// The bound the gateway buffers, [`MAX_CLIENT_HELLO_BYTES`].
        limit: usize,
    },
    /// A record declares a payload longer than the 2^14 bytes TLS allows.
    #[error("record at byte {offset} declares {length} bytes, more than the 16384 TLS allows")]
    RecordTooLong {
        /// The payload length the record header declares, in bytes.
        length: usize,
        /// Offset of the record header in the buffer.
        offset: usize,
    },
    /// Lengths that do not add up, or a field with a value TLS forbids.
    #[error("malformed ClientHello: {what} at byte {offset}")]
    Malformed {
        /// Which field or length is wrong.
        what: &'static str,
        /// Offset of the bad field in the buffer.
        offset: usize,
    },
    /// The same extension type appears twice (RFC 8446 §4.2 forbids it).
    #[error("extension {extension_type} at byte {offset} appears twice")]
    DuplicateExtension {
        /// The repeated extension's type number.
        extension_type: u16,
        /// Offset of the second occurrence in the buffer.
        offset: usize,
    },
    /// The server_name entry has a name type other than host_name (0).
    #[error("server_name entry at byte {offset} has name type {name_type}, only host_name (0) is supported")]
    UnsupportedNameType {
        /// The entry's name type byte.
        name_type: u8,
        /// Offset of the server_name entry in the buffer.
        offset: usize,
    },
    /// The host_name is not a DNS name (or there are several of them). `name` is the
    /// received bytes escaped to printable ASCII and cut to 80 characters, safe to log.
    #[error("bad server name {name:?} at byte {offset}: {reason}")]
    BadServerName {
        /// The received host_name, escaped to printable ASCII and cut to 80 characters.
        name: String,
        /// Which DNS rule the name breaks.
        reason: &'static str,
        /// Offset of the host_name in the buffer (of the entry, for a second host_name).
        offset: usize,
    },
}

/// Peeks at `buf`, the bytes a client has sent so far (the whole buffer, from its first
/// byte), and answers:
/// - `Ok(None)`: a valid prefix of a ClientHello; call again when more bytes arrived.
///   Then `buf.len() < MAX_CLIENT_HELLO_BYTES` always holds.
/// - `Ok(Some(hello))`: a complete ClientHello in the first `hello.consumed` bytes.
/// - `Err(e)`: not a ClientHello the gateway accepts; more bytes will not change that.
///
/// It walks the buffer from its start and keeps no state; a caller that asks again as
/// bytes arrive should keep a [`Reassembler`] instead, which gives the same answers and
/// walks each record once.
pub fn parse(buf: &[u8]) -> Result<Option<ClientHello>, ClientHelloError> {
    Reassembler::new().feed(buf)
}

/// The handshake message being gathered from the records of a growing buffer: the state
/// that lets [`Reassembler::feed`] start where the last call stopped. Asking [`parse`]
/// again on each new byte would walk the whole buffer each time: quadratic work for a
/// hello sent as one-byte records. This walks each complete record once and parses the
/// message once, when its last byte has arrived.
///
/// It holds a few integers, not the message: the records stay in the caller's buffer,
/// which the peek keeps anyway, and are gathered into one message only at the end.
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    /// Offset in the buffer of the first record not yet complete.
    next_record: usize,
    /// Handshake message bytes in the complete records before `next_record`.
    collected: usize,
    /// The message's first bytes (type and length), as far as they have arrived.
    head: [u8; HANDSHAKE_HEADER_LEN],
    /// The whole message's length (header included), once its header has arrived.
    message_len: Option<usize>,
}

impl Reassembler {
    /// A reassembler at the start of a client's stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers as [`parse`] would for `buf`, which must be the bytes given to the previous
    /// call with more appended (the client's stream so far, from its first byte). Only
    /// records completed since the previous call are walked, so feeding a growing buffer
    /// costs time linear in its length, however it is cut into records and reads. Once it
    /// has answered `Some` or `Err`, the same buffer gets the same answer again.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<ClientHello>, ClientHelloError> {
        let Some((message, fragments)) = self.reassemble(buf)? else {
            return Ok(None);
        };
        let map = OffsetMap {
            fragments: &fragments,
        };
        let (sni, alpn) = parse_client_hello(&message, &map)?;
        Ok(Some(ClientHello {
            sni,
            alpn,
            consumed: self.next_record,
        }))
    }

    /// Walks the records from `next_record` and returns the complete handshake message
    /// (header included) and where its fragments came from; `None` when more bytes are
    /// needed. Checks that fail early (content type, record version, handshake type and
    /// length) are made on partial input, so a plain HTTP request is refused at its first
    /// byte.
    fn reassemble<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Gathered<'b>>, ClientHelloError> {
        loop {
            if let Some(message_len) = self.message_len {
                match self.collected.cmp(&message_len) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Ok(Some(self.gather(buf))),
                    std::cmp::Ordering::Greater => {
                        let (_, fragments) = self.gather(buf);
                        let map = OffsetMap {
                            fragments: &fragments,
                        };
                        return Err(ClientHelloError::Malformed {
                            what: "bytes after the ClientHello in its last record",
                            offset: map.buf_offset(message_len),
                        });
                    }
                }
            }
            #[cfg(test)]
            work::count_record_walk();
            let pos = self.next_record;
            let Some((payload_start, record_len)) = check_record_header(buf, pos)? else {
                return Ok(None);
            };
            let record_end = payload_start + record_len;
            // The part of this record's payload that has arrived so far.
            let available_end = record_end.min(buf.len());
            let payload = buf.get(payload_start..available_end).unwrap_or(&[]);

            // The handshake header, as soon as its bytes are here. Once its length is
            // known, the header has been checked and later records cannot change it.
            if self.message_len.is_none() {
                // `collected` is below the header length here (a complete header would
                // have set `message_len`), so the header is `head` then this payload.
                let mut head = self.head;
                let have = self.collected.min(HANDSHAKE_HEADER_LEN);
                for (slot, &byte) in head.iter_mut().skip(have).zip(payload) {
                    *slot = byte;
                }
                let have = (have + payload.len()).min(HANDSHAKE_HEADER_LEN);
                // The type byte is checked in the first record that holds any of the
                // message (every record is non-empty, so that is the first record).
                if self.collected == 0 && have >= 1 && head[0] != HANDSHAKE_CLIENT_HELLO {
                    return Err(ClientHelloError::NotClientHello {
                        handshake_type: head[0],
                        offset: payload_start,
                    });
                }
                if have == HANDSHAKE_HEADER_LEN {
                    let [_, a, b, c] = head;
                    let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                    let message_len = HANDSHAKE_HEADER_LEN + body_len;
                    // Even in one record, the hello needs a record header in front of it.
                    let needed = RECORD_HEADER_LEN + message_len;
                    if needed > MAX_CLIENT_HELLO_BYTES {
                        return Err(ClientHelloError::TooLarge {
                            needed,
                            limit: MAX_CLIENT_HELLO_BYTES,
                        });
                    }
                    self.message_len = Some(message_len);
                }
                // Bytes that have arrived never change, so a partial record's are kept too.
                self.head = head;
            }

            if available_end < record_end {
                return Ok(None);
            }
            self.collected += record_len;
            self.next_record = record_end;
        }
    }

    /// The message and its fragments, from the complete records before `next_record`,
    /// which [`Reassembler::reassemble`] has already checked: a second, final walk. The
    /// message is borrowed while it sits in one record (the usual case) and copied only
    /// when several records hold it.
    fn gather<'b>(&self, buf: &'b [u8]) -> Gathered<'b> {
        let mut fragments = Vec::new();
        let mut message: Cow<'b, [u8]> = Cow::Borrowed(&[]);
        let mut pos = 0;
        while pos < self.next_record {
            #[cfg(test)]
            work::count_record_walk();
            let Some(&[len_hi, len_lo]) = buf.get(pos + 3..pos + RECORD_HEADER_LEN) else {
                break;
            };
            let payload_start = pos + RECORD_HEADER_LEN;
            let record_end = payload_start + usize::from(u16::from_be_bytes([len_hi, len_lo]));
            let payload = buf.get(payload_start..record_end).unwrap_or(&[]);
            fragments.push(Fragment {
                message_start: message.len(),
                buf_start: payload_start,
            });
            if message.is_empty() {
                message = Cow::Borrowed(payload);
            } else {
                message.to_mut().extend_from_slice(payload);
            }
            pos = record_end;
        }
        (message, fragments)
    }
}

/// Checks the record header at `pos`, byte by byte so that the answer comes as early as
/// possible, and returns where its payload starts and how long it is; `None` while the
/// header is incomplete.
fn check_record_header(buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, ClientHelloError> {
    let header = buf.get(pos..).unwrap_or(&[]);
    let Some(&content_type) = header.first() else {
        return Ok(None);
    };
    if content_type != CONTENT_TYPE_HANDSHAKE {
        return Err(if pos == 0 {
            let reason = if content_type & 0x80 != 0 {
                NotTlsReason::Sslv2Framing
            } else {
                NotTlsReason::ContentType(content_type)
            };
            ClientHelloError::NotTls {
                reason,
                offset: pos,
            }
        } else {
            ClientHelloError::UnexpectedRecord {
                content_type,
                offset: pos,
            }
        });
    }
    if let Some(&major) = header.get(1) {
        let minor = header.get(2).copied();
        let version_ok = major == 3 && minor.filter(|m| !(1..=3).contains(m)).is_none();
        if !version_ok {
            let version = u16::from_be_bytes([major, minor.unwrap_or(0)]);
            return Err(ClientHelloError::NotTls {
                reason: NotTlsReason::RecordVersion(version),
                offset: pos,
            });
        }
    }
    let (Some(&len_hi), Some(&len_lo)) = (header.get(3), header.get(4)) else {
        return Ok(None);
    };
    let record_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if record_len == 0 {
        return Err(ClientHelloError::Malformed {
            what: "empty handshake record",
            offset: pos,
        });
    }
    if record_len > MAX_RECORD_PAYLOAD {
        return Err(ClientHelloError::RecordTooLong {
            length: record_len,
            offset: pos,
        });
    }
    let payload_start = pos + RECORD_HEADER_LEN;
    let record_end = payload_start + record_len;
    if record_end > MAX_CLIENT_HELLO_BYTES {
        return Err(ClientHelloError::TooLarge {
            needed: record_end,
            limit: MAX_CLIENT_HELLO_BYTES,
        });
    }
    Ok(Some((payload_start, record_len)))
}

/// The reassembled handshake message and where its fragments came from.
type Gathered<'a> = (Cow<'a, [u8]>, Vec<Fragment>);

/// How much walking the reassembler does, counted so that a test can hold it to linear.
#[cfg(test)]
pub(crate) mod work {
    use std::cell::Cell;

    thread_local! {
        static RECORD_WALKS: Cell<usize> = const { Cell::new(0) };
    }

    /// One record header visited, by the incremental walk or the final gathering.
    pub(crate) fn count_record_walk() {
        RECORD_WALKS.with(|c| c.set(c.get() + 1));
    }

    /// Record visits on this thread so far.
    pub(crate) fn record_walks() -> usize {
        RECORD_WALKS.with(Cell::get)
    }
}

/// Where a piece of the handshake message came from in the caller's buffer, so that
/// errors found in the reassembled message name the client's byte offset.
#[derive(Debug, Clone, Copy)]
struct Fragment {
    /// Offset of the fragment's first byte in the reassembled message.
    message_start: usize,
    /// Offset of the same byte in the caller's buffer.
    buf_start: usize,
}

struct OffsetMap<'a> {
    fragments: &'a [Fragment],
}

impl OffsetMap<'_> {
    /// Buffer offset of byte `message_offset` of the reassembled handshake message.
    fn buf_offset(&self, message_offset: usize) -> usize {
        // Fragments are in order; the last one starting at or before the offset holds it.
        self.fragments
            .iter()
            .rev()
            .find(|f| f.message_start <= message_offset)
            .map_or(message_offset, |f| {
                f.buf_start.saturating_add(message_offset - f.message_start)
            })
    }
}

/// A field of the reassembled message ran past its end (or past its vector's end):
/// reported as `Malformed`, naming the field, at its offset in the caller's buffer.
fn truncated(e: Truncated, map: &OffsetMap) -> ClientHelloError {
    ClientHelloError::Malformed {
        what: e.field,
        offset: map.buf_offset(e.offset),
    }
}

/// Parses a complete ClientHello handshake message (header included; its type and length
/// were checked by [`reassemble`]) into the SNI and ALPN list.
fn parse_client_hello(
    message: &[u8],
    map: &OffsetMap,
) -> Result<(Option<String>, Vec<Vec<u8>>), ClientHelloError> {
    let body = message.get(HANDSHAKE_HEADER_LEN..).unwrap_or(&[]);
    let mut r = Reader::at(body, HANDSHAKE_HEADER_LEN);

    let version_at = r.offset();
    let legacy_version = r.u16_be("legacy_version").map_err(|e| truncated(e, map))?;
    if legacy_version >> 8 != 3 {
        return Err(ClientHelloError::Malformed {
            what: "legacy_version is not 3.x",
            offset: map.buf_offset(version_at),
        });
    }
    r.skip(32, "random").map_err(|e| truncated(e, map))?;
    let session_at = r.offset();
    let session_id = r
        .vec_u8("legacy_session_id")
        .map_err(|e| truncated(e, map))?;
    if session_id.remaining() > 32 {
        return Err(ClientHelloError::Malformed {
            what: "legacy_session_id longer than 32 bytes",
            offset: map.buf_offset(session_at),
        });
    }
    let suites_at = r.offset();
    let suites = r
        .vec_u16_be("cipher_suites")
        .map_err(|e| truncated(e, map))?;
    if suites.is_empty() || suites.remaining() % 2 != 0 {
        return Err(ClientHelloError::Malformed {
            what: "cipher_suites length is zero or odd",
            offset: map.buf_offset(suites_at),
        });
    }
    let compression_at = r.offset();
    let compression = r
        .vec_u8("legacy_compression_methods")
        .map_err(|e| truncated(e, map))?;
    if compression.is_empty() {
        return Err(ClientHelloError::Malformed {
            what: "empty legacy_compression_methods",
            offset: map.buf_offset(compression_at),
        });
    }
    // A hello without extensions ends here (TLS 1.2 and older allow it): no SNI, no ALPN.
    if r.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut extensions = r.vec_u16_be("extensions").map_err(|e| truncated(e, map))?;
    if !r.is_empty() {
        return Err(ClientHelloError::Malformed {
            what: "bytes after the extensions",
            offset: map.buf_offset(r.offset()),
        });
    }

    let mut seen: Vec<u16> = Vec::new();
    let mut sni = None;
    let mut alpn = Vec::new();
    while !extensions.is_empty() {
        let ext_at = extensions.offset();
        let extension_type = extensions
            .u16_be("extension type")
            .map_err(|e| truncated(e, map))?;
        let data = extensions
            .vec_u16_be("extension data")
            .map_err(|e| truncated(e, map))?;
        if seen.contains(&extension_type) {
            return Err(ClientHelloError::DuplicateExtension {
                extension_type,
                offset: map.buf_offset(ext_at),
            });
        }
        seen.push(extension_type);
        match extension_type {
            EXTENSION_SERVER_NAME => sni = Some(parse_server_name(data, map)?),
            EXTENSION_ALPN => alpn = parse_alpn(data, map)?,
            _ => {}
        }
    }
    Ok((sni, alpn))
}

/// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`, each `NameType name_type;
/// opaque HostName<1..2^16-1>`.
fn parse_server_name(mut data: Reader, map: &OffsetMap) -> Result<String, ClientHelloError> {
    let list_at = data.offset();
    let mut list = data
        .vec_u16_be("server_name_list length")
        .map_err(|e| truncated(e, map))?;
    if !data.is_empty() {
        return Err(ClientHelloError::Malformed {
            what: "bytes after server_name_list",
            offset: map.buf_offset(data.offset()),
        });
    }
    if list.is_empty() {
        return Err(ClientHelloError::Malformed {
            what: "empty server_name_list",
            offset: map.buf_offset(list_at),
        });
    }
    let mut host_name = None;
    while !list.is_empty() {
        let entry_at = list.offset();
        let name_type = list
            .u8("server_name name_type")
            .map_err(|e| truncated(e, map))?;
        if name_type != NAME_TYPE_HOST_NAME {
            return Err(ClientHelloError::UnsupportedNameType {
                name_type,
                offset: map.buf_offset(entry_at),
            });
        }
        let name = list
            .vec_u16_be("host_name length")
            .map_err(|e| truncated(e, map))?;
        if host_name.is_some() {
            return Err(ClientHelloError::BadServerName {
                name: printable(name.rest()),
                reason: "a second host_name entry (RFC 6066 allows one)",
                offset: map.buf_offset(entry_at),
            });
        }
        let name_at = map.buf_offset(name.offset());
        host_name =
            Some(
                dns::normalize(name.rest()).map_err(|e| ClientHelloError::BadServerName {
                    name: printable(name.rest()),
                    reason: sni_reason(e),
                    offset: name_at,
                })?,
            );
    }
    // The list is non-empty and every entry is a host_name or an error, so one was found.
    host_name.ok_or(ClientHelloError::Malformed {
        what: "server_name_list without host_name",
        offset: map.buf_offset(list_at),
    })
}

/// Why an SNI is not a host name, in the words this error has always logged: the rule
/// itself is [`wire::dns`], shared with route patterns and the manifest, so that a name
/// a route accepts is a name a client can send.
fn sni_reason(e: DnsNameError) -> &'static str {
    match e {
        DnsNameError::Empty => "empty",
        DnsNameError::TooLong { .. } => "longer than 253 bytes",
        DnsNameError::TrailingDot => "trailing dot (RFC 6066 sends names without it)",
        DnsNameError::EmptyLabel => "empty label",
        DnsNameError::LabelTooLong => "label longer than 63 bytes",
        DnsNameError::BadByte { .. } => "byte outside letters, digits, '-', '_' and '.'",
        DnsNameError::HyphenAtLabelEdge => "label starts or ends with '-'",
        DnsNameError::NumericTopLabel => {
            "an IP address literal (RFC 6066 forbids them) or all-numeric top label"
        }
    }
}

/// RFC 7301: `ProtocolName protocol_name_list<2..2^16-1>`, each `opaque
/// ProtocolName<1..2^8-1>`.
fn parse_alpn(mut data: Reader, map: &OffsetMap) -> Result<Vec<Vec<u8>>, ClientHelloError> {
    let list_at = data.offset();
    let mut list = data
        .vec_u16_be("ALPN protocol_name_list length")
        .map_err(|e| truncated(e, map))?;
    if !data.is_empty() {
        return Err(ClientHelloError::Malformed {
            what: "bytes after ALPN protocol_name_list",
            offset: map.buf_offset(data.offset()),
        });
    }
    if list.is_empty() {
        return Err(ClientHelloError::Malformed {
            what: "empty ALPN protocol_name_list",
            offset: map.buf_offset(list_at),
        });
    }
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let name_at = list.offset();
        let name = list
            .vec_u8("ALPN protocol name length")
            .map_err(|e| truncated(e, map))?;
        if name.is_empty() {
            return Err(ClientHelloError::Malformed {
                what: "empty ALPN protocol name",
                offset: map.buf_offset(name_at),
            });
        }
        protocols.push(name.rest().to_vec());
    }
    Ok(protocols)
}

/// Untrusted bytes made safe to log: escaped to printable ASCII, cut to 80 characters.
fn printable(bytes: &[u8]) -> String {
    let mut s: String = bytes.escape_ascii().to_string();
    if s.len() > 80 {
        // escape_ascii yields ASCII only, so every index is a char boundary.
        s.truncate(77);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The SNI check as the parser applies it: the shared rule, this module's wording.
    fn validate_host_name(name: &[u8]) -> Result<String, &'static str> {
        dns::normalize(name).map_err(sni_reason)
    }

    #[test]
    fn host_names() {
        assert_eq!(
            validate_host_name(b"App1.Example.COM"),
            Ok("app1.example.com".into())
        );
        assert_eq!(
            validate_host_name(b"_acme.x-y.test"),
            Ok("_acme.x-y.test".into())
        );
        assert_eq!(validate_host_name(b"localhost"), Ok("localhost".into()));
        for bad in [
            &b""[..],
            b"a..b",
            b".a",
            b"a.",
            b"-a.test",
            b"a-.test",
            b"a b.test",
            b"a\0.test",
            b"\xc3\xa9.test",
            b"1.2.3.4",
            b"a.123",
        ] {
            assert!(
                validate_host_name(bad).is_err(),
                "{:?}",
                bad.escape_ascii().to_string()
            );
        }
        let long_label = [b'a'; 64];
        assert!(validate_host_name(&long_label).is_err());
        let ok_label = [b'a'; 63];
        assert!(validate_host_name(&ok_label).is_ok());
        let long_name = format!("{}x", "abc.".repeat(64)).into_bytes();
        assert_eq!(long_name.len(), 257);
        assert_eq!(validate_host_name(&long_name), Err("longer than 253 bytes"));
    }

    #[test]
    fn printable_is_bounded_and_escaped() {
        assert_eq!(printable(b"a\0b\n"), "a\\x00b\\n");
        let p = printable(&[0xff; 100]);
        assert_eq!(p.len(), 80);
        assert!(p.ends_with("..."));
    }

    #[test]
    fn offsets_map_back_to_the_buffer() {
        let fragments = [
            Fragment {
                message_start: 0,
                buf_start: 5,
            },
            Fragment {
                message_start: 10,
                buf_start: 20,
            },
        ];
        let map = OffsetMap {
            fragments: &fragments,
        };
        assert_eq!(map.buf_offset(0), 5);
        assert_eq!(map.buf_offset(9), 14);
        assert_eq!(map.buf_offset(10), 20);
        assert_eq!(map.buf_offset(12), 22);
    }

    /// A ClientHello for `name`, padded (extension 21) to `message_len` bytes: the
    /// largest hello whose one-byte records still fit [`MAX_CLIENT_HELLO_BYTES`].
    pub(crate) fn padded_hello(name: &str, message_len: usize) -> Vec<u8> {
        let mut server_name = vec![0];
        server_name.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        server_name.extend_from_slice(name.as_bytes());
        let mut sni = u16::try_from(server_name.len())
            .unwrap()
            .to_be_bytes()
            .to_vec();
        sni.extend_from_slice(&server_name);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        let fixed = HANDSHAKE_HEADER_LEN + body.len() + 2 + 4 + sni.len() + 4;
        let padding = message_len - fixed;
        let mut extensions = vec![0, 0];
        extensions.extend_from_slice(&u16::try_from(sni.len()).unwrap().to_be_bytes());
        extensions.extend_from_slice(&sni);
        extensions.extend_from_slice(&[0, 21]);
        extensions.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
        extensions.resize(extensions.len() + padding, 0);
        body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&extensions);
        let mut message = vec![HANDSHAKE_CLIENT_HELLO];
        message.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        assert_eq!(message.len(), message_len);
        message
    }

    /// Each byte of `message` in its own handshake record.
    pub(crate) fn one_byte_records(message: &[u8]) -> Vec<u8> {
        message
            .iter()
            .flat_map(|&b| [CONTENT_TYPE_HANDSHAKE, 3, 1, 0, 1, b])
            .collect()
    }

    /// The reviewer's case: a 2.7 KB hello in one-byte records, fed as it would arrive a
    /// byte per read. Parsing the whole buffer again at each record (what the peek did)
    /// visits about records²/2 = 3.6 million record headers; keeping the place between
    /// calls visits each record a small constant number of times.
    #[test]
    fn feeding_one_byte_records_is_linear() {
        let message = padded_hello("slow.example.com", 2700);
        let stream = one_byte_records(&message);
        assert!(stream.len() <= MAX_CLIENT_HELLO_BYTES);

        let before = work::record_walks();
        let mut reassembler = Reassembler::new();
        let mut answer = None;
        for end in 1..=stream.len() {
            let got = reassembler.feed(&stream[..end]).unwrap();
            assert_eq!(got.is_some(), end == stream.len(), "at {end}");
            answer = got;
        }
        let walks = work::record_walks() - before;

        let hello = answer.unwrap();
        assert_eq!(hello.sni.as_deref(), Some("slow.example.com"));
        assert_eq!(hello.consumed, stream.len());
        // One visit per call (the record still arriving) plus two per complete record
        // (the walk and the final gathering).
        let bound = stream.len() + 2 * message.len() + 1;
        assert!(
            walks <= bound,
            "{walks} record visits for {} bytes in {} records: not linear (bound {bound})",
            stream.len(),
            message.len()
        );
    }

    /// Feeding a growing buffer gives, at every length, the answer a fresh parse does.
    #[test]
    fn feeding_answers_as_parse_does() {
        let message = padded_hello("same.example.com", 300);
        let mut framings = vec![one_byte_records(&message)];
        let mut two = Vec::new();
        for part in [&message[..2], &message[2..]] {
            two.extend_from_slice(&[CONTENT_TYPE_HANDSHAKE, 3, 3]);
            two.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            two.extend_from_slice(part);
        }
        framings.push(two);
        let mut bad_type = one_byte_records(&message);
        bad_type[5] = 2;
        framings.push(bad_type);
        let mut trailing = framings[1].clone();
        // A byte after the hello in its last record (at 7, after a 2-byte first record).
        trailing[11] += 1;
        trailing.push(9);
        framings.push(trailing);
        for stream in framings {
            let mut reassembler = Reassembler::new();
            for end in 0..=stream.len() {
                let fed = reassembler.feed(&stream[..end]);
                assert_eq!(fed, parse(&stream[..end]), "at {end}");
                if end == stream.len() {
                    assert!(fed.is_err() || fed.as_ref().is_ok_and(Option::is_some));
                }
                if !matches!(fed, Ok(None)) {
                    // The answer is final: asking again gives it again.
                    assert_eq!(reassembler.feed(&stream[..end]), fed);
                    break;
                }
            }
        }
    }
}
