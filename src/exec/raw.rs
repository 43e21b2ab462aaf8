//! A minimal PostgreSQL client for the pass-through fast path: it sends one simple-protocol
//! Query and hands the warehouse's RowDescription, DataRow and CommandComplete messages on
//! as raw bytes, so a pass-through row is never decoded or re-encoded (see `Engine::forward`).
//!
//! Connections are pooled here, apart from the main pool, because they carry no session
//! settings: only statements from sessions with default settings take this path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::admission::Admission;
use super::credentials::{Credential, Credentials};
use super::tls::{MaybeTls, WarehouseTls};

use crate::error::{Error, Result};
use crate::model::reply::Reply;

/// Where the warehouse listens: a TCP address (and the host name TLS checks) or a Unix
/// socket path.
#[derive(Clone, Debug)]
enum Addr {
    Tcp(String, String),
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a, _) => f.write_str(a),
            Addr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A connected socket of either kind (TCP with TLS as the warehouse's sslmode says).
enum Sock {
    Tcp(MaybeTls<TcpStream>),
    Unix(tokio::net::UnixStream),
}

impl std::fmt::Debug for Sock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sock::Tcp(MaybeTls::Tls(_)) => "Sock::Tls",
            Sock::Tcp(MaybeTls::Plain(_)) => "Sock::Tcp",
            Sock::Unix(_) => "Sock::Unix",
        })
    }
}

impl Sock {
    async fn connect(addr: &Addr, tls: &WarehouseTls) -> Result<Sock> {
        Ok(match addr {
            Addr::Tcp(a, host) => {
                let s = TcpStream::connect(a).await.map_err(io_err)?;
                s.set_nodelay(true).map_err(io_err)?;
                Sock::Tcp(tls.negotiate(s, host).await?)
            }
            Addr::Unix(p) => Sock::Unix(tokio::net::UnixStream::connect(p).await.map_err(io_err)?),
        })
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.write_all(buf).await,
            Sock::Unix(s) => s.write_all(buf).await,
        }
    }

    /// Whether an idle socket was closed or has unexpected data (a server that restarted
    /// says goodbye with a FATAL error): reading would not block on a healthy idle socket.
    fn stale(&self) -> bool {
        let mut probe = [0u8; 1];
        // (with TLS this reads the raw socket: any byte there makes the connection stale)
        let r = match self {
            Sock::Tcp(s) => s.get_ref().try_read(&mut probe),
            Sock::Unix(s) => s.try_read(&mut probe),
        };
        !matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read_buf(buf).await,
            Sock::Unix(s) => s.read_buf(buf).await,
        }
    }
}

/// Where and as whom raw connections log in (taken from the warehouse URL), and with what TLS.
#[derive(Clone, Debug)]
pub struct RawConfig {
    addr: Addr,
    user: String,
    credentials: Arc<Credentials>,
    dbname: String,
    options: String,
    connect_timeout: Duration,
    tls: WarehouseTls,
    /// Idle connections older than this are closed instead of reused (None: kept).
    max_age: Option<Duration>,
}

impl RawConfig {
    /// The raw settings of a tokio-postgres config, or None when it names several hosts
    /// (multi-host URLs keep the normal path).
    pub fn from_pg(
        pg: &tokio_postgres::Config,
        connect_timeout: Duration,
        tls: WarehouseTls,
        credentials: Arc<Credentials>,
        max_age: Option<Duration>,
    ) -> Option<RawConfig> {
        use tokio_postgres::config::Host;
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let addr = match pg.get_hosts() {
            [Host::Tcp(h)] => Addr::Tcp(format!("{h}:{port}"), h.clone()),
            [Host::Unix(dir)] => Addr::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            _ => return None,
        };
        let user = pg.get_user()?.to_string();
        Some(RawConfig {
            addr,
            dbname: pg.get_dbname().unwrap_or(&user).to_string(),
            user,
            credentials,
            options: pg.get_options().unwrap_or("").to_string(),
            connect_timeout,
            tls,
            max_age,
        })
    }
}

