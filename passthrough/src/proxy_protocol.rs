//! The PROXY protocol (HAProxy's spec, versions 1 and 2) as pure functions over bytes.
//!
//! A load balancer in front of verigated prepends a PROXY header so that verigated learns
//! the real client address; verigated in turn prepends a v2 header to a backend that asks
//! for it. [`parse`] reads either version and tells "need more bytes" (`Ok(None)`) apart
//! from "not a PROXY header" and "a broken one"; [`encode_v2`] writes what HAProxy's
//! `send-proxy-v2` writes, plus the SNI as an authority TLV. No I/O happens here, so the
//! listener decides how many bytes to wait for and how long.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wire::Reader;

/// The 12 bytes that open every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What opens every v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The spec's bound on a v1 line, CRLF included (`PROXY UNKNOWN` with two IPv6 addresses).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_LEN: usize = 16;
/// The longest v2 header the 16-bit length field allows.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// TLV type carrying the host name the client asked for (HAProxy sends the SNI).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// TLV type carrying a CRC-32C of the whole header (computed with this field zeroed).
pub const PP2_TYPE_CRC32C: u8 = 0x03;

const V2_CMD_LOCAL: u8 = 0x0;
const V2_CMD_PROXY: u8 = 0x1;
const V2_FAM_UNSPEC: u8 = 0x00;
const V2_FAM_TCP4: u8 = 0x11;
const V2_FAM_TCP6: u8 = 0x21;
const V2_ADDR_LEN_TCP4: usize = 12;
const V2_ADDR_LEN_TCP6: usize = 36;
const V2_ADDR_LEN_UNIX: usize = 216;
/// DNS names are at most 253 bytes; a longer authority is not a host name.
const MAX_AUTHORITY_LEN: usize = 255;

/// What a PROXY header says about the connection it precedes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client as the load balancer saw it; `None` for v2 `LOCAL` (health checks),
    /// v2 `UNSPEC` and v1 `UNKNOWN`, where the connection's own peer address stands.
    pub source: Option<SocketAddr>,
    /// The address the client dialed on the load balancer; `None` in the same cases.
    pub destination: Option<SocketAddr>,
    /// The v2 `PP2_TYPE_AUTHORITY` TLV (the SNI the load balancer saw), when present.
    pub authority: Option<String>,
}

/// Why bytes are not an acceptable PROXY header.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes open with neither the v1 `PROXY ` prefix nor the v2 signature.
    #[error("not a PROXY protocol header (neither the v1 `PROXY ` prefix nor the v2 signature)")]
    NotProxyProtocol,
    /// The header has the right signature but a field is broken.
    #[error("malformed PROXY header: {what} at byte {offset}")]
    Malformed {
        /// Which field is broken.
        what: &'static str,
        /// Offset of the broken field from the start of the header.
        offset: usize,
    },
    /// A v2 version nibble other than 2.
    #[error("unsupported PROXY v2 version {version} at byte 12 (only 2 exists)")]
    UnsupportedVersion {
        /// The version received (high nibble of byte 12).
        version: u8,
    },
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("unsupported PROXY v2 command {command} at byte 12 (expected 0 LOCAL or 1 PROXY)")]
    UnsupportedCommand {
        /// The command received (low nibble of byte 12).
        command: u8,
    },
    /// An address family/transport verigated cannot act on (UDP, UNIX sockets, unknown).
    #[error("unsupported PROXY v2 address family/transport 0x{family:02x} at byte 13 (only TCP over IPv4 or IPv6)")]
    UnsupportedFamily {
        /// The family/transport byte (byte 13) received.
        family: u8,
    },
    /// The v2 length field is too small for the addresses its family needs.
    #[error("PROXY v2 address block too short for family 0x{family:02x}: need {need} bytes, length field says {have}")]
    ShortAddressBlock {
        /// The family/transport byte (byte 13) of the header.
        family: u8,
        /// Address bytes that family needs: 12 for TCP over IPv4, 36 for TCP over IPv6.
        need: usize,
        /// The header's length field: bytes after the 16-byte fixed part.
        have: usize,
    },
    /// A v1 line without CRLF within the spec's bound.
    #[error("PROXY v1 line longer than {max} bytes without CRLF (seen {len})")]
    TooLong {
        /// Bytes received so far, none of them ending the line.
        len: usize,
        /// The bound, [`V1_MAX_LEN`].
        max: usize,
    },
    /// The CRC-32C TLV does not match the header.
    #[error("PROXY v2 CRC-32C mismatch: header says {expected:08x}, computed {computed:08x}")]
    ChecksumMismatch {
        /// The CRC-32C the TLV carries.
        expected: u32,
        /// The CRC-32C of the header as received, the TLV's value taken as zero.
        computed: u32,
    },
}

