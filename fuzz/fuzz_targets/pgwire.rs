//! Any bytes as pgwire frontend messages, a warehouse RowDescription and bound parameters: no panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidemark::fuzzing::pgwire(data));
