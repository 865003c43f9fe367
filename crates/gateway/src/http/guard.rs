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
//! The guard is the one framing authority: a head whose body could be framed in more than
//! one way (two lengths, a length and a coding, a coding other than `chunked`, an ill-formed
//! length, `CONNECT`) is refused like a malformed head, and chunked bodies are followed with
//! hyper's grammar and CR LF line ends only; a body that breaks it fails with a read error
//! ([`BrokenFraming`]) instead of more bytes, so that nothing after it is read as a request.
//! Every head on a connection is checked, after an `Upgrade:` too (the gateway never
//! answers 101). Only an HTTP/2 connection, after its preface, passes through unchecked.

use crate::error::GatewayError;
use crate::stages::transport::Limits;
use candor_catalog::codes;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// The read error the parser gets when a request body's chunked framing is broken: what
/// was wrong. The request then fails as the client's fault (see `http::body`).
#[derive(Debug)]
pub(crate) struct BrokenFraming(pub(crate) &'static str);

impl std::fmt::Display for BrokenFraming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BrokenFraming {}

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
    /// Requests the client gave up before they were answered (HTTP/2 streams reset after
    /// they were accepted): their upstream work is cancelled.
    resets: AtomicU64,
    /// Told when `resets` goes over the budget.
    pub(crate) calm: tokio::sync::Notify,
    /// The parser is waiting for the next request head and holds nothing (see
    /// [`HeadGuard::is_quiet`]): its connection may be taken apart until bytes come.
    quiet: AtomicBool,
    /// A request head is being collected: the connection waits on the head's time, no
    /// longer on the keep-alive time.
    collecting: AtomicBool,
    /// Bytes read from and written to the client's socket (TLS records included).
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    /// Why the gateway asked the connection to close (a `connections::Close` as a number,
    /// 0 for none): for its `connection.closed` event.
    pub(crate) closing: std::sync::atomic::AtomicU8,
}

/// Resets a connection may make before it is closed, when they are also most of its
/// requests: a client cancelling now and then is normal, one opening streams only to reset
/// them makes the gateway do work for nothing (the HTTP/2 "rapid reset" attack).
pub(crate) const RESET_BUDGET: u64 = 100;

/// The instant the guard's clock counts from (the first use in the process).
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Now, in nanoseconds since [`clock_base`]; never 0 (which stands for "not yet").
fn clock_now() -> u64 {
    // The base first: on first use it is set now, and must not be later than "now".
    let base = clock_base();
    (Instant::now().saturating_duration_since(base).as_nanos() as u64).max(1)
}

/// A request being served; dropped when its response has been sent to the end (it rides
/// on the response body), which starts the keep-alive timer. Dropped before it was
/// [`answered`](InFlight::answered), the client gave the request up.
#[derive(Debug)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    answered: bool,
}

impl InFlight {
    /// The request has its response (now on its way).
    pub(crate) fn answered(mut self) -> Self {
        self.answered = true;
        self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.idle_since.store(clock_now(), Ordering::Release);
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !self.answered {
            let resets = shared.resets.fetch_add(1, Ordering::AcqRel) + 1;
            if resets > RESET_BUDGET && resets * 2 > shared.requests.load(Ordering::Relaxed) {
                shared.calm.notify_one();
            }
        }
    }
}

