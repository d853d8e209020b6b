//! Where the members' admin listeners are.
//!
//! The Raft membership stores each node's *peer* URL only (openraft's `BasicNode`, whose
//! encoding is in every log and snapshot on disk). Admin calls go to a separate listener, so a
//! follower that answers an operator `NOT_LEADER` must name the leader's *admin* URL instead.
//! Every Raft request and reply carries its sender's admin URL; each node keeps the latest one
//! per node id here. A follower knows its leader only from the leader's messages, so whenever
//! it can name a leader it also knows the leader's admin URL. Nothing is stored: a node that
//! moves its admin listener is known under the new URL from its next message.
//!
//! [`AdminHints`] wraps the Admin service on the admin listener and swaps the peer URL in a
//! `NOT_LEADER` answer's `mailraft-leader` for the leader's admin URL (or drops it when unknown,
//! so `mailraft admin` reports "no leader known" instead of calling a listener that refuses it).
//! Doing it at the edge keeps every Admin handler, and the one error mapping, unaware of it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use mailraft_store::{NodeId, Raft};
use tonic::server::NamedService;

use crate::error::LEADER_KEY;

/// Longest admin URL accepted from a peer; anything longer is not a URL a node advertises.
const MAX_URL: usize = 512;

/// This node's admin URL and those learned from its peers.
#[derive(Debug)]
pub struct Directory {
    node_id: NodeId,
    own: String,
    learned: Mutex<HashMap<NodeId, String>>,
}

impl Directory {
    /// A directory of node `node_id`, whose own admin listener is at `own`.
    pub fn new(node_id: NodeId, own: String) -> Self {
        Directory { node_id, own, learned: Mutex::default() }
    }

    /// This node's admin URL.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// Records what node `id` says its admin URL is (ignored when empty or implausible).
    pub fn learn(&self, id: NodeId, admin_addr: &str) {
        if id == self.node_id || admin_addr.is_empty() || admin_addr.len() > MAX_URL {
            return;
        }
        let mut map = self.learned.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&id).map(String::as_str) != Some(admin_addr) {
            map.insert(id, admin_addr.to_owned());
        }
    }

    /// Node `id`'s admin URL, if known.
    pub fn admin_addr(&self, id: NodeId) -> Option<String> {
        if id == self.node_id {
            return Some(self.own.clone());
        }
        self.learned.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
    }
}

/// The Admin service with `NOT_LEADER` hints pointing at admin listeners (see the module docs).
#[derive(Clone)]
pub struct AdminHints<S> {
    inner: S,
    raft: Raft,
    directory: Arc<Directory>,
}

impl<S> AdminHints<S> {
    /// Wraps `inner`, looking peers up in `raft`'s membership and in `directory`.
    pub fn new(inner: S, raft: Raft, directory: Arc<Directory>) -> Self {
        AdminHints { inner, raft, directory }
    }
}

impl<S: NamedService> NamedService for AdminHints<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tower::Service<http::Request<B>> for AdminHints<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.inner.call(request);
        let (raft, directory) = (self.raft.clone(), self.directory.clone());
        Box::pin(async move {
            let mut response = call.await?;
            // A unary error is answered "trailers-only": the status and its metadata are headers.
            rewrite_hint(response.headers_mut(), &raft, &directory);
            Ok(response)
        })
    }
}

/// Replaces a peer-URL leader hint with the admin URL of the node that has that peer URL.
fn rewrite_hint(headers: &mut http::HeaderMap, raft: &Raft, directory: &Directory) {
    let Some(peer) = headers.get(LEADER_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        return;
    };
    let leader = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        m.membership_config.membership().nodes().find(|(_, node)| node.addr == peer).map(|(id, _)| *id)
    };
    let admin = leader.and_then(|id| directory.admin_addr(id)).and_then(|a| http::HeaderValue::from_str(&a).ok());
    match admin {
        Some(value) => {
            headers.insert(LEADER_KEY, value);
        }
        None => {
            headers.remove(LEADER_KEY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_latest_url_of_others_only() {
        let d = Directory::new(1, "https://a:2".into());
        assert_eq!(d.admin_addr(1).as_deref(), Some("https://a:2"));
        assert_eq!(d.admin_addr(2), None);
        d.learn(2, "https://b:2");
        d.learn(2, "");
        assert_eq!(d.admin_addr(2).as_deref(), Some("https://b:2"));
        d.learn(2, "https://b:3");
        assert_eq!(d.admin_addr(2).as_deref(), Some("https://b:3"));
        d.learn(1, "https://evil:1");
        assert_eq!(d.admin_addr(1).as_deref(), Some("https://a:2"));
    }
}
