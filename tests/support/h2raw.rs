//! A raw HTTP/2 client for conformance and fault tests: frames written byte by byte, so a test
//! can send what a conforming client never would (bad frames, bad streams, bad headers), and
//! frames read back as they came.
//!
//! Header blocks are encoded with HPACK "literal without indexing, new name" only (RFC 7541
//! §6.2.2), no Huffman, so the test controls every byte. Our SETTINGS ask for a header table of
//! size 0, so the server's blocks never refer to a dynamic table entry; `status` decodes the
//! `:status` field (static index or literal, Huffman digits included).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// How long a read waits for the next frame before the test calls it silence.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// One frame as read off the wire.
#[derive(Clone, Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// One frame's bytes: 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in values {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

pub fn priority(stream: u32, depends_on: u32, weight: u8) -> Vec<u8> {
    let mut payload = depends_on.to_be_bytes().to_vec();
    payload.push(weight);
    frame(PRIORITY, 0, stream, &payload)
}

/// A HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of "literal without indexing, new name" fields, in order, as given (no
/// lower-casing: a test may want an upper-case name).
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The pseudo-headers of a plain GET of `path`, then `extra`.
pub fn get_fields<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    fields
}

/// A HEADERS frame with END_HEADERS (and END_STREAM when `end`).
pub fn headers(stream: u32, fields: &[(&str, &str)], end: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &block(fields))
}

/// The `:status` of a response header block, if the block starts with it as h2 writes it
/// (indexed from the static table, or a literal with the static name, plain or Huffman).
pub fn status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Dynamic table size updates (001xxxxx) may come first.
    while block.get(i)? & 0xe0 == 0x20 {
        let prefix = block[i] & 0x1f;
        i += 1;
        if prefix == 0x1f {
            while block.get(i)? & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    let first = *block.get(i)?;
    if first & 0x80 != 0 {
        return match first & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    // A literal whose name is static index 8..=14 (`:status`), 4- or 6-bit prefixed.
    let index = if first & 0xc0 == 0x40 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&index) {
        return None;
    }
    let len_byte = *block.get(i + 1)?;
    let len = usize::from(len_byte & 0x7f);
    let raw = block.get(i + 2..i + 2 + len)?;
    let text = if len_byte & 0x80 != 0 {
        huffman_digits(raw)?
    } else {
        String::from_utf8(raw.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of digits (RFC 7541 Appendix B: '0'-'2' have 5-bit codes,
/// '3'-'9' 6-bit ones).
fn huffman_digits(raw: &[u8]) -> Option<String> {
    let bits: Vec<u8> = raw
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i + 5 <= bits.len() {
        let five = bits[i..i + 5].iter().fold(0u8, |a, b| a << 1 | b);
        if five <= 2 {
            out.push((b'0' + five) as char);
            i += 5;
            continue;
        }
        if i + 6 > bits.len() {
            break;
        }
        let six = bits[i..i + 6].iter().fold(0u8, |a, b| a << 1 | b);
        match six {
            0x19..=0x1f => out.push((b'3' + six - 0x19) as char),
            _ => break, // EOS padding (all ones) or not a digit
        }
        i += 6;
    }
    (!out.is_empty()).then_some(out)
}

/// A raw HTTP/2 connection (h2c prior knowledge, or any stream such as TLS with ALPN h2).
pub struct H2<IO = TcpStream> {
    io: IO,
    buf: Vec<u8>,
    /// Every frame read so far, in order.
    pub seen: Vec<Frame>,
}

impl H2<TcpStream> {
    /// Connects over plain TCP and sends the preface and our SETTINGS (header table 0).
    pub async fn connect(addr: SocketAddr) -> H2<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        H2::start(tcp, &[]).await
    }

    /// [`H2::connect`] with extra settings of ours.
    pub async fn connect_with(addr: SocketAddr, extra: &[(u16, u32)]) -> H2<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).unwrap();
        H2::start(tcp, extra).await
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> H2<IO> {
    /// Sends the preface and our SETTINGS on `io`, without waiting for the server's.
    pub async fn start(io: IO, extra: &[(u16, u32)]) -> H2<IO> {
        let mut h2 = H2 {
            io,
            buf: Vec::new(),
            seen: Vec::new(),
        };
        let mut values = vec![(SETTINGS_HEADER_TABLE_SIZE, 0)];
        values.extend_from_slice(extra);
        let mut out = PREFACE.to_vec();
        out.extend(settings(&values));
        h2.send(&out).await;
        h2
    }

    /// Reads the server's SETTINGS, acknowledges them and waits for the ACK of ours: the
    /// connection is then ready for streams.
    pub async fn handshake(&mut self) {
        let mut acked = false;
        let mut theirs = false;
        while !(acked && theirs) {
            let f = self.next().await.expect("server SETTINGS during handshake");
            if f.kind == SETTINGS && f.has(ACK) {
                acked = true;
            } else if f.kind == SETTINGS {
                theirs = true;
                self.send(&frame(SETTINGS, ACK, 0, &[])).await;
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // A server that already closed may refuse the write; reading tells the test why.
        let _ = self.io.write_all(bytes).await;
        let _ = self.io.flush().await;
    }

    /// The next frame, or `None` on EOF, a read error, or [`READ_WAIT`] of silence.
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_within(READ_WAIT).await
    }

    pub async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    self.seen.push(f.clone());
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until a frame satisfies `pick` (answering PINGs and SETTINGS on the way), or the
    /// connection ends or stays silent.
    pub async fn until(&mut self, mut pick: impl FnMut(&Frame) -> bool) -> Option<Frame> {
        loop {
            let f = self.next().await?;
            if pick(&f) {
                return Some(f);
            }
            if f.kind == SETTINGS && !f.has(ACK) {
                self.send(&frame(SETTINGS, ACK, 0, &[])).await;
            }
        }
    }

    /// The GOAWAY's error code, once one arrives (`None`: the connection ended or went
    /// silent without one).
    pub async fn goaway(&mut self) -> Option<u32> {
        self.until(|f| f.kind == GOAWAY).await?.error_code()
    }

    /// The error code of the next RST_STREAM on `stream`, or of a GOAWAY that ends the
    /// connection first (told apart by the returned kind).
    pub async fn reset_or_goaway(&mut self, stream: u32) -> Option<(u8, u32)> {
        let f = self
            .until(|f| (f.kind == RST_STREAM && f.stream == stream) || f.kind == GOAWAY)
            .await?;
        Some((f.kind, f.error_code()?))
    }

    /// The response on `stream`: its status and whole body, or `None` if the stream was reset
    /// or the connection ended first.
    pub async fn response(&mut self, stream: u32) -> Option<(u16, Vec<u8>)> {
        let head = self
            .until(|f| f.stream == stream && (f.kind == HEADERS || f.kind == RST_STREAM))
            .await?;
        if head.kind == RST_STREAM {
            return None;
        }
        let status = status(&head.payload).expect(":status in the response head");
        let mut body = Vec::new();
        let mut ended = head.has(END_STREAM);
        while !ended {
            let f = self
                .until(|f| f.stream == stream || f.kind == GOAWAY)
                .await?;
            match f.kind {
                DATA => {
                    body.extend_from_slice(&f.payload);
                    ended = f.has(END_STREAM);
                }
                HEADERS => ended = f.has(END_STREAM),
                _ => return None,
            }
        }
        Some((status, body))
    }

    /// Whether the server has closed the connection (EOF) within `wait`, skipping any frames.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
