//! Sequence sets against the session's sequence-number/UID map.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailraft_frontend::fuzzing::seqset(data);
});