/// Parses a v1 (text) or v2 (binary) PROXY header at the start of `buf`.
///
/// `Ok(None)`: every byte so far fits a header, more are needed. `Ok(Some((header, len)))`:
/// the header takes the first `len` bytes, what follows is the client's own data.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if starts_like(buf, &V2_SIGNATURE) {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(None);
        }
        parse_v2(buf)
    } else if starts_like(buf, V1_PREFIX) {
        if buf.len() < V1_PREFIX.len() {
            return Ok(None);
        }
        parse_v1(buf)
    } else {
        Err(ProxyError::NotProxyProtocol)
    }
}

/// Whether `buf` (at least one byte) begins like a PROXY v1 or v2 header, so that a
/// connection from a peer not allowed to send one can be refused as such rather than as
/// "not TLS".
pub fn looks_like_header(buf: &[u8]) -> bool {
    !buf.is_empty() && (starts_like(buf, &V2_SIGNATURE) || starts_like(buf, V1_PREFIX))
}

/// True when `buf` and `prefix` agree on their common length.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf.get(..n) == prefix.get(..n)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX_LEN)).unwrap_or(buf);
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::TooLong {
                len: buf.len(),
                max: V1_MAX_LEN,
            });
        }
        // A lone LF or a CR followed by something else can never become a valid line.
        if let Some(pos) = window
            .iter()
            .enumerate()
            .position(|(i, &b)| b == b'\n' || (b == b'\r' && i + 1 < window.len()))
        {
            return Err(malformed("stray CR or LF in v1 line", pos));
        }
        return Ok(None);
    };
    let header_len = cr + 2;
    let line = window.get(..cr).unwrap_or_default();
    let header = parse_v1_line(line)?;
    Ok(Some((header, header_len)))
}

/// Parses `PROXY <proto> <src> <dst> <sport> <dport>` (without CRLF).
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if let Some(pos) = line.iter().position(|&b| !(0x20..0x7f).contains(&b)) {
        return Err(malformed("non-printable byte in v1 line", pos));
    }
    // Every byte is printable ASCII, so this cannot fail; the error path keeps it panic-free.
    let text = std::str::from_utf8(line).map_err(|e| malformed("v1 line", e.valid_up_to()))?;
    let mut fields = Fields::new(text);
    let (_, _) = fields.next_field("v1 `PROXY` keyword")?;
    let (proto_at, proto) = fields.next_field("v1 protocol")?;
    match proto {
        // The spec lets the sender put anything after UNKNOWN; the receiver ignores it.
        "UNKNOWN" => {
            return Ok(ProxyHeader {
                source: None,
                destination: None,
                authority: None,
            })
        }
        "TCP4" | "TCP6" => {}
        _ => {
            return Err(malformed(
                "v1 protocol (expected TCP4, TCP6 or UNKNOWN)",
                proto_at,
            ))
        }
    }
    let v4 = proto == "TCP4";
    let (src_at, src) = fields.next_field("v1 source address")?;
    let (dst_at, dst) = fields.next_field("v1 destination address")?;
    let (sport_at, sport) = fields.next_field("v1 source port")?;
    let (dport_at, dport) = fields.next_field("v1 destination port")?;
    if let Some(extra_at) = fields.rest_offset() {
        return Err(malformed(
            "v1 line has fields after the destination port",
            extra_at,
        ));
    }
    let src_ip = v1_address(src, v4, src_at, "v1 source address")?;
    let dst_ip = v1_address(dst, v4, dst_at, "v1 destination address")?;
    let sport = v1_port(sport, sport_at, "v1 source port")?;
    let dport = v1_port(dport, dport_at, "v1 destination port")?;
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(src_ip, sport)),
        destination: Some(SocketAddr::new(dst_ip, dport)),
        authority: None,
    })
}

/// Splits a v1 line on single spaces, remembering each field's byte offset.
struct Fields<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(text: &'a str) -> Self {
        Fields { text, pos: 0 }
    }

    fn next_field(&mut self, what: &'static str) -> Result<(usize, &'a str), ProxyError> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Err(malformed(what, self.pos));
        }
        let len = rest.find(' ').unwrap_or(rest.len());
        let field = rest.get(..len).unwrap_or_default();
        if field.is_empty() {
            // Two spaces in a row: the spec allows exactly one.
            return Err(malformed(what, self.pos));
        }
        let at = self.pos;
        self.pos += len;
        if self.pos < self.text.len() {
            self.pos += 1; // the separating space
            if self.pos == self.text.len() {
                return Err(malformed("v1 line ends with a space", self.pos - 1));
            }
        }
        Ok((at, field))
    }

    fn rest_offset(&self) -> Option<usize> {
        (self.pos < self.text.len()).then_some(self.pos)
    }
}

