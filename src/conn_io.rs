//! A thin I/O wrapper under each client connection that gives hyper's HTTP/1 server the limits
//! it lacks, and keeps even hyper's own error answers in FxA's errno shape:
//!
//! * slowloris: once the first byte of a request head arrives, the whole head must arrive within
//!   the header-read timeout, else the client gets a 408 errno answer and the connection closes;
//! * idle keep-alive (and idle HTTP/2) connections close after the idle timeout, counted from the
//!   last byte read or written, so a long download is never cut;
//! * hyper answers unparsable requests (400, 414, 431) by itself with an empty body; those
//!   answers are swapped for errno JSON on the way out.
//!
//! It must never alter a response the pipeline produced: only head-less states are inspected,
//! and only hyper's automatic answers (no `x-request-id`, empty body) are replaced.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::body::InFlight;
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: `matched` counts the bytes of "\r\n\r\n" seen so far; `started` is set
    /// once any byte of the next head has arrived.
    AwaitingHead { matched: u8, started: bool },
    /// A head was read; the message is being handled and no response head is out yet.
    InMessage,
    /// The response head is out: writes are body bytes until the client sends again.
    Responding,
}

pub struct GuardedIo<T> {
    inner: T,
    protocol: Protocol,
    state: State,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    /// The header deadline is running (else the timer is the idle deadline).
    header_deadline: bool,
    last_activity: Instant,
    /// A replacement answer still being written, and how much of it is out.
    pending: Option<(Bytes, usize)>,
    /// After a 408, reads report the timeout once the answer is out.
    timed_out: bool,
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
            state: State::AwaitingHead {
                matched: 0,
                started: false,
            },
            timeouts,
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
            header_deadline: false,
            last_activity: now,
            pending: None,
            timed_out: false,
            ids,
            in_flight,
        }
    }

    /// Tracks request heads in bytes just read (HTTP/1 only).
    fn observe_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.last_activity = Instant::now();
        let State::AwaitingHead {
            mut matched,
            started,
        } = self.state
        else {
            return;
        };
        if self.protocol == Protocol::Http2 {
            return;
        }
        for &b in bytes {
            matched = match (matched, b) {
                (0 | 2, b'\r') => matched + 1,
                (1, b'\n') => 2,
                (3, b'\n') => {
                    self.state = State::InMessage;
                    if self.header_deadline {
                        self.header_deadline = false;
                        // Back to the idle deadline (pushed back lazily by later activity).
                        let idle_at = self.last_activity + self.timeouts.idle;
                        self.timer.as_mut().reset(idle_at);
                    }
                    return;
                }
                (_, b'\r') => 1,
                _ => 0,
            };
        }
        // The head did not arrive whole in one read (the usual head does, and then the timer
        // is never touched): from its first byte, it has the header-read timeout to arrive.
        if !started {
            self.header_deadline = true;
            self.timer
                .as_mut()
                .reset(self.last_activity + self.timeouts.header_read);
        }
        self.state = State::AwaitingHead {
            matched,
            started: true,
        };
    }

    /// Looks at a response head about to be written. Returns the replacement for hyper's own
    /// error answers.
    fn observe_write(&mut self, buf: &[u8]) -> Option<Bytes> {
        self.last_activity = Instant::now();
        if self.protocol != Protocol::Http1 || !buf.starts_with(b"HTTP/1.") || buf.len() < 12 {
            return None;
        }
        let status = &buf[9..12];
        match self.state {
            State::Responding => None,
            State::AwaitingHead { .. } | State::InMessage if is_hyper_auto_answer(buf) => {
                let err = match status {
                    b"431" => GatewayError::HeadersTooLarge,
                    b"414" => GatewayError::UriTooLong,
                    _ => GatewayError::BadRequest("unparsable request"),
                };
                Some(self.render(err))
            }
            _ if status[0] == b'1' => None,
            _ => {
                self.state = State::Responding;
                self.header_deadline = false;
                None
            }
        }
    }

    fn render(&self, err: GatewayError) -> Bytes {
        let rid = self.ids.next();
        tracing::info!(target: "access", request_id = ?rid, status = err.parts().status.as_u16(), errno = err.parts().errno, reason = err.parts().reason, "refused before routing");
        render_close(err, &rid)
    }
}

/// hyper's automatic answers to parse errors carry no body and none of our headers.
fn is_hyper_auto_answer(head: &[u8]) -> bool {
    let status_ok = matches!(&head[9..12], b"400" | b"414" | b"431");
    let ours = find(head, b"\r\nx-request-id:").is_some();
    status_ok && !ours && find(head, b"\r\ncontent-length: 0\r\n").is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// A complete HTTP/1.1 response with the errno body, closing the connection.
fn render_close(err: GatewayError, rid: &HeaderValue) -> Bytes {
    let resp = err.into_response(rid, &Method::GET);
    let status: StatusCode = resp.status();
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Error").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    if let crate::body::Body::Full(Some(b)) = resp.into_body() {
        out.extend_from_slice(&b);
    }
    Bytes::from(out)
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes out a replacement answer; Ready once all of it is out.
    fn drive_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written >= bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Fires the header or idle deadline. Ready(true) = the connection should end.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.header_deadline {
            self.header_deadline = false;
            self.timed_out = true;
            let answer = self.render(GatewayError::HeaderTimeout);
            self.pending = Some((answer, 0));
            return Poll::Ready(true);
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
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() || this.timed_out {
            ready!(this.drive_pending(cx))?;
            let _ = ready!(Pin::new(&mut this.inner).poll_flush(cx));
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        // The deadlines only matter while the read waits: bytes already there are read, and
        // the timer is looked at (and its waker registered) only when there are none. A head
        // that keeps arriving is still bounded by its deadline, checked after each read, and by
        // hyper's head size limit.
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                this.observe_read(&filled[before..]);
                if !(this.header_deadline && this.timer.is_elapsed()) {
                    return Poll::Ready(Ok(()));
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        match this.poll_deadline(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) if this.pending.is_some() => {
                ready!(this.drive_pending(cx))?;
                let _ = ready!(Pin::new(&mut this.inner).poll_flush(cx));
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            // Idle: end of stream, so the connection closes quietly.
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
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
            this.pending = Some((answer, 0));
            let _ = this.drive_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drive_pending(cx))?;
        if let Some(answer) = bufs
            .iter()
            .find(|b| !b.is_empty())
            .and_then(|first| this.observe_write(first))
        {
            this.pending = Some((answer, 0));
            let _ = this.drive_pending(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drive_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drive_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_auto_answers_are_recognised_and_ours_are_not() {
        assert!(is_hyper_auto_answer(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
        ));
        assert!(is_hyper_auto_answer(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!is_hyper_auto_answer(
            b"HTTP/1.1 400 Bad Request\r\nx-request-id: a\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!is_hyper_auto_answer(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n"
        ));
        assert!(!is_hyper_auto_answer(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn rendered_answer_is_complete_http_with_errno_json() {
        let out = render_close(
            GatewayError::HeaderTimeout,
            &HeaderValue::from_static("rid"),
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.contains("x-request-id: rid\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errno"], 999);
        assert_eq!(v["code"], 408);
    }
}
