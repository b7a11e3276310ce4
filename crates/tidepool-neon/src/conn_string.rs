//! The `Neon-Connection-String` header: `postgres[ql]://user:password@host[:port]/database?params`.
//!
//! User, password and database are percent-decoded; query parameters are form-decoded (`+` is a
//! space). The host and port are parsed (names, IPv4, bracketed IPv6) but carry no meaning here:
//! tidepool routes by user and database. Error texts follow Neon's proxy.

use std::fmt;

/// Query parameters that may be forwarded as startup parameters; Neon drops the rest
/// (`sslmode`, `channel_binding`, …).
pub const FORWARDED_PARAMS: [&str; 2] = ["application_name", "options"];

/// A connection string that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnStringError {
    /// Not a URL of the form `scheme://…`, or a bad port.
    #[error("invalid connection string: {0}")]
    Malformed(&'static str),
    /// A scheme other than `postgres` or `postgresql`.
    #[error("incorrect scheme")]
    IncorrectScheme,
    /// No database in the path.
    #[error("missing database name")]
    MissingDatabase,
    /// A database name that decodes to invalid UTF-8 or contains NUL.
    #[error("invalid database name")]
    InvalidDatabase,
    /// No user name.
    #[error("missing username")]
    MissingUser,
    /// A user name that decodes to invalid UTF-8 or contains NUL.
    #[error("invalid username: {0}")]
    InvalidUser(&'static str),
}

/// A password as sent, after percent-decoding. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Wraps password bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The password bytes (not necessarily UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The password as UTF-8, if it is.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A parsed `Neon-Connection-String`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// Role name, percent-decoded, never empty.
    pub user: String,
    /// Password, percent-decoded; `None` when absent or empty.
    pub password: Option<Password>,
    /// Database name (first path segment), percent-decoded, never empty.
    pub database: String,
    /// Host as written (brackets kept for IPv6), possibly empty. Informational only.
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
    /// Query parameters in order, form-decoded.
    pub params: Vec<(String, String)>,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("user", &self.user)
            .field("password", &self.password)
            .field("database", &self.database)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("params", &self.params)
            .finish()
    }
}

impl ConnectionString {
    /// Parses a connection string.
    pub fn parse(input: &str) -> Result<Self, ConnStringError> {
        let input = input.trim_matches(|c: char| c <= ' ');
        let (scheme, rest) = input.split_once("://").ok_or(ConnStringError::Malformed("expected postgres://user:password@host/database"))?;
        if !scheme.eq_ignore_ascii_case("postgres") && !scheme.eq_ignore_ascii_case("postgresql") {
            return Err(ConnStringError::IncorrectScheme);
        }

        let rest = rest.split_once('#').map_or(rest, |(before, _fragment)| before);
        let (rest, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;

        let (raw_user, raw_password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            },
            None => ("", None),
        };

        let raw_database = path.and_then(|p| p.split('/').next()).unwrap_or("");
        if raw_database.is_empty() {
            return Err(ConnStringError::MissingDatabase);
        }
        let database = String::from_utf8(percent_decode(raw_database, false)).map_err(|_| ConnStringError::InvalidDatabase)?;
        if database.contains('\0') {
            return Err(ConnStringError::InvalidDatabase);
        }

        let user = String::from_utf8(percent_decode(raw_user, false)).map_err(|_| ConnStringError::InvalidUser("invalid utf-8 sequence"))?;
        if user.is_empty() {
            return Err(ConnStringError::MissingUser);
        }
        if user.contains('\0') {
            return Err(ConnStringError::InvalidUser("contains a NUL byte"));
        }

        let password = raw_password.filter(|p| !p.is_empty()).map(|p| Password(percent_decode(p, false)));

        let params = query
            .map(|q| {
                q.split('&')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                        (form_decode(key), form_decode(value))
                    })
                    .collect()
            })
            .unwrap_or_default();

        Ok(Self { user, password, database, host: host.to_owned(), port, params })
    }

    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `application_name` from the query string (the JS driver always sends one).
    pub fn application_name(&self) -> Option<&str> {
        self.param("application_name")
    }

    /// The query parameters Neon forwards as startup parameters (see [`FORWARDED_PARAMS`]),
    /// last value wins.
    pub fn startup_params(&self) -> Vec<(&str, &str)> {
        FORWARDED_PARAMS.iter().filter_map(|&key| self.params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| (key, v.as_str()))).collect()
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), ConnStringError> {
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport.find(']').ok_or(ConnStringError::Malformed("unterminated IPv6 address"))?;
        let after = &hostport[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(ConnStringError::Malformed("invalid IPv6 address")),
        };
        (&hostport[..=close], port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().map_err(|_| ConnStringError::Malformed("invalid port number"))?)
        }
        Some(_) => return Err(ConnStringError::Malformed("invalid port number")),
    };
    Ok((host, port))
}

/// Decodes `%XX` sequences (and `+` as space when `plus_is_space`). Invalid sequences stay as is.
fn percent_decode(s: &str, plus_is_space: bool) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded = bytes.get(i + 1).and_then(|&h| hex(h)).zip(bytes.get(i + 2).and_then(|&l| hex(l)));
                match decoded {
                    Some((h, l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn form_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s, true)).into_owned()
}

#[cfg(test)]
mod tests;