fn v1_address(
    text: &str,
    v4: bool,
    offset: usize,
    what: &'static str,
) -> Result<IpAddr, ProxyError> {
    if v4 {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| malformed(what, offset))
    } else {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| malformed(what, offset))
    }
}

fn v1_port(text: &str, offset: usize, what: &'static str) -> Result<u16, ProxyError> {
    // `u16::from_str` takes a leading `+`; the spec wants plain digits, no leading zero.
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = text.len() > 1 && text.starts_with('0');
    if !digits_only || leading_zero {
        return Err(malformed(what, offset));
    }
    text.parse::<u16>().map_err(|_| malformed(what, offset))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    // Every field of the fixed part is checked as soon as it arrives; a read past the
    // end of `buf` only means that more bytes are needed.
    let mut fixed = Reader::new(buf);
    let Ok(ver_cmd) = fixed
        .skip(V2_SIGNATURE.len(), "v2 signature")
        .and_then(|()| fixed.u8("v2 version/command"))
    else {
        return Ok(None);
    };
    let version = ver_cmd >> 4;
    let command = ver_cmd & 0x0f;
    if version != 2 {
        return Err(ProxyError::UnsupportedVersion { version });
    }
    if command != V2_CMD_LOCAL && command != V2_CMD_PROXY {
        return Err(ProxyError::UnsupportedCommand { command });
    }
    let Ok(family) = fixed.u8("v2 family/transport") else {
        return Ok(None);
    };
    let Ok(body_len) = fixed.u16_be("v2 length") else {
        return Ok(None);
    };
    let body_len = usize::from(body_len);
    let header_len = V2_FIXED_LEN + body_len;
    let Some(header) = buf.get(..header_len) else {
        return Ok(None);
    };
    let body = header.get(V2_FIXED_LEN..).unwrap_or_default();

    // LOCAL: the load balancer speaks for itself (health checks); the addresses, if any,
    // are to be ignored, but the TLVs must still be well formed.
    let (source, destination, addr_len) = if command == V2_CMD_LOCAL {
        match v2_address_len(family) {
            Some(n) if n <= body_len => (None, None, n),
            // Nothing of a LOCAL header is used, and with an unknown family the TLVs
            // cannot be located: accept it as the spec asks.
            _ => {
                return Ok(Some((
                    ProxyHeader {
                        source: None,
                        destination: None,
                        authority: None,
                    },
                    header_len,
                )))
            }
        }
    } else {
        match family {
            V2_FAM_UNSPEC => (None, None, 0),
            V2_FAM_TCP4 | V2_FAM_TCP6 => {
                let need = v2_address_len(family).unwrap_or(0);
                if body_len < need {
                    return Err(ProxyError::ShortAddressBlock {
                        family,
                        need,
                        have: body_len,
                    });
                }
                let (src, dst) = v2_addresses(family, body)?;
                (Some(src), Some(dst), need)
            }
            _ => return Err(ProxyError::UnsupportedFamily { family }),
        }
    };

    let authority = parse_tlvs(header, V2_FIXED_LEN + addr_len)?;
    Ok(Some((
        ProxyHeader {
            source,
            destination,
            authority,
        },
        header_len,
    )))
}

/// Bytes of addresses each family puts before the TLVs; `None` for ones we do not read.
/// (The transport nibble does not change the layout: UDP has the same block as TCP.)
fn v2_address_len(family: u8) -> Option<usize> {
    match family >> 4 {
        0x0 => Some(0),
        0x1 => Some(V2_ADDR_LEN_TCP4),
        0x2 => Some(V2_ADDR_LEN_TCP6),
        0x3 => Some(V2_ADDR_LEN_UNIX),
        _ => None,
    }
}

