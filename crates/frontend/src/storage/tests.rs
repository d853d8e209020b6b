//! The retry policy against a scriptable storage server ([`super::mock`]): which failures are
//! retried, where the retry goes, and that every attempt of one call carries the same request id.

use std::time::Duration;

use mailraft_proto as proto;
use tokio::time::Instant;
use tonic::Status;

use super::mock::{Mock, Step, coded, serve};
use super::route::RetryPolicy;
use super::{REQUEST_ID_PREFIX, Storage};
use crate::error::FrontendError;

/// A call deadline of `request_timeout` with short attempts, so a hang costs 200 ms.
fn policy(request_timeout: Duration) -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        ..RetryPolicy::new(request_timeout, Duration::from_secs(5))
    }
}

fn storage(endpoints: &[&str], request_timeout: Duration) -> Storage {
    let endpoints: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
    Storage::new(&endpoints, 1, policy(request_timeout))
}

/// The default policy scaled down: attempts of a third of the deadline (3.3 s of 10 s), here
/// 400 ms of 1.2 s.
fn storage_with_default_ratio(endpoints: &[&str]) -> Storage {
    let endpoints: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
    let policy = RetryPolicy::new(Duration::from_millis(1200), Duration::from_secs(5));
    assert_eq!(policy.attempt_timeout, Duration::from_millis(400));
    Storage::new(&endpoints, 1, policy)
}

fn ctx(storage: &Storage) -> proto::Context {
    storage.context(b"token".to_vec(), "test-session")
}

fn append_request(storage: &Storage) -> proto::AppendRequest {
    proto::AppendRequest { ctx: Some(ctx(storage)), mailbox: "INBOX".into(), messages: Vec::new() }
}

#[tokio::test]
async fn unavailable_and_transport_failures_are_retried_with_the_same_request_id() {
    let server = serve(Mock::scripted([
        Step::Fail(coded("UNAVAILABLE", None)),
        Step::Fail(Status::unknown("transport error")),
        Step::Answer,
    ]))
    .await;
    let storage = storage(&[&server.addr], Duration::from_secs(10));
    let response = storage.append(append_request(&storage)).await.unwrap();
    assert_eq!(response.uids, vec![1]);
    let calls = server.mock.calls("append");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].request_id.len(), REQUEST_ID_PREFIX + 8);
    assert!(calls.iter().all(|c| c.request_id == calls[0].request_id), "{calls:?}");
}

#[tokio::test]
async fn a_hung_attempt_is_abandoned_and_retried_with_the_same_request_id() {
    let server = serve(Mock::scripted([Step::Hang, Step::Answer])).await;
    let storage = storage(&[&server.addr], Duration::from_secs(10));
    let started = Instant::now();
    storage.create_mailbox(&ctx(&storage), "Work").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the hang cost the whole deadline");
    let calls = server.mock.calls("create_mailbox");
    assert_eq!(calls.len(), 2);
    assert!(!calls[0].request_id.is_empty());
    assert_eq!(calls[0].request_id, calls[1].request_id);
}

#[tokio::test]
async fn each_call_gets_a_new_id_and_reads_get_none() {
    let server = serve(Mock::default()).await;
    let storage = storage(&[&server.addr], Duration::from_secs(10));
    storage.append(append_request(&storage)).await.unwrap();
    storage.append(append_request(&storage)).await.unwrap();
    storage.select(&ctx(&storage), "INBOX").await.unwrap();
    let appends = server.mock.calls("append");
    let (a, b) = (&appends[0].request_id, &appends[1].request_id);
    assert_ne!(a, b);
    assert_eq!(a[..REQUEST_ID_PREFIX], b[..REQUEST_ID_PREFIX], "one random prefix per Storage");
    let counter = |id: &[u8]| u64::from_be_bytes(id[REQUEST_ID_PREFIX..].try_into().unwrap());
    assert_eq!(counter(b), counter(a) + 1);
    assert!(server.mock.calls("select")[0].request_id.is_empty());
    // Another front-end process draws another prefix.
    let other = self::storage(&[&server.addr], Duration::from_secs(10));
    other.append(append_request(&other)).await.unwrap();
    assert_ne!(server.mock.calls("append")[2].request_id[..REQUEST_ID_PREFIX], a[..REQUEST_ID_PREFIX]);
}

#[tokio::test]
async fn answers_are_not_retried() {
    let server = serve(Mock::scripted([Step::Fail(coded("ALREADYEXISTS", None))])).await;
    let storage = storage(&[&server.addr], Duration::from_secs(10));
    let error = storage.create_mailbox(&ctx(&storage), "Work").await.unwrap_err();
    assert!(matches!(error, FrontendError::AlreadyExists(_)), "{error:?}");
    assert_eq!(server.mock.calls("create_mailbox").len(), 1);
}

#[tokio::test]
async fn not_leader_hint_is_followed_and_cached() {
    let leader = serve(Mock::default()).await;
    let follower = serve(Mock::scripted([Step::Fail(coded("NOT_LEADER", Some(&leader.addr)))])).await;
    let storage = storage(&[&follower.addr], Duration::from_secs(10));
    storage.append(append_request(&storage)).await.unwrap();
    let (at_follower, at_leader) = (follower.mock.calls("append"), leader.mock.calls("append"));
    assert_eq!((at_follower.len(), at_leader.len()), (1, 1));
    assert_eq!(at_follower[0].request_id, at_leader[0].request_id);
    assert_eq!(storage.router().leader().as_deref(), Some(leader.addr.as_str()));
    // The next call goes straight to the leader.
    storage.append(append_request(&storage)).await.unwrap();
    assert_eq!((follower.mock.calls("append").len(), leader.mock.calls("append").len()), (1, 2));
}

