//! The ClientHello peek against hellos captured from real clients (rustls, OpenSSL's
//! s_client, curl, Chromium with a post-quantum key share; see `data/hellos/README.md`):
//! every prefix must answer "need more bytes" and the whole hello the same answer, however
//! the hello is cut into TLS records; `tls-parser` is used as an independent second
//! parser. Then each kind of bad input gets its own named error.

use passthrough::client_hello::{
    parse, ClientHello, ClientHelloError, NotTlsReason, MAX_CLIENT_HELLO_BYTES,
};

/// One captured hello and what its client was told to send (see the README beside it).
struct Capture {
    file: &'static str,
    sni: Option<&'static str>,
    alpn: &'static [&'static [u8]],
}

const CAPTURES: &[Capture] = &[
    Capture {
        file: "rustls_h2_http11.bin",
        sni: Some("rustls.example.com"),
        alpn: &[b"h2", b"http/1.1"],
    },
    Capture {
        // Sent as `OpenSSL.Example.COM`: the parser lowercases.
        file: "openssl_mixed_case.bin",
        sni: Some("openssl.example.com"),
        alpn: &[b"h2", b"http/1.1", b"acme-tls/1"],
    },
    Capture {
        file: "openssl_tls12_no_sni.bin",
        sni: None,
        alpn: &[],
    },
    Capture {
        file: "curl.bin",
        sni: Some("curl.example.net"),
        alpn: &[b"h2", b"http/1.1"],
    },
    Capture {
        file: "chromium_pq.bin",
        sni: Some("pq.chromium.test"),
        alpn: &[b"h2", b"http/1.1"],
    },
];

fn data_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hellos")
        .join(file)
}

fn load(file: &str) -> Vec<u8> {
    let path = data_path(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn expected(c: &Capture, consumed: usize) -> ClientHello {
    ClientHello {
        sni: c.sni.map(str::to_owned),
        alpn: c.alpn.iter().map(|p| p.to_vec()).collect(),
        consumed,
    }
}

/// The handshake message (header included) of a capture that arrived as one record.
fn single_record_message(bytes: &[u8]) -> &[u8] {
    assert_eq!(bytes[0], 22, "capture starts with a handshake record");
    let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
    assert_eq!(bytes.len(), 5 + len, "capture is one record");
    &bytes[5..]
}

/// Frames `message` as handshake records with the given payload sizes (the last record
/// takes what is left), with record version `version`.
fn frame(message: &[u8], sizes: &[usize], version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = message;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
        let (fragment, tail) = rest.split_at(n);
        out.push(22);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        out.extend_from_slice(fragment);
        rest = tail;
    }
    out
}

/// Checks that every strict prefix of `bytes` needs more bytes and the whole gives `want`.
fn assert_prefixes(bytes: &[u8], want: &ClientHello, what: &str) {
    for i in 0..bytes.len() {
        match parse(&bytes[..i]) {
            Ok(None) => {}
            other => panic!("{what}: prefix of {i}/{} bytes gave {other:?}", bytes.len()),
        }
    }
    assert_eq!(parse(bytes), Ok(Some(want.clone())), "{what}: whole hello");
}

/// The SNI bytes (as sent) and the ALPN protocol names.
type Routing = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// SNI and ALPN as `tls-parser` reads them, for a hello in one record.
fn tls_parser_view(bytes: &[u8]) -> Option<Routing> {
    use tls_parser::{
        parse_tls_extensions, parse_tls_plaintext, SNIType, TlsExtension, TlsMessage,
        TlsMessageHandshake,
    };
    let (_, record) = parse_tls_plaintext(bytes).ok()?;
    let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello))) = record.msg.first()
    else {
        return None;
    };
    let mut sni = None;
    let mut alpn = Vec::new();
    if let Some(ext) = hello.ext {
        let (rest, extensions) = parse_tls_extensions(ext).ok()?;
        if !rest.is_empty() {
            return None;
        }
        for e in extensions {
            match e {
                TlsExtension::SNI(names) => {
                    sni = names
                        .iter()
                        .find(|(t, _)| *t == SNIType::HostName)
                        .map(|(_, n)| n.to_vec());
                }
                TlsExtension::ALPN(protocols) => {
                    alpn = protocols.iter().map(|p| p.to_vec()).collect();
                }
                _ => {}
            }
        }
    }
    Some((sni, alpn))
}

