//! The comparison harness (`mailraft-bench compare`, wrapped by `benches/compare`): starts a
//! throwaway Dovecot and `mailraft dev`, creates the same users, loads the same corpus, runs
//! the same workloads against each and prints a side-by-side table.

pub mod mailraft;

/// Runs the comparison.
pub async fn run(_c: &crate::cli::Common, _a: &crate::cli::CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("pending")
}
