//! Frontends: each decodes its protocol, calls the engine, and encodes Arrow batches.

pub mod arrow_out;
pub mod auth;
pub mod console;
pub mod counted;
pub mod flight;
pub mod http;
pub mod observe;
pub mod openapi;
pub mod pgwire;
pub mod request;
pub mod tls;
