//! Request heads checked before the HTTP/1 parser sees them.
//!
//! hyper answers a request line or header it cannot parse with a bare `400` (or `431` for a
//! head over its buffer) and no body. [`HeadGuard`] sits between the connection and hyper,
//! follows the HTTP/1.1 message framing (request heads, `Content-Length` and chunked bodies)
//! and hands hyper only complete heads it has checked. A head that fails the check never
//! reaches hyper: in its place hyper gets a small request of the guard's own, which the
//! service recognises through [`Shared`] and answers with the catalog error, after the
//! responses to any earlier requests on the connection and with `Connection: close`.
//!
//! Anything the guard does not fully understand (HTTP/2, upgrades, `CONNECT`, unusual
//! `Transfer-Encoding` or `Content-Length`) switches it to passing bytes through unchanged,
//! so it never disagrees with hyper about where a message ends.

use crate::error::GatewayError;
use candor_catalog::codes;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest request head the guard ever holds back; hyper's read buffer is 1 MiB. The
/// bound in force is smaller: the configured limits (see [`HeadGuard::new`]).
pub(crate) const MAX_HEAD_BYTES: usize = (1 << 20) - 8 * 1024;

/// A held buffer larger than this is given back to the allocator once emptied, so that an
/// idle keep-alive connection holds no more than a few KiB.
const KEEP_CAPACITY: usize = 16 * 1024;

/// The configured waits on the client that the guard enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waits {
    /// First request: from accept to the end of its head. Later ones: from the first byte
    /// of the head to its end.
    pub(crate) head: Duration,
    /// From the end of a response to the first byte of the next request.
    pub(crate) keepalive: Duration,
}

/// What a running timer waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// The end of a request head.
    Head,
    /// The first byte of the next request.
    Idle,
}

/// What the guard put in place of a rejected head. Nothing in it comes from the client, and
/// the service tells it from a client's request by its position on the connection.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: candor.invalid\r\nconnection: close\r\n\r\n";

/// How long a closing connection reads what the client still sends, so that closing does
/// not reset the connection before the client has read the answer.
const LINGER: Duration = Duration::from_millis(500);

/// A rejected request head.
#[derive(Debug)]
pub(crate) struct Rejection {
    /// The position of the stand-in request on the connection (0 for the first request).
    pub index: u64,
    /// The error to answer with.
    pub error: GatewayError,
    /// The request target, as far as it could be read (for `instance`).
    pub target: String,
}

/// State shared by a connection's guard and its service.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    rejection: OnceLock<Rejection>,
    requests: AtomicU64,
    /// Requests whose response has not been sent to the end yet: while there are any, the
    /// connection is not idle and no head or keep-alive timer runs.
    in_flight: AtomicUsize,
    /// When the last response was sent to the end, in nanoseconds since [`clock_base`]: the
    /// start of the keep-alive wait.
    idle_since: AtomicU64,
}

/// The instant the guard's clock counts from (the first use in the process).
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Now, in nanoseconds since [`clock_base`].
fn clock_now() -> u64 {
    Instant::now().saturating_duration_since(clock_base()).as_nanos() as u64
}

/// A request being served; dropped when its response has been sent to the end (it rides
/// on the response body), which starts the keep-alive timer.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let shared = &self.0;
        shared.idle_since.store(clock_now(), Ordering::Release);
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// Marks a request as being served until the returned token is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Called by the service once per HTTP/1 request, in order: the rejection to answer
    /// instead of this request, when it is the guard's stand-in.
    pub(crate) fn next_request(&self) -> Option<&Rejection> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        self.rejection.get().filter(|r| r.index == n)
    }
}

/// Where the byte stream is in the HTTP/1.1 message framing.
#[derive(Debug)]
enum Framing {
    /// In a request head; `scanned` bytes of it have been searched for its end, and
    /// `line` says how far its request line has been checked.
    Head { scanned: usize, line: Line },
    /// In a body with this many bytes left.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Not followed: everything passes unchanged.
    Through,
    /// A head was rejected: the stand-in is being handed out, then nothing more.
    Rejected,
}

/// How far the request line of a head being collected has been checked.
#[derive(Debug, Clone, Copy)]
enum Line {
    /// Not complete yet; this many bytes have been searched for its end.
    Open(usize),
    /// Complete and checked.
    Checked,
}