impl Shared {
    /// Marks a request as being served until the returned token is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            shared: self.clone(),
            answered: false,
        }
    }

    /// Whether no request is being served, and since when (the end of the last response;
    /// `None` before any).
    pub(crate) fn idle(&self) -> Option<Option<Instant>> {
        if self.in_flight.load(Ordering::Acquire) > 0 || self.collecting.load(Ordering::Acquire) {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        Some((since > 0).then(|| clock_base() + Duration::from_nanos(since)))
    }

    /// Whether the connection's parser waits for the next request head with nothing read,
    /// nothing to write and no request in flight: an idle keep-alive connection.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet.load(Ordering::Acquire) && self.in_flight.load(Ordering::Acquire) == 0
    }

    /// The parser is reading or writing: not quiet. Written only when it was quiet, so that
    /// reads and writes on a busy connection do not write the shared line.
    fn not_quiet(&self) {
        if self.quiet.load(Ordering::Relaxed) {
            self.quiet.store(false, Ordering::Release);
        }
    }

    /// Requests given up by the client, and requests in all.
    pub(crate) fn resets(&self) -> (u64, u64) {
        (
            self.resets.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
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
    /// An HTTP/2 connection (after its preface): everything passes unchanged.
    Through,
    /// A head was rejected: the stand-in is being handed out, then nothing more.
    Rejected,
    /// A chunked body broke its framing: what was wrong. The parser gets an error instead
    /// of more bytes, so the request fails as the client's fault and nothing after it is
    /// read as a request.
    Broken(&'static str),
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

/// Where a chunked body is. The grammar is hyper's, byte for byte (RFC 9112 §7.1 with CRLF
/// line ends only): wherever the two could read the bytes differently, the guard refuses
/// them first.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// The first hex digit of a chunk size.
    Start,
    /// More hex digits of the chunk size so far.
    Size(u64),
    /// Spaces or tabs after the size.
    SizeSpace(u64),
    /// A chunk extension (after `;`), this many bytes long so far.
    Extension(u64, usize),
    /// The LF after the size line's CR.
    SizeLf(u64),
    /// Chunk data with this many bytes left.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// After the last chunk or a trailer line: another trailer line, or the final CR LF.
    /// Carries the trailer bytes so far.
    TrailerStart(usize),
    /// In a trailer line.
    Trailer(usize),
    /// The LF ending a trailer line.
    TrailerLf(usize),
    /// The final LF.
    EndLf,
}

/// One step of the chunked-body scanner.
#[derive(Debug)]
enum ChunkStep {
    /// Consumed everything it was given; the body goes on.
    More,
    /// The body ended after this many bytes.
    End(usize),
    /// The framing is broken at this offset: what was wrong.
    Broken(usize, &'static str),
}

/// The longest chunk extension the guard follows (hyper allows 16 KiB over a whole body).
const MAX_CHUNK_EXTENSION: usize = 4096;

impl Chunk {
    /// Follows the body through `data`; `max_trailers` bounds the trailer section.
    fn advance(&mut self, data: &[u8], max_trailers: usize) -> ChunkStep {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            let broken = |why| ChunkStep::Broken(i, why);
            *self = match *self {
                Chunk::Start => match hex(b) {
                    Some(d) => Chunk::Size(d),
                    None => return broken("a chunk size must start with a hex digit"),
                },
                Chunk::Size(n) => match (hex(b), b) {
                    (Some(d), _) => match n.checked_mul(16) {
                        Some(m) => Chunk::Size(m | d),
                        None => return broken("a chunk size is larger than 2^64 bytes"),
                    },
                    (None, b' ' | b'\t') => Chunk::SizeSpace(n),
                    (None, b';') => Chunk::Extension(n, 0),
                    (None, b'\r') => Chunk::SizeLf(n),
                    (None, b'\n') => {
                        return broken("a chunk size line ends in a bare LF (CR LF is required)");
                    }
                    (None, _) => {
                        return broken("a chunk size contains a byte that is not a hex digit");
                    }
                },
                Chunk::SizeSpace(n) => match b {
                    b' ' | b'\t' => Chunk::SizeSpace(n),
                    b';' => Chunk::Extension(n, 0),
                    b'\r' => Chunk::SizeLf(n),
                    _ => {
                        return broken(
                            "only a chunk extension may follow the spaces after a chunk size",
                        );
                    }
                },
                Chunk::Extension(n, len) => match b {
                    b'\r' => Chunk::SizeLf(n),
                    b'\n' => {
                        return broken("a chunk extension contains a bare LF (CR LF is required)");
                    }
                    _ if len >= MAX_CHUNK_EXTENSION => {
                        return broken("a chunk extension is longer than 4096 bytes");
                    }
                    _ => Chunk::Extension(n, len + 1),
                },
                Chunk::SizeLf(n) => match b {
                    b'\n' if n == 0 => Chunk::TrailerStart(0),
                    b'\n' => Chunk::Data(n),
                    _ => return broken("a CR in a chunk size line is not followed by LF"),
                },
                Chunk::Data(left) => {
                    let n = left.min((data.len() - i) as u64);
                    *self = if n == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n)
                    };
                    i += n as usize;
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    _ => {
                        return broken(
                            "chunk data is longer than its size, or not followed by CR LF",
                        );
                    }
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Start,
                    _ => return broken("the CR after chunk data is not followed by LF"),
                },
                Chunk::TrailerStart(len) => match b {
                    b'\r' => Chunk::EndLf,
                    b'\n' => {
                        return broken(
                            "the trailer section contains a bare LF (CR LF is required)",
                        );
                    }
                    _ => Chunk::Trailer(len + 1),
                },
                Chunk::Trailer(len) => match b {
                    _ if len >= max_trailers => {
                        return broken("the trailer section is larger than the header limit");
                    }
                    b'\r' => Chunk::TrailerLf(len + 1),
                    b'\n' => return broken("a trailer line ends in a bare LF (CR LF is required)"),
                    _ => Chunk::Trailer(len + 1),
                },
                Chunk::TrailerLf(len) => match b {
                    b'\n' => Chunk::TrailerStart(len + 1),
                    _ => return broken("a CR in a trailer line is not followed by LF"),
                },
                Chunk::EndLf => match b {
                    b'\n' => return ChunkStep::End(i + 1),
                    _ => return broken("the CR ending the trailer section is not followed by LF"),
                },
            };
            i += 1;
        }
        ChunkStep::More
    }
}

