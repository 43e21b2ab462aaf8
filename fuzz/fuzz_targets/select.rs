//! Generated SELECTs over the logical table: every split's leg SQL parses again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidemark::fuzzing::select(data));
