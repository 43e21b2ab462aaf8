//! Redshift IAM database credentials through the AWS SDK for Rust: provisioned clusters with
//! `GetClusterCredentials` (a named database user) or `GetClusterCredentialsWithIAM` (the
//! IAM identity's user), Serverless workgroups with `GetCredentials`. AWS credentials come from
//! the SDK's default chain (environment, profile, web identity / IRSA, instance metadata); the
//! HTTP client uses rustls with ring, as the rest of the build.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use crate::config::{CredentialSource, CredentialsConfig, Span};
use crate::error::{Error, Result};

/// Which API answers.
#[derive(Debug, Clone)]
enum Api {
    /// `GetClusterCredentials` for a named user (`auto_create` passes on).
    Cluster { cluster: String, db_user: String, auto_create: bool },
    /// `GetClusterCredentialsWithIAM`.
    ClusterWithIam { cluster: String },
    /// Redshift Serverless `GetCredentials`.
    Serverless { workgroup: String },
}

/// Database credentials as Redshift hands them out.
pub struct DbCredentials {
    /// The database user (`IAM:name` or `IAMR:role` for the IAM forms).
    pub user: Option<String>,
    /// The temporary password.
    pub password: String,
    /// When it stops working.
    pub expires: SystemTime,
}

/// A Redshift credentials source.
pub struct Iam {
    api: Api,
    region: String,
    endpoint: Option<String>,
    db_name: Option<String>,
    duration: Duration,
    sdk: tokio::sync::OnceCell<aws_config::SdkConfig>,
}

impl Iam {
    /// The source `[warehouse.credentials]` describes (checked now, AWS asked on first use).
    pub fn new(c: &CredentialsConfig, dbname: Option<String>) -> Result<Iam> {
        let need =
            |what: &str| Error::Config(format!("[warehouse.credentials] {:?}: {what}", c.source));
        let api = match (&c.source, &c.db_user) {
            (CredentialSource::RedshiftServerlessIam, _) => Api::Serverless {
                workgroup: c.workgroup.clone().ok_or_else(|| need("needs workgroup"))?,
            },
            (_, Some(user)) => Api::Cluster {
                cluster: c.cluster.clone().ok_or_else(|| need("needs cluster"))?,
                db_user: user.clone(),
                auto_create: c.auto_create,
            },
            (_, None) => Api::ClusterWithIam {
                cluster: c.cluster.clone().ok_or_else(|| need("needs cluster"))?,
            },
        };
        let duration = c.duration.map_or(Duration::from_secs(900), Span::get);
        if !(900..=3600).contains(&duration.as_secs()) {
            return Err(need("duration must be between 15m and 60m"));
        }
        Ok(Iam {
            api,
            region: c.region.clone().ok_or_else(|| need("needs region"))?,
            endpoint: c.endpoint.clone(),
            db_name: c.db_name.clone().or(dbname),
            duration,
            sdk: Default::default(),
        })
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    .http_client(http);
                if let Some(e) = &self.endpoint {
                    loader = loader.endpoint_url(e);
                }
                loader.load().await
            })
            .await
    }

    /// Asks AWS for database credentials.
    pub async fn fetch(&self) -> Result<DbCredentials> {
        let sdk = self.sdk().await;
        let secs = self.duration.as_secs() as i32;
        let failed = |e: String| {
            Error::Unavailable(format!("Redshift credentials ({:?}): {e}", self.api_name()))
        };
        let (user, password, expiration) = match &self.api {
            Api::Cluster { cluster, db_user, auto_create } => {
                let out = aws_sdk_redshift::Client::new(sdk)
                    .get_cluster_credentials()
                    .cluster_identifier(cluster)
                    .db_user(db_user)
                    .set_db_name(self.db_name.clone())
                    .duration_seconds(secs)
                    .auto_create(*auto_create)
                    .send()
                    .await
                    .map_err(|e| failed(crate::error::with_causes(&e)))?;
                (out.db_user, out.db_password, out.expiration)
            }
            Api::ClusterWithIam { cluster } => {
                let out = aws_sdk_redshift::Client::new(sdk)
                    .get_cluster_credentials_with_iam()
                    .cluster_identifier(cluster)
                    .set_db_name(self.db_name.clone())
                    .duration_seconds(secs)
                    .send()
                    .await
                    .map_err(|e| failed(crate::error::with_causes(&e)))?;
                (out.db_user, out.db_password, out.expiration)
            }
            Api::Serverless { workgroup } => {
                let out = aws_sdk_redshiftserverless::Client::new(sdk)
                    .get_credentials()
                    .workgroup_name(workgroup)
                    .set_db_name(self.db_name.clone())
                    .duration_seconds(secs)
                    .send()
                    .await
                    .map_err(|e| failed(crate::error::with_causes(&e)))?;
                (out.db_user, out.db_password, out.expiration)
            }
        };
        let password = password.ok_or_else(|| failed("no password in the answer".into()))?;
        let expires = expiration.and_then(|t| {
            let secs = u64::try_from(t.secs()).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        });
        let expires = expires.unwrap_or_else(|| SystemTime::now() + self.duration);
        Ok(DbCredentials { user, password, expires })
    }

    fn api_name(&self) -> &'static str {
        match self.api {
            Api::Cluster { .. } => "GetClusterCredentials",
            Api::ClusterWithIam { .. } => "GetClusterCredentialsWithIAM",
            Api::Serverless { .. } => "GetCredentials",
        }
    }
}
