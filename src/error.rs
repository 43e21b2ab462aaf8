//! The one error type of tidemark. Every error carries a SQLSTATE; each frontend maps it
//! once (HTTP status here, pgwire and Flight in their own frontends).

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure tidemark reports to a client or operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// SQL that does not parse (42601).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A statement that would write (25006).
    #[error("cannot execute {0} in a read-only gateway: tidemark serves reads only")]
    ReadOnly(String),
    /// The warehouse answered with an error; its SQLSTATE is kept.
    #[error("{message}")]
    Warehouse {
        /// Five-character SQLSTATE from the warehouse.
        sqlstate: String,
        /// The warehouse's message (with detail/hint when present).
        message: String,
    },
    /// The warehouse cannot be reached or the connection broke (08006).
    #[error("warehouse unavailable: {0}")]
    Unavailable(String),
    /// No or wrong credentials (28000; HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The user may not read a relation or call a function (42501; HTTP 403).
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many statements waiting for the warehouse (53300; HTTP 503 with Retry-After).
    #[error("too many queries waiting for the warehouse: {0}")]
    Busy(String),
    /// An answer larger than the configured limit (54000; HTTP 413).
    #[error("answer too large: {0}")]
    TooLarge(String),
    /// The server is shutting down and takes no new statements (57P01; HTTP 503).
    #[error("terminating: {0}")]
    ShuttingDown(String),
    /// The statement ran past its timeout or was cancelled (57014).
    #[error("canceling statement due to statement timeout: {0}")]
    Timeout(String),
    /// The client cancelled the statement (57014; HTTP 499, gRPC CANCELLED).
    #[error("canceling statement due to user request")]
    Canceled,
    /// Client input that is not SQL but is still wrong (22023 invalid parameter value).
    #[error("{0}")]
    InvalidInput(String),
    /// A named object that does not exist, such as a named query (42704, HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// A feature tidemark does not offer (0A000).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The split planner or merge cannot prove the split correct; the engine retries the
    /// query as a passthrough. Never shown to clients unless the passthrough fails too.
    #[error("cannot split: {0}")]
    Unsplittable(String),
    /// A value computation failed (division by zero 22012, overflow 22003, ...).
    #[error("{message}")]
    Data {
        /// SQLSTATE of the data exception.
        sqlstate: &'static str,
        /// Human readable message.
        message: String,
    },
    /// Configuration problems (F0000).
    #[error("{0}")]
    Config(String),
    /// Anything that is a bug in tidemark (XX000).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The SQLSTATE reported for this error.
    pub fn sqlstate(&self) -> &str {
        match self {
            Error::Syntax(_) => "42601",
            Error::ReadOnly(_) => "25006",
            Error::Warehouse { sqlstate, .. } => sqlstate,
            Error::Unavailable(_) => "08006",
            Error::Timeout(_) | Error::Canceled => "57014",
            Error::Busy(_) => "53300",
            Error::PermissionDenied(_) => "42501",
            Error::Unauthenticated(_) => "28000",
            Error::TooLarge(_) => "54000",
            Error::ShuttingDown(_) => "57P01",
            Error::InvalidInput(_) => "22023",
            Error::NotSupported(_) => "0A000",
            Error::NotFound(_) => "42704",
            Error::Unsplittable(_) => "0A000",
            Error::Data { sqlstate, .. } => sqlstate,
            Error::Config(_) => "F0000",
            Error::Internal(_) => "XX000",
        }
    }

    /// HTTP status for the REST frontend.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound(_) => return 404,
            // Google's mapping of CANCELLED (AIP-193), nginx's "client closed request"
            Error::Canceled => return 499,
            _ => {}
        }
        let code = self.sqlstate();
        match code {
            "25006" | "42501" => 403,
            "28000" | "28P01" => 401,
            "57014" => 504,
            "53300" => 503,
            "08P01" => 400,
            "54000" => 413,
            c if c.starts_with("08") || c.starts_with("57P") => 503,
            c if c.starts_with("42")
                || c.starts_with("22")
                || c.starts_with("0A")
                || c.starts_with("21")
                || c.starts_with("23")
                || c.starts_with("2F")
                || c == "55000" =>
            {
                if c == "55000" {
                    409
                } else {
                    400
                }
            }
            "F0000" | "XX000" => 500,
            _ => 500,
        }
    }

    /// A data exception with the given SQLSTATE.
    pub fn data(sqlstate: &'static str, message: impl fmt::Display) -> Error {
        Error::Data { sqlstate, message: message.to_string() }
    }

    /// Shorthand for an internal error.
    pub fn internal(message: impl fmt::Display) -> Error {
        Error::Internal(message.to_string())
    }

    /// Shorthand for an unsplittable query.
    pub fn unsplittable(message: impl fmt::Display) -> Error {
        Error::Unsplittable(message.to_string())
    }
}

/// An error with its causes (`error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer`): the top-level messages of tokio-postgres and rustls alone do not say why.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    if let Some(hint) = tls_hint(&text) {
        text.push_str(hint);
    }
    text
}

/// Plain words for rustls's certificate errors, which name only a variant.
fn tls_hint(text: &str) -> Option<&'static str> {
    let hints = [
        ("UnknownIssuer", " (the certificate's issuer is unknown: no CA in sslrootcert, or in the system's roots without one, signed it)"),
        ("Expired", " (the certificate has expired)"),
        ("NotValidYet", " (the certificate is not valid yet: check the clocks)"),
        ("UnknownCA", " (the server does not trust the client certificate's CA)"),
    ];
    hints.iter().find(|(variant, _)| text.contains(variant)).map(|(_, hint)| *hint)
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let mut message = db.message().to_string();
            if let Some(d) = db.detail() {
                message.push_str(&format!(" (detail: {d})"));
            }
            if let Some(h) = db.hint() {
                message.push_str(&format!(" (hint: {h})"));
            }
            let sqlstate = db.code().code().to_string();
            if sqlstate == "57014" {
                return Error::Timeout(message);
            }
            return Error::Warehouse { sqlstate, message };
        }
        if e.is_closed() {
            return Error::Unavailable(format!("connection closed: {e}"));
        }
        if let Some(code) = e.code() {
            return Error::Warehouse { sqlstate: code.code().to_string(), message: e.to_string() };
        }
        // Errors without a server response are I/O or protocol failures.
        Error::Unavailable(with_causes(&e))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => {
                let mapped = Error::from(e);
                match mapped {
                    // tidemark's own login failed: the client is not at fault (503, 08006)
                    Error::Warehouse { ref sqlstate, ref message }
                        if sqlstate.starts_with("28") =>
                    {
                        Error::Unavailable(format!(
                            "the warehouse refused tidemark's login ({sqlstate}): {message}"
                        ))
                    }
                    Error::Warehouse { ref sqlstate, .. } if sqlstate.starts_with("3D") => mapped,
                    Error::Warehouse { .. } | Error::Unavailable(_) => {
                        Error::Unavailable(mapped.to_string())
                    }
                    other => other,
                }
            }
            other => Error::Unavailable(with_causes(&other)),
        }
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Internal(format!("arrow: {e}"))
    }
}
