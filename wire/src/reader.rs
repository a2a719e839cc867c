//! A cursor over untrusted bytes that never panics and never reads past its slice.
//!
//! Every read names the field it reads, so a short input reports which field it ended in
//! and at which offset. A sub-reader (a length-prefixed vector) keeps the offset of its
//! first byte in the enclosing input, so errors deep inside a structure still name an
//! offset a person can find with a hex dump.

use std::fmt;

/// The input ended inside a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// The field being read.
    pub field: &'static str,
    /// Offset of the field's first byte in the whole input.
    pub offset: usize,
    /// Bytes the field needs.
    pub needed: usize,
    /// Bytes that were left.
    pub available: usize,
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: needs {} bytes, {} left",
            self.field, self.offset, self.needed, self.available
        )
    }
}

impl std::error::Error for Truncated {}

/// Bytes were left after a structure that must fill its input exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailing {
    /// The structure that should have ended.
    pub field: &'static str,
    /// Offset of the first extra byte in the whole input.
    pub offset: usize,
    /// How many bytes are left over.
    pub extra: usize,
}

impl fmt::Display for Trailing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes after {} at offset {}",
            self.extra, self.field, self.offset
        )
    }
}

impl std::error::Error for Trailing {}

/// A bounds-checked cursor over `bytes`; multi-byte integers are read in the byte order
/// the method names (`_be`, `_le`).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the whole input.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole input.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self::at(bytes, 0)
    }

    /// A reader over `bytes`, which start at offset `base` of the whole input.
    pub fn at(bytes: &'a [u8], base: usize) -> Self {
        Reader {
            bytes,
            pos: 0,
            base,
        }
    }

    /// Offset in the whole input of the next byte to read.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    /// Bytes read so far from this reader's own slice.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not read yet, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Truncated> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(Truncated {
                field,
                offset: self.offset(),
                needed: n,
                available: self.remaining(),
            })?;
        self.pos += n;
        Ok(slice)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), Truncated> {
        self.take(n, field).map(|_| ())
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, Truncated> {
        let [b] = self.array(field)?;
        Ok(b)
    }

    /// A big-endian u16 (network order: TLS, TPM, PROXY v2).
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian u32.
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian u64.
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A little-endian u16 (SEV-SNP, TDX).
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// A little-endian u32 (IMA's binary log, SEV-SNP, TDX).
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// A little-endian u64.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A vector with a one-byte length prefix, as a reader over its contents. An error
    /// names the offset of the length prefix: that is the field that lies.
    pub fn vec_u8(&mut self, field: &'static str) -> Result<Reader<'a>, Truncated> {
        let at = self.offset();
        let len = usize::from(self.u8(field)?);
        self.sub(len, field, at)
    }

    /// A vector with a big-endian two-byte length prefix (TLS vectors, `TPM2B_*`), as a
    /// reader over its contents.
    pub fn vec_u16_be(&mut self, field: &'static str) -> Result<Reader<'a>, Truncated> {
        let at = self.offset();
        let len = usize::from(self.u16_be(field)?);
        self.sub(len, field, at)
    }

    fn sub(
        &mut self,
        len: usize,
        field: &'static str,
        prefix_at: usize,
    ) -> Result<Reader<'a>, Truncated> {
        let base = self.offset();
        let bytes = self.take(len, field).map_err(|e| Truncated {
            offset: prefix_at,
            ..e
        })?;
        Ok(Reader::at(bytes, base))
    }

    /// Fails if bytes remain: a structure with a tail is not the structure that was
    /// signed or framed.
    pub fn finish(&self, field: &'static str) -> Result<(), Trailing> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Trailing {
                field,
                offset: self.offset(),
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_both_byte_orders() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16_be("b"), Ok(0x0203));
        assert_eq!(r.u16_le("c"), Ok(0x0504));
        assert_eq!(r.u32_le("d"), Ok(0x0908_0706));
        assert!(r.is_empty());
        assert_eq!(r.finish("all"), Ok(()));
    }

    #[test]
    fn a_short_input_names_the_field_and_offset() {
        let mut r = Reader::at(&[0, 0, 0], 100);
        r.skip(1, "first").unwrap();
        assert_eq!(
            r.u32_be("length"),
            Err(Truncated {
                field: "length",
                offset: 101,
                needed: 4,
                available: 2
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 2);
    }

    #[test]
    fn a_huge_length_does_not_overflow() {
        let mut r = Reader::new(&[0; 4]);
        r.skip(2, "x").unwrap();
        assert!(r.take(usize::MAX, "huge").is_err());
        assert_eq!(r.offset(), 2);
    }

    #[test]
    fn sub_readers_keep_absolute_offsets_and_blame_the_prefix() {
        let input = [9, 0, 2, 0xaa, 0xbb, 0, 5, 1];
        let mut r = Reader::new(&input);
        r.skip(1, "type").unwrap();
        let mut v = r.vec_u16_be("vector").unwrap();
        assert_eq!(v.offset(), 3);
        assert_eq!(v.take(2, "body"), Ok(&[0xaa, 0xbb][..]));
        assert_eq!(v.u8("more").unwrap_err().offset, 5);
        let e = r.vec_u16_be("lying vector").unwrap_err();
        assert_eq!((e.field, e.offset), ("lying vector", 5));
    }

    #[test]
    fn finish_counts_what_is_left() {
        let mut r = Reader::at(&[1, 2, 3], 10);
        r.skip(1, "x").unwrap();
        assert_eq!(
            r.finish("structure"),
            Err(Trailing {
                field: "structure",
                offset: 11,
                extra: 2
            })
        );
        assert_eq!(r.rest(), &[2, 3]);
    }
}
