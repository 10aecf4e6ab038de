//! The bytes of an audit journal segment file, damaged or not.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stampd::fuzzing::journal(data));
