//! Execution: the warehouse client (pools, raw connections, admission, row decoding), and
//! merge and evaluation over partial aggregates.

pub mod admission;
pub mod columnar;
pub mod credentials;
#[cfg(feature = "redshift-iam")]
pub mod iam;
pub mod raw;
pub mod tls;
pub mod warehouse;
