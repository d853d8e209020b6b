//! Helpers shared by the test modules.

use mailraft_model::{Command, KvRead, Outcome, Principal, Request, Table};
use mailraft_store::{Entry, LogId, SnapshotData, StateMachineStore, StateView};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload};

/// Log id in term 1, leader 0.
pub fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

/// A normal entry carrying `command` at `index`.
pub fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request::new(1_700_000_000_000, command)),
    }
}

/// Every key/value of every table, in table then key order.
pub fn dump(view: &StateView) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    view.read(|kv| {
        Table::ALL
            .iter()
            .flat_map(|&t| {
                kv.scan(t, b"", None, usize::MAX)
                    .into_iter()
                    .map(move |(k, v)| (t, k, v))
            })
            .collect()
    })
    .expect("read state")
}

/// Applies entries 1 and 2: tenant `example.test` and account `login` in it; returns the account.
pub async fn tenant_and_account(sm: &mut StateMachineStore, login: &str) -> Principal {
    let replies = sm
        .apply([
            entry(
                1,
                Command::CreateTenant {
                    domain: "example.test".into(),
                },
            ),
            entry(
                2,
                Command::CreateAccount {
                    domain: "example.test".into(),
                    login: login.into(),
                    password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into(),
                },
            ),
        ])
        .await
        .expect("apply tenant and account");
    match &replies[1] {
        Ok(Outcome::AccountCreated { tenant, account }) => Principal {
            tenant: *tenant,
            account: *account,
        },
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Size of the pieces [`receive`] moves, like the gRPC layer's chunks.
pub const CHUNK: usize = 1 << 20;

/// What the gRPC layer does with a snapshot: reads `data` in [`CHUNK`]s into a file `to`
/// provides, leaving out the last `cut` bytes. Returns the received data, ready to install.
pub async fn receive(
    data: &SnapshotData,
    to: &mut StateMachineStore,
    cut: u64,
) -> Box<SnapshotData> {
    let mut received = to
        .begin_receiving_snapshot()
        .await
        .expect("begin receiving");
    let size = data.size().expect("size") - cut;
    let mut offset = 0u64;
    while offset < size {
        let want = CHUNK.min((size - offset) as usize);
        let chunk = data.read_chunk(offset, want).await.expect("read chunk");
        assert!(!chunk.is_empty(), "snapshot ended at {offset} of {size}");
        offset += chunk.len() as u64;
        received.append(chunk).await.expect("append chunk");
    }
    received
}
