//! The HTTP/1.1 client for requests whose body the gateway already holds (none, or a small
//! buffered one): the request goes out and the response head comes back in the calling task.
//! No connection task and no channel sit in between, which is most of what a proxied request
//! costs in user space. Requests that stream a body, and HTTP/2 upstreams, use hyper's client.
//!
//! What it follows (RFC 9112, with hyper's client defaults where the RFC leaves a choice):
//! - the request: origin-form target, `Host`, the caller's headers without `Transfer-Encoding`;
//!   a body goes out with its exact `Content-Length`, in the same write as the head;
//! - the response head: at most [`MAX_HEADERS`] fields in [`MAX_HEAD_BYTES`], strict syntax
//!   (no obsolete line folding, no space before the colon); 1xx answers other than 101 are
//!   skipped, a 101 is refused (the gateway never asks for an upgrade); `Transfer-Encoding`,
//!   `Keep-Alive` and a `Connection` naming nothing but `close`/`keep-alive` are read and not
//!   kept (they are this hop's); a response that misses the deadline fails as a timeout;
//! - the body: none for HEAD, 204 and 304; chunked when it is the last transfer coding (the
//!   `Content-Length` beside it is dropped); else `Content-Length` (repeats must agree); else
//!   up to the close. Chunk extensions are ignored and trailers read and dropped, both bounded;
//! - reuse: only an HTTP/1.1 answer without `Connection: close`, read to its last byte with
//!   nothing after it. An idle connection unused for more than [`PROBE_AFTER`] is checked for
//!   a close from the upstream before it takes a request.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::Failure;
use super::pool::{Pool, ResponseBody};
use crate::body::UpstreamBody;

/// A connection as the hyper-rustls connector opens it, with tokio's I/O traits.
pub(super) type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Request bodies up to this size are sent by this client, with the head in one write. Small
/// enough for the socket buffer to take it whole, so an upstream that answers early (a 413)
/// without reading cannot stall the write; larger ones go through hyper's client, which reads
/// while it writes.
const MAX_INLINE_BODY: usize = 16 * 1024;
/// Hop-by-hop (RFC 9112 appendix C.2.2): parameters for this connection only.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// The response head must fit in this many bytes.
const MAX_HEAD_BYTES: usize = 256 * 1024;
/// And have at most this many header fields (hyper's default).
const MAX_HEADERS: usize = 100;
/// Field offsets kept on the stack up to this many fields; more go to the heap.
const INLINE_FIELDS: usize = 24;
/// A chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// All trailer fields of a chunked body together.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Room made in the read buffer before a read.
const READ_RESERVE: usize = 8 * 1024;
/// An idle connection unused for longer than this is checked for a close before it is reused.
/// Below it, a connection is reused without a look: under load they come back within
/// milliseconds, and the check costs a system call.
pub(super) const PROBE_AFTER: Duration = Duration::from_millis(100);

/// Whether this client sends `req` (else hyper's does): a body already held, and small.
pub(super) fn eligible(req: &Request<UpstreamBody>) -> bool {
    *req.method() != Method::CONNECT
        && match req.body() {
            UpstreamBody::Empty | UpstreamBody::Full(None) => true,
            UpstreamBody::Full(Some(b)) => b.len() <= MAX_INLINE_BODY,
            UpstreamBody::Stream(_) => false,
        }
}

/// One HTTP/1.1 connection, idle or carrying one request. Boxed where it travels (pool, body),
/// since a TLS stream is large.
pub(super) struct Conn {
    io: Io,
    /// Bytes read and not yet used; empty between requests.
    read_buf: BytesMut,
    /// The encoded request, kept for its capacity.
    write_buf: Vec<u8>,
    /// The response deadline of the request in flight. One timer for the connection's life:
    /// moving a registered timer to a later deadline is an atomic update, where a new timer per
    /// request takes the timer wheel's lock twice (register, cancel).
    timer: Pin<Box<Sleep>>,
}

/// The parts of a response head this client acts on.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

