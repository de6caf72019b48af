//! Commands against the API server (skiff-control), spelled and printed as
//! kubectl's: `apply`, `create`, `get`, `describe`, `delete`, `scale`,
//! `label`, `logs`, `api-resources`.
//!
//! - [`client`]: the HTTP client (bounded times, `Status` errors, watches);
//! - [`manifest`]: reading manifests (YAML and JSON documents from files,
//!   directories or stdin) and checking every one of them before anything
//!   is sent;
//! - [`apply`], [`get`], [`describe`], [`delete`], [`scale`], [`label`],
//!   [`logs`]: the
//!   commands;
//! - [`tabwriter`]: Go's tabwriter, which kubectl aligns its columns with.
//!
//! Errors print as kubectl prints them, one line on stderr:
//! `Error from server (NotFound): pods "nope" not found`, or
//! `error: ...` for what is found wrong before asking the server. The exit
//! status is then 1.

pub mod apply;
pub mod client;
pub mod delete;
pub mod describe;
pub mod get;
pub mod label;
pub mod logs;
pub mod manifest;
pub mod node;
pub mod rollout;
pub mod scale;
pub mod tabwriter;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use skiff_model::ResourceInfo;
use skiff_model::resources::{self, RESOURCES};

pub use client::Client;

/// The namespace used when `-n` is not given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// What went wrong, as the one line kubectl would print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error (`Status`).
    #[error("Error from server{}: {message}", if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    Server { reason: String, message: String },
    /// Found wrong before or without the server's answer.
    #[error("error: {0}")]
    Local(String),
    /// Errors already printed (a command that went on after one).
    #[error("errors were printed above")]
    Reported,
}

impl CliError {
    /// The same error with `context` before the server's message:
    /// `Error from server (AlreadyExists): error when creating "web.yaml": ...`.
    pub fn context(self, context: &str) -> CliError {
        match self {
            CliError::Server { reason, message } => CliError::Server {
                reason,
                message: format!("{context}: {message}"),
            },
            other => other,
        }
    }

    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CliError::Server { reason, .. } if reason == "NotFound")
    }
}

/// The flags every command against the API server takes.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The API server (skiff-control) URL.
    #[arg(long, value_name = "URL", env = "SKIFF_SERVER", default_value = client::DEFAULT_SERVER)]
    pub server: String,
    /// The namespace (default: `default`).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
}

impl ServerArgs {
    /// The namespace to work in.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    pub fn client(&self) -> Result<Client, CliError> {
        Client::new(&self.server)
    }
}

/// The commands of this module.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply manifests (server-side apply): skiff apply -f FILE|DIR|-
    Apply(apply::ApplyArgs),
    /// Create the objects of manifests: skiff create -f FILE|DIR|-
    Create(apply::CreateArgs),
    /// List objects: skiff get KIND[,KIND] [NAME...] [-o wide|yaml|json|name] [-w]
    Get(get::GetArgs),
    /// Describe objects and their events: skiff describe KIND [NAME...]
    Describe(describe::DescribeArgs),
    /// Delete objects: skiff delete KIND NAME... | -f FILE
    Delete(delete::DeleteArgs),
    /// Set the replicas of a deployment, replica set or replication controller.
    Scale(scale::ScaleArgs),
    /// Mark a node unschedulable: skiff cordon NODE
    Cordon(node::CordonArgs),
    /// Mark a node schedulable again: skiff uncordon NODE
    Uncordon(node::CordonArgs),
    /// Cordon a node and delete its pods so that they are recreated elsewhere.
    Drain(node::DrainArgs),
    /// Follow, list and undo the rollouts of a deployment.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Add, change or remove labels: skiff label KIND NAME k=v k-
    Label(label::LabelArgs),
    /// Print a container's output: skiff logs POD [-c CONTAINER] [-f] [--tail N] [--previous]
    Logs(logs::LogsArgs),
    /// The resource types the API server serves.
    ApiResources(get::ApiResourcesArgs),
}

