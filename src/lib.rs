//! tidemark: the serving layer of a Lambda Architecture. One SQL gateway answers every
//! query over the batch layer, the speed layer and the Redis windows, counting each
//! event exactly once and saying how fresh each answer is.

#![warn(missing_docs)]
// The HTTP handlers' futures nest the whole engine (split → legs → windows → Redis); proving
// them Send takes more than the default 128 levels of trait evaluation.
#![recursion_limit = "256"]

pub mod access;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod conninfo;
pub mod cursors;
pub mod demo;
pub mod engine;
pub mod error;
pub mod exec;
pub mod frontend;
pub mod fuzzing;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod queries;
pub mod server;
pub mod setup;
pub mod watermark;
pub mod watermark_push;
pub mod windows;