#[test]
fn captures_give_what_the_client_sent() {
    for c in CAPTURES {
        let bytes = load(c.file);
        let hello = parse(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", c.file))
            .unwrap_or_else(|| panic!("{}: incomplete", c.file));
        assert_eq!(hello, expected(c, bytes.len()), "{}", c.file);

        // A second, independent parser reads the same name and protocols.
        let (sni, alpn) = tls_parser_view(&bytes)
            .unwrap_or_else(|| panic!("{}: tls-parser could not read it", c.file));
        assert_eq!(
            sni.map(|n| n.to_ascii_lowercase()),
            c.sni.map(|s| s.as_bytes().to_vec()),
            "{}: tls-parser SNI",
            c.file
        );
        assert_eq!(alpn, hello.alpn, "{}: tls-parser ALPN", c.file);
    }
}

#[test]
fn the_post_quantum_hello_is_large() {
    // The point of this capture: a hello that does not fit the 1500-byte segments of
    // older assumptions still fits the bound with room.
    let bytes = load("chromium_pq.bin");
    assert!(
        bytes.len() > 1500,
        "chromium hello is {} bytes",
        bytes.len()
    );
    assert!(bytes.len() < MAX_CLIENT_HELLO_BYTES / 4);
    // X25519MLKEM768 (0x11ec) is offered in supported_groups and key_share.
    assert!(bytes.windows(2).any(|w| w == [0x11, 0xec]));
}

#[test]
fn every_prefix_needs_more_bytes() {
    for c in CAPTURES {
        let bytes = load(c.file);
        assert_prefixes(&bytes, &expected(c, bytes.len()), c.file);
    }
}

#[test]
fn bytes_after_the_hello_are_not_consumed() {
    // What a client may send next without waiting (TLS 1.3 middlebox-compatibility
    // change_cipher_spec, early data), or anything else: not part of the hello.
    let next_records: [&[u8]; 3] = [
        &[20, 3, 3, 0, 1, 1],
        &[23, 3, 3, 0, 3, 1, 2, 3],
        b"GET / HTTP/1.1\r\n",
    ];
    for c in CAPTURES {
        let bytes = load(c.file);
        for next in next_records {
            let mut buf = bytes.clone();
            buf.extend_from_slice(next);
            assert_eq!(
                parse(&buf),
                Ok(Some(expected(c, bytes.len()))),
                "{} followed by {next:?}",
                c.file
            );
        }
    }
}

#[test]
fn two_records_at_several_split_points() {
    for c in CAPTURES {
        let bytes = load(c.file);
        let message = single_record_message(&bytes);
        let len = message.len();
        // Inside the handshake header, inside the random, in the middle, one byte short.
        for split in [1, 2, 3, 4, 5, 38, len / 2, len - 1] {
            let framed = frame(message, &[split], 0x0303);
            assert_eq!(framed.len(), bytes.len() + 5);
            let what = format!("{} split at {split}", c.file);
            assert_prefixes(&framed, &expected(c, framed.len()), &what);
        }
    }
}

#[test]
fn one_byte_per_record() {
    for c in CAPTURES {
        let bytes = load(c.file);
        let message = single_record_message(&bytes);
        let framed = frame(message, &vec![1; message.len()], 0x0301);
        assert_eq!(framed.len(), message.len() * 6);
        let what = format!("{} in one-byte records", c.file);
        assert_prefixes(&framed, &expected(c, framed.len()), &what);
    }
}

#[test]
fn uneven_records_and_every_record_version() {
    let c = &CAPTURES[0];
    let bytes = load(c.file);
    let message = single_record_message(&bytes);
    for version in [0x0301, 0x0302, 0x0303] {
        let framed = frame(message, &[7, 1, 100, 3], version);
        assert_eq!(parse(&framed), Ok(Some(expected(c, framed.len()))));
    }
}

// ---- bad inputs ----

fn not_tls(reason: NotTlsReason, offset: usize) -> Result<Option<ClientHello>, ClientHelloError> {
    Err(ClientHelloError::NotTls { reason, offset })
}

#[test]
fn plain_http_is_refused_at_its_first_byte() {
    let request = b"GET / HTTP/1.1\r\nHost: app1.example.com\r\n\r\n";
    for i in 1..=request.len() {
        assert_eq!(
            parse(&request[..i]),
            not_tls(NotTlsReason::ContentType(b'G'), 0)
        );
    }
    assert_eq!(
        parse(b"PRI * HTTP/2.0\r\n"),
        not_tls(NotTlsReason::ContentType(b'P'), 0)
    );
    assert!(parse(request)
        .unwrap_err()
        .to_string()
        .contains("content type 71"));
}

#[test]
fn other_non_tls_bytes_are_refused() {
    assert_eq!(parse(&[0]), not_tls(NotTlsReason::ContentType(0), 0));
    // SSH greets first with "SSH-2.0-...".
    assert_eq!(
        parse(b"SSH-2.0-OpenSSH_9.2\r\n"),
        not_tls(NotTlsReason::ContentType(b'S'), 0)
    );
    // A PROXY v2 header the listener was not told to expect.
    assert_eq!(
        parse(b"\r\n\r\n\0\r\nQUIT\n"),
        not_tls(NotTlsReason::ContentType(b'\r'), 0)
    );
    assert_eq!(parse(&[]), Ok(None));
}

#[test]
fn sslv2_compatible_hello_is_not_tls() {
    // An SSLv2-framed CLIENT-HELLO offering TLS 1.0: two-byte header with the high bit
    // set, msg type 1, version 3.1, then cipher-spec, session-id and challenge lengths.
    let mut v2 = vec![
        0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    v2.extend_from_slice(&[0; 21]);
    v2.extend_from_slice(&[0x11; 16]);
    assert_eq!(parse(&v2), not_tls(NotTlsReason::Sslv2Framing, 0));
    assert_eq!(parse(&v2[..1]), not_tls(NotTlsReason::Sslv2Framing, 0));
}

#[test]
fn alert_record_first_is_not_tls() {
    // A fatal handshake_failure alert.
    let alert = [21, 3, 3, 0, 2, 2, 40];
    assert_eq!(parse(&alert), not_tls(NotTlsReason::ContentType(21), 0));
    assert!(parse(&alert).unwrap_err().to_string().contains("alert"));
    // Nor a change_cipher_spec or application data first.
    assert_eq!(
        parse(&[20, 3, 3, 0, 1, 1]),
        not_tls(NotTlsReason::ContentType(20), 0)
    );
    assert_eq!(
        parse(&[23, 3, 3]),
        not_tls(NotTlsReason::ContentType(23), 0)
    );
}

#[test]
fn record_versions_tls_does_not_use_are_refused() {
    assert_eq!(
        parse(&[22, 3, 0, 0, 5]),
        not_tls(NotTlsReason::RecordVersion(0x0300), 0)
    );
    assert_eq!(
        parse(&[22, 3, 4]),
        not_tls(NotTlsReason::RecordVersion(0x0304), 0)
    );
    // Known wrong from the major byte alone.
    assert_eq!(
        parse(&[22, 2]),
        not_tls(NotTlsReason::RecordVersion(0x0200), 0)
    );
    assert_eq!(
        parse(&[22, 0xfe, 0xfd]),
        not_tls(NotTlsReason::RecordVersion(0xfefd), 0)
    );
}

#[test]
fn a_later_record_with_a_bad_version_is_refused() {
    let bytes = load(CAPTURES[0].file);
    let message = single_record_message(&bytes);
    let mut framed = frame(message, &[10], 0x0303);
    // Second record header at 5 + 10: type, major, minor.
    framed[17] = 0x04;
    assert_eq!(
        parse(&framed),
        not_tls(NotTlsReason::RecordVersion(0x0304), 15)
    );
}

#[test]
fn record_length_above_two_to_the_fourteen_is_refused() {
    assert_eq!(
        parse(&[22, 3, 1, 0x40, 0x01]),
        Err(ClientHelloError::RecordTooLong {
            length: 16385,
            offset: 0
        })
    );
    assert_eq!(
        parse(&[22, 3, 1, 0xff, 0xff, 1]),
        Err(ClientHelloError::RecordTooLong {
            length: 65535,
            offset: 0
        })
    );
}

#[test]
fn an_empty_handshake_record_is_refused() {
    assert_eq!(
        parse(&[22, 3, 1, 0, 0, 22, 3, 1]),
        Err(ClientHelloError::Malformed {
            what: "empty handshake record",
            offset: 0
        })
    );
}

#[test]
fn handshake_length_above_the_cap_is_too_large() {
    // Handshake length 16384: with its 4-byte header and one record header, 16393 bytes.
    assert_eq!(
        parse(&[22, 3, 1, 0, 4, 1, 0x00, 0x40, 0x00]),
        Err(ClientHelloError::TooLarge {
            needed: 16393,
            limit: MAX_CLIENT_HELLO_BYTES
        })
    );
    // The same length arriving one byte per record: refused once its last byte is in.
    let framed = frame(&[1, 0x00, 0x40, 0x00], &[1, 1, 1, 1], 0x0303);
    assert_eq!(parse(&framed[..23]), Ok(None));
    assert!(matches!(
        parse(&framed[..24]),
        Err(ClientHelloError::TooLarge { needed: 16393, .. })
    ));
    // A record that would end past the cap, even with a small handshake inside.
    let mut big = vec![22, 3, 3, 0x40, 0x00];
    big.extend_from_slice(&hello_message(None));
    assert_eq!(
        parse(&big),
        Err(ClientHelloError::TooLarge {
            needed: 16389,
            limit: MAX_CLIENT_HELLO_BYTES
        })
    );
    // The largest: 2^24 - 1, announced in the first record of a small hello.
    assert!(matches!(
        parse(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
        Err(ClientHelloError::TooLarge { .. })
    ));
    // Just within: a record ending at exactly the cap needs more bytes, not an error.
    let body_len = MAX_CLIENT_HELLO_BYTES - 9;
    let header = [
        22,
        3,
        3,
        0x3f,
        0xfb,
        1,
        0,
        u8::try_from(body_len >> 8).unwrap(),
        u8::try_from(body_len & 0xff).unwrap(),
    ];
    assert_eq!(parse(&header), Ok(None));
}

#[test]
fn records_accumulating_past_the_cap_are_too_large() {
    // A 4000-byte hello in one-byte records needs 20000 bytes of records: the answer is
    // "more bytes" while the buffer is below the cap, then TooLarge, never a bigger buffer.
    let mut message = vec![1, 0, 0x0f, 0x9c];
    message.resize(4000, 0);
    let framed = frame(&message, &vec![1; message.len()], 0x0303);
    let mut saw_too_large_at = None;
    for i in (0..framed.len()).step_by(97) {
        match parse(&framed[..i]) {
            Ok(None) => assert!(i < MAX_CLIENT_HELLO_BYTES),
            Err(ClientHelloError::TooLarge { needed, limit }) => {
                assert_eq!(limit, MAX_CLIENT_HELLO_BYTES);
                assert!(needed > MAX_CLIENT_HELLO_BYTES);
                saw_too_large_at.get_or_insert(i);
            }
            other => panic!("prefix {i}: {other:?}"),
        }
    }
    let first = saw_too_large_at.expect("TooLarge reached");
    assert!(first <= MAX_CLIENT_HELLO_BYTES + 97);
}

#[test]
fn a_handshake_message_other_than_client_hello_is_refused() {
    // A ServerHello (type 2) where a ClientHello belongs: refused once its type byte is in.
    assert_eq!(
        parse(&[22, 3, 3, 0, 0x50, 2]),
        Err(ClientHelloError::NotClientHello {
            handshake_type: 2,
            offset: 5
        })
    );
    // A Finished (20) in one-byte records: known from its first record.
    let framed = frame(&[20, 0, 0, 12], &[1, 1, 1], 0x0303);
    assert_eq!(
        parse(&framed[..6]),
        Err(ClientHelloError::NotClientHello {
            handshake_type: 20,
            offset: 5
        })
    );
}

#[test]
fn a_record_of_another_type_inside_the_hello_is_refused() {
    let bytes = load(CAPTURES[0].file);
    let message = single_record_message(&bytes);
    let framed = frame(message, &[50], 0x0303);
    let (first, second) = framed.split_at(55);
    for interleaved in [[21u8, 3, 3, 0, 2, 1, 0], [20, 3, 3, 0, 1, 1, 0]] {
        let mut buf = first.to_vec();
        buf.extend_from_slice(&interleaved[..interleaved.len() - 1]);
        buf.extend_from_slice(second);
        assert_eq!(
            parse(&buf),
            Err(ClientHelloError::UnexpectedRecord {
                content_type: interleaved[0],
                offset: 55
            })
        );
    }
}

#[test]
fn bytes_after_the_hello_in_its_record_are_refused() {
    let bytes = load(CAPTURES[0].file);
    let message = single_record_message(&bytes);
    let mut padded = message.to_vec();
    padded.extend_from_slice(&[0, 0, 0]);
    let framed = frame(&padded, &[], 0x0303);
    assert_eq!(
        parse(&framed),
        Err(ClientHelloError::Malformed {
            what: "bytes after the ClientHello in its last record",
            offset: bytes.len()
        })
    );
}

// ---- malformed hello bodies, built field by field ----

/// A minimal ClientHello handshake message with the given extensions, or none at all.
fn hello_message(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0); // empty session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // null compression
    if let Some(extensions) = extensions {
        let mut block = Vec::new();
        for (t, data) in extensions {
            block.extend_from_slice(&t.to_be_bytes());
            block.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            block.extend_from_slice(data);
        }
        body.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&block);
    }
    let mut message = vec![1];
    message.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    message.extend_from_slice(&body);
    message
}

fn record(message: &[u8]) -> Vec<u8> {
    frame(message, &[], 0x0301)
}

fn sni_data(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (t, name) in entries {
        list.push(*t);
        list.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    data
}

fn alpn_data(protocols: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in protocols {
        list.push(u8::try_from(p.len()).unwrap());
        list.extend_from_slice(p);
    }
    let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    data
}

/// Body offset of the extensions block in [`hello_message`], in the one-record buffer.
const EXTENSIONS_AT: usize = 5 + 4 + 2 + 32 + 1 + 4 + 2;

fn malformed(what: &'static str, offset: usize) -> Result<Option<ClientHello>, ClientHelloError> {
    Err(ClientHelloError::Malformed { what, offset })
}

#[test]
fn the_builder_makes_hellos_tls_parser_accepts() {
    let buf = record(&hello_message(Some(&[
        (0, sni_data(&[(0, b"App.Test")])),
        (16, alpn_data(&[b"h2"])),
    ])));
    assert_eq!(
        tls_parser_view(&buf),
        Some((Some(b"App.Test".to_vec()), vec![b"h2".to_vec()]))
    );
    assert_eq!(
        parse(&buf),
        Ok(Some(ClientHello {
            sni: Some("app.test".into()),
            alpn: vec![b"h2".to_vec()],
            consumed: buf.len()
        }))
    );
}

#[test]
fn a_hello_without_extensions_has_no_sni() {
    let buf = record(&hello_message(None));
    assert_eq!(
        parse(&buf),
        Ok(Some(ClientHello {
            sni: None,
            alpn: vec![],
            consumed: buf.len()
        }))
    );
}

#[test]
fn truncated_extensions_are_malformed() {
    let message = hello_message(Some(&[
        (0, sni_data(&[(0, b"a.test")])),
        (16, alpn_data(&[b"h2"])),
    ]));
    // Cut bytes off the end and fix the record and handshake lengths, so that only the
    // extensions block (and the extension inside it) are short.
    for cut in 1..=8 {
        let mut short = message[..message.len() - cut].to_vec();
        let body_len = u32::try_from(short.len() - 4).unwrap();
        short[1..4].copy_from_slice(&body_len.to_be_bytes()[1..]);
        let buf = record(&short);
        let err = parse(&buf).unwrap_err();
        assert!(
            matches!(
                err,
                ClientHelloError::Malformed {
                    what: "extensions",
                    offset: EXTENSIONS_AT
                }
            ),
            "cut {cut}: {err}"
        );
    }
    // The extensions block is whole but its last extension claims more than it holds.
    let mut buf = record(&message);
    let alpn_len_at = buf.len() - 2 - 3 - 2;
    buf[alpn_len_at + 1] += 1;
    assert_eq!(parse(&buf), malformed("extension data", alpn_len_at));
    // An extensions block of one byte: half an extension type.
    let mut message = hello_message(None);
    message.extend_from_slice(&[0, 1, 0]);
    let len = u32::try_from(message.len() - 4).unwrap();
    message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(
        parse(&record(&message)),
        malformed("extension type", EXTENSIONS_AT + 2)
    );
}

#[test]
fn bytes_after_the_extensions_are_malformed() {
    let mut message = hello_message(Some(&[(16, alpn_data(&[b"h2"]))]));
    message.push(0);
    let len = u32::try_from(message.len() - 4).unwrap();
    message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let buf = record(&message);
    assert_eq!(
        parse(&buf),
        malformed("bytes after the extensions", buf.len() - 1)
    );
}

#[test]
fn short_fixed_fields_are_malformed() {
    // Only the version and part of the random.
    let message = [1, 0, 0, 10, 3, 3, 1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(parse(&record(&message)), malformed("random", 11));
    assert_eq!(
        parse(&record(&[1, 0, 0, 1, 3])),
        malformed("legacy_version", 9)
    );
    assert_eq!(
        parse(&record(&[1, 0, 0, 0])),
        malformed("legacy_version", 9)
    );
    let mut bad_version = hello_message(None);
    bad_version[4] = 2;
    assert_eq!(
        parse(&record(&bad_version)),
        malformed("legacy_version is not 3.x", 9)
    );
}

#[test]
fn bad_session_id_suites_and_compression_are_malformed() {
    let session_at = 5 + 4 + 2 + 32;
    let mut m = hello_message(None);
    m[4 + 2 + 32] = 33;
    assert!(matches!(
        parse(&record(&m)),
        Err(ClientHelloError::Malformed { .. })
    ));
    // Session id of 33 bytes present in full: too long for TLS.
    let mut m = hello_message(None);
    let at = 4 + 2 + 32;
    m[at] = 33;
    for _ in 0..33 {
        m.insert(at + 1, 0);
    }
    let len = u32::try_from(m.len() - 4).unwrap();
    m[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(
        parse(&record(&m)),
        malformed("legacy_session_id longer than 32 bytes", session_at)
    );
    // Odd cipher_suites length.
    let mut m = hello_message(None);
    m[at + 2] = 1;
    m[at + 4] = 1;
    m[at + 5] = 0;
    m.pop();
    let len = u32::try_from(m.len() - 4).unwrap();
    m[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(
        parse(&record(&m)),
        malformed("cipher_suites length is zero or odd", session_at + 1)
    );
    // No compression method.
    let mut m = hello_message(None);
    let compression_at = at + 1 + 4;
    m[compression_at] = 0;
    m.pop();
    let len = u32::try_from(m.len() - 4).unwrap();
    m[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(
        parse(&record(&m)),
        malformed("empty legacy_compression_methods", compression_at + 5)
    );
}

#[test]
fn sni_with_bad_lengths_is_malformed() {
    let ext_data_at = EXTENSIONS_AT + 2 + 4;
    // host_name length longer than the list.
    let mut data = sni_data(&[(0, b"a.test")]);
    data[4] += 1;
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, data)])))),
        malformed("host_name length", ext_data_at + 3)
    );
    // server_name_list length longer than the extension.
    let mut data = sni_data(&[(0, b"a.test")]);
    data[1] += 1;
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, data)])))),
        malformed("server_name_list length", ext_data_at)
    );
    // server_name_list shorter than the extension.
    let mut data = sni_data(&[(0, b"a.test")]);
    data.push(0);
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, data.clone())])))),
        malformed("bytes after server_name_list", ext_data_at + data.len() - 1)
    );
    // Empty list, and an empty extension.
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, vec![0, 0])])))),
        malformed("empty server_name_list", ext_data_at)
    );
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, vec![])])))),
        malformed("server_name_list length", ext_data_at)
    );
    // A list holding only the name_type byte.
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, vec![0, 1, 0])])))),
        malformed("host_name length", ext_data_at + 3)
    );
}

