//! `mailraft admin backup FILE`: writes the stream of `Admin.Backup` to a file, atomically.
//!
//! The file holds every password hash and the session-signing keys, so it is created 0600 from
//! the start (never readable by others, not even while it is written). It is written as a
//! temporary file next to FILE, fsynced, checked (its size against the header, its SHA-256
//! against the one the node sent, and a full read as a restore would do it: every record, the
//! file's own CRC-32C and a feature level this binary can restore, so run the cluster's
//! release), and only then renamed to FILE and the directory fsynced. So FILE is either absent
//! or a complete, verified backup, even if the command is interrupted.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use mailraft_proto as pb;
use sha2::{Digest, Sha256};

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// The header the node sent.
    pub header: pb::BackupHeader,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Writes the backup stream to `path` (see the module docs); refuses to replace an existing file
/// unless `force`.
pub async fn write(mut stream: tonic::Streaming<pb::BackupChunk>, path: &Path, force: bool) -> Result<Written> {
    ensure!(force || !path.exists(), "{} exists; give --force to replace it", path.display());
    let tmp = tmp_path(path)?;
    let result = async {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("create {}", tmp.display()))?;
        let written = receive(&mut stream, &mut file).await?;
        file.sync_all().context("fsync the backup")?;
        drop(file);
        let check = tmp.clone();
        // Whole and readable is what a backup must be; its level may be above what this CLI's
        // binary could restore (a CLI one release behind the cluster), which is no reason to
        // throw it away.
        let info = tokio::task::spawn_blocking(move || mailraft_store::verify_backup_file(&check))
            .await?
            .context("the received backup does not verify")?;
        if info.feature_level > mailraft_model::KNOWN_FEATURE_LEVEL {
            eprintln!(
                "warning: this backup is at feature level {}; only a mailraft binary that knows it can restore it \
                 (this one knows up to {})",
                info.feature_level,
                mailraft_model::KNOWN_FEATURE_LEVEL
            );
        }
        let last = info.meta.last_log_id.map_or(0, |id| id.index);
        ensure!(
            last == written.header.last_log_index,
            "the file ends at log index {last}, the node announced {}",
            written.header.last_log_index
        );
        fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("fsync {}", dir.display()))?;
        Ok(written)
    }
    .await;
    if result.is_err() {
        // Never leave a partial backup behind; the error says what went wrong.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Copies the chunks into `file`, checking order, size and checksum. The writes block, which is
/// fine in this one-command process: nothing else runs on its runtime.
async fn receive(stream: &mut tonic::Streaming<pb::BackupChunk>, file: &mut File) -> Result<Written> {
    let mut header: Option<pb::BackupHeader> = None;
    let mut hash = Sha256::new();
    let mut received = 0u64;
    loop {
        let Some(chunk) = stream.message().await.context("backup stream")? else {
            bail!("the backup stream ended after {received} bytes without its checksum");
        };
        match (&header, chunk.header) {
            (None, Some(h)) => header = Some(h),
            (None, None) => bail!("the backup stream has no header"),
            (Some(_), Some(_)) => bail!("the backup stream has a second header"),
            (Some(_), None) => {}
        }
        let Some(h) = &header else { bail!("the backup stream has no header") };
        received += chunk.data.len() as u64;
        ensure!(received <= h.size, "the backup stream sent more than the announced {} bytes", h.size);
        hash.update(&chunk.data);
        file.write_all(&chunk.data).context("write the backup")?;
        if !chunk.sha256.is_empty() {
            ensure!(received == h.size, "the backup stream ended at {received} of {} bytes", h.size);
            let sha256 = hex(&hash.finalize());
            ensure!(sha256 == hex(&chunk.sha256), "SHA-256 mismatch: received {sha256}, sent {}", hex(&chunk.sha256));
            return Ok(Written { header: h.clone(), sha256 });
        }
    }
}

/// `.<name>.tmp-<pid>` in FILE's directory (the rename must not cross file systems).
fn tmp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(tmp))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