/// Runs a command; its error, if any, is printed on stderr as one line.
pub async fn run(command: Command, out: &mut dyn Write) -> ExitCode {
    let result = match command {
        Command::Apply(args) => apply::apply(args, out).await,
        Command::Create(args) => apply::create(args, out).await,
        Command::Get(args) => get::get(args, out).await,
        Command::Describe(args) => describe::describe(args, out).await,
        Command::Delete(args) => delete::delete(args, out).await,
        Command::Scale(args) => scale::scale(args, out).await,
        Command::Rollout(command) => rollout::rollout(command, out).await,
        Command::Cordon(args) => node::cordon(args, out).await,
        Command::Uncordon(args) => node::uncordon(args, out).await,
        Command::Drain(args) => node::drain(args, out).await,
        Command::Label(args) => label::label(args, out).await,
        Command::Logs(args) => logs::logs(args, out).await,
        Command::ApiResources(args) => get::api_resources(args, out).await,
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Reported) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an error now (after what stdout holds) so that a command can go
/// on with its other objects.
pub fn report(out: &mut dyn Write, e: &CliError) {
    let _ = out.flush();
    if *e != CliError::Reported {
        eprintln!("{e}");
    }
}

/// A write to stdout that failed.
pub fn io_error(e: std::io::Error) -> CliError {
    CliError::Local(format!("write the output: {e}"))
}

/// A resource named on the command line: plural, singular, short name or
/// kind, in any case, optionally with its group (`deployments.apps`).
pub fn resource(name: &str) -> Result<&'static ResourceInfo, CliError> {
    resources::lookup(name).ok_or_else(|| {
        CliError::Local(format!(
            "the server doesn't have a resource type \"{name}\""
        ))
    })
}

/// The kinds `all` stands for, as kubectl's `get all`.
fn category_all() -> Vec<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                "Pod" | "Service" | "ReplicationController" | "ReplicaSet" | "Deployment"
            )
        })
        .collect()
}

/// What the positional arguments of `get`, `describe` or `delete` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// `KIND[,KIND...] [NAME...]`: every object of the kinds, or the named
    /// ones of each kind.
    Kinds {
        kinds: Vec<&'static ResourceInfo>,
        names: Vec<String>,
    },
    /// `KIND/NAME...`.
    Named(Vec<(&'static ResourceInfo, String)>),
}

impl Targets {
    /// The named objects: each name of each kind, or each `KIND/NAME`
    /// (none when only kinds are given).
    pub fn pairs(&self) -> Vec<(&'static ResourceInfo, String)> {
        match self {
            Targets::Kinds { kinds, names } => kinds
                .iter()
                .flat_map(|&r| names.iter().map(move |n| (r, n.clone())))
                .collect(),
            Targets::Named(pairs) => pairs.clone(),
        }
    }

    /// Whether more than one kind is involved (kubectl then prefixes names
    /// with their kind).
    pub fn several_kinds(&self) -> bool {
        match self {
            Targets::Kinds { kinds, .. } => kinds.len() > 1,
            Targets::Named(pairs) => pairs.iter().any(|(r, _)| *r != pairs[0].0),
        }
    }
}

/// Parses `KIND[,KIND] [NAME...]` or `KIND/NAME...` as kubectl does.
pub fn parse_targets(args: &[String]) -> Result<Targets, CliError> {
    let Some(first) = args.first() else {
        return Err(CliError::Local(
            "you must specify the type of resource to get. Use \"skiff api-resources\" for a complete list of supported resources"
                .to_string(),
        ));
    };
    if first.contains('/') {
        let mut pairs = Vec::new();
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                return Err(CliError::Local(format!(
                    "arguments in resource/name form must have a single resource and name; \"{arg}\" has none"
                )));
            };
            if name.is_empty() || name.contains('/') {
                return Err(CliError::Local(format!(
                    "arguments in resource/name form must have a single resource and name: \"{arg}\""
                )));
            }
            pairs.push((resource(kind)?, name.to_string()));
        }
        return Ok(Targets::Named(pairs));
    }
    let mut kinds = Vec::new();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let found = if kind.eq_ignore_ascii_case("all") {
            category_all()
        } else {
            vec![resource(kind)?]
        };
        for r in found {
            if !kinds.contains(&r) {
                kinds.push(r);
            }
        }
    }
    if kinds.is_empty() {
        return Err(CliError::Local(format!("no resource type in \"{first}\"")));
    }
    let names = args[1..].to_vec();
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        return Err(CliError::Local(format!(
            "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiff get resource/<resource_name>' instead of 'skiff get resource resource/<resource_name>'): \"{bad}\""
        )));
    }
    Ok(Targets::Kinds { kinds, names })
}

