//! Any bytes as SQL: splitter, fingerprint lexer, parser, permission check, planner; no panic, legs re-parse.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidemark::fuzzing::sql(data));
