//! Replays the checked-in fuzz corpus of the bench client's response parser
//! (`fuzz/corpus/bench_response/`) through the entry function the fuzz target calls, so `.ci/run`
//! catches a regression on any input a campaign kept (including past crashes) without cargo-fuzz.

#[path = "../../fuzz/replay.rs"]
mod replay;

use replay::replay;
use mailraft_bench::client::fuzzing;

#[test]
fn bench_response_corpus() {
    replay("bench_response", fuzzing::responses);
}