/// A logged-in warehouse connection speaking the simple query protocol.
#[derive(Debug)]
pub struct RawConn {
    sock: Sock,
    buf: BytesMut,
    out: BytesMut,
    key: (i32, i32),
    /// Set while a query's answer is being read; a connection dropped then is cancelled.
    busy: bool,
    /// Cleared when the connection must not be reused (broken, settings changed, ...).
    reusable: bool,
    /// When it logged in.
    born: std::time::Instant,
}

fn io_err(e: std::io::Error) -> Error {
    Error::Unavailable(format!("warehouse connection: {e}"))
}

/// An ErrorResponse's fields as the one error type.
fn server_error(mut body: BytesMut) -> Error {
    let (mut code, mut message, mut detail, mut hint) = (None, String::new(), None, None);
    while body.has_remaining() {
        let kind = body.get_u8();
        if kind == 0 {
            break;
        }
        let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
        let text = String::from_utf8_lossy(&body[..end]).into_owned();
        body.advance((end + 1).min(body.len()));
        match kind {
            b'C' => code = Some(text),
            b'M' => message = text,
            b'D' => detail = Some(text),
            b'H' => hint = Some(text),
            _ => {}
        }
    }
    if let Some(d) = detail {
        message.push_str(&format!(" (detail: {d})"));
    }
    if let Some(h) = hint {
        message.push_str(&format!(" (hint: {h})"));
    }
    match code.as_deref() {
        Some("57014") => Error::Timeout(message),
        Some(c) if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03" => {
            Error::Unavailable(message)
        }
        Some(c) => Error::Warehouse { sqlstate: c.to_string(), message },
        None => Error::Unavailable(message),
    }
}

/// Refuses (0A000) a warehouse whose default settings would render values differently from
/// the normal path (a time zone other than UTC, a DateStyle other than ISO).
fn check_default(body: &[u8]) -> Result<()> {
    let mut parts = body.split(|b| *b == 0);
    let (name, value) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let value = String::from_utf8_lossy(value);
    let fine = match name {
        b"TimeZone" => crate::model::value::is_utc_zone(&value),
        b"DateStyle" => value.get(..3).is_some_and(|v| v.eq_ignore_ascii_case("ISO")),
        b"IntervalStyle" => value.eq_ignore_ascii_case("postgres"),
        _ => true,
    };
    if fine {
        return Ok(());
    }
    let name = String::from_utf8_lossy(name);
    Err(Error::NotSupported(format!("the pass-through fast path needs the warehouse default {name} to render as tidemark does, not {value}")))
}

