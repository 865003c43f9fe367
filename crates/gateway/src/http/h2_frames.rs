//! An HTTP/2 connection's bytes as frames, for the one thing hyper cannot do: end a
//! connection with a GOAWAY that says why (`ENHANCE_YOUR_CALM` for a client resetting most
//! of its streams; hyper's own GOAWAY is always `NO_ERROR`). [`Framed`] sits between hyper
//! and the guard, follows where each frame ends in both directions, and when hyper's
//! connection is dropped hands its transport back ([`Handback`]) with what is needed to
//! write a GOAWAY of the gateway's own: whether the last byte hyper wrote ended a frame, and
//! the highest stream the client opened.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// The length of a frame header (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;
/// The client connection preface (RFC 9113 §3.4), read before the first frame.
const PREFACE_LEN: usize = 24;
/// Frame types this module looks at.
const HEADERS: u8 = 0x1;
const GOAWAY: u8 = 0x7;

/// HTTP/2 error codes (RFC 9113 §7) the gateway ends connections with.
pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Where a byte stream of frames is: how much of the current frame header has been seen,
/// how much of the current payload is left, and the highest stream a HEADERS frame opened.
#[derive(Debug, Default)]
pub(crate) struct Frames {
    /// Bytes to pass over before the first frame (the preface).
    skip: usize,
    head: [u8; FRAME_HEADER],
    have: usize,
    left: usize,
    last_headers_stream: u32,
}

impl Frames {
    /// Frames from the first byte (what the server writes).
    pub(crate) fn server() -> Self {
        Frames::default()
    }

    /// The connection preface, then frames (what the client writes).
    pub(crate) fn client() -> Self {
        Frames {
            skip: PREFACE_LEN,
            ..Frames::default()
        }
    }

    /// Follows `bytes`, the next of the stream.
    pub(crate) fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                n
            } else if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                n
            } else {
                let n = (FRAME_HEADER - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                if self.have == FRAME_HEADER {
                    self.have = 0;
                    let h = &self.head;
                    self.left =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    if h[3] == HEADERS {
                        let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                        self.last_headers_stream = self.last_headers_stream.max(id);
                    }
                }
                n
            };
            bytes = &bytes[n..];
        }
    }

    /// Whether the stream is between two frames.
    pub(crate) fn at_boundary(&self) -> bool {
        self.skip == 0 && self.have == 0 && self.left == 0
    }

    /// The highest stream id a HEADERS frame carried.
    pub(crate) fn last_stream(&self) -> u32 {
        self.last_headers_stream
    }
}

/// A GOAWAY frame (RFC 9113 §6.8): the last stream the sender may have acted on, the error
/// code, and a reason for people reading a trace.
pub(crate) fn goaway(last_stream: u32, code: u32, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(256)];
    let len = 8 + reason.len();
    let mut f = Vec::with_capacity(FRAME_HEADER + len);
    f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, GOAWAY, 0]);
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    f
}

/// A transport given back when hyper's connection is dropped.
#[derive(Debug)]
pub(crate) struct Handback<T> {
    /// The transport.
    pub(crate) io: T,
    /// Whether everything hyper wrote ended on a frame boundary (else a frame of the
    /// gateway's own cannot follow).
    pub(crate) at_boundary: bool,
    /// The highest stream the client opened.
    pub(crate) last_stream: u32,
}

/// A transport under hyper's HTTP/2 connection that follows its frames and is handed back
/// on drop.
pub(crate) struct Framed<T> {
    io: Option<T>,
    read: Frames,
    written: Frames,
    back: Option<oneshot::Sender<Handback<T>>>,
}

impl<T> Framed<T> {
    /// Wraps `io`; the receiver gets it back when the wrapper is dropped.
    pub(crate) fn new(io: T) -> (Self, oneshot::Receiver<Handback<T>>) {
        let (tx, rx) = oneshot::channel();
        let f = Framed {
            io: Some(io),
            read: Frames::client(),
            written: Frames::server(),
            back: Some(tx),
        };
        (f, rx)
    }

    fn io(&mut self) -> Pin<&mut T>
    where
        T: Unpin,
    {
        Pin::new(self.io.as_mut().expect("held until drop"))
    }
}

impl<T> Drop for Framed<T> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let _ = back.send(Handback {
                io,
                at_boundary: self.written.at_boundary(),
                last_stream: self.read.last_stream(),
            });
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Framed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = self.io().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let this = &mut *self;
            this.read.advance(&buf.filled()[before..]);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Framed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.io().poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written.advance(&buf[..n]);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.io().poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                let take = n.min(b.len());
                self.written.advance(&b[..take]);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_followed_across_any_split() {
        // The preface, SETTINGS (6 bytes), HEADERS on stream 1, HEADERS on stream 7, DATA.
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        bytes.extend_from_slice(&[0, 0, 2, 0x1, 0x4, 0, 0, 0, 1, 0x82, 0x84]);
        bytes.extend_from_slice(&[0, 0, 1, 0x1, 0x5, 0, 0, 0, 7, 0x82]);
        bytes.extend_from_slice(&[0, 0, 3, 0x0, 0x1, 0, 0, 0, 7, b'a', b'b', b'c']);
        for cut in 0..=bytes.len() {
            let mut f = Frames::client();
            f.advance(&bytes[..cut]);
            // Between two frames exactly where one starts (the first after the preface).
            let starts = [24, 39, 50, 60, bytes.len()];
            assert_eq!(f.at_boundary(), starts.contains(&cut), "cut at {cut}");
            f.advance(&bytes[cut..]);
            assert!(f.at_boundary(), "cut at {cut}");
            assert_eq!(f.last_stream(), 7);
        }
    }

    #[test]
    fn a_goaway_frame() {
        let f = goaway(7, ENHANCE_YOUR_CALM, "why");
        assert_eq!(
            f,
            [
                0, 0, 11, 7, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0xb, b'w', b'h', b'y'
            ]
        );
    }
}