#[tokio::test]
async fn a_hung_leader_is_forgotten_and_the_next_endpoint_tried() {
    let dead = serve(Mock::scripted([Step::Hang])).await;
    let alive = serve(Mock::default()).await;
    let storage = storage(&[&dead.addr, &alive.addr], Duration::from_secs(10));
    storage.router().set_leader(&dead.addr);
    let response = storage.append(append_request(&storage)).await.unwrap();
    assert_eq!(response.uids, vec![1]);
    assert_eq!(storage.router().leader(), None, "a timed-out leader is no longer cached");
    let (first, second) = (dead.mock.calls("append"), alive.mock.calls("append"));
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!(first[0].request_id, second[0].request_id);
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    let always_down = (0..1000).map(|_| Step::Fail(Status::unavailable("down")));
    let server = serve(Mock::scripted(always_down)).await;
    let storage = storage(&[&server.addr], Duration::from_millis(700));
    let started = Instant::now();
    let error = storage.append(append_request(&storage)).await.unwrap_err();
    assert!(matches!(error, FrontendError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(server.mock.calls("append").len() > 2, "retried with backoff until the deadline");
}

#[tokio::test]
async fn a_stream_is_retried_only_while_opening() {
    let server = serve(Mock::scripted([Step::Fail(Status::unavailable("down"))])).await;
    server.mock.broken_fetches.store(1, std::sync::atomic::Ordering::SeqCst);
    let storage = storage(&[&server.addr], Duration::from_secs(10));
    let request = proto::FetchRequest { ctx: Some(ctx(&storage)), ..Default::default() };
    let mut stream = storage.fetch(request).await.unwrap();
    assert_eq!(server.mock.calls("fetch").len(), 2, "the opening was retried");
    assert_eq!(stream.next().await.unwrap().unwrap().messages[0].uid, 1);
    assert!(stream.next().await.is_err(), "a broken stream is reported, not reopened");
    assert_eq!(server.mock.calls("fetch").len(), 2);
}

/// A frozen leader (`docker pause`, SIGSTOP) whose followers still name it: openraft lets them
/// campaign only after the leader lease plus an election timeout, so a retry that asks a follower
/// right after the leader's attempt timed out is told `NOT_LEADER` with the frozen node as hint.
/// Following it spent the doubled attempt timeout there, i.e. the rest of a call whose deadline is
/// three attempt timeouts (the defaults: 10 s and 3.3 s), and every write in flight got
/// `NO [UNAVAILABLE]`. The hint is not followed while the node is silent; the follower is asked
/// again until it names the new leader.
#[tokio::test]
async fn a_hint_naming_a_leader_that_just_timed_out_is_not_followed() {
    let frozen = serve(Mock::scripted((0..100).map(|_| Step::Hang))).await;
    let elected = serve(Mock::default()).await;
    let follower = serve(Mock::scripted([
        Step::Fail(coded("NOT_LEADER", Some(&frozen.addr))),
        Step::Fail(coded("NOT_LEADER", Some(&frozen.addr))),
        Step::Fail(coded("NOT_LEADER", Some(&elected.addr))),
    ]))
    .await;
    let storage = storage_with_default_ratio(&[&frozen.addr, &follower.addr]);
    storage.router().set_leader(&frozen.addr);
    let response = storage.append(append_request(&storage)).await.unwrap();
    assert_eq!(response.uids, vec![1]);
    let (at_frozen, at_follower, at_elected) =
        (frozen.mock.calls("append"), follower.mock.calls("append"), elected.mock.calls("append"));
    assert_eq!((at_frozen.len(), at_follower.len(), at_elected.len()), (1, 3, 1));
    let id = &at_frozen[0].request_id;
    assert!(at_follower.iter().chain(&at_elected).all(|c| &c.request_id == id), "one request id");
    assert_eq!(storage.router().leader().as_deref(), Some(elected.addr.as_str()));
}

/// Rotating past a node that answered `NOT_LEADER` without a hint (a candidate) skips the node
/// that just timed out, instead of waiting on it again for a doubled attempt timeout.
#[tokio::test]
async fn rotation_skips_a_node_that_just_timed_out() {
    let frozen = serve(Mock::scripted((0..100).map(|_| Step::Hang))).await;
    let candidate = serve(Mock::scripted([Step::Fail(coded("NOT_LEADER", None))])).await;
    let storage = storage_with_default_ratio(&[&frozen.addr, &candidate.addr]);
    storage.append(append_request(&storage)).await.unwrap();
    assert_eq!((frozen.mock.calls("append").len(), candidate.mock.calls("append").len()), (1, 2));
}

/// A leader that was only slow, and that its followers still hear from, is reached again once
/// its silence (one attempt timeout) is over.
#[tokio::test]
async fn a_slow_leader_is_followed_again_after_its_silence() {
    let slow = serve(Mock::scripted([Step::Hang])).await;
    let follower =
        serve(Mock::scripted((0..100).map(|_| Step::Fail(coded("NOT_LEADER", Some(&slow.addr)))))).await;
    let storage = storage(&[&follower.addr], Duration::from_secs(10));
    storage.router().set_leader(&slow.addr);
    storage.append(append_request(&storage)).await.unwrap();
    assert_eq!(slow.mock.calls("append").len(), 2, "the second attempt went to the slow leader");
    assert!(follower.mock.calls("append").len() >= 2, "the follower was asked again meanwhile");
}