impl RawConn {
    /// Connects and logs in with the current credential; a login refused for its credentials
    /// is tried again with freshly fetched ones for up to the connect timeout (a rotation
    /// changes the warehouse and the source a moment apart).
    pub async fn connect(cfg: &RawConfig) -> Result<RawConn> {
        let deadline = std::time::Instant::now() + cfg.connect_timeout;
        let mut credential = cfg.credentials.current().await?;
        loop {
            match Self::connect_as(cfg, &credential).await {
                Err(Error::Warehouse { sqlstate, .. })
                    if cfg.credentials.rotating()
                        && (sqlstate == "28P01" || sqlstate == "28000")
                        && std::time::Instant::now() < deadline =>
                {
                    tracing::warn!("the warehouse refused the credentials; fetching them again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    credential = cfg.credentials.refresh().await?;
                }
                // tidemark's own login failed: the client is not at fault
                Err(Error::Warehouse { sqlstate, message }) if sqlstate.starts_with("28") => {
                    return Err(Error::Unavailable(format!(
                        "the warehouse refused tidemark's login ({sqlstate}): {message}"
                    )))
                }
                other => return other,
            }
        }
    }

    /// Whether the connection has lived longer than `max_age`.
    fn too_old(&self, max_age: Option<Duration>) -> bool {
        max_age.is_some_and(|age| self.born.elapsed() > age)
    }

    /// Connects and logs in (trust, password, md5 or SCRAM-SHA-256).
    async fn connect_as(cfg: &RawConfig, credential: &Credential) -> Result<RawConn> {
        let sock = tokio::time::timeout(cfg.connect_timeout, Sock::connect(&cfg.addr, &cfg.tls))
            .await
            .map_err(|_| Error::Unavailable(format!("connecting to {} timed out", cfg.addr)))??;
        let mut conn = RawConn {
            sock,
            buf: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::with_capacity(1024),
            key: (0, 0),
            busy: false,
            reusable: true,
            born: std::time::Instant::now(),
        };
        tokio::time::timeout(cfg.connect_timeout, conn.login(cfg, credential))
            .await
            .map_err(|_| Error::Unavailable("warehouse login timed out".into()))??;
        Ok(conn)
    }

    async fn login(&mut self, cfg: &RawConfig, credential: &Credential) -> Result<()> {
        let user = credential.user.as_deref().unwrap_or(&cfg.user);
        let mut params = vec![
            ("user", user),
            ("database", cfg.dbname.as_str()),
            ("application_name", "tidemark"),
            ("client_encoding", "UTF8"),
        ];
        if !cfg.options.is_empty() {
            params.push(("options", cfg.options.as_str()));
        }
        frontend::startup_message(params, &mut self.out).map_err(io_err)?;
        self.send().await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, mut body) = self.read().await?;
            match tag {
                b'R' => {
                    self.authenticate((user, &credential.password), &mut body, &mut scram).await?
                }
                b'K' if body.len() >= 8 => self.key = (body.get_i32(), body.get_i32()),
                b'S' => check_default(&body)?,
                b'Z' => return Ok(()),
                b'E' => return Err(server_error(body)),
                _ => {}
            }
        }
    }

    async fn authenticate(
        &mut self,
        (user, password): (&str, &str),
        body: &mut BytesMut,
        scram: &mut Option<ScramSha256>,
    ) -> Result<()> {
        let password = || match password.is_empty() {
            true => Err(Error::Unavailable("the warehouse asks for a password".into())),
            false => Ok(password.as_bytes()),
        };
        let short = || Error::Unavailable("malformed authentication message".into());
        if body.len() < 4 {
            return Err(short());
        }
        match body.get_i32() {
            0 => return Ok(()),
            3 => frontend::password_message(password()?, &mut self.out).map_err(io_err)?,
            5 => {
                let salt: [u8; 4] =
                    body.get(..4).ok_or_else(short)?.try_into().map_err(|_| short())?;
                let hash = md5_hash(user.as_bytes(), password()?, salt);
                frontend::password_message(hash.as_bytes(), &mut self.out).map_err(io_err)?;
            }
            10 => {
                let s = ScramSha256::new(password()?, ChannelBinding::unsupported());
                frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut self.out)
                    .map_err(io_err)?;
                *scram = Some(s);
            }
            11 => {
                let s = scram.as_mut().ok_or_else(short)?;
                s.update(body).map_err(io_err)?;
                frontend::sasl_response(s.message(), &mut self.out).map_err(io_err)?;
            }
            12 => scram.as_mut().ok_or_else(short)?.finish(body).map_err(io_err)?,
            other => {
                return Err(Error::Unavailable(format!(
                    "unsupported warehouse authentication method {other}"
                )))
            }
        }
        if !self.out.is_empty() {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<()> {
        let out = self.out.split();
        self.sock.write_all(&out).await.map_err(io_err)
    }

    /// Reads one backend message: its type byte and body.
    async fn read(&mut self) -> Result<(u8, BytesMut)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = usize::try_from(len).ok().filter(|l| *l >= 4).ok_or_else(|| {
                    self.reusable = false;
                    Error::Unavailable("malformed message from the warehouse".into())
                })?;
                if self.buf.len() > len {
                    let mut msg = self.buf.split_to(len + 1);
                    let tag = msg[0];
                    msg.advance(5);
                    return Ok((tag, msg));
                }
                self.buf.reserve(len + 1 - self.buf.len());
            } else {
                self.buf.reserve(8 * 1024);
            }
            if self.sock.read_buf(&mut self.buf).await.map_err(io_err)? == 0 {
                self.reusable = false;
                return Err(Error::Unavailable("the warehouse closed the connection".into()));
            }
        }
    }

    /// Sends one statement with the simple query protocol.
    pub async fn query(&mut self, sql: &str) -> Result<()> {
        frontend::query(sql, &mut self.out).map_err(io_err)?;
        self.busy = true;
        self.send().await.inspect_err(|_| self.reusable = false)
    }

    /// The next message of the answer, None after ReadyForQuery; a warehouse error is
    /// returned once the connection is ready again.
    pub async fn next(&mut self) -> Result<Option<Reply>> {
        let mut failed = None;
        loop {
            let (tag, mut body) = self.read().await.inspect_err(|_| self.reusable = false)?;
            match tag {
                b'T' => return Ok(Some(Reply::Fields(body))),
                b'D' if body.len() >= 2 => {
                    let n = body.get_i16();
                    return Ok(Some(Reply::Row(n, body)));
                }
                b'C' => {
                    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                    return Ok(Some(Reply::Done(String::from_utf8_lossy(&body[..end]).into())));
                }
                b'I' => return Ok(Some(Reply::Empty)),
                b'E' => failed = Some(server_error(body)),
                // A reported setting changed: this connection no longer has default settings.
                b'S' => self.reusable = false,
                b'Z' => {
                    self.busy = false;
                    if body.first() != Some(&b'I') {
                        self.reusable = false;
                    }
                    return failed.map_or(Ok(None), Err);
                }
                // Notices, notifications and anything unexpected are not forwarded.
                _ => {}
            }
        }
    }
}

