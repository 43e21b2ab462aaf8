//! Execution: the warehouse client, values and decimals, merge and evaluation, Arrow.

pub mod admission;
pub mod arrow;
pub mod columnar;
pub mod credentials;
pub mod decimal;
pub mod eval;
#[cfg(feature = "redshift-iam")]
pub mod iam;
pub mod merge;
pub mod raw;
pub mod tls;
pub mod value;
pub mod warehouse;