#[test]
fn invalid_server_names_are_refused() {
    let name_at = EXTENSIONS_AT + 2 + 4 + 2 + 3;
    for (name, reason) in [
        (&b""[..], "empty"),
        (
            b"a b.test",
            "byte outside letters, digits, '-', '_' and '.'",
        ),
        (
            b"a\0.test",
            "byte outside letters, digits, '-', '_' and '.'",
        ),
        (
            b"caf\xc3\xa9.test",
            "byte outside letters, digits, '-', '_' and '.'",
        ),
        (
            b"a/b.test",
            "byte outside letters, digits, '-', '_' and '.'",
        ),
        (
            b"app.test.",
            "trailing dot (RFC 6066 sends names without it)",
        ),
        (b"a..test", "empty label"),
        (b"-a.test", "label starts or ends with '-'"),
        (
            b"127.0.0.1",
            "an IP address literal (RFC 6066 forbids them) or all-numeric top label",
        ),
    ] {
        let buf = record(&hello_message(Some(&[(0, sni_data(&[(0, name)]))])));
        match parse(&buf) {
            Err(ClientHelloError::BadServerName {
                name: shown,
                reason: got,
                offset,
            }) => {
                assert_eq!(got, reason, "{shown}");
                assert_eq!(offset, name_at, "{shown}");
                assert_eq!(shown, name.escape_ascii().to_string());
            }
            other => panic!("{:?}: {other:?}", name.escape_ascii().to_string()),
        }
    }
    // A name longer than DNS allows, and the logged form stays short.
    let long = [b'a'; 300];
    match parse(&record(&hello_message(Some(&[(
        0,
        sni_data(&[(0, &long)]),
    )])))) {
        Err(ClientHelloError::BadServerName { name, reason, .. }) => {
            assert_eq!(reason, "longer than 253 bytes");
            assert_eq!(name.len(), 80);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn several_host_names_are_refused() {
    let data = sni_data(&[(0, b"a.test"), (0, b"b.test")]);
    let second_at = EXTENSIONS_AT + 2 + 4 + 2 + 3 + 6;
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, data)])))),
        Err(ClientHelloError::BadServerName {
            name: "b.test".into(),
            reason: "a second host_name entry (RFC 6066 allows one)",
            offset: second_at
        })
    );
}

