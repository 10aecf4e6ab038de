//! A DER `TimeStampResp` or bare token, as `stampd verify` reads one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stampd::fuzzing::response(data));
