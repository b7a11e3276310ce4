//! Server → client messages: a typed view of what a pooler must inspect (authentication,
//! ParameterStatus, BackendKeyData, ReadyForQuery, errors, row metadata) and encoders for the
//! messages tidepool sends to its own clients.

use bytes::{BufMut, Bytes, BytesMut};

use crate::framing::{put_cstr, write_msg, Frame};
use crate::read::Reader;
use crate::ProtoError;

/// Authentication request from the server (`R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<&'a str> },
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    Other(i32),
}

pub fn parse_auth(body: &[u8]) -> Result<AuthRequest<'_>, ProtoError> {
    let mut r = Reader::new(body, "Authentication");
    Ok(match r.i32()? {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => AuthRequest::Md5 { salt: r.array()? },
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue(r.remaining()),
        12 => AuthRequest::SaslFinal(r.remaining()),
        n => AuthRequest::Other(n),
    })
}

pub fn parse_parameter_status(body: &[u8]) -> Result<(&str, &str), ProtoError> {
    let mut r = Reader::new(body, "ParameterStatus");
    Ok((r.cstr()?, r.cstr()?))
}

pub fn parse_backend_key(body: &[u8]) -> Result<(i32, i32), ProtoError> {
    let mut r = Reader::new(body, "BackendKeyData");
    Ok((r.i32()?, r.i32()?))
}

pub fn parse_ready(body: &[u8]) -> Result<u8, ProtoError> {
    Reader::new(body, "ReadyForQuery").u8()
}

/// The fields of an ErrorResponse or NoticeResponse, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    pub fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "ErrorResponse");
        let mut fields = Vec::new();
        loop {
            let t = r.u8()?;
            if t == 0 {
                break;
            }
            fields.push((t, String::from_utf8_lossy(r.cstr_bytes()?).into_owned()));
        }
        Ok(ErrorFields { fields })
    }
    pub fn get(&self, t: u8) -> Option<&str> {
        self.fields.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_str())
    }
    pub fn code(&self) -> &str {
        self.get(b'C').unwrap_or("XX000")
    }
    pub fn message(&self) -> &str {
        self.get(b'M').unwrap_or("")
    }
    pub fn severity(&self) -> &str {
        self.get(b'S').unwrap_or("ERROR")
    }
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDesc {
    pub name: String,
    pub table_oid: u32,
    pub column_id: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    pub format: i16,
}

pub fn parse_row_description(body: &[u8]) -> Result<Vec<FieldDesc>, ProtoError> {
    let mut r = Reader::new(body, "RowDescription");
    let n = r.i16()?;
    let mut out = Vec::with_capacity((n.max(0) as usize).min(body.len() / 19));
    for _ in 0..n.max(0) {
        out.push(FieldDesc {
            name: String::from_utf8_lossy(r.cstr_bytes()?).into_owned(),
            table_oid: r.u32()?,
            column_id: r.i16()?,
            type_oid: r.u32()?,
            type_size: r.i16()?,
            type_modifier: r.i32()?,
            format: r.i16()?,
        });
    }
    Ok(out)
}

/// Parses a DataRow into column values sharing the frame's buffer.
pub fn parse_data_row(frame: &Frame) -> Result<Vec<Option<Bytes>>, ProtoError> {
    let body = frame.body();
    let mut r = Reader::new(body, "DataRow");
    let n = r.i16()?;
    let mut out = Vec::with_capacity((n.max(0) as usize).min(body.len() / 4));
    for _ in 0..n.max(0) {
        let len = r.i32()?;
        if len < 0 {
            out.push(None);
        } else {
            let start = body.len() - r.remaining().len() + 5;
            r.bytes(len as usize)?;
            out.push(Some(frame.raw.slice(start..start + len as usize)));
        }
    }
    Ok(out)
}

pub fn parse_command_complete(body: &[u8]) -> Result<&str, ProtoError> {
    Reader::new(body, "CommandComplete").cstr()
}

pub fn auth_ok(out: &mut BytesMut) {
    write_msg(out, b'R', |b| b.put_i32(0));
}
pub fn auth_cleartext(out: &mut BytesMut) {
    write_msg(out, b'R', |b| b.put_i32(3));
}
pub fn auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    write_msg(out, b'R', |b| {
        b.put_i32(5);
        b.extend_from_slice(&salt);
    });
}
pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    write_msg(out, b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}
pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    write_msg(out, b'R', |b| {
        b.put_i32(11);
        b.extend_from_slice(data);
    });
}
pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    write_msg(out, b'R', |b| {
        b.put_i32(12);
        b.extend_from_slice(data);
    });
}
pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    write_msg(out, b'S', |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    });
}
pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    write_msg(out, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}
pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    write_msg(out, b'Z', |b| b.put_u8(status));
}
pub fn parse_complete(out: &mut BytesMut) {
    write_msg(out, b'1', |_| {});
}
pub fn close_complete(out: &mut BytesMut) {
    write_msg(out, b'3', |_| {});
}

