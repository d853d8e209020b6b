//! The MIME analyzer and section extraction on arbitrary messages.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailraft_mime::fuzzing::analyze_message(data);
});
