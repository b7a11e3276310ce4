//! Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.

use bytes::{BufMut, BytesMut};

use crate::read::Reader;
use crate::ProtoError;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
const CANCEL_REQUEST: i32 = 80877102;
const PROTOCOL_3_0: i32 = 196608;

/// A parsed startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Startup { params: Vec<(String, String)> },
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
}

impl StartupPacket {
    /// Parses the body of a startup packet (after its length word).
    pub fn parse(body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body, "startup");
        let code = r.i32()?;
        match code {
            SSL_REQUEST if r.is_empty() => Ok(StartupPacket::SslRequest),
            GSSENC_REQUEST if r.is_empty() => Ok(StartupPacket::GssEncRequest),
            CANCEL_REQUEST => {
                let pid = r.i32()?;
                let secret = r.i32()?;
                if !r.is_empty() {
                    return Err(ProtoError::malformed("cancel request"));
                }
                Ok(StartupPacket::Cancel { pid, secret })
            }
            PROTOCOL_3_0 => {
                let mut params = Vec::new();
                loop {
                    let key = r.cstr()?;
                    if key.is_empty() {
                        break;
                    }
                    let value = r.cstr()?;
                    params.push((key.to_owned(), value.to_owned()));
                }
                if !r.is_empty() {
                    return Err(ProtoError::malformed("startup"));
                }
                Ok(StartupPacket::Startup { params })
            }
            SSL_REQUEST | GSSENC_REQUEST => Err(ProtoError::malformed("startup")),
            other => Err(ProtoError::UnsupportedVersion { major: (other >> 16) as u16, minor: (other & 0xffff) as u16 }),
        }
    }
}

/// Encodes a v3.0 StartupMessage.
pub fn encode_startup(out: &mut BytesMut, params: &[(&str, &str)]) {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        crate::framing::put_cstr(out, k.as_bytes());
        crate::framing::put_cstr(out, v.as_bytes());
    }
    out.put_u8(0);
    crate::framing::patch_len(out, start);
}

/// Encodes an SSLRequest.
pub fn encode_ssl_request(out: &mut BytesMut) {
    out.put_i32(8);
    out.put_i32(SSL_REQUEST);
}

/// Encodes a CancelRequest.
pub fn encode_cancel(out: &mut BytesMut, pid: i32, secret: i32) {
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST);
    out.put_i32(pid);
    out.put_i32(secret);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::try_startup;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let mut b = BytesMut::new();
        encode_startup(&mut b, &[("user", "app"), ("database", "db")]);
        let body = try_startup(&mut b, 10_000).unwrap().unwrap();
        assert_eq!(
            StartupPacket::parse(&body).unwrap(),
            StartupPacket::Startup { params: vec![("user".into(), "app".into()), ("database".into(), "db".into())] }
        );
        let mut b = BytesMut::new();
        encode_cancel(&mut b, 7, -9);
        let body = try_startup(&mut b, 10_000).unwrap().unwrap();
        assert_eq!(StartupPacket::parse(&body).unwrap(), StartupPacket::Cancel { pid: 7, secret: -9 });
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = StartupPacket::parse(&data);
        }
    }
}
