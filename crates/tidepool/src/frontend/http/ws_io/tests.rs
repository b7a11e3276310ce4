use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

const LIMITS: WsLimits = WsLimits { max_login_bytes: 1024, max_message: 64 * 1024, idle_timeout: Duration::from_secs(30) };

/// A client frame with the given first byte (FIN/opcode), masked with a fixed key.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn pair(limits: WsLimits) -> (WsStream<DuplexStream>, DuplexStream) {
    let (server, client) = tokio::io::duplex(1 << 20);
    (WsStream::new(server, limits, None), client)
}

/// Reads one unmasked server frame: (first byte, payload).
async fn server_frame(client: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    client.read_exact(&mut h).await.unwrap();
    let len = match h[1] & 0x7F {
        126 => usize::from(client.read_u16().await.unwrap()),
        127 => client.read_u64().await.unwrap() as usize,
        n => usize::from(n),
    };
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let mut p = vec![0; len];
    client.read_exact(&mut p).await.unwrap();
    (h[0], p)
}

fn auth_ok() -> Vec<u8> {
    vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0]
}

#[tokio::test]
async fn fragments_are_a_byte_stream_and_unmasked() {
    let (mut ws, mut client) = pair(LIMITS);
    let data: Vec<u8> = (0..700u32).map(|i| (i * 7) as u8).collect();
    client.write_all(&frame(0x02, &data[..300])).await.unwrap();
    client.write_all(&frame(0x89, b"hi")).await.unwrap(); // a ping between fragments
    client.write_all(&frame(0x80, &data[300..])).await.unwrap();
    let mut got = vec![0; 700];
    ws.read_exact(&mut got).await.unwrap();
    assert_eq!(got, data);
    // The ping was answered.
    assert_eq!(server_frame(&mut client).await, (0x8A, b"hi".to_vec()));
    // Writes are binary frames.
    ws.write_all(b"hello").await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(server_frame(&mut client).await, (0x82, b"hello".to_vec()));
    // A close is echoed and reads as the end of the stream.
    client.write_all(&frame(0x88, &1000u16.to_be_bytes())).await.unwrap();
    assert_eq!(ws.read(&mut got).await.unwrap(), 0);
    assert_eq!(server_frame(&mut client).await, (0x88, 1000u16.to_be_bytes().to_vec()));
}

#[tokio::test]
async fn protocol_violations_close_with_their_code() {
    let cases: [(Vec<u8>, u16); 6] = [
        (frame(0x81, b"text"), 1003),
        (
            {
                let mut f = frame(0x82, b"x");
                f[1] &= 0x7F; // unmasked
                f
            },
            1002,
        ),
        (frame(0xC2, b"x"), 1002), // RSV1 (compression was not negotiated)
        (frame(0x80, b"x"), 1002), // continuation without a message
        (frame(0x09, b"x"), 1002), // fragmented ping
        (frame(0x83, b"x"), 1002), // unknown opcode
    ];
    for (bytes, code) in cases {
        let (mut ws, mut client) = pair(LIMITS);
        client.write_all(&bytes).await.unwrap();
        let mut buf = [0u8; 16];
        assert!(ws.read(&mut buf).await.is_err());
        let (b0, p) = server_frame(&mut client).await;
        assert_eq!((b0, u16::from_be_bytes([p[0], p[1]])), (0x88, code));
    }
}

#[tokio::test]
async fn before_login_only_a_little_is_read_and_nothing_is_assembled() {
    // 60 fragments of 1 MiB without FIN, before login: refused once the login allowance is
    // used up; the stream never holds more than a read chunk.
    let (mut ws, mut client) = pair(LIMITS);
    let writer = tokio::spawn(async move {
        let mib = vec![7u8; 1 << 20];
        let mut first = true;
        for _ in 0..60 {
            let f = frame(if first { 0x02 } else { 0x00 }, &mib);
            first = false;
            if client.write_all(&f).await.is_err() {
                break;
            }
        }
        client
    });
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let err = loop {
        match ws.read(&mut buf).await {
            Ok(0) => panic!("unexpected end"),
            Ok(n) => total += n,
            Err(e) => break e,
        }
        assert!(ws.rbuf.capacity() <= 2 * READ_CHUNK, "read buffer grew to {}", ws.rbuf.capacity());
    };
    assert!(err.to_string().contains("before login"), "{err}");
    assert!(total <= LIMITS.max_login_bytes, "{total} bytes read before login");
    drop(ws);
    writer.abort();
}

#[tokio::test]
async fn login_raises_the_limit_and_pipelined_messages_still_work() {
    let (mut ws, mut client) = pair(LIMITS);
    // One message of 8 KiB (startup + password + a large pipelined query): the part read
    // before login is within the allowance, the rest is read after AuthenticationOk.
    let msg = vec![5u8; 8 * 1024];
    client.write_all(&frame(0x82, &msg)).await.unwrap();
    let mut head = [0u8; 512];
    ws.read_exact(&mut head).await.unwrap();
    assert!(!ws.logged_in());
    // tidepool's output before login: N (SSL refused), R 3 (cleartext), then R 0, split.
    ws.write_all(b"N").await.unwrap();
    ws.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.unwrap();
    assert!(!ws.logged_in());
    let ok = auth_ok();
    ws.write_all(&ok[..3]).await.unwrap();
    assert!(!ws.logged_in());
    ws.write_all(&ok[3..]).await.unwrap();
    assert!(ws.logged_in());
    let mut rest = vec![0u8; msg.len() - head.len()];
    ws.read_exact(&mut rest).await.unwrap();
    // After login a message over max_message is refused with 1009.
    let big = frame(0x02, &vec![1u8; 40 * 1024]);
    client.write_all(&big).await.unwrap();
    client.write_all(&frame(0x80, &vec![1u8; 40 * 1024])).await.unwrap();
    let mut sink = vec![0u8; 128 * 1024];
    let err = loop {
        match ws.read(&mut sink).await {
            Ok(n) => assert!(n > 0),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("too large"), "{err}");
}

#[test]
fn sniffer_finds_authentication_ok_only_as_a_message() {
    let mut s = AuthSniffer::default();
    // An ErrorResponse whose body contains the AuthenticationOk bytes is not a login.
    let mut e = vec![b'E', 0, 0, 0, 13];
    e.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
    assert!(!s.feed(&e));
    // SASL continue, then OK.
    let mut s = AuthSniffer::default();
    let mut sasl = vec![b'R', 0, 0, 0, 12, 0, 0, 0, 11];
    sasl.extend_from_slice(b"abcd");
    assert!(!s.feed(&sasl));
    assert!(s.feed(&auth_ok()));
    // Byte by byte after an N.
    let mut s = AuthSniffer::default();
    let stream = [b"N".as_slice(), &[b'R', 0, 0, 0, 8, 0, 0, 0, 3], &auth_ok()].concat();
    let hits: Vec<bool> = stream.iter().map(|b| s.feed(std::slice::from_ref(b))).collect();
    assert_eq!(hits.iter().filter(|h| **h).count(), 1);
    assert!(*hits.last().unwrap());
}
