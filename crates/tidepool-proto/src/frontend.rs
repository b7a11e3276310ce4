//! Client → server messages: a typed view for the ones a pooler must inspect or rewrite, and
//! encoders for the ones tidepool sends itself as an upstream client.

use bytes::{BufMut, BytesMut};

use crate::framing::{put_cstr, write_msg, Frame};
use crate::read::Reader;
use crate::ProtoError;

/// A client message viewed by tag. Messages a pooler only forwards stay opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMsg<'a> {
    Query {
        sql: &'a str,
    },
    Parse {
        name: &'a str,
        query: &'a str,
        param_types: Vec<u32>,
    },
    Bind {
        portal: &'a str,
        statement: &'a str,
    },
    Describe {
        kind: u8,
        name: &'a str,
    },
    Close {
        kind: u8,
        name: &'a str,
    },
    Execute {
        portal: &'a str,
        max_rows: i32,
    },
    Sync,
    Flush,
    Terminate,
    CopyData,
    CopyDone,
    CopyFail,
    FunctionCall,
    /// `p`: password, SASL initial response or SASL response; meaning depends on auth state.
    Password(&'a [u8]),
}

/// Whether a message starting with `tag` may come from a client after login. Anything else (a
/// StartupMessage sent again, whose first byte is 0, or an unknown type) is a protocol violation
/// to refuse as soon as its first byte is seen, before waiting for its claimed length.
pub fn is_session_message(tag: u8) -> bool {
    matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'C' | b'E' | b'S' | b'H' | b'X' | b'd' | b'c' | b'f' | b'F')
}

impl<'a> FrontendMsg<'a> {
    pub fn parse(frame: &'a Frame) -> Result<Self, ProtoError> {
        let body = frame.body();
        Ok(match frame.tag {
            b'Q' => FrontendMsg::Query { sql: Reader::new(body, "Query").cstr()? },
            b'P' => {
                let mut r = Reader::new(body, "Parse");
                let name = r.cstr()?;
                let query = r.cstr()?;
                // PostgreSQL reads the count as unsigned: up to 65535 parameters.
                let n = r.u16()?;
                let mut param_types = Vec::with_capacity(usize::from(n).min(r.remaining().len() / 4));
                for _ in 0..n {
                    param_types.push(r.u32()?);
                }
                FrontendMsg::Parse { name, query, param_types }
            }
            b'B' => {
                let mut r = Reader::new(body, "Bind");
                FrontendMsg::Bind { portal: r.cstr()?, statement: r.cstr()? }
            }
            b'D' | b'C' => {
                let what = if frame.tag == b'D' { "Describe" } else { "Close" };
                let mut r = Reader::new(body, what);
                let kind = r.u8()?;
                if kind != b'S' && kind != b'P' {
                    return Err(ProtoError::malformed(what));
                }
                let name = r.cstr()?;
                if frame.tag == b'D' {
                    FrontendMsg::Describe { kind, name }
                } else {
                    FrontendMsg::Close { kind, name }
                }
            }
            b'E' => {
                let mut r = Reader::new(body, "Execute");
                FrontendMsg::Execute { portal: r.cstr()?, max_rows: r.i32()? }
            }
            b'S' => FrontendMsg::Sync,
            b'H' => FrontendMsg::Flush,
            b'X' => FrontendMsg::Terminate,
            b'd' => FrontendMsg::CopyData,
            b'c' => FrontendMsg::CopyDone,
            b'f' => FrontendMsg::CopyFail,
            b'F' => FrontendMsg::FunctionCall,
            b'p' => FrontendMsg::Password(body),
            other => return Err(ProtoError::UnexpectedMessage(other)),
        })
    }
}

/// Re-encodes a Bind with a different statement name, keeping parameters and formats untouched.
pub fn rewrite_bind(frame: &Frame, new_statement: &str) -> Result<BytesMut, ProtoError> {
    let mut r = Reader::new(frame.body(), "Bind");
    let portal = r.cstr_bytes()?;
    r.cstr_bytes()?;
    let rest = r.remaining();
    let mut out = BytesMut::with_capacity(frame.raw.len() + new_statement.len());
    write_msg(&mut out, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, new_statement.as_bytes());
        b.extend_from_slice(rest);
    });
    Ok(out)
}

pub fn query(out: &mut BytesMut, sql: &str) {
    write_msg(out, b'Q', |b| put_cstr(b, sql.as_bytes()));
}

/// Most parameters one Parse or Bind can carry (the count is an unsigned 16-bit field).
pub const MAX_PARAMS: usize = u16::MAX as usize;

fn param_count(n: usize) -> Result<u16, ProtoError> {
    u16::try_from(n).map_err(|_| ProtoError::TooManyParameters { count: n })
}

/// Parse. Fails (writing nothing) with more than [`MAX_PARAMS`] parameter types.
pub fn parse(out: &mut BytesMut, name: &str, sql: &str, types: &[u32]) -> Result<(), ProtoError> {
    let n = param_count(types.len())?;
    write_msg(out, b'P', |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, sql.as_bytes());
        b.put_u16(n);
        for t in types {
            b.put_u32(*t);
        }
    });
    Ok(())
}

