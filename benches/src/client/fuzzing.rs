//! Entry point of the `bench_response` fuzz target (`fuzz/`) and of its corpus replay test
//! (`tests/fuzz_corpus.rs`): arbitrary bytes as a server's response stream. The client must not
//! panic on anything a server sends, and its framer must stay within its cap.

use super::framer::Framer;
use super::parse::parse_response;

/// Frames and parses `data[2..]` as the client does, reading `1 + data[0] % 64` bytes at a time
/// (the whole stream at once when the top bit is set) with a frame cap of `16 + data[1] * 4`.
///
/// Checks: after the framer reports "need more", it holds at most its cap; every frame ends in
/// CRLF; frames plus what is still buffered are exactly the bytes received, in order.
pub fn responses(data: &[u8]) {
    let [chunk_pick, cap_pick, stream @ ..] = data else {
        return;
    };
    let chunk = if chunk_pick & 0x80 != 0 { stream.len().max(1) } else { 1 + usize::from(chunk_pick % 64) };
    let cap = 16 + usize::from(*cap_pick) * 4;
    let mut framer = Framer::new(cap);
    let mut framed = 0usize;
    let mut received = 0usize;
    for piece in stream.chunks(chunk) {
        framer.push(piece);
        received += piece.len();
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.ends_with(b"\r\n"), "frame without CRLF");
                    assert_eq!(frame[..], stream[framed..framed + frame.len()], "frame is not the next bytes received");
                    framed += frame.len();
                    // Malformed responses are errors the checker reports, never panics.
                    let _ = parse_response(&frame);
                }
                Ok(None) => {
                    assert!(framer.pending() <= cap, "framer holds {} bytes over its cap {cap}", framer.pending());
                    break;
                }
                // The client drops the connection here.
                Err(_) => return,
            }
        }
        assert_eq!(framed + framer.pending(), received, "bytes lost or duplicated by the framer");
    }
    let _ = parse_response(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_literal_split_across_reads() {
        let mut data = vec![3, 40];
        data.extend_from_slice(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\na1 OK done\r\n");
        responses(&data);
    }
}
