//! `skiff apply -f` (server-side apply, one PATCH per document) and
//! `skiff create -f` (one POST per document).
//!
//! Every document is read and checked first ([`manifest::load`]); if any
//! fails, nothing is sent. A server error on one object is printed and the
//! others still go; the exit status is then 1.

use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::manifest::{self, Check, Manifest};
use super::{CliError, Client, ServerArgs, io_error, report};

/// The field manager skiff's applies are recorded under.
pub const FIELD_MANAGER: &str = "skiff";

/// `--dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Nothing is sent that writes: what would happen is worked out here.
    Client,
    /// The server does everything but store the result.
    Server,
    /// The default: really write.
    None,
}

impl DryRun {
    /// kubectl's suffix for the printed outcome.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
            DryRun::None => "",
        }
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest files or directories, or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<String>,
    /// Also read the subdirectories of the directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Only show what would happen: worked out here (client) or by the
    /// server without storing (server).
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, default_value_t = DryRun::None, default_missing_value = "client")]
    pub dry_run: DryRun,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Manifest files or directories, or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<String>,
    /// Also read the subdirectories of the directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Only show what would happen (client: nothing is sent; server: the
    /// server checks everything but does not store).
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, default_value_t = DryRun::None, default_missing_value = "client")]
    pub dry_run: DryRun,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn dry_run_query(dry: DryRun) -> &'static str {
    if dry == DryRun::Server {
        "&dryRun=All"
    } else {
        ""
    }
}

pub async fn apply(args: ApplyArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let manifests = manifest::load(&args.files, args.recursive, &args.server, Check::Full)?;
    let client = args.server.client()?;
    let mut failed = false;
    for m in &manifests {
        match apply_one(&client, m, args.dry_run).await {
            Ok(outcome) => {
                writeln!(out, "{} {outcome}{}", m.object_ref(), args.dry_run.suffix())
                    .map_err(io_error)?;
            }
            Err(e @ CliError::Local(_)) => return Err(e),
            Err(e) => {
                report(
                    out,
                    &e.context(&format!("error when applying \"{}\"", m.source)),
                );
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// Applies one manifest; the outcome: `created`, `configured` or
/// `unchanged`.
async fn apply_one(client: &Client, m: &Manifest, dry: DryRun) -> Result<String, CliError> {
    if dry == DryRun::Client {
        return match client.get(&m.object_path()).await {
            Ok(live) => {
                let applied = skiff_model::apply_with_annotation(Some(&live), &m.value);
                Ok(if applied.changed {
                    "configured"
                } else {
                    "unchanged"
                }
                .to_string())
            }
            Err(e) if e.is_not_found() => Ok("created".to_string()),
            Err(e) => Err(e),
        };
    }
    let path = format!(
        "{}?fieldManager={FIELD_MANAGER}{}",
        m.object_path(),
        dry_run_query(dry)
    );
    let body = serde_json::to_vec(&m.value).expect("JSON values serialize");
    let reply = client
        .patch(&path, "application/apply-patch+yaml", body)
        .await?;
    reply.apply.ok_or_else(|| {
        CliError::Local(format!(
            "the API server at {} did not say what the apply of {} did (no X-Skiff-Apply header); is it skiff-control?",
            client.base(),
            m.object_ref()
        ))
    })
}

pub async fn create(args: CreateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let manifests = manifest::load(&args.files, args.recursive, &args.server, Check::Full)?;
    let client = args.server.client()?;
    let mut failed = false;
    for m in &manifests {
        let result = if args.dry_run == DryRun::Client {
            Ok(())
        } else {
            let path = format!(
                "{}?fieldManager={FIELD_MANAGER}{}",
                m.collection_path(),
                dry_run_query(args.dry_run)
            );
            client
                .post(&path, &strip_server_fields(&m.value))
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => writeln!(out, "{} created{}", m.object_ref(), args.dry_run.suffix())
                .map_err(io_error)?,
            Err(e @ CliError::Local(_)) => return Err(e),
            Err(e) => {
                report(
                    out,
                    &e.context(&format!("error when creating \"{}\"", m.source)),
                );
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// A manifest to create: a `resourceVersion` left in it (from `get -o
/// yaml`) would be refused.
fn strip_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn suffixes_as_kubectl() {
        assert_eq!(DryRun::Client.suffix(), " (dry run)");
        assert_eq!(DryRun::Server.suffix(), " (server dry run)");
        assert_eq!(DryRun::None.suffix(), "");
        assert_eq!(dry_run_query(DryRun::Server), "&dryRun=All");
        assert_eq!(dry_run_query(DryRun::Client), "");
    }

    #[test]
    fn resource_version_is_not_sent_on_create() {
        let v = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        assert_eq!(strip_server_fields(&v), json!({"metadata": {"name": "a"}}));
    }
}
