//! `skiff snapshot save|restore|status`: etcdctl's snapshot commands.
//!
//! - `save FILE` streams one member's snapshot (Maintenance.Snapshot) into
//!   `FILE.part`, checks the SHA-256 the member sends last against the
//!   data, keeps it as the file's trailer (as etcdctl does), then renames
//!   the file to FILE. With stderr on a terminal it shows the progress.
//! - `restore FILE --data-dir DIR` seeds the data dir of a member of a new
//!   cluster (`--initial-cluster-state new`; every member restored from
//!   the same file).
//! - `status FILE` reads the file as `etcdctl snapshot status` does.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};
use skiff_client::{Client, ClientOptions};
use skiff_store::snapshot::{HASH_LEN, RestoreOptions};

use crate::output::{self, DbStatus, OutputFormat, human_bytes};

/// The shortest wait for the next message of a snapshot stream (the
/// member exports the whole snapshot before the first one).
const MIN_MESSAGE_WAIT: Duration = Duration::from_secs(60);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a member's snapshot into a file (exactly one endpoint).
    Save(SaveArgs),
    /// Seed a new member's data dir from a snapshot file.
    Restore(RestoreArgs),
    /// Show a snapshot file's hash, revision, key count and size.
    Status(StatusArgs),
}

#[derive(Clone, Debug, Args)]
pub struct SaveArgs {
    /// Where to write the snapshot.
    pub file: PathBuf,
}

#[derive(Clone, Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// The new member's data dir (absent or empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Accept a file without its SHA-256 trailer (a backend file copied from
    /// a data dir), and do not check the trailer of one that has it.
    #[arg(long)]
    pub skip_hash_check: bool,
}

#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

pub async fn run(
    command: SnapshotCommand,
    endpoints: &[String],
    options: ClientOptions,
    format: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save(args) => save(endpoints, options, &args.file, out).await,
        SnapshotCommand::Restore(args) => restore(args, out).await,
        SnapshotCommand::Status(args) => {
            let file = args.file.clone();
            let status = tokio::task::spawn_blocking(move || skiff_store::snapshot::status(&file))
                .await?
                .with_context(|| format!("read snapshot {}", args.file.display()))?;
            let status = DbStatus {
                hash: status.hash,
                revision: status.revision,
                total_keys: status.total_keys,
                total_size: status.total_size,
            };
            output::write_db_status(out, format, &status)?;
            Ok(())
        }
    }
}

/// `FILE.part`, where `save` writes until the snapshot is complete.
fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

async fn save(
    endpoints: &[String],
    options: ClientOptions,
    path: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if endpoints.len() != 1 {
        bail!("snapshot must be requested to one selected node, not multiple {endpoints:?}");
    }
    let part = part_path(path);
    let result = receive(endpoints, options, &part).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result?;
    std::fs::rename(&part, path)
        .with_context(|| format!("rename {} to {}", part.display(), path.display()))?;
    writeln!(out, "Snapshot saved at {}", path.display())?;
    Ok(())
}

/// Writes the snapshot stream into `part` and checks its hash.
async fn receive(endpoints: &[String], options: ClientOptions, part: &Path) -> anyhow::Result<()> {
    let wait = options.request_timeout.max(MIN_MESSAGE_WAIT);
    let client = Client::connect(endpoints, options).await?;
    let mut stream = client.snapshot().await?;
    let mut file = File::create(part).with_context(|| format!("create {}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(io::stderr().is_terminal());
    // Each blob is written once the next one arrives: the last is the hash.
    let mut held: Option<Vec<u8>> = None;
    let mut received = 0u64;
    loop {
        let message = tokio::time::timeout(wait, stream.message())
            .await
            .map_err(|_| anyhow!("no snapshot data for {wait:?}"))?
            .map_err(|status| anyhow!("snapshot stream failed: {}", status.message()))?;
        let Some(message) = message else {
            break;
        };
        if let Some(blob) = held.replace(message.blob) {
            hasher.update(&blob);
            file.write_all(&blob)?;
            received += blob.len() as u64;
        }
        let pending = held.as_ref().map_or(0, |b| b.len() as u64);
        progress.show(
            received + pending,
            received + pending + message.remaining_bytes,
        );
    }
    progress.done();
    let trailer = held.ok_or_else(|| anyhow!("the snapshot stream was empty"))?;
    let digest = hasher.finalize();
    if trailer.len() != HASH_LEN || trailer != digest.as_slice() {
        bail!(
            "snapshot hash mismatch: the member sent {} for {received} bytes whose sha256 is {}",
            hex(&trailer),
            hex(&digest)
        );
    }
    file.write_all(&trailer)?;
    file.sync_all()
        .with_context(|| format!("sync {}", part.display()))?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A progress line on stderr, redrawn in place; nothing unless enabled.
struct Progress {
    enabled: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            last: None,
        }
    }

    fn show(&mut self, received: u64, total: u64) {
        if !self.enabled || self.last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        eprint!(
            "\rreceived {} of {}   ",
            human_bytes(received),
            human_bytes(total)
        );
    }

    fn done(&self) {
        if self.enabled && self.last.is_some() {
            eprintln!();
        }
    }
}

async fn restore(args: RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let options = RestoreOptions {
        skip_hash_check: args.skip_hash_check,
    };
    let (file, data_dir) = (args.file.clone(), args.data_dir.clone());
    let summary = tokio::task::spawn_blocking(move || {
        skiff_store::snapshot::restore(&file, &data_dir, options)
    })
    .await?
    .with_context(|| {
        format!(
            "restore {} into {}",
            args.file.display(),
            args.data_dir.display()
        )
    })?;
    let compacted = if summary.compact_revision > 0 {
        format!(", compacted at {}", summary.compact_revision)
    } else {
        String::new()
    };
    writeln!(
        out,
        "Restored {} into {}: revision {}{compacted}, {} keys ({} versions), {} leases",
        args.file.display(),
        args.data_dir.display(),
        summary.revision,
        summary.live_keys,
        summary.versions,
        summary.leases
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_file_is_next_to_the_file() {
        assert_eq!(
            part_path(Path::new("/tmp/a.db")),
            Path::new("/tmp/a.db.part")
        );
        assert_eq!(part_path(Path::new("snap")), Path::new("snap.part"));
    }
}