/// The start of a new request head.
const NEW_HEAD: Framing = Framing::Head {
    scanned: 0,
    line: Line::Open(0),
};

/// Where a chunked body is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading the chunk size: its value so far, and whether a digit was seen.
    Size(u64, bool),
    /// After the size, up to the end of the line (extensions are skipped).
    SizeLine(u64),
    /// Chunk data with this many bytes left.
    Data(u64),
    /// The CR LF after chunk data (`true` once the CR is seen).
    DataEnd(bool),
    /// Trailer lines after the last chunk; `empty` while the current line has no bytes.
    Trailer { empty: bool },
}

/// One step of the chunked-body scanner.
#[derive(Debug)]
enum ChunkStep {
    /// Consumed everything it was given; the body goes on.
    More,
    /// The body ended after this many bytes.
    End(usize),
    /// Not a chunked body the guard understands.
    Confused,
}

impl Chunk {
    /// The state after the line that gave the chunk size `n`.
    fn after_size_line(n: u64) -> Chunk {
        if n == 0 {
            Chunk::Trailer { empty: true }
        } else {
            Chunk::Data(n)
        }
    }

    /// Follows the body through `data`.
    fn advance(&mut self, data: &[u8]) -> ChunkStep {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            *self = match *self {
                Chunk::Size(n, seen) => match (b as char).to_digit(16) {
                    Some(d) => match n.checked_mul(16) {
                        Some(m) => Chunk::Size(m + u64::from(d), true),
                        None => return ChunkStep::Confused,
                    },
                    None if !seen => return ChunkStep::Confused,
                    None if b == b'\n' => Chunk::after_size_line(n),
                    None if matches!(b, b';' | b' ' | b'\t' | b'\r') => Chunk::SizeLine(n),
                    None => return ChunkStep::Confused,
                },
                Chunk::SizeLine(n) if b == b'\n' => Chunk::after_size_line(n),
                Chunk::SizeLine(n) => Chunk::SizeLine(n),
                Chunk::Data(left) => {
                    let n = left.min((data.len() - i) as u64);
                    *self = if n == left {
                        Chunk::DataEnd(false)
                    } else {
                        Chunk::Data(left - n)
                    };
                    i += n as usize;
                    continue;
                }
                Chunk::DataEnd(cr) => match (cr, b) {
                    (false, b'\r') => Chunk::DataEnd(true),
                    (_, b'\n') => Chunk::Size(0, false),
                    _ => return ChunkStep::Confused,
                },
                Chunk::Trailer { empty } => match b {
                    b'\n' if empty => return ChunkStep::End(i + 1),
                    b'\n' => Chunk::Trailer { empty: true },
                    b'\r' => Chunk::Trailer { empty },
                    _ => Chunk::Trailer { empty: false },
                },
            };
            i += 1;
        }
        ChunkStep::More
    }
}

/// Follows the framing of the bytes handed to the parser and checks each request head.
#[derive(Debug)]
struct Scanner {
    framing: Framing,
    /// Request heads passed to the parser so far.
    heads: u64,
    /// The configured request-target and header-section limits (for the details of
    /// `uri_too_long` and `headers_too_large`).
    limits: (usize, usize),
    /// The longest head held back before it is refused as too large.
    max_head: usize,
}

/// A rejected head: the error and the request target as far as it is known.
type Refusal = (GatewayError, String);

