//! Upstream connection URLs: `postgres[ql]://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=…]`.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub user: String,
    pub password: Option<String>,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub sslmode: Option<String>,
    /// CA file for verifying the server (or `system` for the OS trust store), as in libpq.
    pub sslrootcert: Option<String>,
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}@{}:{}/{}", self.user, self.host, self.port, self.database)
    }
}

pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated percent escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escape is not UTF-8".into())
}

impl UpstreamUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("postgres://").or_else(|| s.strip_prefix("postgresql://")).ok_or("must start with postgres://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (percent_decode(u)?, Some(percent_decode(p)?)),
            None => (percent_decode(userinfo)?, None),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or("unterminated [ipv6] host")?;
            (h.to_owned(), p.strip_prefix(':').unwrap_or(""))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p),
                None => (hostport.to_owned(), ""),
            }
        };
        let port = if port.is_empty() { 5432 } else { port.parse().map_err(|_| format!("bad port {port:?}"))? };
        if host.is_empty() {
            return Err("missing host".into());
        }
        let mut sslmode = None;
        let mut sslrootcert = None;
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "sslmode" => sslmode = Some(percent_decode(v)?),
                "sslrootcert" => sslrootcert = Some(percent_decode(v)?),
                "application_name" | "connect_timeout" => {}
                other => return Err(format!("unsupported URL parameter {other:?}")),
            }
        }
        let user = if user.is_empty() { "postgres".to_owned() } else { user };
        let database = if db.is_empty() { user.clone() } else { percent_decode(db)? };
        Ok(UpstreamUrl { user, password, host, port, database, sslmode, sslrootcert })
    }
}
