//! A thin I/O wrapper under each client connection that gives hyper's servers the limits they
//! lack, and keeps even hyper's own error answers in FxA's errno shape:
//!
//! * slowloris: once the first byte of a request head arrives, the whole head must arrive within
//!   the header-read timeout, else the client gets a 408 errno answer and the connection closes.
//!   This holds for every head of a keep-alive connection. The head is complete when the
//!   request reached the service (`InFlight::started` moves): hyper parses, this code never
//!   looks for the end of a head itself;
//! * idle keep-alive (and idle HTTP/2) connections close after the idle timeout, counted from the
//!   last byte read or written, so a long download is never cut;
//! * a client that takes no byte of what the gateway writes for the send timeout loses the
//!   connection (the response body, and with it the upstream connection, is dropped);
//! * hyper answers unparsable requests (400, 414, 431) by itself with an empty body; those
//!   answers are swapped for errno JSON on the way out, on every request of a connection.
//!
//! It must never alter a response the pipeline produced. hyper writes its automatic answer only
//! when no response is in progress, so bytes hyper buffered while no request was in the
//! pipeline (none in flight, none started) since the last write are hyper's own. hyper passes
//! its whole write buffer on each write (the flattened strategy, `writev(false)`): what a write
//! left unwritten comes first in the next one, and was looked at already. When a response ended
//! since the last write, hyper's answer can only follow it at the end of the buffer, in hyper's
//! exact shape (a body ending in an empty line is never taken for it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::body::{Body, InFlight};
use crate::errno::GatewayError;
use crate::request_id::IdGenerator;

/// Which protocol runs over the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
    pub send: Duration,
}

/// A request head being read (HTTP/1).
#[derive(Debug, Clone, Copy)]
struct Head {
    /// When its first byte arrived.
    since: Instant,
    /// `InFlight::started` then: once it moves, the head reached the service.
    mark: u64,
    /// The timer runs to this head's deadline.
    timer_set: bool,
}

pub struct GuardedIo<T> {
    inner: T,
    protocol: Protocol,
    timeouts: Timeouts,
    /// The header deadline of `head`, else the idle deadline.
    timer: Pin<Box<Sleep>>,
    head: Option<Head>,
    last_activity: Instant,
    /// Bytes at the start of hyper's next write that the last write left unwritten.
    owed: usize,
    /// At the last write: a request was in flight, and how many had started.
    busy_at_write: bool,
    started_at_write: u64,
    /// A replacement answer still being written, and how much of it is out.
    pending: Option<(Bytes, usize)>,
    /// After a 408, reads report the timeout once the answer is out.
    timed_out: bool,
    /// The send deadline, made on the first write that has to wait; armed while one waits.
    send_timer: Option<Pin<Box<Sleep>>>,
    send_waiting: bool,
    ids: Arc<IdGenerator>,
    /// Requests still being answered: the idle deadline waits for them.
    in_flight: Arc<InFlight>,
}

impl<T> GuardedIo<T> {
    pub fn new(
        inner: T,
        protocol: Protocol,
        timeouts: Timeouts,
        ids: Arc<IdGenerator>,
        in_flight: Arc<InFlight>,
    ) -> Self {
        let now = Instant::now();
        GuardedIo {
            inner,
            protocol,
            timeouts,
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
            head: None,
            last_activity: now,
            owed: 0,
            busy_at_write: false,
            started_at_write: 0,
            pending: None,
            timed_out: false,
            send_timer: None,
            send_waiting: false,
            ids,
            in_flight,
        }
    }

    /// Tracks request heads in bytes just read (HTTP/1 only). Bytes read while no request is
    /// in flight start a head (or belong to one already started); its deadline is checked
    /// lazily, so a head that arrives whole costs no timer update.
    fn observe_read(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let now = Instant::now();
        self.last_activity = now;
        if self.protocol != Protocol::Http1 || !self.in_flight.is_idle() {
            return;
        }
        let started = self.in_flight.started();
        if self.head.is_none_or(|h| h.mark != started) {
            self.head = Some(Head {
                since: now,
                mark: started,
                timer_set: false,
            });
        }
    }

    /// The head being read, if it has not reached the service yet.
    fn open_head(&mut self) -> Option<Head> {
        let head = self.head?;
        if head.mark != self.in_flight.started() || !self.in_flight.is_idle() {
            self.head = None;
            return None;
        }
        Some(head)
    }

    /// No response bytes can have been buffered by hyper since the last write: no request was
    /// in flight then or is now, and none started in between.
    fn quiet(&self) -> bool {
        !self.busy_at_write
            && self.in_flight.is_idle()
            && self.in_flight.started() == self.started_at_write
    }

