//! Fuzzes the ClientHello peek: arbitrary bytes must never panic, and the answers must
//! keep their promises to the listener (bounded buffer, `consumed` within the input and
//! stable when the hello is re-parsed alone or with bytes after it).
#![no_main]
use passthrough::client_hello::{parse, MAX_CLIENT_HELLO_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(None) => assert!(data.len() < MAX_CLIENT_HELLO_BYTES),
        Ok(Some(hello)) => {
            assert!(hello.consumed <= data.len());
            assert!(hello.consumed <= MAX_CLIENT_HELLO_BYTES);
            let (records, _) = data.split_at(hello.consumed);
            assert_eq!(parse(records), Ok(Some(hello.clone())));
            // A shorter buffer is a prefix of a valid hello: it needs more bytes.
            if let Some(short) = records.len().checked_sub(1) {
                assert_eq!(parse(&records[..short]), Ok(None));
            }
            if let Some(name) = &hello.sni {
                assert!(!name.is_empty() && name.len() <= 253);
                assert!(name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'
                    || b == b'.'));
            }
            assert!(hello.alpn.iter().all(|p| !p.is_empty()));
        }
        Err(e) => {
            // Errors are final: more bytes never turn them into a hello.
            let mut longer = data.to_vec();
            longer.push(0);
            assert!(parse(&longer).is_err(), "{e} became {:?}", parse(&longer));
        }
    }
});
