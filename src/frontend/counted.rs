//! Client connections counted while open (`tidemark_connections{frontend}`): an IO wrapper
//! for the REST and Flight listeners, whose servers own their connections (pgwire counts in
//! its own connection loop).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::engine::{Connection, Engine};

/// A connection counted until dropped.
pub struct Counted<T> {
    inner: T,
    _open: Connection,
}

impl<T> Counted<T> {
    /// Counts `inner` as a connection of `frontend`.
    pub fn new(inner: T, engine: &Engine, frontend: &'static str) -> Counted<T> {
        Counted { inner, _open: engine.connection(frontend) }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Counted<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// An axum listener whose connections are counted.
pub struct CountedListener<L> {
    inner: L,
    engine: Arc<Engine>,
    frontend: &'static str,
}

impl<L> CountedListener<L> {
    /// Counts the connections `inner` accepts as `frontend`'s.
    pub fn new(inner: L, engine: Arc<Engine>, frontend: &'static str) -> CountedListener<L> {
        CountedListener { inner, engine, frontend }
    }
}

impl<L> Listener for CountedListener<L>
where
    L: Listener,
    L::Io: Unpin,
{
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (Counted::new(io, &self.engine, self.frontend), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
