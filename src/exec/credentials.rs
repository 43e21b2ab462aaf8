//! Where the warehouse password comes from, refreshed before it expires: the URL's (static),
//! a file re-read when it changes, a command (AWS CLI `credential_process` style), or Redshift
//! IAM (`GetClusterCredentials[WithIAM]`, Serverless `GetCredentials`) through the AWS SDK.
//!
//! Every new warehouse connection (pool, raw fast path) logs in with the current credential;
//! open connections keep the one they logged in with. A login refused for its password (28P01)
//! makes the next attempt fetch the credential again, so a rotation never waits for an expiry.
//! Passwords are never logged, and `Debug` prints none.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{CredentialSource, CredentialsConfig, Span};
use crate::error::{Error, Result};

/// What a connection logs in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user, when the source decides it (Redshift IAM's `IAM:name`); else the URL's.
    pub user: Option<String>,
    /// The password.
    pub password: String,
    /// When the source says it stops working.
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Where credentials are fetched from.
enum Source {
    Static(Option<String>),
    File(PathBuf),
    Command {
        argv: Vec<String>,
        lifetime: Duration,
    },
    #[cfg(feature = "redshift-iam")]
    Iam(Box<super::iam::Iam>),
}

/// The file's identity, to notice a change without reading it.
type FileStamp = Option<(SystemTime, u64)>;

/// The current credential and when it must be fetched again.
#[derive(Clone)]
struct Held {
    credential: Credential,
    stamp: FileStamp,
    fetched: SystemTime,
}

/// The warehouse's credentials (see the module documentation).
pub struct Credentials {
    source: Source,
    held: RwLock<Option<Held>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials")
    }
}

/// How long before its expiry a credential is fetched again: a quarter of its life, and at
/// least 30 seconds (or half its life, for credentials shorter than a minute).
fn margin(fetched: SystemTime, expires: SystemTime) -> Duration {
    let life = expires.duration_since(fetched).unwrap_or_default();
    (life / 4).max(Duration::from_secs(30).min(life / 2))
}

fn stamp(path: &PathBuf) -> FileStamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Credentials {
    /// The source `[warehouse.credentials]` names (none: the URL's password).
    pub fn new(
        cfg: Option<&CredentialsConfig>,
        url_password: Option<String>,
        dbname: Option<String>,
    ) -> Result<Arc<Credentials>> {
        let need = |what: &str| Error::Config(format!("[warehouse.credentials]: {what}"));
        let source = match cfg.map(|c| (&c.source, c)) {
            None | Some((CredentialSource::Static, _)) => Source::Static(url_password),
            Some((CredentialSource::File, c)) => {
                Source::File(PathBuf::from(c.path.clone().ok_or_else(|| need("file needs path"))?))
            }
            Some((CredentialSource::Command, c)) => {
                if c.command.is_empty() {
                    return Err(need("command needs command = [\"program\", \"arg\", ...]"));
                }
                let lifetime = c.refresh.map_or(Duration::from_secs(600), Span::get);
                Source::Command { argv: c.command.clone(), lifetime }
            }
            Some((CredentialSource::RedshiftIam | CredentialSource::RedshiftServerlessIam, c)) => {
                iam(c, dbname)?
            }
        };
        Ok(Arc::new(Credentials { source, held: RwLock::new(None), refresh: Default::default() }))
    }

    /// Whether credentials change over time (the pool then logs in through them).
    pub fn rotating(&self) -> bool {
        !matches!(self.source, Source::Static(_))
    }

    /// The credential new connections use now (fetched again when it is due, or when its file
    /// changed).
    pub async fn current(&self) -> Result<Credential> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _one = self.refresh.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        self.fetch().await
    }

    /// Fetches the credential again now (after the warehouse refused the current one).
    pub async fn refresh(&self) -> Result<Credential> {
        let _one = self.refresh.lock().await;
        self.fetch().await
    }

    /// The held credential when it is still good.
    fn fresh(&self) -> Option<Credential> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        if let Source::File(path) = &self.source {
            if stamp(path) != held.stamp {
                return None;
            }
        }
        if let Some(expires) = held.credential.expires {
            let due = expires.checked_sub(margin(held.fetched, expires))?;
            if SystemTime::now() >= due {
                return None;
            }
        }
        Some(held.credential)
    }

    async fn fetch(&self) -> Result<Credential> {
        let fetched = SystemTime::now();
        let (credential, stamp) = match &self.source {
            Source::Static(p) => (
                Credential { user: None, password: p.clone().unwrap_or_default(), expires: None },
                None,
            ),
            Source::File(path) => read_file(path)?,
            Source::Command { argv, lifetime } => (run_command(argv, *lifetime).await?, None),
            #[cfg(feature = "redshift-iam")]
            Source::Iam(iam) => {
                let c = iam.fetch().await?;
                (Credential { user: c.user, password: c.password, expires: Some(c.expires) }, None)
            }
        };
        if !matches!(self.source, Source::Static(_)) {
            tracing::info!(user = ?credential.user, expires = ?credential.expires, "warehouse credentials fetched");
        }
        let held = Held { credential: credential.clone(), stamp, fetched };
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = Some(held);
        Ok(credential)
    }

    /// Applies a credential to a connection config (its user when it names one).
    pub fn apply(credential: &Credential, pg: &mut tokio_postgres::Config) {
        if let Some(user) = &credential.user {
            pg.user(user);
        }
        if !credential.password.is_empty() {
            pg.password(credential.password.as_bytes());
        }
    }
}

