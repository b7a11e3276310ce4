//! HTTP/2 attacks on the HTTP listener (prior knowledge, hand-made frames): CONTINUATION and
//! rapid-reset floods, SETTINGS and PING floods, flow-control overflow, frames on the wrong
//! stream or over the size limit, a broken HPACK block, more streams than allowed.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{case, Case, Endpoint, Group};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `POST /sql` (static-table indices and literals without Huffman).
fn request_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x04, 4];
    b.extend_from_slice(b"/sql");
    b.extend_from_slice(&[0x01, 1, b'x']);
    b
}

/// A literal header field without indexing, new name (`x-junk: aaa…`), of about `n` bytes.
fn junk_header(n: usize) -> Vec<u8> {
    let mut b = vec![0x00, 6];
    b.extend_from_slice(b"x-junk");
    let v = n.min(126);
    b.push(v as u8);
    b.extend(std::iter::repeat_n(b'a', v));
    b.repeat(n / b.len() + 1)
}

/// How the server ended an attack: it sent GOAWAY (with the error code) or closed, or it is
/// still serving (answered a final PING).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    GoAway(u32),
    Closed,
    Served,
}

/// Sends the preface, an empty SETTINGS, the attack (each write bounded: the server may stop
/// reading), then a PING; reads frames until GOAWAY, EOF or the PING's ACK.
async fn attack(addr: std::net::SocketAddr, frames: Vec<u8>) -> Result<Outcome> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(PREFACE).await?;
    s.write_all(&h2_frame(SETTINGS, 0, 0, &[])).await?;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for chunk in frames.chunks(64 << 10) {
            match tokio::time::timeout(Duration::from_secs(3), wr.write_all(chunk)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), wr.write_all(&h2_frame(PING, 0, 0, b"hostile!"))).await;
        // Keeps the write side open until the reader is done.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let outcome = loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags, payload) = (buf[3], buf[4], buf[9..9 + len].to_vec());
            buf.drain(..9 + len);
            if kind == GOAWAY && payload.len() >= 8 {
                writer.abort();
                return Ok(Outcome::GoAway(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]])));
            }
            if kind == PING && flags & ACK != 0 && payload == b"hostile!" {
                writer.abort();
                return Ok(Outcome::Served);
            }
        }
        match tokio::time::timeout(Duration::from_secs(15), rd.read(&mut chunk)).await {
            Err(_) => bail!("no GOAWAY, close or PING answer within 15s"),
            Ok(Ok(0)) | Ok(Err(_)) => break Outcome::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    writer.abort();
    Ok(outcome)
}

/// A case whose outcome must be a GOAWAY with one of `codes` or a close (`codes` empty: any
/// outcome, the server may also carry on).
fn h2(name: &str, frames: Vec<u8>, codes: &'static [u32]) -> Case {
    case(Endpoint::Sql, true, format!("HTTP/2: {name}"), move |tp| async move {
        let outcome = attack(tp.http, frames).await?;
        if !codes.is_empty() {
            ensure!(
                matches!(outcome, Outcome::Closed) || matches!(outcome, Outcome::GoAway(c) if codes.contains(&c)),
                "{outcome:?}, want GOAWAY {codes:?} or a close"
            );
        }
        Ok(())
    })
}

const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

pub fn attacks() -> Group {
    let continuation = {
        let mut f = h2_frame(HEADERS, 0, 1, &request_block());
        for _ in 0..1000 {
            f.extend(h2_frame(CONTINUATION, 0, 1, &junk_header(16_000)));
        }
        f
    };
    let rapid_reset: Vec<u8> = (0..10_000u32)
        .flat_map(|i| {
            let id = 2 * i + 1;
            [h2_frame(HEADERS, END_HEADERS, id, &request_block()), h2_frame(RST_STREAM, 0, id, &8u32.to_be_bytes())].concat()
        })
        .collect();
    let many_streams: Vec<u8> = (0..1000u32).flat_map(|i| h2_frame(HEADERS, END_HEADERS, 2 * i + 1, &request_block())).collect();
    let cases = vec![
        h2("CONTINUATION flood (16 MB of headers)", continuation, &[PROTOCOL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM, FRAME_SIZE_ERROR]),
        h2("rapid reset (10,000 HEADERS + RST_STREAM)", rapid_reset, &[]),
        h2("100,000 SETTINGS frames", h2_frame(SETTINGS, 0, 0, &[]).repeat(100_000), &[]),
        h2("100,000 PINGs", h2_frame(PING, 0, 0, b"12345678").repeat(100_000), &[]),
        h2("1,000 open streams (limit 100)", many_streams, &[]),
        h2(
            "WINDOW_UPDATE past 2^31-1",
            [h2_frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()), h2_frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes())].concat(),
            &[FLOW_CONTROL_ERROR],
        ),
        h2("WINDOW_UPDATE of 0", h2_frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()), &[PROTOCOL_ERROR]),
        h2("HEADERS on stream 0", h2_frame(HEADERS, END_HEADERS | END_STREAM, 0, &request_block()), &[PROTOCOL_ERROR]),
        h2("DATA on an idle stream", h2_frame(DATA, END_STREAM, 7, b"{}"), &[PROTOCOL_ERROR, 0x5]),
        h2("frame over the maximum frame size", h2_frame(DATA, 0, 1, &vec![0u8; 100_000]), &[FRAME_SIZE_ERROR, PROTOCOL_ERROR]),
        h2("HPACK index out of range", h2_frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0xff, 0xff, 0x0f]), &[COMPRESSION_ERROR, PROTOCOL_ERROR]),
        h2("PING on a stream", h2_frame(PING, 0, 1, b"12345678"), &[PROTOCOL_ERROR]),
        h2("SETTINGS with a bad length", h2_frame(SETTINGS, 0, 0, &[0, 4, 0]), &[FRAME_SIZE_ERROR, PROTOCOL_ERROR]),
        h2("unknown frame types", h2_frame(0xfa, 0xff, 0, b"ignored").repeat(1000), &[]),
    ];
    Group { name: "http/2", parallel: 4, cases }
}