impl Conn {
    pub(super) fn new(io: Io) -> Box<Conn> {
        Box::new(Conn {
            io,
            read_buf: BytesMut::with_capacity(READ_RESERVE),
            write_buf: Vec::with_capacity(512),
            // Registered on the first request's `reset`.
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        })
    }

    /// False when the upstream has closed this idle connection (or sent something unasked).
    /// Costs one `recv(MSG_PEEK)` at most; no wake-up is left behind.
    pub(super) fn still_open(&self) -> bool {
        let tcp = match self.io.inner() {
            MaybeHttpsStream::Http(s) => s.inner(),
            MaybeHttpsStream::Https(s) => s.inner().get_ref().0.inner().inner(),
        };
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(tcp.poll_peek(&mut cx, &mut buf), Poll::Pending)
    }

    /// Sends `req` and reads the response head, failing with [`Failure::Timeout`] at
    /// `deadline`. The connection goes back to `pool` as soon as its response is complete: at
    /// once for a head-only or already-read body, else when the returned body ends. On an error
    /// it is closed.
    pub(super) async fn send(
        mut self: Box<Self>,
        req: &Request<UpstreamBody>,
        host: &HeaderValue,
        deadline: Instant,
        pool: &Pool,
    ) -> Result<http::Response<ResponseBody>, Failure> {
        self.encode(req, host);
        let head_only = req.method() == Method::HEAD;
        let head = {
            let Conn {
                io,
                read_buf,
                write_buf,
                timer,
            } = &mut *self;
            timer.as_mut().reset(deadline);
            let mut exchange = pin!(exchange(io, write_buf, read_buf, head_only));
            poll_fn(|cx| match exchange.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(result),
                Poll::Pending => timer.as_mut().poll(cx).map(|()| Err(Failure::Timeout)),
            })
            .await?
        };
        Ok(self.into_response(head, pool))
    }

    fn encode(&mut self, req: &Request<UpstreamBody>, host: &HeaderValue) {
        let body: &[u8] = match req.body() {
            UpstreamBody::Full(Some(b)) => b,
            _ => &[],
        };
        let buf = &mut self.write_buf;
        buf.clear();
        buf.extend_from_slice(req.method().as_str().as_bytes());
        buf.push(b' ');
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        buf.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        if !req.headers().contains_key(header::HOST) {
            push_field(buf, b"host", host.as_bytes());
        }
        for (name, value) in req.headers() {
            // The framing is this client's: no transfer coding, and the held body's length.
            if name == header::TRANSFER_ENCODING
                || (!body.is_empty() && name == header::CONTENT_LENGTH)
            {
                continue;
            }
            push_field(buf, name.as_str().as_bytes(), value.as_bytes());
        }
        if !body.is_empty() {
            let len = body.len().to_string();
            push_field(buf, b"content-length", len.as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(body);
    }

    fn into_response(mut self: Box<Self>, head: Head, pool: &Pool) -> Response<ResponseBody> {
        let body = match head.framing {
            Framing::None => {
                self.release(head.keep_alive, pool);
                ResponseBody::full(None)
            }
            Framing::Length(n) if self.read_buf.len() as u64 >= n => {
                let data = self.read_buf.split_to(n as usize).freeze();
                self.release(head.keep_alive, pool);
                ResponseBody::full(Some(data).filter(|d| !d.is_empty()))
            }
            framing => ResponseBody::streaming(Streaming {
                decode: match framing {
                    Framing::Length(n) => Decode::Length(n),
                    Framing::Chunked => Decode::Chunked(Chunk::Size),
                    _ => Decode::Close,
                },
                keep_alive: head.keep_alive && framing != Framing::Close,
                conn: Some(self),
                pool: pool.clone(),
            }),
        };
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        response
    }

    /// Back to the pool when the answer allows reuse and nothing unasked follows it.
    fn release(self: Box<Self>, keep_alive: bool, pool: &Pool) {
        if keep_alive && self.read_buf.is_empty() {
            pool.checkin_fast(self);
        }
    }
}

/// Writes the encoded request and reads the final response head (1xx answers other than 101
/// skipped).
async fn exchange(
    io: &mut Io,
    request: &[u8],
    read_buf: &mut BytesMut,
    head_only: bool,
) -> Result<Head, Failure> {
    let written = async {
        io.write_all(request).await?;
        io.flush().await
    };
    if let Err(e) = written.await {
        return Err(Failure::from_io(&e));
    }
    loop {
        let head = read_head(io, read_buf, head_only).await?;
        match head.status.as_u16() {
            101 => {
                return Err(Failure::Protocol(
                    "unrequested protocol upgrade (101)".into(),
                ));
            }
            100..=199 => continue,
            _ => return Ok(head),
        }
    }
}

async fn read_head(io: &mut Io, read_buf: &mut BytesMut, head_only: bool) -> Result<Head, Failure> {
    loop {
        if !read_buf.is_empty() {
            if let Some(head) = parse_head(read_buf, head_only)? {
                return Ok(head);
            }
            if read_buf.len() >= MAX_HEAD_BYTES {
                return Err(Failure::Protocol(format!(
                    "response head over {MAX_HEAD_BYTES} bytes"
                )));
            }
        }
        make_room(read_buf);
        match io.read_buf(read_buf).await {
            Ok(0) => {
                return Err(Failure::BeforeResponse(
                    "connection closed before the response head was complete".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(Failure::from_io(&e)),
        }
    }
}

fn make_room(read_buf: &mut BytesMut) {
    if read_buf.capacity() - read_buf.len() < READ_RESERVE / 8 {
        read_buf.reserve(READ_RESERVE);
    }
}

fn push_field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// Parses a complete response head off the front of `buf` (None while it is incomplete). The
/// header values share the head's bytes, which are split off `buf`.
fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<Head>, Failure> {
    // Offsets (name start, name end, value start, value end) into the head: on the stack for
    // the usual handful of fields (zeroing room for all of them costs more than the rest).
    let mut inline = [(0u32, 0u32, 0u32, 0u32); INLINE_FIELDS];
    let mut spilled = Vec::new();
    let (len, code, minor, fields) = {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(Failure::Protocol(format!("invalid response head: {e}"))),
        };
        let count = parsed.headers.len();
        let fields = if count <= INLINE_FIELDS {
            &mut inline[..count]
        } else {
            spilled.resize(count, (0, 0, 0, 0));
            &mut spilled[..]
        };
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        for (slot, h) in fields.iter_mut().zip(parsed.headers.iter()) {
            let name = offset(h.name.as_bytes());
            let value = offset(h.value);
            *slot = (
                name,
                name + h.name.len() as u32,
                value,
                value + h.value.len() as u32,
            );
        }
        (
            len,
            parsed.code.unwrap_or(0),
            parsed.version.unwrap_or(1),
            &*fields,
        )
    };
    let bytes = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code)
        .map_err(|_| Failure::Protocol(format!("invalid status code {code}")))?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };

    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_coding = false;
    let mut chunked = false;
    let mut close = version == Version::HTTP_10;
    for &(ns, ne, vs, ve) in fields {
        let name = HeaderName::from_bytes(&bytes[ns as usize..ne as usize])
            .map_err(|_| Failure::Protocol("invalid header name in the response".into()))?;
        // SAFETY: httparse accepted these bytes as a field value: HTAB, SP to `~` and 0x80 to
        // 0xFF, exactly the bytes a `HeaderValue` may hold (hyper's own client relies on the
        // same). Debug builds check again.
        let value = unsafe {
            HeaderValue::from_maybe_shared_unchecked(bytes.slice(vs as usize..ve as usize))
        };
        if name == header::CONTENT_LENGTH {
            let n = parse_content_length(value.as_bytes())
                .filter(|n| content_length.is_none_or(|m| m == *n))
                .ok_or_else(|| {
                    Failure::Protocol("invalid content-length in the response".into())
                })?;
            content_length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            transfer_coding = true;
            // Only the last coding of the last field decides.
            chunked = value
                .as_bytes()
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            // Hop-by-hop, framing only: never forwarded, so never kept.
            continue;
        } else if name == header::CONNECTION {
            let mut names_others = false;
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    if version == Version::HTTP_10 {
                        close = false;
                    }
                } else if !token.is_empty() {
                    names_others = true;
                }
            }
            // Kept only when it names other headers, which the hop-by-hop stripping then
            // removes with it; `close` and `keep-alive` are this hop's business alone.
            if !names_others {
                continue;
            }
        } else if name == KEEP_ALIVE {
            continue;
        }
        headers.append(name, value);
    }

    let code = status.as_u16();
    let framing = if head_only || code == 204 || code == 304 || status.is_informational() {
        Framing::None
    } else if transfer_coding {
        // The coding decides; a length beside it is dropped, and the connection not reused.
        if content_length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            close = true;
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        content_length.map_or(Framing::Close, Framing::Length)
    };
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive: !close,
    }))
}

