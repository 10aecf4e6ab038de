//! A certificate chain file (PEM or DER), as the signer loads one at start.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stampd::fuzzing::certificate(data));
