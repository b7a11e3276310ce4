//! A bounds-checked cursor over a message body; every read returns an error instead of panicking.

use crate::ProtoError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }
    fn err(&self) -> ProtoError {
        ProtoError::malformed(self.what)
    }
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(crate) fn u8(&mut self) -> Result<u8, ProtoError> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| self.err())?;
        self.buf = rest;
        Ok(b)
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let b = self.bytes(N)?;
        b.try_into().map_err(|_| self.err())
    }
    pub(crate) fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn i16(&mut self) -> Result<i16, ProtoError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, ProtoError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(self.i32()? as u32)
    }
    /// A NUL-terminated string (raw bytes, terminator consumed).
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        // `CStr` finds the NUL with the standard library's word-at-a-time search.
        let pos = std::ffi::CStr::from_bytes_until_nul(self.buf).map_err(|_| self.err())?.to_bytes().len();
        let (s, rest) = self.buf.split_at(pos);
        // `rest` starts with the NUL found above.
        self.buf = rest.split_first().map_or(&[], |(_, r)| r);
        Ok(s)
    }
    pub(crate) fn cstr(&mut self) -> Result<&'a str, ProtoError> {
        let what = self.what;
        std::str::from_utf8(self.cstr_bytes()?).map_err(|_| ProtoError::Utf8(what))
    }
}
