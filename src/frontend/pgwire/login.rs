//! Password login: SCRAM-SHA-256 for every user, except users whose `password_hash` is
//! PostgreSQL's MD5 form, who log in with MD5. That is an explicit, per-user opt-in for clients
//! that cannot do SCRAM, such as the Redshift JDBC driver.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::md5pass::Md5PasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SaslMechanisms;
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, PidSecretKeyGenerator};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::frontend::auth::Users;

/// The startup handler choosing SCRAM or MD5 by the user named in the startup packet.
pub struct PasswordLogin<P> {
    driver: AuthDriver<Arc<P>>,
    scram: SaslMechanisms,
    md5: Md5PasswordAuth<Users>,
    users: Arc<Users>,
}

impl<P: ServerParameterProvider> PasswordLogin<P> {
    /// Login for the configured users; connections register with `manager` under keys
    /// from `pids`.
    pub fn new(
        users: Arc<Users>,
        params: Arc<P>,
        (manager, pids): (Arc<ConnectionManager>, Arc<dyn PidSecretKeyGenerator>),
    ) -> Self {
        PasswordLogin {
            driver: AuthDriver::new(params)
                .with_connection_manager(manager)
                .with_pid_secret_key_generator(pids),
            scram: SaslMechanisms::new(vec![Arc::new(ScramAuth::new(users.clone()))]),
            md5: Md5PasswordAuth::new(users.clone()),
            users,
        }
    }
}

#[async_trait]
impl<P: ServerParameterProvider> StartupHandler for PasswordLogin<P> {
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
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = startup.parameters.get("user").map(String::as_str).unwrap_or_default();
                let mechanism = match self.users.uses_md5(user) {
                    true => self.md5.create(),
                    false => self.scram.create(),
                };
                self.driver.begin_authentication(client, mechanism).await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                self.driver.advance_authentication(client, m).await?
            }
            _ => return Ok(()),
        };
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { final_message, .. } => {
                self.driver.complete_authentication(client, final_message).await
            }
        }
    }
}