#[test]
fn a_name_type_other_than_host_name_is_refused() {
    let data = sni_data(&[(1, b"a.test")]);
    assert_eq!(
        parse(&record(&hello_message(Some(&[(0, data)])))),
        Err(ClientHelloError::UnsupportedNameType {
            name_type: 1,
            offset: EXTENSIONS_AT + 2 + 4 + 2
        })
    );
}

#[test]
fn a_repeated_extension_is_refused() {
    let sni = sni_data(&[(0, b"a.test")]);
    let second_at = EXTENSIONS_AT + 2 + 4 + sni.len();
    let buf = record(&hello_message(Some(&[
        (0, sni.clone()),
        (0, sni_data(&[(0, b"b.test")])),
    ])));
    assert_eq!(
        parse(&buf),
        Err(ClientHelloError::DuplicateExtension {
            extension_type: 0,
            offset: second_at
        })
    );
    let buf = record(&hello_message(Some(&[
        (16, alpn_data(&[b"h2"])),
        (16, alpn_data(&[b"h3"])),
    ])));
    assert!(matches!(
        parse(&buf),
        Err(ClientHelloError::DuplicateExtension {
            extension_type: 16,
            ..
        })
    ));
}

#[test]
fn bad_alpn_lists_are_malformed() {
    let data_at = EXTENSIONS_AT + 2 + 4;
    assert_eq!(
        parse(&record(&hello_message(Some(&[(16, vec![0, 0])])))),
        malformed("empty ALPN protocol_name_list", data_at)
    );
    assert_eq!(
        parse(&record(&hello_message(Some(&[(
            16,
            alpn_data(&[b"h2", b""])
        )])))),
        malformed("empty ALPN protocol name", data_at + 2 + 3)
    );
    let mut data = alpn_data(&[b"h2"]);
    data[2] = 5;
    assert_eq!(
        parse(&record(&hello_message(Some(&[(16, data)])))),
        malformed("ALPN protocol name length", data_at + 2)
    );
    let mut data = alpn_data(&[b"h2"]);
    data.push(0);
    assert_eq!(
        parse(&record(&hello_message(Some(&[(16, data)])))),
        malformed("bytes after ALPN protocol_name_list", data_at + 5)
    );
}

