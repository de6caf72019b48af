//! `skiff delete KIND NAME... | KIND/NAME... | -l SELECTOR | -f FILE`
//! with `--cascade=background|foreground|orphan`; prints kubectl's
//! `pod "web" deleted`.

use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::json;
use skiff_model::ResourceInfo;

use super::client::query;
use super::manifest::{self, Check};
use super::{CliError, ServerArgs, Targets, io_error, meta_str, parse_targets, report};

/// `--cascade`: what happens to the objects the deleted one owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    /// Delete the object now; its dependents are deleted after it.
    Background,
    /// Delete the dependents first, then the object.
    Foreground,
    /// Leave the dependents.
    Orphan,
}

impl Cascade {
    /// The `propagationPolicy` of `DeleteOptions`.
    pub fn policy(self) -> &'static str {
        match self {
            Cascade::Background => "Background",
            Cascade::Foreground => "Foreground",
            Cascade::Orphan => "Orphan",
        }
    }
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// KIND NAME..., or KIND/NAME...
    #[arg(value_name = "KIND")]
    pub targets: Vec<String>,
    /// Delete the objects of these manifests.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<String>,
    /// Also read the subdirectories of the directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects of KIND that this label selector matches.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Delete every object of KIND in the namespace.
    #[arg(long)]
    pub all: bool,
    /// What happens to the objects the deleted ones own.
    #[arg(long, value_enum, default_value_t = Cascade::Background)]
    pub cascade: Cascade,
    /// An object that does not exist is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Seconds a pod's containers get to stop (-1: the pod's own); 0 with
    /// --force deletes the object at once, without waiting for its node.
    #[arg(long, value_name = "SECONDS", default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// With --grace-period=0: delete at once, even if the pod's node is gone.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `pod "web" deleted`, `deployment.apps "web" deleted`.
pub fn deleted_line(r: &ResourceInfo, name: &str) -> String {
    format!("{} \"{name}\" deleted", r.qualified_singular())
}

pub async fn delete(args: DeleteArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let ns = args.server.namespace().to_string();
    let objects: Vec<(&'static ResourceInfo, String, String)> = if !args.files.is_empty() {
        if !args.targets.is_empty() {
            return Err(CliError::Local(
                "cannot specify both resource names and -f".to_string(),
            ));
        }
        manifest::load(&args.files, args.recursive, &args.server, Check::Identity)?
            .into_iter()
            .map(|m| (m.resource, m.namespace, m.name))
            .collect()
    } else {
        let client = args.server.client()?;
        let targets = parse_targets(&args.targets)?;
        match &targets {
            Targets::Kinds { kinds, names } if names.is_empty() => {
                if args.selector.is_none() && !args.all {
                    return Err(CliError::Local(
                        "resource(s) were provided, but no name was specified".to_string(),
                    ));
                }
                let mut found = Vec::new();
                for &r in kinds {
                    let mut params = Vec::new();
                    if let Some(l) = &args.selector {
                        params.push(("labelSelector", l.as_str()));
                    }
                    let path = format!("{}{}", r.collection_path(Some(&ns)), query(&params));
                    let list = client.get(&path).await?;
                    for item in list["items"].as_array().into_iter().flatten() {
                        found.push((r, ns.clone(), meta_str(item, "name").to_string()));
                    }
                }
                if found.is_empty() {
                    let _ = out.flush();
                    eprintln!("No resources found");
                }
                found
            }
            _ => targets
                .pairs()
                .into_iter()
                .map(|(r, n)| (r, ns.clone(), n))
                .collect(),
        }
    };
    if args.grace_period == 0 && !args.force {
        return Err(CliError::Local(
            "--grace-period=0 deletes without waiting for the node; add --force to confirm"
                .to_string(),
        ));
    }
    let client = args.server.client()?;
    let mut options = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": args.cascade.policy(),
    });
    // kubectl: --force alone means a grace period of 0.
    let grace = if args.force && args.grace_period < 0 {
        0
    } else {
        args.grace_period
    };
    if grace >= 0 {
        options["gracePeriodSeconds"] = json!(grace);
    }
    let mut failed = false;
    for (r, ns, name) in objects {
        match client.delete(&r.object_path(&ns, &name), &options).await {
            Ok(_) => writeln!(out, "{}", deleted_line(r, &name)).map_err(io_error)?,
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e @ CliError::Local(_)) => return Err(e),
            Err(e) => {
                report(out, &e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_model::resources::lookup;

    #[test]
    fn lines_and_policies() {
        assert_eq!(
            deleted_line(lookup("po").unwrap(), "web"),
            "pod \"web\" deleted"
        );
        assert_eq!(
            deleted_line(lookup("deploy").unwrap(), "web"),
            "deployment.apps \"web\" deleted"
        );
        assert_eq!(Cascade::Orphan.policy(), "Orphan");
        assert_eq!(Cascade::Foreground.policy(), "Foreground");
        assert_eq!(Cascade::Background.policy(), "Background");
    }
}