/// The value of a hex digit.
fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// Follows the framing of the bytes handed to the parser and checks each request head.
#[derive(Debug)]
struct Scanner {
    framing: Framing,
    /// Request heads passed to the parser so far.
    heads: u64,
    /// The configured size limits (for the details of `uri_too_long`, `headers_too_large`
    /// and `payload_too_large`, and the bound on trailers).
    limits: Limits,
    /// The longest head held back before it is refused as too large.
    max_head: usize,
    /// The request lines of the heads passed (for the property tests).
    #[cfg(test)]
    lines: Vec<String>,
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
                Framing::Rejected | Framing::Broken(_) => return (off, None),
                Framing::Body(left) => {
                    let n = (*left).min((data.len() - off) as u64);
                    *left -= n;
                    off += n as usize;
                    if *left == 0 {
                        self.framing = NEW_HEAD;
                    }
                }
                Framing::Chunked(chunk) => {
                    match chunk.advance(&data[off..], self.limits.max_header_bytes) {
                        ChunkStep::More => return (data.len(), None),
                        ChunkStep::End(n) => {
                            off += n;
                            self.framing = NEW_HEAD;
                        }
                        ChunkStep::Broken(n, why) => {
                            self.framing = Framing::Broken(why);
                            return (off + n, None);
                        }
                    }
                }
                Framing::Head { scanned, line } => {
                    let rest = &data[off..];
                    if *scanned == 0 {
                        // Empty lines before a request line are ignored (RFC 9112 §2.2): LF
                        // or CR LF, as the parser skips them; a CR alone is not one.
                        let blank = match rest {
                            [b'\n', ..] => 1,
                            [b'\r', b'\n', ..] => 2,
                            // Maybe the start of a CR LF: wait for the next byte.
                            [b'\r'] => return (off, None),
                            _ => 0,
                        };
                        if blank > 0 {
                            off += blank;
                            continue;
                        }
                    }
                    match head_end(rest, *scanned) {
                        Ok(end) => {
                            let head = &rest[..end];
                            let framing = match crate::http::grammar::check_request_line(
                                head,
                                self.limits.max_uri_bytes,
                            ) {
                                Some(refusal) => Err(Box::new(refusal)),
                                None => framing_after(head, self.heads == 0, &self.limits),
                            };
                            match framing {
                                Ok(framing) => {
                                    #[cfg(test)]
                                    self.lines.push(
                                        String::from_utf8_lossy(
                                            head.split(|&b| b == b'\n').next().unwrap_or_default(),
                                        )
                                        .trim_end_matches('\r')
                                        .to_owned(),
                                    );
                                    self.framing = framing;
                                }
                                Err(refusal) => return (off, Some(*refusal)),
                            }
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
                                                self.limits.max_uri_bytes,
                                            )
                                        }
                                        None => {
                                            *line = Line::Open(rest.len());
                                            crate::http::grammar::check_request_start(
                                                rest,
                                                self.limits.max_uri_bytes,
                                            )
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
        let (max_uri, max_headers) = (self.limits.max_uri_bytes, self.limits.max_header_bytes);
        let more = format!("more than {}", self.max_head);
        let Some(line_end) = head.iter().position(|&b| b == b'\n') else {
            let err = GatewayError::new(codes::URI_TOO_LONG)
                .param("length", more)
                .param("limit", max_uri.to_string())
                .extension("limit", max_uri.into());
            return (err, String::new());
        };
        let err = GatewayError::new(codes::HEADERS_TOO_LARGE)
            .param("length", format!("{more} bytes"))
            .param("limit", format!("{max_headers} bytes"))
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

/// The answer to a head the client stopped sending (it closed its side): what is wrong
/// with its complete lines, or `malformed_request` for the missing end.
fn incomplete_head(head: &[u8], max_uri: usize) -> Refusal {
    if let Some(refusal) = crate::http::grammar::check_request_line(head, max_uri) {
        return refusal;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let target = line
        .split(|&b| b == b' ')
        .nth(1)
        .filter(|_| head.contains(&b'\n'))
        .map(|t| crate::http::grammar::path_of(&t[..t.len().min(8192)]))
        .unwrap_or_default();
    let reason =
        "the client closed its side before the end of the head (an empty line ends the headers)";
    (
        crate::http::grammar::malformed_request(reason.into(), line)
            .0
            .client_stopped(),
        target,
    )
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
    while let Some(p) = memchr::memchr(b'\n', &data[i..]) {
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

/// The most header fields a request may carry (hyper is configured with the same number).
pub(crate) const MAX_HEADER_FIELDS: usize = crate::upstream::pool::MAX_RESPONSE_HEADERS;

/// Content-Length values the parser cannot represent (hyper's largest length).
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// What follows a request head whose lines passed the check: its body, or the next head.
/// A head whose framing could be read in more than one way (RFC 9112 §6: two lengths, a
/// length and a transfer coding, a coding other than `chunked`, an ill-formed length) is
/// refused here, so that the guard and the parser always agree where a message ends. `first`
/// is true for the first head on the connection (the only place for the HTTP/2 preface).
fn framing_after(head: &[u8], first: bool, limits: &Limits) -> Result<Framing, Box<Refusal>> {
    use crate::http::grammar::{escaped, malformed_request, path_of};
    let mut lines = head.split(|&b| b == b'\n');
    let line = lines.next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let target = || {
        line.split(|&b| b == b' ')
            .nth(1)
            .map(|t| path_of(&t[..t.len().min(limits.max_uri_bytes)]))
            .unwrap_or_default()
    };
    let refuse = |reason: String| Err(Box::new((malformed_request(reason, line).0, target())));
    if line.starts_with(b"PRI * HTTP/2.0") {
        if first {
            return Ok(Framing::Through);
        }
        return refuse("the HTTP/2 connection preface can only open a connection".into());
    }
    if line.starts_with(b"CONNECT ") {
        return refuse("CONNECT asks for a tunnel, and this gateway is not a forward proxy".into());
    }
    let mut length: Option<u64> = None;
    let mut coding: Option<&[u8]> = None;
    let mut fields = 0usize;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        fields += 1;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = match content_length(value) {
                Some(Ok(n)) => n,
                Some(Err(())) => {
                    let err = crate::stages::transport::payload_too_large(
                        escaped(value, 40),
                        limits.max_body_bytes,
                    );
                    return Err(Box::new((err, target())));
                }
                None => {
                    return refuse(format!(
                        "Content-Length must be the body's size in decimal digits, and it is \"{}\"",
                        escaped(value, 24)
                    ));
                }
            };
            if length.is_some_and(|l| l != n) {
                return refuse(
                    "it carries two Content-Length headers with different values".into(),
                );
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if coding.is_some() {
                return refuse(
                    "Transfer-Encoding is sent in more than one header (send it once: chunked)"
                        .into(),
                );
            }
            coding = Some(value);
        }
    }
    if fields > MAX_HEADER_FIELDS {
        let err = GatewayError::new(codes::HEADERS_TOO_LARGE)
            .param("length", format!("{fields} fields"))
            .param("limit", format!("{MAX_HEADER_FIELDS} fields"))
            .param("largest", String::new())
            .extension("limit_fields", MAX_HEADER_FIELDS.into());
        return Err(Box::new((err, target())));
    }
    match (coding, length) {
        (None, None | Some(0)) => Ok(NEW_HEAD),
        (None, Some(n)) => Ok(Framing::Body(n)),
        (Some(_), _) if line.ends_with(b" HTTP/1.0") => refuse(
            "HTTP/1.0 has no Transfer-Encoding (send Content-Length, or use HTTP/1.1)".into(),
        ),
        (Some(_), Some(_)) => refuse(
            "it carries both Content-Length and Transfer-Encoding, two framings of one body (RFC 9112 §6.1)"
                .into(),
        ),
        (Some(v), None) if v.eq_ignore_ascii_case(b"chunked") => {
            Ok(Framing::Chunked(Chunk::Start))
        }
        (Some(v), None) => refuse(format!(
            "Transfer-Encoding must be \"chunked\", the one transfer coding accepted on requests, and it is \"{}\"",
            escaped(v, 32)
        )),
    }
}

/// A Content-Length value: `None` unless it is one run of decimal digits; `Err` for a
/// number larger than any body can be.
fn content_length(value: &[u8]) -> Option<Result<u64, ()>> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        decimal(value)
            .filter(|&n| n <= MAX_CONTENT_LENGTH)
            .ok_or(()),
    )
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
    /// A timer expired with nothing to answer, or the client closed its side between
    /// requests: the connection ends.
    closed: bool,
    /// Bytes were written since the last flush.
    unflushed: bool,
}

impl<S> HeadGuard<S> {
    /// Guards `inner`, accepted just now; `limits` are the configured size limits, whose
    /// request-target and header-section limits also bound the bytes held for an incomplete
    /// head.
    pub(crate) fn new(inner: S, shared: Arc<Shared>, limits: Limits, waits: Waits) -> Self {
        // The raw head carries a colon, a space and CRLF per line on top of what the
        // limits count; anything longer is refused without waiting for its end.
        let max_head =
            (limits.max_uri_bytes + 2 * limits.max_header_bytes + 8 * 1024).min(MAX_HEAD_BYTES);
        HeadGuard {
            inner,
            shared,
            scanner: Scanner {
                framing: NEW_HEAD,
                heads: 0,
                limits,
                max_head,
                #[cfg(test)]
                lines: Vec::new(),
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
            unflushed: false,
        }
    }

    /// Whether the guard is between requests with nothing held: the last response was
    /// flushed and no byte of the next head has come.
    pub(crate) fn is_quiet(&self) -> bool {
        self.held.is_empty()
            && self.scanner.heads > 0
            && !self.unflushed
            && !self.closed
            && self.linger.is_none()
            && matches!(
                self.scanner.framing,
                Framing::Head {
                    scanned: 0,
                    line: Line::Open(0)
                }
            )
    }

    /// Bytes the parser read through the guard but did not use (its connection was taken
    /// apart): they are handed out again before anything else.
    pub(crate) fn unread(&mut self, bytes: &[u8]) {
        self.held.splice(self.pos..self.pos, bytes.iter().copied());
        self.ready += bytes.len();
    }

    /// Notes a write (the connection is not quiet until it is flushed).
    fn wrote(&mut self) {
        self.unflushed = true;
        self.shared.not_quiet();
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
            let ended =
                clock_base() + Duration::from_nanos(self.shared.idle_since.load(Ordering::Acquire));
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
        // Written only when it changes: most reads are of bodies, or of whole heads.
        if self.shared.collecting.load(Ordering::Relaxed) != partial {
            self.shared.collecting.store(partial, Ordering::Release);
        }
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
        // For the connection's `connection.closed` event: the gateway closed it.
        match wait {
            Wait::Head => crate::http::connections::Close::Head.mark(&self.shared),
            Wait::Idle => crate::http::connections::Close::Idle.mark(&self.shared),
        }
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
        self.shared.collecting.store(false, Ordering::Release);
        self.held.truncate(self.ready);
        self.held.extend_from_slice(STAND_IN);
        self.ready = self.held.len();
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl<S: AsyncRead + Unpin> HeadGuard<S> {
    /// Reads what the connection starts with, until it tells HTTP/2 (the connection preface:
    /// `true`) from HTTP/1 (`false`; also when the connection ended or its first head was
    /// refused, so that the refusal is answered). What was read is handed out as usual:
    /// the parser chosen gets it in its first read. Bytes that start like the preface but
    /// are not it are refused as `malformed_request`; a preface the client stops sending
    /// in the middle of (closing, or still incomplete at `deadline`) is an error: there is
    /// nothing to answer an HTTP/2 client with.
    pub(crate) async fn sniff(&mut self, deadline: tokio::time::Instant) -> std::io::Result<bool> {
        use std::io::{Error, ErrorKind};
        loop {
            if matches!(self.scanner.framing, Framing::Rejected) {
                return Ok(false);
            }
            let got = &self.held[..];
            let n = got.len().min(H2_PREFACE.len());
            if got[..n] != H2_PREFACE[..n] {
                if got.starts_with(b"PRI * HTTP/2.0") {
                    self.refuse_preface();
                }
                return Ok(false);
            }
            if n == H2_PREFACE.len() {
                return Ok(true);
            }
            if self.closed {
                if got.is_empty() {
                    return Ok(false);
                }
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "the client closed in the middle of the HTTP/2 connection preface",
                ));
            }
            match tokio::time::timeout_at(deadline, std::future::poll_fn(|cx| self.poll_fill(cx)))
                .await
            {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::TimedOut,
                        "the HTTP/2 connection preface did not arrive within timeouts.request_head",
                    ));
                }
            }
        }
    }

    /// The connection starts like the HTTP/2 preface but is not it: refused, with nothing of
    /// it handed to the parser (the refusal is the connection's first request).
    fn refuse_preface(&mut self) {
        let start = self.held[..self.held.len().min(H2_PREFACE.len())].to_vec();
        self.held.clear();
        (self.pos, self.ready, self.scanner.heads) = (0, 0, 0);
        self.refuse(crate::http::grammar::malformed_request(
            "it starts like the HTTP/2 connection preface but is not it".into(),
            &start,
        ));
    }

    /// Waits for the next bytes of an idle connection (its parser taken apart): `false`
    /// when the connection ended instead (the client closed, or a timer expired).
    pub(crate) async fn fill(&mut self) -> std::io::Result<bool> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await?;
        Ok(!self.closed)
    }

