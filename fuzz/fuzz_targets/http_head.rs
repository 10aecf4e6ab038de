//! Bytes from a client connection: HTTP/1.1 request heads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stampd::fuzzing::http_head(data));
