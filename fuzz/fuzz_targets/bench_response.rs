//! The bench client's response framer and parser on arbitrary server output.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailraft_bench::client::fuzzing::responses(data);
});