fn v2_addresses(family: u8, body: &[u8]) -> Result<(SocketAddr, SocketAddr), ProxyError> {
    // The caller checked the length field against the family, so a short block is a bug
    // here; it is still answered as an error, not a panic.
    let short = |_| malformed("v2 address block", V2_FIXED_LEN);
    let mut r = Reader::at(body, V2_FIXED_LEN);
    if family == V2_FAM_TCP4 {
        let src = Ipv4Addr::from(r.array::<4>("v2 source address").map_err(short)?);
        let dst = Ipv4Addr::from(r.array::<4>("v2 destination address").map_err(short)?);
        let sport = r.u16_be("v2 source port").map_err(short)?;
        let dport = r.u16_be("v2 destination port").map_err(short)?;
        Ok((
            SocketAddr::V4(SocketAddrV4::new(src, sport)),
            SocketAddr::V4(SocketAddrV4::new(dst, dport)),
        ))
    } else {
        let src = Ipv6Addr::from(r.array::<16>("v2 source address").map_err(short)?);
        let dst = Ipv6Addr::from(r.array::<16>("v2 destination address").map_err(short)?);
        let sport = r.u16_be("v2 source port").map_err(short)?;
        let dport = r.u16_be("v2 destination port").map_err(short)?;
        Ok((
            SocketAddr::V6(SocketAddrV6::new(src, sport, 0, 0)),
            SocketAddr::V6(SocketAddrV6::new(dst, dport, 0, 0)),
        ))
    }
}

/// Walks the TLVs from `start` to the end of `header`, checks the CRC-32C when one is
/// present, and returns the authority. Unknown TLV types are skipped, as the spec asks.
fn parse_tlvs(header: &[u8], start: usize) -> Result<Option<String>, ProxyError> {
    let mut tlvs = Reader::at(header.get(start..).unwrap_or_default(), start);
    let mut authority = None;
    let mut crc: Option<(usize, u32)> = None;
    while !tlvs.is_empty() {
        let pos = tlvs.offset();
        let (Ok(kind), Ok(len)) = (tlvs.u8("v2 TLV type"), tlvs.u16_be("v2 TLV length")) else {
            return Err(malformed("v2 TLV header runs past the header length", pos));
        };
        let value_at = tlvs.offset();
        let Ok(value) = tlvs.take(usize::from(len), "v2 TLV value") else {
            return Err(malformed("v2 TLV value runs past the header length", pos));
        };
        match kind {
            PP2_TYPE_AUTHORITY => {
                if authority.is_some() {
                    return Err(malformed("v2 authority TLV appears twice", pos));
                }
                if value.is_empty() || value.len() > MAX_AUTHORITY_LEN {
                    return Err(malformed("v2 authority TLV length", pos));
                }
                let name = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or_else(|| malformed("v2 authority TLV is not a host name", value_at))?;
                authority = Some(name.to_string());
            }
            PP2_TYPE_CRC32C => {
                if crc.is_some() {
                    return Err(malformed("v2 CRC-32C TLV appears twice", pos));
                }
                let b: [u8; 4] = value
                    .try_into()
                    .map_err(|_| malformed("v2 CRC-32C TLV length (expected 4)", pos))?;
                crc = Some((value_at, u32::from_be_bytes(b)));
            }
            _ => {}
        }
    }
    if let Some((at, expected)) = crc {
        let computed = crc32c_with_zeroed(header, at);
        if computed != expected {
            return Err(ProxyError::ChecksumMismatch { expected, computed });
        }
    }
    Ok(authority)
}

