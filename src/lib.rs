//! tidemark: the serving layer of a Lambda Architecture. One SQL gateway answers every
//! query over the batch layer, the speed layer and the Redis windows, counting each
//! event exactly once and saying how fresh each answer is.
//!
//! # Layout
//!
//! Layers, each importing only those below it (checked by `tests/layers.rs` against
//! `layers.rules`, with no import cycles between files):
//!
//! - [`frontend`]: REST, pgwire and Flight SQL; each decodes, calls the [`engine`], encodes
//!   (it imports only the engine, the model, the error type and the configuration).
//! - [`engine`]: the facade (sessions, classification, the split run, EXPLAIN, health).
//! - [`plan`], [`merge`], [`cache`], [`fleet`], [`windows`]: plan the legs, merge them, cache
//!   them (in this process and, through Redis, for the fleet), read the Redis windows.
//! - [`exec`], [`catalog`], [`watermark`]: the warehouse client, its facts, the watermark W.
//! - [`model`], [`error`], [`config`]: values, columns, freshness and durations; one error
//!   type; the configuration, parsed once.
//!
//! docs/architecture.md maps every file.

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
pub mod fleet;
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
