//! Streaming file digests in the IMA log's algorithm: a fixed buffer per worker, so a
//! file of any size costs the same memory, and a cancellation check between reads so a
//! multi-gigabyte file does not hold a cancelled job hostage.

use std::io::{self, Read};

use sha2::Digest;

use super::CancelToken;

/// Size of each worker's read buffer. Large enough that syscall overhead is noise next
/// to hashing, small enough that a pool of workers stays well under a few MiB.
pub const BUFFER_SIZE: usize = 256 * 1024;

// The scan digests with the IMA log's own algorithm type, so that scanned and logged
// entries of `filehashes` compare.
use attest::ima::HashAlg;

/// An incremental digest of one of the supported algorithms.
pub enum Hasher {
    /// SHA-1 state (old IMA policies, `ima_hash=sha1`).
    Sha1(sha1::Sha1),
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-384 state.
    Sha384(sha2::Sha384),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh state for `alg`.
    pub fn new(alg: HashAlg) -> Self {
        match alg {
            HashAlg::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest, in a fixed-size value (no allocation per file).
    pub fn finalize(self) -> FileDigest {
        match self {
            Hasher::Sha1(h) => FileDigest::from_slice(&h.finalize()),
            Hasher::Sha256(h) => FileDigest::from_slice(&h.finalize()),
            Hasher::Sha384(h) => FileDigest::from_slice(&h.finalize()),
            Hasher::Sha512(h) => FileDigest::from_slice(&h.finalize()),
        }
    }
}

/// The longest digest of a supported algorithm (SHA-512).
pub const MAX_DIGEST_LEN: usize = 64;

/// One file digest of any supported algorithm, held inline: a scan keeps one per measured
/// file and the cache one per cached file, so a heap string each would cost more than
/// the digest itself.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileDigest {
    len: u8,
    bytes: [u8; MAX_DIGEST_LEN],
}

impl FileDigest {
    /// The digest `bytes` (at most [`MAX_DIGEST_LEN`]; longer input is cut, which no
    /// supported algorithm produces).
    pub fn from_slice(bytes: &[u8]) -> FileDigest {
        let mut out = FileDigest {
            len: 0,
            bytes: [0; MAX_DIGEST_LEN],
        };
        let n = bytes.len().min(MAX_DIGEST_LEN);
        if let (Some(dst), Some(src)) = (out.bytes.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        out.len = u8::try_from(n).unwrap_or(0);
        out
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Lowercase hex, as `sha256sum` and the IMA log print it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl std::fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why streaming a file's digest stopped.
#[derive(Debug)]
pub enum HashError {
    /// The job was cancelled between two reads.
    Cancelled,
    /// A read failed.
    Io(io::Error),
}

/// Feed everything `reader` still yields into `hasher`, `buf.len()` bytes at a time,
/// calling `on_bytes` after each read (the progress counters) and checking `cancel`
/// between reads. Returns the number of bytes read.
pub fn stream_into(
    hasher: &mut Hasher,
    reader: &mut impl Read,
    buf: &mut [u8],
    cancel: &CancelToken,
    mut on_bytes: impl FnMut(u64),
) -> Result<u64, HashError> {
    let mut total: u64 = 0;
    loop {
        if cancel.is_cancelled() {
            return Err(HashError::Cancelled);
        }
        let n = match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HashError::Io(e)),
        };
        // `read` never returns more than the buffer length; `get` keeps that a
        // checked fact rather than an assumption.
        let chunk = buf.get(..n).unwrap_or(&[]);
        hasher.update(chunk);
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        total = total.saturating_add(n64);
        on_bytes(n64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let cases = [
            (HashAlg::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                HashAlg::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                HashAlg::Sha384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
        ];
        for (alg, want) in cases {
            let mut h = Hasher::new(alg);
            let mut buf = [0u8; 2];
            let n = stream_into(
                &mut h,
                &mut &b"abc"[..],
                &mut buf,
                &CancelToken::new(),
                |_| {},
            )
            .expect("reading a slice cannot fail");
            assert_eq!(n, 3);
            let got = h.finalize().to_hex();
            assert_eq!(got.len(), alg.size() * 2);
            assert_eq!(got, want, "{alg}");
        }
    }

    #[test]
    fn cancel_stops_between_reads() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let mut h = Hasher::new(HashAlg::Sha256);
        let mut buf = [0u8; 4];
        let r = stream_into(&mut h, &mut &b"abcdefgh"[..], &mut buf, &cancel, |_| {});
        assert!(matches!(r, Err(HashError::Cancelled)));
    }
}
