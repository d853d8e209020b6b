//! Client bytes through the LMTP line reader, command parser, transaction state machine, DATA
//! dot-unstuffing and BDAT chunks, up to a fake storage.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mailraft_frontend::fuzzing::lmtp_input(data);
});
