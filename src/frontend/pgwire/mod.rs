//! PostgreSQL wire protocol frontend (pgwire crate): startup with trust or SCRAM-SHA-256,
//! optional TLS, a connection limit, cancel, and the query handlers in [`query`].

pub mod binary;
pub mod copy;
pub mod encode;
pub mod idle;
mod keys;
mod login;
pub mod query;
pub mod rows;
mod socket;
pub mod startup;
pub mod statements;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult, SEVERITY_FATAL};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::engine::{Engine, Session};
use crate::error::{Error, Result};
use query::Gateway;

/// Holds a connection slot for as long as the connection lives.
struct ConnSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Startup wrapper that enforces `max_connections` (53300) before authenticating.
struct Limited<S> {
    inner: S,
    slots: Arc<Semaphore>,
}

#[async_trait]
impl<S: StartupHandler> StartupHandler for Limited<S> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(_) = &message {
            let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
                PgWireError::UserError(Box::new(ErrorInfo::new(
                    SEVERITY_FATAL.to_owned(),
                    "53300".to_owned(),
                    "sorry, too many clients already".to_owned(),
                )))
            })?;
            client.session_extensions().insert(ConnSlot(permit));
        }
        self.inner.on_startup(client, message).await
    }
}

/// Trust authentication: any user, no password.
struct Trust {
    driver: AuthDriver<startup::Announced>,
}

#[async_trait]
impl StartupHandler for Trust {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            self.driver.complete_authentication(client, None).await?;
        }
        Ok(())
    }
}

/// The per-connection handler set.
struct Handlers<S> {
    startup: Arc<S>,
    gateway: Arc<Gateway>,
    cancel: Arc<keys::FleetCancel>,
    errors: Arc<Errors>,
}

/// Rewrites authentication failures into PostgreSQL's exact wording, with the user name.
struct Errors;

impl ErrorHandler for Errors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        if let PgWireError::InvalidPassword(_) = error {
            let user =
                client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                SEVERITY_FATAL.to_owned(),
                "28P01".to_owned(),
                format!("password authentication failed for user \"{user}\""),
            )));
        }
    }
}

impl<S: StartupHandler + 'static> PgWireServerHandlers for Handlers<S> {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.gateway.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.gateway.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }
}

/// ParameterStatus values sent at startup, with the warehouse's server_version.
async fn server_parameters(engine: &Engine) -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = warehouse_version(engine).await.unwrap_or_else(|| "15.0".into());
    p.default_transaction_read_only = true;
    p.standard_conforming_strings = !engine.backslash_escapes().await;
    p.is_superuser = false;
    p
}

async fn warehouse_version(engine: &Engine) -> Option<String> {
    use futures::TryStreamExt;
    let mut s = Session::default();
    let r = engine.execute("SHOW server_version", &[], &mut s).await.ok()?;
    let batches: Vec<_> = r.stream.try_collect().await.ok()?;
    let b = batches.first()?;
    // the warehouse's own text ("15.19 (Debian 15.19-0+deb12u1)"), as PostgreSQL reports it
    crate::model::arrow::value_at(b.column(0), b.schema().field(0), 0).to_pg_text()
}

/// Binds the pgwire listener and serves it until `shutdown` flips; returns the bound address.
pub async fn serve(
    config: &Config,
    addr: &str,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    let tls = match &config.tls {
        Some(t) => Some(crate::frontend::auth::tls_acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let manager = Arc::new(ConnectionManager::new());
    let params = server_parameters(&engine).await;
    let announced = HashMap::from([
        ("timezone", params.time_zone.clone()),
        ("datestyle", params.date_style.clone()),
        ("intervalstyle", params.interval_style.clone()),
        ("client_encoding", "UTF8".to_string()),
        ("application_name", String::new()),
    ]);
    let params = startup::Announced(params);
    let idle = config.pg.idle_timeout.get();
    let registry = Arc::new(idle::Registry::new(!idle.is_zero()));
    let gateway = Arc::new(Gateway::new(engine.clone(), registry.clone(), announced));
    let cancel = keys::FleetCancel::new(manager.clone(), engine.clone());
    let pids = keys::FleetKeys::new(engine.clone());
    let conns = Conns { tls, registry, idle, engine };
    let slots = Arc::new(Semaphore::new(config.pg.max_connections));
    let task = if config.users.is_empty() {
        let driver = AuthDriver::new(params)
            .with_connection_manager(manager)
            .with_pid_secret_key_generator(pids);
        let startup = Arc::new(Limited { inner: Trust { driver }, slots });
        tokio::spawn(accept_loop(
            listener,
            conns,
            Arc::new(Handlers { startup, gateway, cancel, errors: Arc::new(Errors) }),
            shutdown.clone(),
        ))
    } else {
        let users = Arc::new(crate::frontend::auth::Users::new(&config.users));
        let login = login::PasswordLogin::new(users, Arc::new(params), (manager, pids));
        let startup = Arc::new(Limited { inner: login, slots });
        tokio::spawn(accept_loop(
            listener,
            conns,
            Arc::new(Handlers { startup, gateway, cancel, errors: Arc::new(Errors) }),
            shutdown.clone(),
        ))
    };
    let _ = shutdown.borrow_and_update();
    Ok((bound, task))
}

/// What every accepted connection is served with.
#[derive(Clone)]
struct Conns {
    tls: Option<pgwire::tokio::TlsAcceptor>,
    registry: Arc<idle::Registry>,
    idle: std::time::Duration,
    engine: Arc<Engine>,
}

/// Serves one connection, closing it after the idle timeout (when one is set).
async fn serve_conn<H: PgWireServerHandlers + Send + Sync + 'static>(
    sock: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    conns: Conns,
    handlers: Arc<H>,
) {
    let _open = conns.engine.connection("pgwire");
    let served = socket::serve(sock, conns.tls.clone(), handlers);
    let result = if conns.idle.is_zero() {
        served.await
    } else {
        let activity = conns.registry.open(peer);
        let r = tokio::select! {
            r = served => r,
            _ = idle::idle_for(&activity, conns.idle) => {
                tracing::debug!(%peer, "closing an idle pgwire connection");
                Ok(())
            }
        };
        conns.registry.close(&peer);
        r
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "pgwire connection ended with an error");
    }
}

async fn accept_loop<H: PgWireServerHandlers + Send + Sync + 'static>(
    listener: TcpListener,
    conns: Conns,
    handlers: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    tokio::spawn(serve_conn(sock, peer, conns.clone(), handlers.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "pgwire accept failed"),
            },
            _ = shutdown.wait_for(|v| *v) => break,
        }
    }
}
