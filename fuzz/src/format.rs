//! Byte layouts of the structured fuzz inputs. Each target documents which one it uses; `seedgen`
//! encodes real messages with the `encode_*` functions so the seeds decode to valid requests.
//!
//! The layouts are deliberately simple (length prefixes and separator bytes) so libFuzzer's
//! byte-level mutations stay meaningful and a crash file can be read with `xxd`.

/// `proto_framing`: `[mode][limit: u16 BE][chunk seed][stream…]`.
pub struct Framing<'a> {
    /// Bit 0: startup-phase packets (`try_startup`) instead of tagged messages (`try_frame`).
    /// Bit 1: a large limit (1 MiB + the u16) instead of `5 + u16`.
    pub mode: u8,
    pub limit: usize,
    pub chunk_seed: u8,
    pub stream: &'a [u8],
}

impl<'a> Framing<'a> {
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&mode, rest) = data.split_first()?;
        let (l, rest) = split(rest, 2)?;
        let (&chunk_seed, stream) = rest.split_first()?;
        let raw = usize::from(u16::from_be_bytes([l[0], l[1]]));
        let limit = if mode & 2 != 0 { (1 << 20) + raw } else { 5 + raw };
        Some(Framing { mode, limit, chunk_seed, stream })
    }

    pub fn encode(startup: bool, limit_u16: u16, chunk_seed: u8, stream: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(startup)];
        out.extend_from_slice(&limit_u16.to_be_bytes());
        out.push(chunk_seed);
        out.extend_from_slice(stream);
        out
    }
}

/// `proto_frontend`: `[tag][name length][name…][body…]`; the name (NULs dropped) is the new
/// statement name handed to `rewrite_bind`.
pub struct Tagged<'a> {
    pub tag: u8,
    pub name: String,
    pub body: &'a [u8],
}

impl<'a> Tagged<'a> {
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&tag, rest) = data.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let (name, body) = split(rest, usize::from(n % 64).min(rest.len()))?;
        let name = String::from_utf8_lossy(name).replace('\0', "");
        Some(Tagged { tag, name, body })
    }

    pub fn encode(tag: u8, name: &str, body: &[u8]) -> Vec<u8> {
        assert!(name.len() < 64);
        let mut out = vec![tag, name.len() as u8];
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// `proto_scram`: `[client-first length: u16 BE][client-first…][mode][client-final…]`.
/// Mode 0: send the fuzzed client-final. Mode 1: send a correct proof for the server's nonce
/// (must succeed). Mode 2: the same proof with one bit flipped (must be refused).
pub struct Scram<'a> {
    pub client_first: &'a [u8],
    pub mode: u8,
    pub client_final: &'a [u8],
}

impl<'a> Scram<'a> {
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (l, rest) = split(data, 2)?;
        let n = usize::from(u16::from_be_bytes([l[0], l[1]])).min(rest.len());
        let (client_first, rest) = split(rest, n)?;
        let (&mode, client_final) = rest.split_first().unwrap_or((&0, &[]));
        Some(Scram { client_first, mode: mode % 3, client_final })
    }

    pub fn encode(client_first: &[u8], mode: u8, client_final: &[u8]) -> Vec<u8> {
        let mut out = (client_first.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(client_first);
        out.push(mode);
        out.extend_from_slice(client_final);
        out
    }
}

/// `neon_request`: HTTP-ish text, `name: value` header lines, a blank line, then the body.
/// A `x-fuzz-max-request: N` header sets `Limits::max_request_bytes`.
pub struct HttpRequest<'a> {
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
}

impl<'a> HttpRequest<'a> {
    pub fn decode(data: &'a [u8]) -> Self {
        let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let headers = head
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let colon = line.iter().position(|&b| b == b':')?;
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                Some((&line[..colon], value))
            })
            .collect();
        HttpRequest { headers, body }
    }

    pub fn encode(headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in headers {
            out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }
}

/// `neon_encode`: sections separated by `0x1d`: `[flags][max: u16 BE][command tag…]`, then the
/// fields (`0x1f`-separated `oid name`), then one section per row (`0x1f`-separated cells,
/// a lone `0x1e` is NULL). Flags: bit 0 batch, bit 1 raw text, bit 2 array mode.
pub struct Results<'a> {
    pub flags: u8,
    /// 0 means the default (10 MiB).
    pub max_bytes: usize,
    pub command_tag: Option<&'a [u8]>,
    pub fields: Vec<(u32, &'a [u8])>,
    pub rows: Vec<Vec<Option<&'a [u8]>>>,
}

pub const SECTION: u8 = 0x1d;
pub const CELL: u8 = 0x1f;
pub const NULL: u8 = 0x1e;

impl<'a> Results<'a> {
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let mut sections = data.split(|&b| b == SECTION);
        let head = sections.next()?;
        let (&flags, rest) = head.split_first()?;
        let (m, tag) = split(rest, 2)?;
        let max_bytes = usize::from(u16::from_be_bytes([m[0], m[1]]));
        let command_tag = if tag == [NULL] { None } else { Some(tag) };
        let fields = match sections.next() {
            None | Some([]) => Vec::new(),
            Some(f) => f
                .split(|&b| b == CELL)
                .map(|field| {
                    let sp = field.iter().position(|&b| b == b' ').unwrap_or(field.len());
                    let oid = std::str::from_utf8(&field[..sp]).ok().and_then(|s| s.parse().ok()).unwrap_or(25);
                    (oid, field.get(sp + 1..).unwrap_or_default())
                })
                .collect(),
        };
        let rows = sections
            .map(|row| {
                if row.is_empty() && fields.is_empty() {
                    return Vec::new();
                }
                row.split(|&b| b == CELL).map(|c| if c == [NULL] { None } else { Some(c) }).collect()
            })
            .collect();
        Some(Results { flags, max_bytes, command_tag, fields, rows })
    }

    pub fn encode(flags: u8, max_bytes: u16, command_tag: Option<&str>, fields: &[(u32, &str)], rows: &[&[Option<&str>]]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&max_bytes.to_be_bytes());
        match command_tag {
            Some(t) => out.extend_from_slice(t.as_bytes()),
            None => out.push(NULL),
        }
        out.push(SECTION);
        for (i, (oid, name)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(CELL);
            }
            out.extend_from_slice(format!("{oid} {name}").as_bytes());
        }
        for row in rows {
            out.push(SECTION);
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    out.push(CELL);
                }
                match cell {
                    Some(c) => out.extend_from_slice(c.as_bytes()),
                    None => out.push(NULL),
                }
            }
        }
        out
    }
}

/// `prisma_handle_query`: the request body, a NUL byte, then the fake executor's script
/// (consumed with `arbitrary::Unstructured`). JSON text never contains a raw NUL.
pub fn split_body_script(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn split(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (data.len() >= n).then(|| data.split_at(n))
}