    /// Looks at what hyper is about to write (HTTP/1). Returns the bytes to write instead of
    /// all of `buf` when it ends with one of hyper's automatic answers.
    fn observe_write(&mut self, buf: &[u8]) -> Option<Bytes> {
        self.last_activity = Instant::now();
        if self.protocol != Protocol::Http1 {
            return None;
        }
        let quiet = self.quiet();
        self.busy_at_write = !self.in_flight.is_idle();
        self.started_at_write = self.in_flight.started();
        let blank_line_tail = self.in_flight.take_blank_line_tail();
        let owed = self.owed.min(buf.len());
        let fresh = &buf[owed..];
        if self.busy_at_write || fresh.is_empty() {
            return None;
        }
        let at = if quiet {
            // Only hyper wrote since: all of it is its answer.
            fresh.starts_with(b"HTTP/1.").then_some(0)
        } else if blank_line_tail {
            None
        } else {
            auto_answer_at_end(fresh)
        }?;
        let err = match fresh.get(at + 9..at + 12)? {
            b"431" => GatewayError::HeadersTooLarge,
            b"414" => GatewayError::UriTooLong,
            b"400" => GatewayError::BadRequest("unparsable request"),
            _ => return None,
        };
        let answer = self.render(err)?;
        let mut out = BytesMut::with_capacity(owed + at + answer.len());
        out.extend_from_slice(&buf[..owed + at]);
        out.extend_from_slice(&answer);
        Some(out.freeze())
    }

    fn render(&self, err: GatewayError) -> Option<Bytes> {
        let rid = self.ids.next();
        tracing::info!(target: "access", request_id = ?rid, status = err.parts().status.as_u16(), errno = err.parts().errno, reason = err.parts().reason, "refused before routing");
        render_with_hyper(err.into_response(&rid, &Method::GET))
    }
}

/// Where hyper's automatic answer starts, when `buf` ends with one: its status line, then
/// exactly `connection: close` (when hyper adds it), `content-length: 0` and hyper's `date`.
/// Runs on every HTTP/1 write that follows a response: nearly every buffer fails the first
/// test (the end of the date), and nothing is allocated.
fn auto_answer_at_end(buf: &[u8]) -> Option<usize> {
    const DATE: usize = "Thu, 01 Jan 1970 00:00:00 GMT".len();
    const LENGTH_DATE: &[u8] = b"content-length: 0\r\ndate: ";
    if !buf.ends_with(b" GMT\r\n\r\n") {
        return None;
    }
    let status_lines = [
        &b"HTTP/1.1 400 Bad Request\r\n"[..],
        b"HTTP/1.1 414 URI Too Long\r\n",
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    ];
    let closes = [&b"connection: close\r\n"[..], b""];
    for (status_line, close) in status_lines
        .iter()
        .flat_map(|s| closes.iter().map(move |c| (s, c)))
    {
        let fixed = status_line.len() + close.len() + LENGTH_DATE.len();
        let Some(at) = buf.len().checked_sub(fixed + DATE + 4) else {
            continue;
        };
        let tail = &buf[at..];
        let (line, rest) = tail.split_at(status_line.len());
        let (conn, rest) = rest.split_at(close.len());
        if line == *status_line && conn == *close && rest.starts_with(LENGTH_DATE) {
            let date = &tail[fixed..fixed + DATE];
            if !date.contains(&b'\r') && !date.contains(&b'\n') {
                return Some(at);
            }
        }
    }
    None
}

