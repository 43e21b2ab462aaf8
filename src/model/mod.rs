//! The floor every layer stands on: values and decimals, columns and parameters, Arrow
//! conversion, freshness reports, command tags, the watermark value and SQL names. It imports nothing of the crate above it.

pub mod arrow;
pub mod column;
pub mod cost;
pub mod decimal;
pub mod duration;
pub mod freshness;
pub mod reply;
pub mod sql;
pub mod tag;
pub mod value;
pub mod watermark;
