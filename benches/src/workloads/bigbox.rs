//! placeholder
use std::sync::Arc;
use super::{Ctx, Outcome};
/// Runs the workload.
pub async fn run(_ctx: Arc<Ctx>, _a: crate::cli::BigboxArgs) -> Outcome { Outcome { ops: Vec::new(), unsupported: Some("pending".into()) } }
