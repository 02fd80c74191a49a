//! Telling the two kinds of connection on the agent listener apart: the first request's head
//! is read (under the authentication deadline) and kept, then replayed to whichever serves the
//! connection: tungstenite for a WebSocket upgrade (and anything else, as before), hyper for a
//! request to the MCP endpoint.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Most bytes read looking for the end of the first request's head.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// A stream that first yields the bytes already read from it.
#[derive(Debug)]
pub(super) struct Prefixed<S> {
    prefix: Vec<u8>,
    read: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` (read from it before) to be read again first.
    pub(super) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            read: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Reads from `stream` until the end of a request head (`\r\n\r\n`), the end of the stream or
/// [`MAX_HEAD`] bytes, and returns everything read.
pub(super) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    // Read straight into `head`: a buffer on this future's stack would stay in the size of the
    // connection's task for as long as the connection is open.
    let mut head = Vec::with_capacity(2048);
    loop {
        // Room for at most what is left of `MAX_HEAD` (the loop ends before it is reached).
        if head.len() == head.capacity() {
            head.reserve_exact(2048.min(MAX_HEAD - head.len()));
        }
        // Look for the end where the new bytes could complete it.
        let from = head.len().saturating_sub(3);
        let n = stream.read_buf(&mut head).await?;
        if n == 0 {
            return Ok(head);
        }
        if head[from..].windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_HEAD {
            return Ok(head);
        }
    }
}

/// Whether `head` is a request for the MCP endpoint at `path` (`path` or `path?...`) that is
/// not a WebSocket upgrade.
pub(super) fn is_mcp_request(head: &[u8], path: &str) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return false;
    }
    let Some(target) = request.path else {
        return false;
    };
    let target_path = target.split_once('?').map_or(target, |(p, _)| p);
    if target_path != path {
        return false;
    }
    let upgrade = request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.to_ascii_lowercase().contains("websocket"))
    });
    !upgrade
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_to_the_endpoint_is_mcp_and_an_upgrade_is_not() {
        let post = b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
        assert!(is_mcp_request(post, "/mcp"));
        assert!(is_mcp_request(
            b"GET /mcp?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "/mcp"
        ));
        let upgrade =
            b"GET /mcp HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(!is_mcp_request(upgrade, "/mcp"));
        assert!(!is_mcp_request(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "/mcp"
        ));
        assert!(!is_mcp_request(
            b"POST /mcpx HTTP/1.1\r\nHost: a\r\n\r\n",
            "/mcp"
        ));
        assert!(
            !is_mcp_request(b"POST /mcp HTTP/1.1\r\nHost: a\r\n", "/mcp"),
            "incomplete head"
        );
        assert!(!is_mcp_request(b"\x16\x03\x01 binary", "/mcp"));
    }

    #[tokio::test]
    async fn a_head_is_read_across_reads_and_never_past_the_limit() {
        let head = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(3000));
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = head.clone();
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut client, sent.as_bytes())
                .await
                .unwrap();
        });
        assert_eq!(read_head(&mut server).await.unwrap(), head.as_bytes());
        writer.await.unwrap();

        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            let endless = vec![b'b'; 2 * MAX_HEAD];
            let _ = tokio::io::AsyncWriteExt::write_all(&mut client, &endless).await;
        });
        let unending = read_head(&mut server).await.unwrap();
        assert_eq!(
            unending.len(),
            MAX_HEAD,
            "a head without an end stops at the limit"
        );
        drop(server);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn the_bytes_read_are_replayed_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\nbody")
            .await
            .unwrap();
        drop(client);
        let mut server = server;
        let head = read_head(&mut server).await.unwrap();
        assert!(head.starts_with(b"GET / HTTP/1.1\r\n\r\n"));
        let mut all = Vec::new();
        Prefixed::new(head, server)
            .read_to_end(&mut all)
            .await
            .unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\nbody");
    }
}
