//! Replays the checked-in fuzz corpus of the MIME analyzer (`fuzz/corpus/mime/`) through the
//! entry function the fuzz target calls, so `.ci/run` catches a regression on any input a
//! campaign kept (including past crashes) without cargo-fuzz.

#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::replay;
use mailraft_mime::fuzzing;

#[test]
fn mime_corpus() {
    replay("mime", fuzzing::analyze_message);
}