/// Bind with all parameters and results in text format. Fails (writing nothing) with more than
/// [`MAX_PARAMS`] parameters or a value longer than `i32::MAX` bytes.
pub fn bind_text<S: AsRef<[u8]>>(out: &mut BytesMut, portal: &str, statement: &str, params: &[Option<S>]) -> Result<(), ProtoError> {
    let n = param_count(params.len())?;
    if let Some(len) = params.iter().flatten().map(|v| v.as_ref().len()).find(|l| i32::try_from(*l).is_err()) {
        return Err(ProtoError::ValueTooLarge { len });
    }
    write_msg(out, b'B', |b| {
        put_cstr(b, portal.as_bytes());
        put_cstr(b, statement.as_bytes());
        b.put_i16(0);
        b.put_u16(n);
        for p in params {
            match p {
                None => b.put_i32(-1),
                Some(v) => {
                    let v = v.as_ref();
                    b.put_i32(v.len() as i32);
                    b.extend_from_slice(v);
                }
            }
        }
        b.put_i16(0);
    });
    Ok(())
}

pub fn describe(out: &mut BytesMut, kind: u8, name: &str) {
    write_msg(out, b'D', |b| {
        b.put_u8(kind);
        put_cstr(b, name.as_bytes());
    });
}

pub fn close(out: &mut BytesMut, kind: u8, name: &str) {
    write_msg(out, b'C', |b| {
        b.put_u8(kind);
        put_cstr(b, name.as_bytes());
    });
}

pub fn execute(out: &mut BytesMut, portal: &str, max_rows: i32) {
    write_msg(out, b'E', |b| {
        put_cstr(b, portal.as_bytes());
        b.put_i32(max_rows);
    });
}

pub fn sync(out: &mut BytesMut) {
    write_msg(out, b'S', |_| {});
}

pub fn terminate(out: &mut BytesMut) {
    write_msg(out, b'X', |_| {});
}

/// PasswordMessage (cleartext or md5 hash), NUL-terminated.
pub fn password(out: &mut BytesMut, pw: &[u8]) {
    write_msg(out, b'p', |b| put_cstr(b, pw));
}

pub fn sasl_initial(out: &mut BytesMut, mechanism: &str, data: &[u8]) {
    write_msg(out, b'p', |b| {
        put_cstr(b, mechanism.as_bytes());
        b.put_i32(data.len() as i32);
        b.extend_from_slice(data);
    });
}

pub fn sasl_response(out: &mut BytesMut, data: &[u8]) {
    write_msg(out, b'p', |b| b.extend_from_slice(data));
}

/// Parses a SASLInitialResponse body into (mechanism, initial data).
pub fn parse_sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), ProtoError> {
    let mut r = Reader::new(body, "SASLInitialResponse");
    let mech = r.cstr()?;
    let len = r.i32()?;
    let data = if len < 0 { &[][..] } else { r.bytes(len as usize)? };
    Ok((mech, data))
}

/// Parses a cleartext/md5 PasswordMessage body.
pub fn parse_password(body: &[u8]) -> Result<&[u8], ProtoError> {
    Reader::new(body, "PasswordMessage").cstr_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::try_frame;
    use proptest::prelude::*;

    fn one(b: &mut BytesMut) -> Frame {
        try_frame(b, 1 << 20).unwrap().unwrap()
    }

    #[test]
    fn parse_and_bind_round_trip() {
        let mut b = BytesMut::new();
        parse(&mut b, "s1", "select $1", &[23]).unwrap();
        bind_text(&mut b, "", "s1", &[Some("42"), None]).unwrap();
        let f = one(&mut b);
        assert_eq!(FrontendMsg::parse(&f).unwrap(), FrontendMsg::Parse { name: "s1", query: "select $1", param_types: vec![23] });
        let f = one(&mut b);
        assert_eq!(FrontendMsg::parse(&f).unwrap(), FrontendMsg::Bind { portal: "", statement: "s1" });
        let mut re = rewrite_bind(&f, "tp_abc").unwrap();
        let g = one(&mut re);
        assert_eq!(FrontendMsg::parse(&g).unwrap(), FrontendMsg::Bind { portal: "", statement: "tp_abc" });
        assert_eq!(&g.body()[8..], &f.body()[4..]);
    }

    #[test]
    fn parameter_counts_are_never_truncated() {
        // 1,000,000 parameters once became 16,960 through `as i16`.
        let mut b = BytesMut::new();
        let params: Vec<Option<&str>> = vec![None; 1_000_000];
        assert_eq!(bind_text(&mut b, "", "", &params), Err(ProtoError::TooManyParameters { count: 1_000_000 }));
        assert_eq!(parse(&mut b, "", "select 1", &vec![0; 65_536]), Err(ProtoError::TooManyParameters { count: 65_536 }));
        assert!(b.is_empty(), "nothing written on error");
        // The protocol's maximum is 65535, read back as such (not as a negative i16).
        parse(&mut b, "", "select 1", &vec![23; 65_535]).unwrap();
        bind_text(&mut b, "", "", &vec![Some("1"); 65_535]).unwrap();
        let f = one(&mut b);
        let FrontendMsg::Parse { param_types, .. } = FrontendMsg::parse(&f).unwrap() else { panic!("Parse") };
        assert_eq!(param_types.len(), 65_535);
        let f = one(&mut b);
        assert_eq!(u16::from_be_bytes([f.body()[4], f.body()[5]]), 65_535);
    }

    #[test]
    fn session_message_types() {
        for t in *b"QPBDCESHXdcfF" {
            assert!(is_session_message(t));
        }
        for t in [0u8, b'p', b'z', b'A', 0xff, b'R'] {
            assert!(!is_session_message(t), "{t}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = BytesMut::new();
            write_msg(&mut b, tag, |x| x.extend_from_slice(&body));
            let f = one(&mut b);
            let _ = FrontendMsg::parse(&f);
            let _ = rewrite_bind(&f, "x");
            let _ = parse_sasl_initial(&body);
        }
    }
}