impl Scanner {
    /// Follows `data`, which starts where the previous call stopped handing bytes out (or at
    /// the start of a request head being collected). Returns how many bytes may go to the
    /// parser; the rest is an incomplete head to be offered again with more bytes, or, with
    /// a refusal, a head that must never reach the parser.
    fn scan(&mut self, data: &[u8]) -> (usize, Option<Refusal>) {
        let mut off = 0;
        while off < data.len() {
            match &mut self.framing {
                Framing::Through => return (data.len(), None),
                Framing::Rejected => return (off, None),
                Framing::Body(left) => {
                    let n = (*left).min((data.len() - off) as u64);
                    *left -= n;
                    off += n as usize;
                    if *left == 0 {
                        self.framing = NEW_HEAD;
                    }
                }
                Framing::Chunked(chunk) => match chunk.advance(&data[off..]) {
                    ChunkStep::More => return (data.len(), None),
                    ChunkStep::End(n) => {
                        off += n;
                        self.framing = NEW_HEAD;
                    }
                    ChunkStep::Confused => self.framing = Framing::Through,
                },
                Framing::Head { scanned, line } => {
                    let rest = &data[off..];
                    if *scanned == 0 {
                        // Empty lines before a request line are ignored (RFC 9112 §2.2).
                        let blank = rest
                            .iter()
                            .take_while(|b| matches!(b, b'\r' | b'\n'))
                            .count();
                        if blank > 0 {
                            off += blank;
                            continue;
                        }
                    }
                    match head_end(rest, *scanned) {
                        Ok(end) => {
                            let head = &rest[..end];
                            if let Some(refusal) = crate::http::grammar::check_request_line(head) {
                                return (off, Some(refusal));
                            }
                            self.framing = framing_after(head);
                            self.heads += 1;
                            off += end;
                        }
                        Err(resume) => {
                            *scanned = resume;
                            // The request line can be judged before the head is complete
                            // (a client speaking another protocol may wait forever).
                            if let Line::Open(searched) = *line {
                                let refusal =
                                    match rest[searched..].iter().position(|&b| b == b'\n') {
                                        Some(p) => {
                                            *line = Line::Checked;
                                            crate::http::grammar::check_request_line(
                                                &rest[..searched + p + 1],
                                            )
                                        }
                                        None => {
                                            *line = Line::Open(rest.len());
                                            crate::http::grammar::check_request_start(rest)
                                        }
                                    };
                                if refusal.is_some() {
                                    return (off, refusal);
                                }
                            }
                            if rest.len() > self.max_head {
                                return (off, Some(self.too_large(rest)));
                            }
                            return (off, None);
                        }
                    }
                }
            }
        }
        (off, None)
    }

    /// `uri_too_long` or `headers_too_large` for a head that grew past the bound without
    /// ending.
    fn too_large(&self, head: &[u8]) -> Refusal {
        let (max_uri, max_headers) = self.limits;
        let more = format!("more than {}", self.max_head);
        let Some(line_end) = head.iter().position(|&b| b == b'\n') else {
            let err = GatewayError::new(codes::URI_TOO_LONG)
                .param("length", more)
                .param("limit", max_uri.to_string())
                .extension("limit", max_uri.into());
            return (err, String::new());
        };
        let err = GatewayError::new(codes::HEADERS_TOO_LARGE)
            .param("length", more)
            .param("limit", max_headers.to_string())
            .param("largest", String::new())
            .extension("limit", max_headers.into());
        let target = head[..line_end]
            .split(|&b| b == b' ')
            .nth(1)
            .map(|t| crate::http::grammar::path_of(&t[..t.len().min(max_uri)]))
            .unwrap_or_default();
        (err, target)
    }
}

/// `request_timeout` for a head that did not end in time; its target, when the request line
/// is complete.
fn head_timed_out(head: &[u8], waited: Duration) -> Refusal {
    let target = head
        .iter()
        .position(|&b| b == b'\n')
        .and_then(|end| head[..end].split(|&b| b == b' ').nth(1))
        .map(|t| crate::http::grammar::path_of(&t[..t.len().min(8192)]))
        .unwrap_or_default();
    let err = GatewayError::new(codes::REQUEST_TIMEOUT)
        .param("part", "head")
        .param("timeout", crate::stages::forward::human_duration(waited))
        .param("limit_name", "timeouts.request_head")
        .extension("timeout_ms", (waited.as_millis() as u64).into());
    (err, target)
}

/// The length of the request head at the start of `data` (through the empty line that ends
/// it), or, when it is not complete, the offset to resume searching from.
fn head_end(data: &[u8], from: usize) -> Result<usize, usize> {
    let mut i = from;
    while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match data.get(nl + 1) {
            Some(b'\n') => return Ok(nl + 2),
            Some(b'\r') => match data.get(nl + 2) {
                Some(b'\n') => return Ok(nl + 3),
                Some(_) => {}
                None => return Err(nl),
            },
            Some(_) => {}
            None => return Err(nl),
        }
        i = nl + 1;
    }
    Err(data.len())
}

