//! TLS to the warehouse with rustls (ring), with libpq's `sslmode` semantics, on every
//! connection tidemark opens there: the pool, `tidemark setup` and `check`, the raw fast path
//! and cancel requests.
//!
//! | sslmode | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | no |
//! | `require` | always | no (as `verify-ca` when a root certificate is given, as libpq does) |
//! | `verify-ca` | always | chain to the roots |
//! | `verify-full` | always | chain and host name |
//!
//! Roots are `sslrootcert` (a PEM bundle: Redshift publishes its CA bundle) or the system's;
//! `sslcert` / `sslkey` give a client certificate. They come from the warehouse URL (URL or
//! keyword form, as libpq takes them) or from `[warehouse.tls]`, which wins.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::config::{SslMode, TlsSettings};
use crate::error::{Error, Result};

/// The connection settings of `[warehouse]`: the URL without its TLS parameters, parsed by
/// tokio-postgres (connect timeout set), and the TLS of the URL with `[warehouse.tls]` over it.
pub fn warehouse_connection(
    w: &crate::config::Warehouse,
) -> Result<(tokio_postgres::Config, WarehouseTls)> {
    let (url, from_url) = crate::conninfo::split_url(&w.url)?;
    let tls = WarehouseTls::new(&from_url.overridden_by(&w.tls))?;
    let mut pg: tokio_postgres::Config =
        url.parse().map_err(|e| Error::Config(format!("invalid warehouse.url: {e}")))?;
    pg.connect_timeout(w.connect_timeout()?);
    pg.ssl_mode(tls.pg_ssl_mode());
    Ok((pg, tls))
}

/// The warehouse as `user@host:port/database (sslmode=...)`, without its password: what
/// `tidemark check` and logs may print.
pub fn describe_warehouse(w: &crate::config::Warehouse) -> Result<String> {
    let (pg, tls) = warehouse_connection(w)?;
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    Ok(format!(
        "{}@{host}:{port}/{} (sslmode={})",
        pg.get_user().unwrap_or("?"),
        pg.get_dbname().unwrap_or("?"),
        tls.mode().name()
    ))
}

/// TLS to the warehouse: the mode and the rustls configuration it needs.
#[derive(Clone)]
pub struct WarehouseTls {
    mode: SslMode,
    config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for WarehouseTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseTls").field("mode", &self.mode).finish()
    }
}

/// rustls with ring, as the rest of the build.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process's rustls provider (libraries that build their own
/// `ClientConfig`, such as the redis crate, use it). Idempotent.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl WarehouseTls {
    /// No TLS at all.
    pub fn disabled() -> WarehouseTls {
        WarehouseTls { mode: SslMode::Disable, config: None }
    }

    /// Builds the rustls configuration the settings ask for (files are read now: a missing
    /// or bad certificate stops the start with its path named).
    pub fn new(settings: &TlsSettings) -> Result<WarehouseTls> {
        let mode = settings.mode();
        if mode == SslMode::Disable {
            return Ok(WarehouseTls::disabled());
        }
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(roots(settings.root_cert.as_deref())?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| Error::Config(format!("warehouse TLS roots: {e}")))?;
                Arc::new(Verifier {
                    webpki: Some(webpki),
                    host: mode == SslMode::VerifyFull,
                    provider: provider.clone(),
                })
            }
            _ => Arc::new(Verifier { webpki: None, host: false, provider: provider.clone() }),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("warehouse TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certs(cert)?, private_key(key)?)
                .map_err(|e| Error::Config(format!("warehouse client certificate {cert}: {e}")))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(Error::Config("warehouse TLS: sslcert and sslkey go together".into())),
        };
        Ok(WarehouseTls { mode, config: Some(Arc::new(config)) })
    }

    /// The mode.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// What tokio-postgres is told (it checks certificates through our connector).
    pub fn pg_ssl_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self.mode {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            _ => Pg::Require,
        }
    }

    /// The connector tokio-postgres uses (also for cancel requests).
    pub fn connector(&self) -> MakeRustls {
        MakeRustls(self.config.clone())
    }

    /// PostgreSQL's SSL negotiation on a fresh socket (SSLRequest, then the handshake when
    /// the server says `S`): the TLS stream, or the plain socket when TLS is off or the server
    /// declines under `prefer`; declining under `require` and above is an error.
    pub async fn negotiate<S>(&self, mut sock: S, host: &str) -> Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let Some(config) = self.config.clone() else { return Ok(MaybeTls::Plain(sock)) };
        let io = |e: io::Error| Error::Unavailable(format!("warehouse TLS: {e}"));
        sock.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.map_err(io)?;
        let mut answer = [0u8; 1];
        sock.read_exact(&mut answer).await.map_err(io)?;
        match (answer[0], self.mode.requires_tls()) {
            (b'S', _) => {}
            (b'N', false) => return Ok(MaybeTls::Plain(sock)),
            (b'N', true) => {
                return Err(Error::Unavailable(format!(
                    "the warehouse does not offer TLS and sslmode is {:?}",
                    self.mode
                )))
            }
            (other, _) => {
                return Err(Error::Unavailable(format!("unexpected answer {other} to SSLRequest")))
            }
        }
        let name = server_name(host).map_err(io)?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, sock).await.map_err(io)?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }
}

/// The rustls verifier of a mode: the chain (and host name) checked, or nothing but the
/// handshake signatures (`prefer`, `require`).
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    host: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) if !self.host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("host {host:?}: {e}")))
}

/// The trusted roots: a PEM bundle, or the system's.
fn roots(path: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match path {
        Some(p) => {
            let (added, _) = store.add_parsable_certificates(certs(p)?);
            if added == 0 {
                return Err(Error::Config(format!("warehouse sslrootcert {p}: no certificate")));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::Config(
                    "warehouse TLS: no system root certificates found; set sslrootcert".into(),
                ));
            }
        }
    }
    Ok(store)
}

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let bad =
        |e: rustls::pki_types::pem::Error| Error::Config(format!("certificate file {path}: {e}"));
    CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<std::result::Result<_, _>>()
        .map_err(bad)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).map_err(|e| Error::Config(format!("key file {path}: {e}")))
}

/// tokio-postgres's TLS connector over rustls.
#[derive(Clone)]
pub struct MakeRustls(Option<Arc<ClientConfig>>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for MakeRustls {
    type Stream = MaybeTls<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        Ok(RustlsConnect { config: self.0.clone(), name: server_name(domain).ok() })
    }
}

/// One TLS handshake for tokio-postgres.
pub struct RustlsConnect {
    config: Option<Arc<ClientConfig>>,
    name: Option<ServerName<'static>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for RustlsConnect {
    type Stream = MaybeTls<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<MaybeTls<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let (Some(config), Some(name)) = (self.config, self.name) else {
                return Err(io::Error::other("TLS is not configured for the warehouse"));
            };
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
            Ok(MaybeTls::Tls(Box::new(tls)))
        })
    }
}

/// A socket, with or without TLS.
pub enum MaybeTls<S> {
    /// No TLS.
    Plain(S),
    /// TLS over the socket.
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// The socket under the TLS layer.
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(t) => t.get_ref().0,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for MaybeTls<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}
