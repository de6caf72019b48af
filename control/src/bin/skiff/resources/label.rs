//! `skiff label KIND NAME KEY=VALUE... KEY-... [--overwrite]`: changes an
//! object's labels with a merge patch guarded by its resourceVersion, and
//! refuses to change an existing label without `--overwrite`, as kubectl.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Args;
use serde_json::{Map, Value, json};

use super::{CliError, ServerArgs, io_error, meta_str, object_ref, parse_targets};

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// KIND NAME KEY=VALUE... KEY-..., or KIND/NAME KEY=VALUE...
    #[arg(value_name = "ARGS", required = true)]
    pub args: Vec<String>,
    /// Allow changing the value of an existing label.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// One change asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    Set(String, String),
    Remove(String),
}

/// Splits the arguments into the object (`KIND NAME` or `KIND/NAME`) and
/// the label changes.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, Vec<LabelChange>), CliError> {
    let first_change = args
        .iter()
        .position(|a| a.contains('=') || a.ends_with('-'))
        .unwrap_or(args.len());
    let (target, changes) = args.split_at(first_change);
    if changes.is_empty() {
        return Err(CliError::Local(
            "at least one label update is required".to_string(),
        ));
    }
    let mut parsed = Vec::new();
    for c in changes {
        if let Some((k, v)) = c.split_once('=') {
            check_key(k)?;
            let errors = skiff_model::names::is_valid_label_value(v);
            if !errors.is_empty() {
                return Err(CliError::Local(format!(
                    "invalid label value: \"{c}\": {}",
                    errors.join("; ")
                )));
            }
            parsed.push(LabelChange::Set(k.to_string(), v.to_string()));
        } else if let Some(k) = c.strip_suffix('-') {
            check_key(k)?;
            parsed.push(LabelChange::Remove(k.to_string()));
        } else {
            return Err(CliError::Local(format!(
                "all resources must be specified before label changes: {c}"
            )));
        }
    }
    Ok((target.to_vec(), parsed))
}

fn check_key(k: &str) -> Result<(), CliError> {
    let errors = skiff_model::names::is_qualified_name(k);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::Local(format!(
            "invalid label key \"{k}\": {}",
            errors.join("; ")
        )))
    }
}

/// The merge patch of `metadata.labels` for `changes` against `current`,
/// or `None` when nothing changes; refuses to change a label's value
/// without `overwrite`.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    changes: &[LabelChange],
    overwrite: bool,
) -> Result<Option<Map<String, Value>>, CliError> {
    let mut patch = Map::new();
    for c in changes {
        match c {
            LabelChange::Set(k, v) => match current.get(k) {
                Some(old) if old == v => {}
                Some(old) if !overwrite => {
                    return Err(CliError::Local(format!(
                        "'{k}' already has a value ({old}), and --overwrite is false"
                    )));
                }
                _ => {
                    patch.insert(k.clone(), Value::String(v.clone()));
                }
            },
            LabelChange::Remove(k) => {
                if current.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
        }
    }
    Ok((!patch.is_empty()).then_some(patch))
}

pub async fn label(args: LabelArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (target, changes) = split_args(&args.args)?;
    let pairs = parse_targets(&target)?.pairs();
    if pairs.is_empty() {
        return Err(CliError::Local(
            "resource(s) were provided, but no name was specified".to_string(),
        ));
    }
    let client = args.server.client()?;
    let ns = args.server.namespace();
    for (r, name) in pairs {
        let path = r.object_path(ns, &name);
        let obj = client.get(&path).await?;
        let current: BTreeMap<String, String> = obj["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let Some(labels) = label_patch(&current, &changes, args.overwrite)? else {
            writeln!(out, "{} not labeled", object_ref(r, &name)).map_err(io_error)?;
            continue;
        };
        let patch = json!({"metadata": {
            "labels": labels,
            "resourceVersion": meta_str(&obj, "resourceVersion"),
        }});
        client
            .patch(
                &path,
                "application/merge-patch+json",
                serde_json::to_vec(&patch).expect("JSON values serialize"),
            )
            .await?;
        writeln!(out, "{} labeled", object_ref(r, &name)).map_err(io_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_targets_and_changes() {
        let (t, c) = split_args(&strings(&["pod", "web", "app=web", "tier-"])).unwrap();
        assert_eq!(t, ["pod", "web"]);
        assert_eq!(
            c,
            [
                LabelChange::Set("app".into(), "web".into()),
                LabelChange::Remove("tier".into())
            ]
        );
        let (t, _) = split_args(&strings(&["pod/web", "a=1"])).unwrap();
        assert_eq!(t, ["pod/web"]);
        assert!(split_args(&strings(&["pod", "web"])).is_err());
        assert!(split_args(&strings(&["pod", "web", "bad key=1"])).is_err());
        assert!(split_args(&strings(&["pod", "web", "a=1", "web2"])).is_err());
    }

    #[test]
    fn overwrite_rules() {
        let current: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let set = |k: &str, v: &str| LabelChange::Set(k.into(), v.into());
        let e = label_patch(&current, &[set("app", "db")], false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error: 'app' already has a value (web), and --overwrite is false"
        );
        let p = label_patch(&current, &[set("app", "db")], true)
            .unwrap()
            .unwrap();
        assert_eq!(p["app"], "db");
        assert_eq!(
            label_patch(&current, &[set("app", "web")], false).unwrap(),
            None
        );
        let p = label_patch(
            &current,
            &[set("tier", "1"), LabelChange::Remove("app".into())],
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p["tier"], "1");
        assert_eq!(p["app"], Value::Null);
        assert_eq!(
            label_patch(&current, &[LabelChange::Remove("nope".into())], false).unwrap(),
            None
        );
    }
}