/// A bounded pool of raw connections, opened lazily.
pub struct RawPool {
    /// Set for good when the warehouse's default settings do not suit the fast path.
    off: std::sync::atomic::AtomicBool,
    cfg: RawConfig,
    idle: Mutex<Vec<RawConn>>,
    admission: Arc<Admission>,
}

impl RawPool {
    /// A pool whose connections run under `admission`'s slots.
    pub fn new(cfg: RawConfig, admission: Arc<Admission>) -> RawPool {
        RawPool { off: Default::default(), cfg, idle: Mutex::default(), admission }
    }

    /// Whether the fast path may use this pool (false once the warehouse's defaults proved
    /// unsuitable).
    pub fn usable(&self) -> bool {
        !self.off.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An idle connection or a new one, under an admission slot.
    pub async fn get(self: &Arc<Self>) -> Result<Lease> {
        let permit = self.admission.enter().await?;
        let idle = loop {
            let next = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match next {
                Some(c) if c.sock.stale() || c.too_old(self.cfg.max_age) => continue,
                other => break other,
            }
        };
        let conn = match idle {
            Some(c) => c,
            None => RawConn::connect(&self.cfg).await.inspect_err(|e| {
                if let Error::NotSupported(why) = e {
                    tracing::warn!("{why}; the fast path is off");
                    self.off.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            })?,
        };
        Ok(Lease { conn: Some(conn), pool: self.clone(), _permit: permit })
    }
}

/// A connection lent out of the pool: returned when dropped if it is reusable; dropped in
/// the middle of an answer, its query is cancelled and the connection closed.
pub struct Lease {
    conn: Option<RawConn>,
    pool: Arc<RawPool>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Sends one statement (see [`RawConn::query`]).
    pub async fn query(&mut self, sql: &str) -> Result<()> {
        match &mut self.conn {
            Some(c) => c.query(sql).await,
            None => Err(Error::internal("lease without a connection")),
        }
    }

    /// The next message of the answer (see [`RawConn::next`]).
    pub async fn next(&mut self) -> Result<Option<Reply>> {
        match &mut self.conn {
            Some(c) => c.next().await,
            None => Err(Error::internal("lease without a connection")),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if conn.busy {
            let (cfg, key) = (self.pool.cfg.clone(), conn.key);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { cancel(&cfg, key).await });
            }
        } else if conn.reusable {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
    }
}

/// Sends a CancelRequest for the backend `key` (best effort), over TLS when the
/// connections use it.
async fn cancel(cfg: &RawConfig, key: (i32, i32)) {
    let mut buf = BytesMut::new();
    frontend::cancel_request(key.0, key.1, &mut buf);
    if let Ok(Ok(mut sock)) =
        tokio::time::timeout(Duration::from_secs(5), Sock::connect(&cfg.addr, &cfg.tls)).await
    {
        let _ = sock.write_all(&buf).await;
        let mut sink = BytesMut::with_capacity(1);
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_buf(&mut sink)).await;
    }
}