/// What follows a request head that passed the check: its body, or the next head. Anything
/// unusual is passed through for the parser to judge.
fn framing_after(head: &[u8]) -> Framing {
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    if request_line.starts_with(b"CONNECT ") || request_line.starts_with(b"PRI ") {
        return Framing::Through;
    }
    let mut length: Option<u64> = None;
    let mut encodings = 0;
    let mut chunked = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = decimal(value) else {
                return Framing::Through;
            };
            if length.is_some_and(|l| l != n) {
                return Framing::Through;
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encodings += 1;
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            return Framing::Through;
        }
    }
    match (encodings, length) {
        (0, None | Some(0)) => NEW_HEAD,
        (0, Some(n)) => Framing::Body(n),
        (1, None) if chunked => Framing::Chunked(Chunk::Size(0, false)),
        _ => Framing::Through,
    }
}

/// A non-empty run of ASCII digits as a number.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// A connection's byte stream with each HTTP/1 request head checked before the parser gets
/// it (see the module documentation).
#[derive(Debug)]
pub(crate) struct HeadGuard<S> {
    inner: S,
    shared: Arc<Shared>,
    scanner: Scanner,
    /// Bytes read but not yet handed out: `held[pos..ready]` may go to the parser,
    /// `held[ready..]` is a request head still being collected.
    held: Vec<u8>,
    pos: usize,
    ready: usize,
    /// After a rejection: the client closed its side.
    client_done: bool,
    /// After a rejection, while closing: how long to keep reading.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    waits: Waits,
    /// One timer per connection. It may fire early: when it does, the real deadline is
    /// worked out from what the connection is waiting for and the timer is set to it, so
    /// that no request pays for a timer of its own.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the guard was created (the first head is timed from here).
    accepted: Instant,
    /// When the head being collected started arriving.
    head_started: Instant,
    /// When the last head went to the parser.
    last_head: Instant,
    /// A timer expired with nothing to answer: the connection ends.
    closed: bool,
}

impl<S> HeadGuard<S> {
    /// Guards `inner`, accepted just now; `limits` are the configured request-target and
    /// header-section limits, which also bound the bytes held for an incomplete head.
    pub(crate) fn new(inner: S, shared: Arc<Shared>, limits: (usize, usize), waits: Waits) -> Self {
        // The raw head carries a colon, a space and CRLF per line on top of what the
        // limits count; anything longer is refused without waiting for its end.
        let max_head = (limits.0 + 2 * limits.1 + 8 * 1024).min(MAX_HEAD_BYTES);
        HeadGuard {
            inner,
            shared,
            scanner: Scanner {
                framing: NEW_HEAD,
                heads: 0,
                limits,
                max_head,
            },
            held: Vec::new(),
            pos: 0,
            ready: 0,
            client_done: false,
            linger: None,
            waits,
            // The first request's head is timed from accept.
            timer: Box::pin(tokio::time::sleep(waits.head)),
            accepted: Instant::now(),
            head_started: Instant::now(),
            last_head: Instant::now(),
            closed: false,
        }
    }