/// CRC-32C (Castagnoli) of `data` with the four bytes at `zeroed` read as zero, as the
/// spec computes the checksum TLV.
fn crc32c_with_zeroed(data: &[u8], zeroed: usize) -> u32 {
    let mut crc = !0u32;
    for (i, &byte) in data.iter().enumerate() {
        let b = if (zeroed..zeroed + 4).contains(&i) {
            0
        } else {
            byte
        };
        crc ^= u32::from(b);
        for _ in 0..8 {
            // 0x82F63B78: the Castagnoli polynomial, reflected.
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn malformed(what: &'static str, offset: usize) -> ProxyError {
    ProxyError::Malformed { what, offset }
}

/// Writes a v2 `PROXY` header for a TCP connection from `source` to `destination`, with
/// an authority TLV carrying `authority` (the SNI) when given.
///
/// Mixed families are written as IPv6, with the IPv4 side IPv4-mapped, since one header
/// has one family. An authority longer than 255 bytes (no DNS name is) or holding bytes
/// outside printable ASCII is left out rather than sent broken.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, authority: Option<&str>) -> Vec<u8> {
    // The filter leaves at most MAX_AUTHORITY_LEN (255) bytes, so the TLV length is a u8
    // widened to the u16 the format wants, and no cast can truncate.
    let authority = authority
        .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_graphic()))
        .and_then(|a| Some((a, u8::try_from(a.len()).ok()?)))
        .filter(|(_, len)| usize::from(*len) <= MAX_AUTHORITY_LEN);
    let mut addresses = Vec::with_capacity(V2_ADDR_LEN_TCP6);
    let family = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            addresses.extend_from_slice(&s.ip().octets());
            addresses.extend_from_slice(&d.ip().octets());
            V2_FAM_TCP4
        }
        _ => {
            addresses.extend_from_slice(&v6_octets(source.ip()));
            addresses.extend_from_slice(&v6_octets(destination.ip()));
            V2_FAM_TCP6
        }
    };
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&destination.port().to_be_bytes());

    let mut tlvs = Vec::new();
    if let Some((name, len)) = authority {
        tlvs.push(PP2_TYPE_AUTHORITY);
        tlvs.extend_from_slice(&u16::from(len).to_be_bytes());
        tlvs.extend_from_slice(name.as_bytes());
    }

    // At most 36 + 3 + 255 bytes, far below u16::MAX: both parts are bounded above.
    let body_len = u16::try_from(addresses.len() + tlvs.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(V2_FIXED_LEN + usize::from(body_len));
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x20 | V2_CMD_PROXY);
    out.push(family);
    out.extend_from_slice(&body_len.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.extend_from_slice(&tlvs);
    out
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    /// Every strict prefix of a valid header must ask for more bytes, never fail.
    fn assert_prefixes_incomplete(header: &[u8]) {
        for n in 0..header.len() {
            assert_eq!(
                parse(&header[..n]),
                Ok(None),
                "prefix of {n} bytes of {:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn v1_tcp4_as_haproxy_sends_it() {
        let mut bytes = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"\x16\x03\x01rest of the client hello");
        assert_prefixes_incomplete(&bytes[..header_len]);
        let (h, len) = parse(&bytes).unwrap().unwrap();
        assert_eq!(len, header_len);
        assert_eq!(h.source, Some(sa("192.168.0.1:56324")));
        assert_eq!(h.destination, Some(sa("192.168.0.11:443")));
        assert_eq!(h.authority, None);
    }

    #[test]
    fn v1_tcp6() {
        let bytes = b"PROXY TCP6 2001:db8::1 ::1 65535 8443\r\n";
        assert_prefixes_incomplete(bytes);
        let (h, len) = parse(bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(h.source, Some(sa("[2001:db8::1]:65535")));
        assert_eq!(h.destination, Some(sa("[::1]:8443")));
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        for bytes in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        ] {
            assert_prefixes_incomplete(bytes);
            let (h, len) = parse(bytes).unwrap().unwrap();
            assert_eq!(len, bytes.len());
            assert_eq!(h.source, None);
            assert_eq!(h.destination, None);
        }
    }

    #[test]
    fn v1_longest_legal_line_parses() {
        let line = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                    ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert!(line.len() <= V1_MAX_LEN, "{}", line.len());
        let (h, len) = parse(line.as_bytes()).unwrap().unwrap();
        assert_eq!(len, line.len());
        assert_eq!(h.source.map(|s| s.port()), Some(65535));
    }

    #[test]
    fn v1_bad_lines_name_the_field() {
        let cases: &[(&[u8], &str, usize)] = &[
            (
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                "v1 protocol (expected TCP4, TCP6 or UNKNOWN)",
                6,
            ),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1 source address", 11),
            (
                b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
                "v1 destination address",
                19,
            ),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1 source address", 11),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                "v1 source port",
                27,
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "v1 source port", 27),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "v1 source port", 27),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 x\r\n",
                "v1 destination port",
                29,
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                "v1 destination port",
                28,
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                "v1 line has fields after the destination port",
                31,
            ),
            (
                b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
                "v1 source address",
                11,
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
                "v1 line ends with a space",
                30,
            ),
            (
                b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
                "non-printable byte in v1 line",
                18,
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
                "stray CR or LF in v1 line",
                30,
            ),
            (
                b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
                "non-printable byte in v1 line",
                18,
            ),
            (b"PROXY \r\n", "v1 line ends with a space", 5),
        ];
        for &(bytes, what, offset) in cases {
            assert_eq!(
                parse(bytes),
                Err(ProxyError::Malformed { what, offset }),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn v1_without_crlf_is_too_long() {
        let mut bytes = b"PROXY TCP4 ".to_vec();
        bytes.resize(V1_MAX_LEN, b'1');
        assert_eq!(
            parse(&bytes),
            Err(ProxyError::TooLong {
                len: V1_MAX_LEN,
                max: V1_MAX_LEN
            })
        );
        // One byte short of the bound: still waiting.
        assert_eq!(parse(&bytes[..V1_MAX_LEN - 1]), Ok(None));
    }

    #[test]
    fn not_proxy_protocol() {
        for bytes in [
            &b"\x16\x03\x01\x02\x00\x01"[..],
            b"GET / HTTP/1.1\r\n",
            b"proxy TCP4",
            b"PROXYTCP4",
            b"\r\n\r\n\0\r\nQUIX\n",
            b"\r\n\r\n\x01",
        ] {
            assert_eq!(parse(bytes), Err(ProxyError::NotProxyProtocol), "{bytes:?}");
        }
        assert_eq!(parse(b""), Ok(None));
    }

    /// A v2 header as HAProxy 2.6 `send-proxy-v2` writes it for 127.0.0.2:40000 ->
    /// 127.0.0.1:443, with an ALPN TLV (0x01) and the authority, built byte by byte from
    /// the spec rather than by `encode_v2`.
    fn haproxy_style_v2_tcp4() -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x21); // version 2, PROXY
        v.push(0x11); // AF_INET, STREAM
        let tlvs: &[u8] = &[
            0x01, 0x00, 0x02, b'h', b'2', // ALPN "h2"
            0x02, 0x00, 0x05, b'a', b'.', b'c', b'o', b'm', // authority "a.com"
        ];
        let len = 12 + tlvs.len();
        v.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        v.extend_from_slice(&[127, 0, 0, 2, 127, 0, 0, 1]);
        v.extend_from_slice(&40000u16.to_be_bytes());
        v.extend_from_slice(&443u16.to_be_bytes());
        v.extend_from_slice(tlvs);
        v
    }

    #[test]
    fn v2_tcp4_with_tlvs() {
        let mut bytes = haproxy_style_v2_tcp4();
        let header_len = bytes.len();
        assert_prefixes_incomplete(&bytes);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (h, len) = parse(&bytes).unwrap().unwrap();
        assert_eq!(len, header_len);
        assert_eq!(h.source, Some(sa("127.0.0.2:40000")));
        assert_eq!(h.destination, Some(sa("127.0.0.1:443")));
        assert_eq!(h.authority.as_deref(), Some("a.com"));
    }

    #[test]
    fn v2_tcp6() {
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(&[0xea, 0x60, 0x01, 0xbb]);
        assert_prefixes_incomplete(&v);
        let (h, len) = parse(&v).unwrap().unwrap();
        assert_eq!(len, 52);
        assert_eq!(h.source, Some(sa("[2001:db8::7]:60000")));
        assert_eq!(h.destination, Some(sa("[2001:db8::1]:443")));
    }

    #[test]
    fn v2_local_has_no_addresses() {
        // HAProxy health checks: LOCAL, family UNSPEC, no body.
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_prefixes_incomplete(&v);
        let (h, len) = parse(&v).unwrap().unwrap();
        assert_eq!((h.source, h.destination, len), (None, None, 16));

        // LOCAL with addresses and a TLV: addresses ignored, TLV still read.
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x20, 0x11, 0x00, 12 + 4]);
        v.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2]);
        v.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // NOOP TLV
        let (h, len) = parse(&v).unwrap().unwrap();
        assert_eq!((h.source, h.destination, len), (None, None, 32));
    }

    #[test]
    fn v2_proxy_unspec_has_no_addresses() {
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        let (h, _) = parse(&v).unwrap().unwrap();
        assert_eq!((h.source, h.destination), (None, None));
    }

    #[test]
    fn v2_bad_headers_are_named() {
        let head = |ver_cmd: u8, fam: u8, len: u16| {
            let mut v = V2_SIGNATURE.to_vec();
            v.push(ver_cmd);
            v.push(fam);
            v.extend_from_slice(&len.to_be_bytes());
            v
        };
        assert_eq!(
            parse(&head(0x11, 0x11, 0)),
            Err(ProxyError::UnsupportedVersion { version: 1 })
        );
        assert_eq!(
            parse(&head(0x22, 0x11, 0)),
            Err(ProxyError::UnsupportedCommand { command: 2 })
        );
        for fam in [0x12u8, 0x22, 0x31, 0x32, 0x13, 0x41] {
            let mut v = head(0x21, fam, 216);
            v.resize(16 + 216, 0);
            assert_eq!(
                parse(&v),
                Err(ProxyError::UnsupportedFamily { family: fam }),
                "{fam:#x}"
            );
        }
        let mut v = head(0x21, 0x11, 8);
        v.resize(16 + 8, 0);
        assert_eq!(
            parse(&v),
            Err(ProxyError::ShortAddressBlock {
                family: 0x11,
                need: 12,
                have: 8
            })
        );
        let mut v = head(0x21, 0x21, 12);
        v.resize(16 + 12, 0);
        assert_eq!(
            parse(&v),
            Err(ProxyError::ShortAddressBlock {
                family: 0x21,
                need: 36,
                have: 12
            })
        );
    }

    #[test]
    fn v2_bad_tlvs_are_named() {
        let with_tlvs = |tlvs: &[u8]| {
            let mut v = V2_SIGNATURE.to_vec();
            v.extend_from_slice(&[0x21, 0x11]);
            v.extend_from_slice(&u16::try_from(12 + tlvs.len()).unwrap().to_be_bytes());
            v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
            v.extend_from_slice(tlvs);
            v
        };
        let m = |what, offset| Err(ProxyError::Malformed { what, offset });
        assert_eq!(
            parse(&with_tlvs(&[0x02, 0x00])),
            m("v2 TLV header runs past the header length", 28)
        );
        assert_eq!(
            parse(&with_tlvs(&[0x02, 0x00, 0x05, b'a'])),
            m("v2 TLV value runs past the header length", 28)
        );
        assert_eq!(
            parse(&with_tlvs(&[0x02, 0x00, 0x00])),
            m("v2 authority TLV length", 28)
        );
        assert_eq!(
            parse(&with_tlvs(&[0x02, 0x00, 0x02, b'a', 0xff])),
            m("v2 authority TLV is not a host name", 31)
        );
        assert_eq!(
            parse(&with_tlvs(&[
                0x02, 0x00, 0x01, b'a', 0x02, 0x00, 0x01, b'b'
            ])),
            m("v2 authority TLV appears twice", 32)
        );
        assert_eq!(
            parse(&with_tlvs(&[0x03, 0x00, 0x02, 0, 0])),
            m("v2 CRC-32C TLV length (expected 4)", 28)
        );
        let mut long = vec![0x02, 0x01, 0x00];
        long.resize(3 + 256, b'a');
        assert_eq!(parse(&with_tlvs(&long)), m("v2 authority TLV length", 28));
    }

    #[test]
    fn v2_crc32c_is_checked() {
        // Known answer from RFC 3720 (iSCSI) B.4: 32 bytes of zeros.
        assert_eq!(crc32c_with_zeroed(&[0u8; 32], usize::MAX - 4), 0x8A91_36AA);
        assert_eq!(
            crc32c_with_zeroed(b"123456789", usize::MAX - 4),
            0xE306_9283
        );

        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x21, 0x11, 0x00, 12 + 7]);
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        v.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
        let crc_at = v.len() - 4;
        let good = crc32c_with_zeroed(&v, crc_at);
        v[crc_at..].copy_from_slice(&good.to_be_bytes());
        assert!(parse(&v).unwrap().is_some());

        let bad = good ^ 1;
        v[crc_at..].copy_from_slice(&bad.to_be_bytes());
        assert_eq!(
            parse(&v),
            Err(ProxyError::ChecksumMismatch {
                expected: bad,
                computed: good
            })
        );
    }

    /// Bytes captured from HAProxy 2.6.12 (Debian 12) on loopback: `send-proxy-v2` over
    /// IPv4 (followed by the ClientHello's first bytes), a `check-send-proxy` health
    /// check, `send-proxy` (v1), and `send-proxy-v2` over IPv6 (followed by "hello").
    #[test]
    fn real_haproxy_captures() {
        let cases: &[(&str, Option<&str>, Option<&str>, usize)] = &[
            (
                "0d0a0d0a000d0a515549540a2111000c7f0000027f0000018b3d480b16030101",
                Some("127.0.0.2:35645"),
                Some("127.0.0.1:18443"),
                28,
            ),
            ("0d0a0d0a000d0a515549540a20000000", None, None, 16),
            (
                "50524f58592054435034203132372e302e302e32203132372e302e302e3120\
                 33333532332031383434330d0a68656c6c6f",
                Some("127.0.0.2:33523"),
                Some("127.0.0.1:18443"),
                44,
            ),
            (
                "0d0a0d0a000d0a515549540a2121002400000000000000000000000000000001\
                 00000000000000000000000000000001c9b6480d68656c6c6f",
                Some("[::1]:51638"),
                Some("[::1]:18445"),
                52,
            ),
        ];
        for &(hex_bytes, src, dst, want_len) in cases {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert_prefixes_incomplete(&bytes[..want_len]);
            let (h, len) = parse(&bytes).unwrap().unwrap();
            assert_eq!(len, want_len, "{hex_bytes}");
            assert_eq!(h.source, src.map(sa), "{hex_bytes}");
            assert_eq!(h.destination, dst.map(sa), "{hex_bytes}");
        }
    }

    #[test]
    fn v2_local_with_a_family_we_do_not_read_is_accepted() {
        // LOCAL over AF_UNIX (216 bytes of paths): nothing is used, so nothing is refused.
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x20, 0x31, 0x00, 216]);
        v.resize(16 + 216, 0xaa);
        let (h, len) = parse(&v).unwrap().unwrap();
        assert_eq!((h.source, h.destination, len), (None, None, 232));
        // An undefined family under LOCAL: same.
        let mut v = V2_SIGNATURE.to_vec();
        v.extend_from_slice(&[0x20, 0x71, 0x00, 0x03, 1, 2, 3]);
        assert_eq!(parse(&v).unwrap().map(|(_, n)| n), Some(19));
    }

    /// Every single-byte change of real headers gives an answer, never a panic, and an
    /// accepted header never claims more bytes than it was given.
    #[test]
    fn every_single_byte_mutation_is_answered() {
        let mut headers = vec![
            b"PROXY TCP4 127.0.0.2 127.0.0.1 33523 18443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 ::1 65535 8443\r\n".to_vec(),
            haproxy_style_v2_tcp4(),
            encode_v2(
                sa("[2001:db8::7]:60000"),
                sa("[::1]:8443"),
                Some("b.example.com"),
            ),
        ];
        let mut with_crc = V2_SIGNATURE.to_vec();
        with_crc.extend_from_slice(&[0x21, 0x11, 0x00, 12 + 7]);
        with_crc.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        with_crc.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
        let at = with_crc.len() - 4;
        let crc = crc32c_with_zeroed(&with_crc, at);
        with_crc[at..].copy_from_slice(&crc.to_be_bytes());
        headers.push(with_crc);
        for header in headers {
            for i in 0..header.len() {
                for value in [0x00, 0x01, 0x0a, 0x0d, 0x20, 0x7f, 0x80, 0xff] {
                    let mut mutated = header.clone();
                    mutated[i] = value;
                    if let Ok(Some((_, len))) = parse(&mutated) {
                        assert!(len <= mutated.len(), "{mutated:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn encode_v2_matches_the_spec_bytes() {
        let got = encode_v2(sa("127.0.0.2:40000"), sa("127.0.0.1:443"), Some("a.com"));
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 12 + 8]);
        want.extend_from_slice(&[127, 0, 0, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
        want.extend_from_slice(&[0x02, 0x00, 0x05, b'a', b'.', b'c', b'o', b'm']);
        assert_eq!(got, want);
    }

    #[test]
    fn encode_v2_round_trips() {
        let cases = [
            (
                sa("10.1.2.3:1"),
                sa("10.9.9.9:443"),
                Some("app1.example.com"),
            ),
            (sa("[2001:db8::7]:60000"), sa("[::1]:8443"), None),
            (
                sa("[fe80::1]:5"),
                sa("[2001:db8::1]:443"),
                Some("b.example.com"),
            ),
        ];
        for (src, dst, authority) in cases {
            let bytes = encode_v2(src, dst, authority);
            assert_prefixes_incomplete(&bytes);
            let (h, len) = parse(&bytes).unwrap().unwrap();
            assert_eq!(len, bytes.len());
            assert_eq!(h.source, Some(src));
            assert_eq!(h.destination, Some(dst));
            assert_eq!(h.authority.as_deref(), authority);
        }
    }

    #[test]
    fn encode_v2_mixed_families_become_mapped_ipv6() {
        let bytes = encode_v2(sa("192.0.2.1:1000"), sa("[2001:db8::1]:443"), None);
        let (h, _) = parse(&bytes).unwrap().unwrap();
        assert_eq!(h.source, Some(sa("[::ffff:192.0.2.1]:1000")));
        assert_eq!(h.destination, Some(sa("[2001:db8::1]:443")));
    }

    #[test]
    fn encode_v2_leaves_out_an_authority_that_is_not_a_host_name() {
        let long = "a".repeat(256);
        for bad in [long.as_str(), "", "a b", "caf\u{e9}"] {
            let bytes = encode_v2(sa("10.0.0.1:1"), sa("10.0.0.2:2"), Some(bad));
            let (h, len) = parse(&bytes).unwrap().unwrap();
            assert_eq!((h.authority, len), (None, 28), "{bad:?}");
        }
    }
}
