//! A DER `TimeStampReq`, as a POST body reaches the request path.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stampd::fuzzing::request(data));