    /// Called when reading from the client would wait. When the timer fires, works out
    /// what the connection is waiting for: nothing while a request is being served or its
    /// body read (the timer is set again); the end of a head (from accept for the first
    /// request, from its first byte for later ones); or, idle, the first byte of the next
    /// request (from the end of the last response). Returns the wait that expired.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Wait> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = Instant::now();
        let collecting = self.held.len() > self.ready;
        let (wait, deadline) = if !matches!(self.scanner.framing, Framing::Head { .. })
            || self.shared.in_flight.load(Ordering::Acquire) > 0
        {
            // Busy: look again later.
            self.timer
                .as_mut()
                .reset((now + self.waits.keepalive).into());
            let _ = self.timer.as_mut().poll(cx);
            return None;
        } else if self.scanner.heads == 0 {
            (Wait::Head, self.accepted + self.waits.head)
        } else if collecting {
            (Wait::Head, self.head_started + self.waits.head)
        } else {
            let ended = clock_base()
                + Duration::from_nanos(self.shared.idle_since.load(Ordering::Acquire));
            (Wait::Idle, ended.max(self.last_head) + self.waits.keepalive)
        };
        if now >= deadline {
            return Some(wait);
        }
        self.timer.as_mut().reset(deadline.into());
        let _ = self.timer.as_mut().poll(cx);
        None
    }

    /// After a scan: notes when a head went to the parser and when the head now being
    /// collected started (`had_partial`: one was being collected before the scan).
    fn note_heads(&mut self, heads_before: u64, had_partial: bool) {
        let passed = self.scanner.heads != heads_before;
        let partial = self.held.len() > self.ready;
        if passed || (partial && !had_partial) {
            let now = Instant::now();
            if passed {
                self.last_head = now;
            }
            if partial {
                self.head_started = now;
            }
        }
    }

    /// A timer expired: an incomplete head is answered with `request_timeout`; an idle
    /// connection (or one that never sent a byte) is closed without an answer.
    fn expire(&mut self, wait: Wait) {
        let collecting = self.held.len() > self.ready;
        if wait == Wait::Head && collecting {
            let refusal = head_timed_out(&self.held[self.ready..], self.waits.head);
            self.refuse(refusal);
        } else {
            tracing::debug!(target: "candor::server", waited = ?wait, "client connection idle; closing");
            self.closed = true;
        }
    }

    /// Puts the stand-in request in place of a rejected head, after the bytes that may
    /// already go to the parser.
    fn refuse(&mut self, (error, target): Refusal) {
        let _ = self.shared.rejection.set(Rejection {
            index: self.scanner.heads,
            error,
            target,
        });
        self.scanner.framing = Framing::Rejected;
        self.held.truncate(self.ready);
        self.held.extend_from_slice(STAND_IN);
        self.ready = self.held.len();
    }
}

