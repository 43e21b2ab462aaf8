//! One pgwire connection's message loop, in place of pgwire's `process_socket`: the same
//! protocol steps (TLS negotiation, a startup deadline, one message at a time, errors sent as
//! pgwire sends them), but an idle connection holds almost nothing.
//!
//! pgwire's loop keeps tokio-util's `Framed` buffers (8 KiB to read, 8 KiB to write, more after
//! a large result) for the connection's whole life, and its task is as large as the largest
//! state of a statement's processing: ~22 KiB per idle connection, when BI tools and notebooks
//! hold thousands. Here a plain-TCP connection with nothing buffered gives both buffers back
//! and waits for the socket to become readable before it reads, and each message is processed
//! in a boxed future, so the waiting task is only the connection's state. (A TLS connection
//! keeps its buffers: rustls may hold decrypted bytes the socket's readiness does not show.)

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{
    negotiate_tls, process_error, process_message, MaybeTls, PgWireMessageServerCodec,
};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a client has to finish TLS negotiation, startup and authentication (as pgwire).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The read buffer a connection gets back when a message arrives.
const READ_CAPACITY: usize = 8 * 1024;

/// Serves one TCP connection until the client leaves, a fatal error, or the startup deadline.
pub async fn serve<H: PgWireServerHandlers + Send + Sync>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: Arc<H>,
) -> io::Result<()> {
    let deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(deadline);
    let negotiated = tokio::select! {
        _ = &mut deadline => return Ok(()),
        s = negotiate_tls(tcp, tls) => s?,
    };
    // None: a direct TLS handshake while no certificate is configured
    let Some(mut socket) = negotiated else { return Ok(()) };
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let msg = if starting {
            tokio::select! {
                _ = &mut deadline => None,
                m = socket.next() => m,
            }
        } else {
            wait_unbuffered(&mut socket).await?;
            socket.next().await
        };
        // None: the client closed; Some(Err): a message that does not decode (pgwire's rule)
        let Some(Ok(msg)) = msg else { break };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        // boxed: the idle task does not carry a statement's largest state
        let open = Box::pin(async {
            let done = process_message(
                msg,
                &mut socket,
                handlers.startup_handler(),
                handlers.simple_query_handler(),
                handlers.extended_query_handler(),
                handlers.copy_handler(),
                handlers.cancel_handler(),
            )
            .await;
            let Err(mut e) = done else { return Ok::<_, io::Error>(true) };
            handlers.error_handler().on_error(&socket, &mut e);
            // a FATAL error ends the session, as in PostgreSQL
            let fatal = e.is_fatal();
            process_error(&mut socket, e, extended).await?;
            Ok(!fatal)
        })
        .await?;
        if !open || cancel {
            break;
        }
    }
    Ok(())
}

/// On a plain-TCP connection with nothing buffered either way: gives both buffers back, waits
/// until the socket is readable, then takes a read buffer again.
async fn wait_unbuffered<S>(
    socket: &mut Framed<MaybeTls, PgWireMessageServerCodec<S>>,
) -> io::Result<()> {
    let plain = matches!(socket.get_ref(), MaybeTls::Plain(_));
    if !plain || !socket.read_buffer().is_empty() || !socket.write_buffer().is_empty() {
        return Ok(());
    }
    *socket.read_buffer_mut() = BytesMut::new();
    *socket.write_buffer_mut() = BytesMut::new();
    if let MaybeTls::Plain(tcp) = socket.get_ref() {
        tcp.readable().await?;
    }
    socket.read_buffer_mut().reserve(READ_CAPACITY);
    Ok(())
}
