//! Fuzz target for the PROXY protocol parser: bytes from a load balancer (or anyone who
//! reaches the port when `accept_proxy_protocol` is on) must never panic it, and what it
//! accepts must be self-consistent.
#![no_main]
use passthrough::proxy_protocol::{encode_v2, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, len))) = parse(data) else {
        return;
    };
    // The header never claims bytes that were not there...
    assert!(len > 0 && len <= data.len());
    // ...and is complete on its own: the bytes after it do not change the answer.
    let again = parse(&data[..len]).expect("header alone parses");
    assert_eq!(again, Some((header.clone(), len)));
    // What verigated would forward to a backend says the same thing again.
    if let (Some(src), Some(dst)) = (header.source, header.destination) {
        let encoded = encode_v2(src, dst, header.authority.as_deref());
        let (back, back_len) = parse(&encoded)
            .expect("own encoding parses")
            .expect("own encoding is complete");
        assert_eq!(back_len, encoded.len());
        assert_eq!(back.authority, header.authority);
        let same_family = src.is_ipv4() == dst.is_ipv4();
        if same_family {
            assert_eq!((back.source, back.destination), (Some(src), Some(dst)));
        }
    }
});
