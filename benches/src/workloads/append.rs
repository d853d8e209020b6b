//! placeholder
use std::sync::Arc;
use super::{Ctx, Outcome};
/// Runs the workload.
pub async fn run(_ctx: Arc<Ctx>, _a: crate::cli::AppendArgs) -> Outcome { Outcome { ops: Vec::new(), unsupported: Some("pending".into()) } }