impl<S: AsyncRead + Unpin> HeadGuard<S> {
    /// After a rejection: reads and discards what the client still sends.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 4096];
        while !self.client_done {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {}
                Poll::Ready(_) => self.client_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.ready {
                let n = (this.ready - this.pos).min(buf.remaining());
                buf.put_slice(&this.held[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.held.len() {
                    if this.held.capacity() > KEEP_CAPACITY {
                        this.held = Vec::new();
                    } else {
                        this.held.clear();
                    }
                    this.pos = 0;
                    this.ready = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            match this.scanner.framing {
                Framing::Through => return Pin::new(&mut this.inner).poll_read(cx, buf),
                Framing::Rejected => {
                    // The stand-in asked to close the connection: nothing more goes to
                    // the parser, and what the client still sends is read and dropped.
                    let _ = this.poll_discard(cx);
                    return Poll::Pending;
                }
                _ => {}
            }
            if this.held.len() > this.ready {
                // A head is being collected: read more of it into `held`.
                let mut scratch = [0u8; 8192];
                let mut rb = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                    Poll::Pending => match this.poll_deadline(cx) {
                        Some(wait) => {
                            this.expire(wait);
                            continue;
                        }
                        None => return Poll::Pending,
                    },
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                        // The client closed in the middle of a head: the parser sees it.
                        this.scanner.framing = Framing::Through;
                        this.ready = this.held.len();
                        continue;
                    }
                    Poll::Ready(Ok(())) => this.held.extend_from_slice(rb.filled()),
                }
                let heads = this.scanner.heads;
                let (n, refusal) = this.scanner.scan(&this.held[this.ready..]);
                this.ready += n;
                this.note_heads(heads, true);
                if let Some(refusal) = refusal {
                    this.refuse(refusal);
                }
                continue;
            }
            // Nothing held: read straight into the parser's buffer and check what came.
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => match this.poll_deadline(cx) {
                    Some(wait) => {
                        this.expire(wait);
                        continue;
                    }
                    None => return Poll::Pending,
                },
                other => return other,
            }
            let got = buf.filled().len() - before;
            if got == 0 {
                return Poll::Ready(Ok(()));
            }
            let heads = this.scanner.heads;
            let (n, refusal) = this.scanner.scan(&buf.filled()[before..]);
            if n < got && refusal.is_none() {
                this.held.extend_from_slice(&buf.filled()[before + n..]);
            }
            this.note_heads(heads, false);
            buf.set_filled(before + n);
            if let Some(refusal) = refusal {
                this.refuse(refusal);
            }
            if n > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.scanner.framing, Framing::Rejected) {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        // After a rejection the client may still be sending the rest of its request:
        // closing with unread bytes would reset the connection and could destroy the
        // answer before the client reads it. Read for a little while first.
        if this.poll_discard(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        match this.linger.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITS: Waits = Waits {
        head: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
    };

    /// Feeds `input` to a scanner in pieces of `step` bytes, the way the guard does (an
    /// incomplete head is offered again with more bytes). Returns the bytes handed out, the
    /// number of heads passed and the refused code, if any.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, u64, Option<&'static str>) {
        let mut s = Scanner {
            framing: NEW_HEAD,
            heads: 0,
            limits: (8192, 32768),
            max_head: MAX_HEAD_BYTES,
        };
        let (mut out, mut held) = (Vec::new(), Vec::new());
        for piece in input.chunks(step) {
            held.extend_from_slice(piece);
            let (n, refusal) = s.scan(&held);
            out.extend_from_slice(&held[..n]);
            held.drain(..n);
            if let Some((e, _)) = refusal {
                return (out, s.heads, Some(e.code));
            }
        }
        (out, s.heads, None)
    }

    #[test]
    fn framing_is_followed_whatever_the_pieces() {
        let chunked = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            4;x=y\r\nGET \r\nA\r\n/ HTTP/1.1\r\n0\r\nT: 1\r\n\r\n";
        let sized = b"PUT /b HTTP/1.1\r\ncontent-length: 7\r\n\r\nA\r\n\r\nB ";
        let bad = b"GET /c d HTTP/1.1\r\n\r\n";
        let mut input = Vec::new();
        for part in [&chunked[..], &sized[..], b"\r\n", &bad[..]] {
            input.extend_from_slice(part);
        }
        let good_len = input.len() - bad.len();
        for step in [1, 2, 3, 7, 64, input.len()] {
            let (out, heads, code) = run(&input, step);
            assert_eq!(out, &input[..good_len], "step {step}");
            assert_eq!(heads, 2, "step {step}");
            assert_eq!(code, Some(codes::INVALID_URL_ENCODING), "step {step}");
        }
    }

    #[test]
    fn what_the_guard_does_not_follow_passes_through() {
        for head in [
            &b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"[..],
            b"CONNECT h:443 HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(b"GET /x y HTTP/1.1\r\n\r\n");
            assert_eq!(run(&input, 5).2, None, "{}", String::from_utf8_lossy(head));
        }
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"0042"), Some(42));
    }

    #[test]
    fn request_lines_are_judged_before_the_head_ends() {
        assert_eq!(
            run(b"\x16\x03\x01\x02\x00", 5).2,
            Some(codes::MALFORMED_REQUEST)
        );
        assert_eq!(
            run(b"HELLO THERE\r\nmore", 4).2,
            Some(codes::MALFORMED_REQUEST)
        );
        assert_eq!(run(b"GET /a HTTP/1.1\r\nHost: x\r\n", 3).2, None);
        let long = [b'a'; MAX_HEAD_BYTES + 10];
        assert_eq!(run(&long, 1 << 16).2, Some(codes::URI_TOO_LONG));
    }

    #[tokio::test]
    async fn a_refused_head_is_replaced_by_the_stand_in() {
        use tokio::io::AsyncReadExt;
        let shared = Arc::new(Shared::default());
        let input: &[u8] = b"GET /a HTTP/1.1\r\n\r\nGET /b c HTTP/1.1\r\n\r\n";
        let mut g = HeadGuard::new(input, shared.clone(), (8192, 32768), WAITS);
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.len() < 19 + STAND_IN.len() {
            let n = g.read(&mut buf).await.unwrap();
            assert!(n > 0);
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&out[..19], b"GET /a HTTP/1.1\r\n\r\n");
        assert_eq!(&out[19..], STAND_IN);
        assert!(shared.next_request().is_none());
        let r = shared
            .next_request()
            .expect("the second request is the stand-in");
        assert_eq!((r.index, r.error.code), (1, codes::INVALID_URL_ENCODING));
        assert_eq!(r.target, "/b c");
    }
}