/// RowDescription for text-format columns: (name, type OID) pairs (e.g. 25 text, 20 int8).
pub fn row_description(out: &mut BytesMut, columns: &[(&str, u32)]) {
    write_msg(out, b'T', |b| {
        b.put_i16(i16::try_from(columns.len()).unwrap_or(i16::MAX));
        for (name, oid) in columns.iter().take(i16::MAX as usize) {
            put_cstr(b, name.as_bytes());
            b.put_i32(0); // table OID
            b.put_i16(0); // column number
            b.put_u32(*oid);
            b.put_i16(if *oid == 20 { 8 } else { -1 });
            b.put_i32(-1); // type modifier
            b.put_i16(0); // text format
        }
    });
}

/// DataRow of text values; `None` is SQL NULL.
pub fn data_row(out: &mut BytesMut, values: &[Option<&str>]) {
    write_msg(out, b'D', |b| {
        b.put_i16(i16::try_from(values.len()).unwrap_or(i16::MAX));
        for v in values.iter().take(i16::MAX as usize) {
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                    b.extend_from_slice(v.as_bytes());
                }
            }
        }
    });
}

/// CommandComplete with its tag (e.g. `SHOW`).
pub fn command_complete(out: &mut BytesMut, tag: &str) {
    write_msg(out, b'C', |b| put_cstr(b, tag.as_bytes()));
}

/// NoticeResponse with severity, SQLSTATE, message and a detail.
pub fn notice_response(out: &mut BytesMut, code: &str, message: &str, detail: &str) {
    write_msg(out, b'N', |b| {
        for (t, v) in [(b'S', "NOTICE"), (b'V', "NOTICE"), (b'C', code), (b'M', message), (b'D', detail)] {
            b.put_u8(t);
            put_cstr(b, v.as_bytes());
        }
        b.put_u8(0);
    });
}

/// ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    write_msg(out, b'E', |b| {
        for (t, v) in [(b'S', severity), (b'V', severity), (b'C', code), (b'M', message)] {
            b.put_u8(t);
            put_cstr(b, v.as_bytes());
        }
        b.put_u8(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::try_frame;
    use proptest::prelude::*;

    #[test]
    fn error_round_trip() {
        let mut b = BytesMut::new();
        error_response(&mut b, "FATAL", "28P01", "password authentication failed");
        let f = try_frame(&mut b, 4096).unwrap().unwrap();
        let e = ErrorFields::parse(f.body()).unwrap();
        assert_eq!(e.code(), "28P01");
        assert_eq!(e.severity(), "FATAL");
    }

    #[test]
    fn console_encoders_round_trip() {
        let mut b = BytesMut::new();
        row_description(&mut b, &[("database", 25), ("cl_active", 20)]);
        data_row(&mut b, &[Some("app"), None]);
        command_complete(&mut b, "SHOW");
        notice_response(&mut b, "00000", "Console usage", "SHOW HELP");
        let f = try_frame(&mut b, 4096).unwrap().unwrap();
        let fields = parse_row_description(f.body()).unwrap();
        assert_eq!((fields[0].name.as_str(), fields[0].type_oid, fields[0].type_size), ("database", 25, -1));
        assert_eq!((fields[1].name.as_str(), fields[1].type_oid, fields[1].type_size), ("cl_active", 20, 8));
        let f = try_frame(&mut b, 4096).unwrap().unwrap();
        assert_eq!(parse_data_row(&f).unwrap(), vec![Some(Bytes::from_static(b"app")), None]);
        let f = try_frame(&mut b, 4096).unwrap().unwrap();
        assert_eq!(parse_command_complete(f.body()).unwrap(), "SHOW");
        let f = try_frame(&mut b, 4096).unwrap().unwrap();
        assert_eq!(f.tag, b'N');
        assert_eq!(ErrorFields::parse(f.body()).unwrap().message(), "Console usage");
        assert!(b.is_empty());
    }

    #[test]
    fn data_row_slices() {
        let mut b = BytesMut::new();
        write_msg(&mut b, b'D', |b| {
            b.put_i16(2);
            b.put_i32(2);
            b.extend_from_slice(b"hi");
            b.put_i32(-1);
        });
        let f = try_frame(&mut b, 4096).unwrap().unwrap();
        assert_eq!(parse_data_row(&f).unwrap(), vec![Some(Bytes::from_static(b"hi")), None]);
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = BytesMut::new();
            write_msg(&mut b, tag, |x| x.extend_from_slice(&body));
            let f = try_frame(&mut b, 1 << 20).unwrap().unwrap();
            let _ = parse_auth(&body);
            let _ = ErrorFields::parse(&body);
            let _ = parse_row_description(&body);
            let _ = parse_data_row(&f);
            let _ = parse_parameter_status(&body);
        }
    }
}
