//! Protocol errors: every way untrusted bytes can be wrong, as a typed value (never a panic).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    #[error("message length {len} exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("unexpected message type '{}'", char::from(*.0))]
    UnexpectedMessage(u8),
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    #[error("authentication protocol error: {0}")]
    Auth(&'static str),
    #[error("{count} parameters exceed the protocol's limit of 65535")]
    TooManyParameters { count: usize },
    #[error("a value of {len} bytes does not fit in one protocol message")]
    ValueTooLarge { len: usize },
}

impl ProtoError {
    pub(crate) fn malformed(what: &'static str) -> Self {
        ProtoError::Malformed { what }
    }
}