/// A `Content-Length` value: digits, or a list of the same digits repeated.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|m| m != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// A response body still arriving on its connection.
pub(super) struct Streaming {
    /// None once the body is complete (the connection went back to the pool, or was closed).
    conn: Option<Box<Conn>>,
    decode: Decode,
    keep_alive: bool,
    pool: Pool,
}

enum Decode {
    Length(u64),
    Chunked(Chunk),
    Close,
}

enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer bytes seen so far.
    Trailers(usize),
}

impl Streaming {
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.read_buf;
            match &mut self.decode {
                Decode::Length(0) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Decode::Length(left) => {
                    if !buf.is_empty() {
                        let data = take(buf, left);
                        if *left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Decode::Close => {
                    if !buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))));
                    }
                }
                Decode::Chunked(chunk) => match chunk {
                    Chunk::Size => {
                        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                            let Some(size) = parse_chunk_size(&buf[..end]) else {
                                return self.fail("invalid chunk size line");
                            };
                            buf.advance(end + 1);
                            *chunk = if size == 0 {
                                Chunk::Trailers(0)
                            } else {
                                Chunk::Data(size)
                            };
                            continue;
                        }
                        if buf.len() > MAX_CHUNK_LINE {
                            return self.fail("chunk size line too long");
                        }
                    }
                    Chunk::Data(left) => {
                        if !buf.is_empty() {
                            let data = take(buf, left);
                            if *left == 0 {
                                *chunk = Chunk::DataEnd;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Chunk::DataEnd => {
                        if buf.len() >= 2 {
                            if &buf[..2] != b"\r\n" {
                                return self.fail("chunk data not followed by CRLF");
                            }
                            buf.advance(2);
                            *chunk = Chunk::Size;
                            continue;
                        }
                    }
                    Chunk::Trailers(seen) => {
                        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                            let last = end == 0 || (end == 1 && buf[0] == b'\r');
                            *seen += end + 1;
                            buf.advance(end + 1);
                            if last {
                                self.finish();
                                return Poll::Ready(None);
                            }
                            if *seen > MAX_TRAILER_BYTES {
                                return self.fail("trailers too large");
                            }
                            continue;
                        }
                        if *seen + buf.len() > MAX_TRAILER_BYTES {
                            return self.fail("trailers too large");
                        }
                    }
                },
            }
            // Nothing to hand out: read more.
            make_room(&mut conn.read_buf);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.read_buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if matches!(self.decode, Decode::Close) {
                        self.conn = None;
                        return Poll::Ready(None);
                    }
                    return self.fail("connection closed before the response body was complete");
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.decode, Decode::Length(0))
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Length(n) if self.conn.is_some() => SizeHint::with_exact(n),
            _ if self.conn.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.release(self.keep_alive, &self.pool);
        }
    }

    fn fail<T>(&mut self, why: &'static str) -> Poll<Option<Result<T, io::Error>>> {
        self.conn = None;
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, why))))
    }
}

/// Up to `left` bytes off the front of `buf`.
fn take(buf: &mut BytesMut, left: &mut u64) -> Bytes {
    let n = (*left).min(buf.len() as u64);
    *left -= n;
    buf.split_to(n as usize).freeze()
}

/// `1a3f` or `1a3f;ext=1`, before the line feed, with the carriage return.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r")?;
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

#[cfg(test)]
mod tests;
