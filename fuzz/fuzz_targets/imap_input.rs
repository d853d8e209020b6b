//! Client bytes through the front-end's framer, imap-codec and the argument translations.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mailraft_frontend::fuzzing::imap_input(data);
});
