//! An APPENDed message analysed, stored and rendered as FETCH items.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mailraft_frontend::fuzzing::fetch_render(data);
});