/// The bytes hyper's HTTP/1.1 server writes for `response`, closing the connection: a
/// throwaway server connection over an in-memory pipe answers one fixed request with it. Our
/// code never frames HTTP itself; these answers are rare, so the cost does not matter. Every
/// step completes without waiting (the pipe is in memory and large enough), so it is polled
/// here to the end; `None` if it does not get there.
pub fn render_with_hyper(response: Response<Body>) -> Option<Bytes> {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: gateway\r\n\r\n";
    let (mut client, server) = tokio::io::duplex(16 * 1024);
    let response = std::cell::Cell::new(Some(response));
    let service = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
        let response = response.take().ok_or("one request only");
        std::future::ready(response)
    });
    let mut builder = http1::Builder::new();
    builder.keep_alive(false).header_read_timeout(None);
    let conn = builder.serve_connection(TokioIo::new(server), service);
    let mut conn = std::pin::pin!(conn);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::with_capacity(512);
    let mut written = 0;
    let mut done = false;
    for _ in 0..64 {
        if written < REQUEST.len()
            && let Poll::Ready(Ok(n)) =
                Pin::new(&mut client).poll_write(&mut cx, &REQUEST[written..])
        {
            written += n;
        }
        if !done {
            done = conn.as_mut().poll(&mut cx).is_ready();
        }
        let mut chunk = [0u8; 4096];
        let mut read = ReadBuf::new(&mut chunk);
        match Pin::new(&mut client).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => break,
            Poll::Ready(Ok(())) => out.extend_from_slice(read.filled()),
            Poll::Ready(Err(_)) => return None,
            Poll::Pending if done => break,
            Poll::Pending => {}
        }
    }
    (done && out.starts_with(b"HTTP/1.1 ")).then(|| Bytes::from(out))
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes out a replacement answer; Ready once all of it is out.
    fn drive_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written >= bytes.len() {
                self.pending = None;
                break;
            }
            let n = match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(r) => r?,
                Poll::Pending => return self.write_waits(cx),
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            self.send_waiting = false;
        }
        Poll::Ready(Ok(()))
    }

    /// A write (or flush) waits on the client: Pending, or the send timeout's error once the
    /// client has taken nothing for that long.
    fn write_waits<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeouts.send;
        let timer = self
            .send_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.send_waiting {
            self.send_waiting = true;
            timer.as_mut().reset(Instant::now() + timeout);
        }
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                tracing::debug!("send timeout: the client takes no response bytes");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "send timeout")))
            }
        }
    }

    /// Fires the header or idle deadline. Ready(true) = the connection should end.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(mut head) = self.open_head() {
            let due = head.since + self.timeouts.header_read;
            if !head.timer_set {
                head.timer_set = true;
                self.head = Some(head);
                self.timer.as_mut().reset(due);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.head_timed_out();
            return Poll::Ready(true);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let mut idle_until = self.last_activity + self.timeouts.idle;
        if !self.in_flight.is_idle() {
            // Busy answering (a slow upstream, a long download): not idle, look again later.
            idle_until = Instant::now() + self.timeouts.idle;
        }
        if idle_until > Instant::now() {
            self.timer.as_mut().reset(idle_until);
            // Register the new deadline with this task.
            return match self.timer.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => Poll::Ready(true),
            };
        }
        Poll::Ready(true)
    }

    /// The head's time is up: a 408, unless the client has not taken all of the previous
    /// response yet (then the connection just closes: the answer cannot go in between).
    fn head_timed_out(&mut self) {
        self.head = None;
        self.timed_out = true;
        if self.owed == 0 && self.quiet() {
            self.pending = self.render(GatewayError::HeaderTimeout).map(|a| (a, 0));
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() || this.timed_out {
            return this.end_with_timeout(cx);
        }
        // The deadlines only matter while the read waits: bytes already there are read, and
        // the timer is looked at (and its waker registered) only when there are none. A head
        // that keeps arriving is still bounded by its deadline, checked after each read, and by
        // hyper's head size limit.
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.observe_read(buf.filled().len() - before);
                match this.open_head() {
                    Some(head) if head.since + this.timeouts.header_read <= Instant::now() => {
                        this.head_timed_out();
                        return this.end_with_timeout(cx);
                    }
                    _ => return Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        match this.poll_deadline(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) if this.timed_out => this.end_with_timeout(cx),
            // Idle: end of stream, so the connection closes quietly.
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> GuardedIo<T> {
    /// After a header timeout: the 408 (if any) goes out, then reads fail.
    fn end_with_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drive_pending(cx))?;
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drive_pending(cx))?;
        if let Some(answer) = this.observe_write(buf) {
            this.owed = 0;
            this.pending = Some((answer, 0));
            let _ = this.drive_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.owed = buf.len() - n.min(buf.len());
                this.send_waiting = false;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.owed = buf.len();
                this.write_waits(cx)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.protocol == Protocol::Http1 {
            // hyper's HTTP/1 server runs with `writev(false)`; were anything else to write here,
            // it goes one buffer at a time, through the checks of `poll_write`.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        ready!(this.drive_pending(cx))?;
        this.last_activity = Instant::now();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.write_waits(cx),
            ready => {
                this.send_waiting = false;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.protocol == Protocol::Http2 && self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drive_pending(cx))?;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.write_waits(cx),
            ready => {
                this.send_waiting = false;
                ready
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drive_pending(cx))?;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.write_waits(cx),
            ready => {
                this.send_waiting = false;
                ready
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::TrackedBody;
    use http::HeaderValue;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What hyper's HTTP/1.1 server writes for a request it cannot parse.
    async fn auto_answer_of(request: &[u8]) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(|_: Request<hyper::body::Incoming>| {
            std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(
                Body::empty(),
            )))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(8192);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let task = tokio::spawn(conn);
        client.write_all(request).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let _ = task.await;
        out
    }

    fn hyper_auto_answer(request: &[u8]) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(auto_answer_of(request))
    }

    fn guarded(
        server: tokio::io::DuplexStream,
    ) -> (GuardedIo<tokio::io::DuplexStream>, Arc<InFlight>) {
        let in_flight = Arc::new(InFlight::default());
        let timeouts = Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            send: Duration::from_secs(60),
        };
        let ids = Arc::new(IdGenerator::new());
        let io = GuardedIo::new(server, Protocol::Http1, timeouts, ids, in_flight.clone());
        (io, in_flight)
    }

    /// What the client receives once the guard is dropped.
    async fn received(
        mut client: tokio::io::DuplexStream,
        io: GuardedIo<tokio::io::DuplexStream>,
    ) -> Vec<u8> {
        drop(io);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn hyper_answer_behind_the_tail_of_a_response_is_replaced_and_the_tail_kept() {
        let auto = auto_answer_of(b"GARBAGE\r\n\r\n").await;
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut io, in_flight) = guarded(server);
        let guard = in_flight.enter();
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234")
            .await
            .unwrap();
        drop(guard);
        // The end of the body and hyper's answer to the next head, in one write.
        io.write_all(&[b"56789".as_slice(), &auto].concat())
            .await
            .unwrap();
        let out = received(client, io).await;
        let text = String::from_utf8_lossy(&out);
        let (first, second) = text.split_once("0123456789").expect("the body, whole");
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(second.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(
            second.contains("x-fxa-gateway-error: bad-request\r\n"),
            "{text}"
        );
        assert!(second.ends_with('}'), "{text}");
    }

    #[tokio::test]
    async fn a_body_that_ends_like_hyper_answer_is_never_replaced() {
        let auto = auto_answer_of(b"GARBAGE\r\n\r\n").await;
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut io, in_flight) = guarded(server);
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", auto.len());
        let mut body = TrackedBody {
            inner: Body::full(Bytes::from(auto.clone())),
            _guard: in_flight.enter(),
        };
        io.write_all(head.as_bytes()).await.unwrap();
        // The pipeline hands hyper the body; hyper drops it once it is all buffered.
        let frame = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        drop(body);
        io.write_all(frame.data_ref().unwrap()).await.unwrap();
        let out = received(client, io).await;
        assert_eq!(out, [head.as_bytes(), &auto].concat());
    }

    #[tokio::test]
    async fn hyper_answer_after_a_quiet_spell_is_replaced_whole() {
        let auto = auto_answer_of(b"GARBAGE\r\n\r\n").await;
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut io, in_flight) = guarded(server);
        let guard = in_flight.enter();
        let response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        io.write_all(&response.as_bytes()[..10]).await.unwrap();
        drop(guard);
        // The rest of the response goes out after its body was dropped, then hyper's answer.
        io.write_all(&response.as_bytes()[10..]).await.unwrap();
        io.write_all(&auto).await.unwrap();
        let out = String::from_utf8(received(client, io).await).unwrap();
        let (first, second) = out.split_at(response.len());
        assert_eq!(first, response);
        assert!(second.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(second.contains("\"errno\":999"), "{out}");
    }

    #[test]
    fn hyper_auto_answers_are_found_at_the_end_of_a_write_and_ours_are_not() {
        let bad = hyper_auto_answer(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n");
        let big = hyper_auto_answer(&[b"GET / HTTP/1.1\r\nx: ".as_slice(), &[b'a'; 9000]].concat());
        assert_eq!(auto_answer_at_end(&bad), Some(0), "{bad:?}");
        assert!(big.starts_with(b"HTTP/1.1 431 "), "{big:?}");
        assert_eq!(auto_answer_at_end(&big), Some(0));
        let after_tail = [b"...end of the previous body".as_slice(), &bad].concat();
        assert_eq!(auto_answer_at_end(&after_tail), Some(27));
        assert_eq!(
            auto_answer_at_end(
                b"HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\ncontent-length: 0\r\n\r\n"
            ),
            None
        );
        assert_eq!(
            auto_answer_at_end(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }

    #[test]
    fn errno_answers_are_rendered_by_hyper_and_close_the_connection() {
        let err = GatewayError::HeaderTimeout;
        let out =
            render_with_hyper(err.into_response(&HeaderValue::from_static("rid"), &Method::GET))
                .expect("rendered");
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.contains("x-request-id: rid\r\n"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errno"], 999);
        assert_eq!(v["code"], 408);
    }
}