/// `pod/web`, `deployment.apps/web`: how kubectl names an object in its
/// messages.
pub fn object_ref(r: &ResourceInfo, name: &str) -> String {
    format!("{}/{name}", r.qualified_singular())
}

/// The name and namespace of an object's JSON.
pub fn meta_str<'a>(obj: &'a serde_json::Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

/// kubectl's `get -w`: in `skiff get`, `-w` means `--watch` (elsewhere it
/// is the store commands' `--write-out`). Rewrites the arguments of a `get`
/// so clap sees `--watch`.
pub fn rewrite_get_watch(args: Vec<OsString>) -> Vec<OsString> {
    // Global flags that take a value in the next argument.
    const VALUE_FLAGS: &[&str] = &[
        "--endpoints",
        "-w",
        "--write-out",
        "--dial-timeout",
        "--command-timeout",
    ];
    let mut i = 1;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else {
            return args;
        };
        if VALUE_FLAGS.contains(&arg) {
            i += 2;
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    if args.get(i).and_then(|a| a.to_str()) != Some("get") {
        return args;
    }
    let mut seen_double_dash = false;
    args.into_iter()
        .enumerate()
        .map(|(j, a)| {
            if j <= i || seen_double_dash {
                return a;
            }
            if a == "--" {
                seen_double_dash = true;
                return a;
            }
            if a == "-w" {
                OsString::from("--watch")
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn targets_by_kind_and_name() {
        let t = parse_targets(&strings(&["po"])).unwrap();
        assert_eq!(
            t,
            Targets::Kinds {
                kinds: vec![resources::lookup("pods").unwrap()],
                names: vec![]
            }
        );
        assert!(!t.several_kinds());
        let t = parse_targets(&strings(&["deploy,svc", "web"])).unwrap();
        match &t {
            Targets::Kinds { kinds, names } => {
                let k: Vec<&str> = kinds.iter().map(|r| r.kind).collect();
                assert_eq!(k, ["Deployment", "Service"]);
                assert_eq!(names, &["web"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(t.several_kinds());
        let t = parse_targets(&strings(&["pod/web", "svc/web"])).unwrap();
        match &t {
            Targets::Named(pairs) => {
                assert_eq!(pairs[0].0.kind, "Pod");
                assert_eq!(pairs[1].0.kind, "Service");
                assert_eq!(pairs[1].1, "web");
            }
            other => panic!("{other:?}"),
        }
        for short in ["po", "no", "ns", "rc", "rs", "deploy", "svc", "ep", "ev"] {
            assert!(parse_targets(&strings(&[short])).is_ok(), "{short}");
        }
        let all = parse_targets(&strings(&["all"])).unwrap();
        assert!(all.several_kinds());
    }

    #[test]
    fn bad_targets() {
        assert_eq!(
            parse_targets(&strings(&["widgets"]))
                .unwrap_err()
                .to_string(),
            "error: the server doesn't have a resource type \"widgets\""
        );
        assert!(parse_targets(&[]).is_err());
        assert!(parse_targets(&strings(&["pod/web", "svc"])).is_err());
        assert!(parse_targets(&strings(&["pods", "svc/web"])).is_err());
        assert!(parse_targets(&strings(&["pod/"])).is_err());
    }

    #[test]
    fn errors_print_as_kubectl() {
        let e = CliError::Server {
            reason: "AlreadyExists".into(),
            message: "pods \"web\" already exists".into(),
        };
        assert_eq!(
            e.context("error when creating \"web.yaml\"").to_string(),
            "Error from server (AlreadyExists): error when creating \"web.yaml\": pods \"web\" already exists"
        );
        assert_eq!(CliError::Local("boom".into()).to_string(), "error: boom");
    }

    #[test]
    fn dash_w_is_watch_only_for_get() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            rewrite_get_watch(os(&["skiff", "get", "pods", "-w"])),
            os(&["skiff", "get", "pods", "--watch"])
        );
        assert_eq!(
            rewrite_get_watch(os(&["skiff", "--endpoints", "x", "get", "pods", "-w"])),
            os(&["skiff", "--endpoints", "x", "get", "pods", "--watch"])
        );
        for unchanged in [
            &["skiff", "kv", "get", "k", "-w", "json"][..],
            &["skiff", "-w", "json", "bench"],
            &["skiff", "endpoint", "status", "-w", "table"],
        ] {
            assert_eq!(rewrite_get_watch(os(unchanged)), os(unchanged));
        }
    }
}