#[cfg(feature = "redshift-iam")]
fn iam(c: &CredentialsConfig, dbname: Option<String>) -> Result<Source> {
    Ok(Source::Iam(Box::new(super::iam::Iam::new(c, dbname)?)))
}

#[cfg(not(feature = "redshift-iam"))]
fn iam(_: &CredentialsConfig, _: Option<String>) -> Result<Source> {
    Err(Error::Config(
        "Redshift IAM credentials need tidemark built with the redshift-iam feature (the default)"
            .into(),
    ))
}

fn read_file(path: &PathBuf) -> Result<(Credential, FileStamp)> {
    let before = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Unavailable(format!("warehouse password file {}: {e}", path.display()))
    })?;
    let password = text.lines().next().unwrap_or_default().trim_end_matches('\r').to_string();
    Ok((Credential { user: None, password, expires: None }, before))
}

/// Runs the command (no shell, 30 s at most) and reads its output.
async fn run_command(argv: &[String], lifetime: Duration) -> Result<Credential> {
    let failed = |why: String| {
        Error::Unavailable(format!("warehouse credentials command {:?}: {why}", argv[0]))
    };
    let run = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| failed("no answer within 30 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        // its standard error may echo secrets: only the status is reported
        return Err(failed(format!("exited with {}", out.status)));
    }
    parse_output(&String::from_utf8_lossy(&out.stdout), lifetime)
        .ok_or_else(|| failed("printed no password".into()))
}

/// A command's output: a password on the first line, or JSON with `password` (or
/// `DbPassword`), optionally `user` (`DbUser`) and `expiration` (`Expiration`, RFC 3339).
fn parse_output(text: &str, lifetime: Duration) -> Option<Credential> {
    let text = text.trim();
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let field = |names: &[&str]| {
            names.iter().find_map(|n| v.get(*n).and_then(|x| x.as_str()).map(str::to_string))
        };
        let password = field(&["password", "Password", "DbPassword"])?;
        let expires = match field(&["expiration", "Expiration"]) {
            Some(t) => Some(parse_rfc3339(&t)?),
            None => Some(SystemTime::now() + lifetime),
        };
        return Some(Credential { user: field(&["user", "User", "DbUser"]), password, expires });
    }
    let password = text.lines().next()?.to_string();
    (!password.is_empty()).then(|| Credential {
        user: None,
        password,
        expires: Some(SystemTime::now() + lifetime),
    })
}

/// `2026-12-01T12:00:00Z` (or with an offset) as a system time.
pub fn parse_rfc3339(t: &str) -> Option<SystemTime> {
    let dt = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    let secs = u64::try_from(dt.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_output_forms() {
        let day = Duration::from_secs(86_400);
        let c = parse_output("s3cret\n", day).unwrap();
        assert_eq!((c.user, c.password.as_str()), (None, "s3cret"));
        let c = parse_output(
            r#"{"DbUser": "IAM:tm", "DbPassword": "p", "Expiration": "2030-01-01T00:00:00Z"}"#,
            day,
        )
        .unwrap();
        assert_eq!((c.user.as_deref(), c.password.as_str()), (Some("IAM:tm"), "p"));
        assert_eq!(c.expires, parse_rfc3339("2030-01-01T00:00:00+00:00"));
        assert!(parse_output("", day).is_none());
        assert!(!format!("{c:?}").contains('p') || !format!("{c:?}").contains("\"p\""));
    }

    #[test]
    fn refreshed_well_before_expiry() {
        let t0 = SystemTime::UNIX_EPOCH;
        assert_eq!(margin(t0, t0 + Duration::from_secs(900)), Duration::from_secs(225));
        assert_eq!(margin(t0, t0 + Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(margin(t0, t0 + Duration::from_secs(10)), Duration::from_secs(5));
    }
}
