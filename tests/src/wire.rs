//! Raw WebSocket framing for what the client library cannot do: offer
//! permessage-deflate (RFC 7692) and send a compressed message, then read the close.
//! Only enough of RFC 6455 for that; every wait is bounded.

use crate::{bail, ensure, Error, Result};
use flate2::{Compress, Compression, FlushCompress};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every read or write of a raw socket is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest handshake answer read before giving up.
const MAX_HEAD: usize = 16 * 1024;
/// Frames skipped while waiting for the close.
const MAX_FRAMES: usize = 1000;

/// The answer to an upgrade request: status and headers (names in lower case).
#[derive(Debug)]
pub struct Handshake {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Handshake {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A socket after its handshake.
pub struct RawSocket {
    stream: TcpStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => bail!("{what}: nothing within {TIMEOUT:?}"),
    }
}

/// Sends a WebSocket upgrade for `path` with `extra` headers and reads the answer.
/// The socket is returned with a 101.
pub async fn upgrade(
    base: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<(Handshake, Option<RawSocket>)> {
    let host = base.strip_prefix("http://").unwrap_or(base);
    bounded(&format!("upgrade {path}"), async {
        let mut stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        );
        for (name, value) in extra {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;

        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            ensure!(buf.len() < MAX_HEAD, "no end of the answer's head");
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            ensure!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let rest = buf[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error(format!("bad status line {status_line:?}")))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let handshake = Handshake { status, headers };
        let socket = (status == 101).then_some(RawSocket { stream, buf: rest });
        Ok((handshake, socket))
    })
    .await
}

/// `text` compressed as one permessage-deflate message: raw DEFLATE, sync-flushed, with
/// the trailing `00 00 ff ff` removed (RFC 7692, 7.2.1).
pub fn deflate_message(text: &str) -> Result<Vec<u8>> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(text.len() / 8 + 64);
    loop {
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&text.as_bytes()[consumed..], &mut out, FlushCompress::Sync)
            .map_err(|e| Error(format!("deflate: {e}")))?;
        if compress.total_in() as usize == text.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
        out.reserve(out.capacity().max(1024));
    }
    out.truncate(out.len() - 4);
    Ok(out)
}

/// One frame from the server, as read off a raw socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    Text(String),
    /// A binary frame and its length.
    Binary(usize),
    Ping,
    Pong,
    /// A close frame: code and reason (`None` for a close without a code).
    Close(Option<(u16, String)>),
    /// Any other opcode (continuation frames included: the server sends none).
    Other(u8),
}

impl RawSocket {
    /// Sends one masked frame: FIN, `rsv1` (the compressed bit), `opcode`.
    pub async fn send_frame(&mut self, opcode: u8, rsv1: bool, payload: &[u8]) -> Result<()> {
        self.send_raw(true, rsv1, opcode, payload).await
    }

    /// Sends one fragment of a message (RFC 6455, 5.4): the first with the message's
    /// `opcode`, the rest with opcode 0 (continuation); `fin` on the last.
    pub async fn send_fragment(&mut self, opcode: u8, fin: bool, payload: &[u8]) -> Result<()> {
        self.send_raw(fin, false, opcode, payload).await
    }

    async fn send_raw(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut frame =
            vec![if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | (opcode & 0x0f)];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x1d, 0x5a, 0xc3, 0x37];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        bounded("sending a frame", async {
            self.stream.write_all(&frame).await?;
            Ok(())
        })
        .await
    }

    async fn fill(&mut self, n: usize) -> Result<bool> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            let read =
                bounded("reading", async { Ok(self.stream.read(&mut chunk).await?) }).await?;
            if read == 0 {
                return Ok(false);
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
        Ok(true)
    }

    /// The next frame (pings are returned, not answered), waiting at most [`TIMEOUT`];
    /// `None` if the connection ended.
    pub async fn read_frame(&mut self) -> Result<Option<RawFrame>> {
        if !self.fill(2).await? {
            return Ok(None);
        }
        let opcode = self.buf[0] & 0x0f;
        let masked = self.buf[1] & 0x80 != 0;
        let (len, mut at) = match self.buf[1] & 0x7f {
            126 => {
                ensure!(self.fill(4).await?, "truncated frame header");
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                ensure!(self.fill(10).await?, "truncated frame header");
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let mut mask = None;
        if masked {
            ensure!(self.fill(at + 4).await?, "truncated frame header");
            mask = Some([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ]);
            at += 4;
        }
        ensure!(self.fill(at + len).await?, "truncated frame");
        let mut payload: Vec<u8> = self.buf[at..at + len].to_vec();
        if let Some(m) = mask {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= m[i % 4]);
        }
        self.buf.drain(..at + len);
        Ok(Some(match opcode {
            0x1 => RawFrame::Text(String::from_utf8_lossy(&payload).into_owned()),
            0x2 => RawFrame::Binary(payload.len()),
            0x8 if payload.len() < 2 => RawFrame::Close(None),
            0x8 => RawFrame::Close(Some((
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            ))),
            0x9 => RawFrame::Ping,
            0xa => RawFrame::Pong,
            other => RawFrame::Other(other),
        }))
    }

    /// Reads frames until a close frame and returns its code and reason (`None` for a
    /// close without a code). Err if the connection ends without one.
    pub async fn read_close(&mut self) -> Result<Option<(u16, String)>> {
        for _ in 0..MAX_FRAMES {
            match self.read_frame().await? {
                None => bail!("the connection ended without a close frame"),
                Some(RawFrame::Close(close)) => return Ok(close),
                Some(_) => continue,
            }
        }
        bail!("no close frame within {MAX_FRAMES} frames")
    }
}

#[cfg(test)]
mod tests {
    use super::deflate_message;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn deflated_messages_inflate_back() {
        let text = format!("{{\"message\":\"{}\"}}", "x".repeat(70_000));
        let mut wire = deflate_message(&text).unwrap();
        assert!(wire.len() < 1000, "{} bytes", wire.len());
        wire.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(text.len() + 16);
        inflate
            .decompress_vec(&wire, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, text.as_bytes());
    }
}