    /// Reads once from the client into `held` and scans what came; ready when something
    /// happened: bytes came, the client closed its side (in the middle of a head: the
    /// catalog's answer, never the parser's), or a timer expired.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut scratch = [0u8; 8192];
        let mut rb = ReadBuf::new(&mut scratch);
        let collecting = self.held.len() > self.ready;
        match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
            Poll::Pending => match self.poll_deadline(cx) {
                Some(wait) => self.expire(wait),
                None => return Poll::Pending,
            },
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                if collecting {
                    let refusal = incomplete_head(
                        &self.held[self.ready..],
                        self.scanner.limits.max_uri_bytes,
                    );
                    self.refuse(refusal);
                } else {
                    self.closed = true;
                }
            }
            Poll::Ready(Ok(())) => {
                self.held.extend_from_slice(rb.filled());
                let heads = self.scanner.heads;
                let (n, refusal) = self.scanner.scan(&self.held[self.ready..]);
                self.ready += n;
                self.note_heads(heads, collecting);
                if let Some(refusal) = refusal {
                    self.refuse(refusal);
                }
            }
        }
        Poll::Ready(Ok(()))
    }

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
        this.shared.not_quiet();
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
                Framing::Broken(why) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        BrokenFraming(why),
                    )));
                }
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
                std::task::ready!(this.poll_fill(cx))?;
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
                    None => {
                        if this.is_quiet() {
                            this.shared.quiet.store(true, Ordering::Release);
                        }
                        return Poll::Pending;
                    }
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
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.unflushed = false;
        }
        flushed
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
mod properties;

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
            limits: Limits::default(),
            max_head: MAX_HEAD_BYTES,
            lines: Vec::new(),
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
    fn framings_that_could_be_read_two_ways_are_refused() {
        let bad: &[&[u8]] = &[
            b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunk\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ];
        for head in bad {
            for step in [1, 7, head.len()] {
                let (_, _, code) = run(head, step);
                assert_eq!(
                    code,
                    Some(codes::MALFORMED_REQUEST),
                    "{}",
                    String::from_utf8_lossy(head)
                );
            }
        }
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert_eq!(run(huge, 9).2, Some(codes::PAYLOAD_TOO_LARGE));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADER_FIELDS {
            many.extend_from_slice(format!("a{i}: b\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(run(&many, 4096).2, Some(codes::HEADERS_TOO_LARGE));
        // Still followed, and the next head checked: an upgrade request (never answered
        // with 101), equal repeated lengths, the HTTP/2 preface at the start.
        for head in [
            &b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(b"GET /x y HTTP/1.1\r\n\r\n");
            let (_, heads, code) = run(&input, 5);
            assert_eq!(heads, 1, "{}", String::from_utf8_lossy(head));
            assert_eq!(code, Some(codes::INVALID_URL_ENCODING));
        }
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00GET /x y HTTP/1.1\r\n\r\n";
        assert_eq!(run(h2, 5), (h2.to_vec(), 1, None));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"0042"), Some(42));
    }

    /// Runs a chunked body through the scanner: where it ended, or why it broke.
    fn chunked(body: &[u8], step: usize) -> Result<usize, &'static str> {
        let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let head = input.len();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let mut s = Scanner {
            framing: NEW_HEAD,
            heads: 0,
            limits: Limits::default(),
            max_head: MAX_HEAD_BYTES,
            lines: Vec::new(),
        };
        let (mut out, mut held) = (0, Vec::new());
        for piece in input.chunks(step) {
            held.extend_from_slice(piece);
            let (n, refusal) = s.scan(&held);
            assert!(refusal.is_none());
            out += n;
            held.drain(..n);
            if let Framing::Broken(why) = s.framing {
                return Err(why);
            }
            if s.heads == 2 {
                return Ok(out - head - b"GET /next HTTP/1.1\r\n\r\n".len());
            }
        }
        panic!("the body never ended: {:?}", s.framing);
    }

    #[test]
    fn chunked_framing_is_hypers_with_crlf_only() {
        for (body, end) in [
            (&b"0\r\n\r\n"[..], 5),
            (b"5\r\nhello\r\n0\r\n\r\n", 15),
            (b"5 ;a=b\r\nhello\r\n0;x\r\nX-T: 1\r\nY: 2\r\n\r\n", 36),
            (b"A\r\n0123456789\r\n0\r\n\r\n", 20),
        ] {
            for step in [1, 2, 5, body.len() + 30] {
                assert_eq!(
                    chunked(body, step),
                    Ok(end),
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        for body in [
            &b"0\r\n\nGET /SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"0\r\nX-T: 1\n\r\n",
            b"0\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"5;a\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffff1\r\n",
            b"x\r\n",
            b"\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"0\r\n\r\r\n",
        ] {
            for step in [1, 3, body.len() + 30] {
                assert!(
                    chunked(body, step).is_err(),
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
        }
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

    /// The attack probe's bytes: targets between the URI parser's own limit (65,534 bytes)
    /// and the head's bound were `invalid_url_encoding`; a 100 kB one was judged only at the
    /// head's bound. Every target over `max_uri_bytes` is `uri_too_long`, complete or not.
    #[test]
    fn a_target_over_the_limit_is_uri_too_long_whatever_its_length() {
        for len in [8193, 65_534, 65_535, 70_000, 82_000] {
            let mut req = b"GET /".to_vec();
            req.extend(std::iter::repeat_n(b'a', len - 1));
            req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(run(&req, 1 << 20).2, Some(codes::URI_TOO_LONG), "{len}");
        }
        // Still arriving: refused once the target is surely too long, long before the
        // head's bound.
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 100_000));
        let (_, _, code) = run(&req[..8192 + 16], 4096);
        assert_eq!(code, Some(codes::URI_TOO_LONG));
        let mut s = Scanner {
            framing: NEW_HEAD,
            heads: 0,
            limits: Limits::default(),
            max_head: MAX_HEAD_BYTES,
            lines: Vec::new(),
        };
        let (_, refusal) = s.scan(&req[..20_000]);
        let (err, target) = refusal.unwrap();
        assert!(
            err.params
                .iter()
                .any(|(k, v)| *k == "length" && v == "more than 8192"),
            "{:?}",
            err.params
        );
        assert_eq!(target.len(), 8192);
    }

    #[tokio::test]
    async fn a_refused_head_is_replaced_by_the_stand_in() {
        use tokio::io::AsyncReadExt;
        let shared = Arc::new(Shared::default());
        let input: &[u8] = b"GET /a HTTP/1.1\r\n\r\nGET /b c HTTP/1.1\r\n\r\n";
        let mut g = HeadGuard::new(input, shared.clone(), Limits::default(), WAITS);
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
