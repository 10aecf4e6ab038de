//! A configuration file's text, as `stampd check-config` reads it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stampd::config::fuzzing::config(data));
