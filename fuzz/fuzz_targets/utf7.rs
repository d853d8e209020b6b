//! Modified UTF-7 mailbox names: strict decoding and round trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailraft_frontend::fuzzing::utf7(data);
});
