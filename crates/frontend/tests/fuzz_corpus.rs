//! Replays the checked-in fuzz corpora of the front-end's targets (`fuzz/corpus/<target>/`)
//! through the same entry functions the fuzz targets call, so `.ci/run` catches a regression on
//! any input a campaign kept (including past crashes) without cargo-fuzz.

#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::replay;
use mailraft_frontend::fuzzing;

#[test]
fn imap_input_corpus() {
    replay("imap_input", |data| drop(fuzzing::imap_input(data)));
}

#[test]
fn lmtp_input_corpus() {
    replay("lmtp_input", |data| drop(fuzzing::lmtp_input(data)));
}

#[test]
fn fetch_render_corpus() {
    replay("fetch_render", |data| drop(fuzzing::fetch_render(data)));
}

#[test]
fn seqset_corpus() {
    replay("seqset", fuzzing::seqset);
}

#[test]
fn utf7_corpus() {
    replay("utf7", fuzzing::utf7);
}