#[test]
fn error_offsets_point_into_the_buffer_across_records() {
    // The same bad name, once in one record and once behind a split inside the random:
    // the offset names the byte in the client's stream either way.
    let message = hello_message(Some(&[(0, sni_data(&[(0, b"a b.test")]))]));
    let one = record(&message);
    let two = frame(&message, &[20], 0x0303);
    let offset_of = |buf: &[u8]| match parse(buf) {
        Err(ClientHelloError::BadServerName { offset, .. }) => offset,
        other => panic!("{other:?}"),
    };
    let in_one = offset_of(&one);
    let in_two = offset_of(&two);
    assert_eq!(in_two, in_one + 5);
    assert_eq!(&two[in_two..in_two + 3], b"a b");
}

#[test]
fn single_byte_mutations_of_a_real_hello_never_panic_and_agree_with_tls_parser() {
    // A small differential fuzz that runs in every `cargo test`: every byte of a real
    // hello replaced by a few values. Whatever this parser accepts, tls-parser (when it
    // accepts too) must read the same SNI and ALPN.
    let bytes = load(CAPTURES[0].file);
    let mut accepted = 0usize;
    for i in 0..bytes.len() {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff, bytes[i] ^ 0x20] {
            let mut m = bytes.clone();
            m[i] = v;
            match parse(&m) {
                Ok(Some(hello)) => {
                    accepted += 1;
                    assert!(hello.consumed <= m.len());
                    if let Some((sni, alpn)) = tls_parser_view(&m) {
                        assert_eq!(
                            sni.map(|n| n.to_ascii_lowercase()),
                            hello.sni.clone().map(String::into_bytes),
                            "byte {i} = {v:#04x}"
                        );
                        assert_eq!(alpn, hello.alpn, "byte {i} = {v:#04x}");
                    }
                }
                Ok(None) => assert!(m.len() < MAX_CLIENT_HELLO_BYTES),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    // Most bytes of a hello (random, key share) do not affect routing.
    assert!(accepted > bytes.len());
}

#[test]
fn error_messages_name_the_field_and_the_offset() {
    let mut data = sni_data(&[(0, b"a.test")]);
    data[4] += 1;
    let err = parse(&record(&hello_message(Some(&[(0, data)])))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed ClientHello: host_name length at byte 59"
    );
    let err = parse(&record(&hello_message(Some(&[(
        0,
        sni_data(&[(0, b"a\nb.test")]),
    )]))))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad server name \"a\\\\nb.test\" at byte 61: byte outside letters, digits, '-', '_' and '.'"
    );
    assert_eq!(
        parse(&[22, 3, 3, 0, 4, 2]).unwrap_err().to_string(),
        "handshake message at byte 5 has type 2, expected 1 (client_hello)"
    );
    assert_eq!(
        parse(b"GET /").unwrap_err().to_string(),
        "not TLS at byte 0: record content type 71 (ASCII letter, e.g. a plain HTTP request), \
         expected 22 (handshake)"
    );
}
