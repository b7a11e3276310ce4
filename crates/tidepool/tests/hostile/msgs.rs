//! Hand-made frontend messages for the wire and WebSocket cases: any tag, any declared length,
//! raw startup packets and extended-protocol messages with counts that need not match.

/// A message with the correct length word.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A length word (with an optional tag) followed by `rest`, whatever the length says.
pub fn declared(tag: Option<u8>, len: i32, rest: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = tag.into_iter().collect();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// A startup packet with raw key/value bytes (for invalid UTF-8 and missing terminators).
pub fn startup_bytes(version: i32, body: &[u8]) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(body);
    declared(None, (b.len() + 4) as i32, &b)
}

/// Startup key/value pairs as NUL-terminated byte strings, with the final NUL.
pub fn kv(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out.push(0);
    out
}

pub fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

pub fn sasl_initial(mechanism: &[u8], data_len: i32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, mechanism);
    b.extend_from_slice(&data_len.to_be_bytes());
    b.extend_from_slice(data);
    frame(b'p', &b)
}

pub fn parse_raw(name: &[u8], sql: &[u8], count: i16, types: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&count.to_be_bytes());
    for t in types {
        b.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &b)
}

/// Bind of the unnamed portal to `stmt` with `count` declared parameters and the given body
/// after the count.
pub fn bind_raw(stmt: &[u8], count: u16, params: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, b"");
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(params);
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &b)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

pub fn query_bytes(sql: &[u8]) -> Vec<u8> {
    let mut b = sql.to_vec();
    b.push(0);
    frame(b'Q', &b)
}
