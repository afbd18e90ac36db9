//! The TCP side of [`super::FakeProvider::serve`]: a listener that sets
//! `TCP_NODELAY` on every accepted socket and wraps it in a [`FakeConn`] that a
//! handler can kill through its [`ConnHandle`] (the `reset` fault). A killed
//! connection fails every later read and write, so hyper drops it before a
//! single byte of the response is written, and the socket closes with an RST.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections can be reset from a handler.
pub(crate) struct FakeListener {
    inner: TcpListener,
}

impl FakeListener {
    pub(crate) fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for FakeListener {
    type Io = FakeConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = FakeConn {
                        stream,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (conn, addr);
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    // Out of file descriptors and the like: back off as axum does.
                    tracing::error!("fake provider accept error: {err}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// An accepted connection that can be killed.
pub(crate) struct FakeConn {
    stream: TcpStream,
    killed: Arc<AtomicBool>,
}

impl FakeConn {
    /// Checks the kill flag; on the first check after a kill, arranges for the
    /// close to be an RST.
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::Acquire) {
            let _ = self.stream.set_zero_linger();
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset by a fault",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for FakeConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// Lets a handler kill the connection its request came on (found in the
/// request's extensions as `ConnectInfo<ConnHandle>` when served by
/// [`super::FakeProvider::serve`]).
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    killed: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Marks the connection dead: nothing more is read or written on it.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, FakeListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, FakeListener>) -> Self {
        Self {
            killed: stream.io().killed.clone(),
        }
    }
}
