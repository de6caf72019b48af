//! Manifests: YAML (several documents split by `---`) or JSON (one or more
//! objects), from files, directories (`.yaml`, `.yml`, `.json`, `-R` for
//! subdirectories) or stdin (`-`). A `List` (or any `...List` with `items`)
//! stands for its items.
//!
//! Every document is parsed and checked before anything is sent: its kind
//! must be one skiff serves, and it must decode, default and validate as
//! the API server would (skiff-model, through the API server's own
//! `prepare_create`), which names a bad field by its path. The first
//! failure is the command's one error line.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use skiff_control::api::apply as server_apply;
use skiff_control::api::objects::{self, Stamp};
use skiff_model::ResourceInfo;
use skiff_model::resources;

use super::{CliError, ServerArgs};

/// Largest manifest input read, all files together.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;
/// Most files read from directories.
const MAX_FILES: usize = 10_000;
/// The extensions read from a directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// The text of one input: a file, or stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as given (`STDIN` for `-`).
    pub name: String,
    pub text: String,
}

/// One object of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where it came from, for messages.
    pub source: String,
    pub value: Value,
}

/// A document that passed every local check.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: String,
    pub resource: &'static ResourceInfo,
    /// The namespace it goes to (`""` for a cluster-scoped kind).
    pub namespace: String,
    pub name: String,
    /// The manifest as written (the namespace filled in when missing).
    pub value: Value,
}

impl Manifest {
    /// `/api/v1/namespaces/default/pods/web`.
    pub fn object_path(&self) -> String {
        self.resource.object_path(&self.namespace, &self.name)
    }

    /// `/api/v1/namespaces/default/pods`.
    pub fn collection_path(&self) -> String {
        self.resource
            .collection_path(self.resource.namespaced.then_some(self.namespace.as_str()))
    }

    /// `pod/web`.
    pub fn object_ref(&self) -> String {
        super::object_ref(self.resource, &self.name)
    }
}

/// Reads `-f` arguments: files, directories (their manifest files, sorted;
/// with `recursive` also those of subdirectories) or `-` for stdin.
pub fn read_sources(paths: &[String], recursive: bool) -> Result<Vec<Source>, CliError> {
    if paths.is_empty() {
        return Err(CliError::Local("must specify -f".to_string()));
    }
    let mut sources = Vec::new();
    let mut total = 0u64;
    for p in paths {
        if p == "-" {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_INPUT_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| CliError::Local(format!("read stdin: {e}")))?;
            total += text.len() as u64;
            sources.push(Source {
                name: "STDIN".to_string(),
                text,
            });
        } else {
            let path = Path::new(p);
            let meta = fs::metadata(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    CliError::Local(format!("the path \"{p}\" does not exist"))
                }
                _ => CliError::Local(format!("read {p}: {e}")),
            })?;
            let files = if meta.is_dir() {
                let mut files = Vec::new();
                collect_dir(path, recursive, &mut files)?;
                files
            } else {
                vec![path.to_path_buf()]
            };
            for file in files {
                let text = fs::read_to_string(&file)
                    .map_err(|e| CliError::Local(format!("read {}: {e}", file.display())))?;
                total += text.len() as u64;
                sources.push(Source {
                    name: file.display().to_string(),
                    text,
                });
            }
        }
        if total > MAX_INPUT_BYTES {
            return Err(CliError::Local(format!(
                "the manifests are larger than {} MiB",
                MAX_INPUT_BYTES >> 20
            )));
        }
    }
    Ok(sources)
}

fn collect_dir(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let read = |e: std::io::Error| CliError::Local(format!("read {}: {e}", dir.display()));
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                collect_dir(&path, recursive, files)?;
            }
        } else if path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| EXTENSIONS.contains(&x))
        {
            if files.len() >= MAX_FILES {
                return Err(CliError::Local(format!(
                    "more than {MAX_FILES} manifest files"
                )));
            }
            files.push(path);
        }
    }
    Ok(())
}

/// The documents of one source, `List`s expanded. Empty documents are
/// skipped.
pub fn parse(source: &Source) -> Result<Vec<Document>, CliError> {
    let values = if looks_like_json(source) {
        parse_json(source)?
    } else {
        let docs: Vec<Value> = serde_saphyr::from_multiple(&source.text).map_err(|e| {
            let message = e.without_snippet().to_string().replace('\n', " ");
            CliError::Local(format!("error parsing {}: {message}", source.name))
        })?;
        docs
    };
    let mut out = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        if !value.is_object() {
            return Err(CliError::Local(format!(
                "error parsing {}: document {} is not an object",
                source.name,
                i + 1
            )));
        }
        expand(&source.name, value, &mut out)?;
    }
    Ok(out)
}

fn looks_like_json(source: &Source) -> bool {
    source.name.ends_with(".json") || source.text.trim_start().starts_with(['{', '['])
}

fn parse_json(source: &Source) -> Result<Vec<Value>, CliError> {
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(&source.text).into_iter::<Value>() {
        let v = v.map_err(|e| {
            CliError::Local(format!(
                "error parsing {}: {} at line {}, column {}",
                source.name,
                json_message(&e),
                e.line(),
                e.column()
            ))
        })?;
        match v {
            Value::Array(items) => values.extend(items),
            other => values.push(other),
        }
    }
    Ok(values)
}

/// serde_json's message without its own " at line L column C" suffix.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Adds `value` to `out`, or its items when it is a list.
fn expand(source: &str, value: Value, out: &mut Vec<Document>) -> Result<(), CliError> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List")
        && let Some(items) = value.get("items")
    {
        let Some(items) = items.as_array() else {
            return Err(CliError::Local(format!(
                "error parsing {source}: the items of a {kind} are not a list"
            )));
        };
        for item in items {
            if !item.is_object() {
                return Err(CliError::Local(format!(
                    "error parsing {source}: an item of a {kind} is not an object"
                )));
            }
            expand(source, item.clone(), out)?;
        }
        return Ok(());
    }
    out.push(Document {
        source: source.to_string(),
        value,
    });
    Ok(())
}

/// Reads and parses every source.
pub fn read_documents(paths: &[String], recursive: bool) -> Result<Vec<Document>, CliError> {
    let mut docs = Vec::new();
    for source in read_sources(paths, recursive)? {
        docs.extend(parse(&source)?);
    }
    if docs.is_empty() {
        return Err(CliError::Local("no objects passed to apply".to_string()));
    }
    Ok(docs)
}

/// How thoroughly a document is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Kind, name and namespace only (for `delete -f`).
    Identity,
    /// Also decode, default and validate as the API server does.
    Full,
}

/// Checks a document: a known kind, a name, the namespace, and with
/// [`Check::Full`] what the API server checks on a create.
pub fn check(doc: &Document, server: &ServerArgs, how: Check) -> Result<Manifest, CliError> {
    let v = &doc.value;
    let field = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let name = super::meta_str(v, "name").to_string();
    let ns_in_doc = super::meta_str(v, "namespace").to_string();
    let invalid = |message: String| {
        CliError::Local(format!("error validating \"{}\": {message}", doc.source))
    };
    if api_version.is_empty() || kind.is_empty() {
        let missing = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        return Err(invalid(format!("error validating data: {missing} not set")));
    }
    let resource = resources::by_kind(api_version, kind).ok_or_else(|| {
        CliError::Local(format!(
            "resource mapping not found for name: \"{name}\" namespace: \"{ns_in_doc}\" from \"{}\": no matches for kind \"{kind}\" in version \"{api_version}\"",
            doc.source
        ))
    })?;
    if name.is_empty() {
        return Err(invalid(format!(
            "{kind}: metadata.name: Required value: name is required"
        )));
    }
    let namespace = if !resource.namespaced {
        String::new()
    } else if ns_in_doc.is_empty() {
        server.namespace().to_string()
    } else {
        if let Some(flag) = &server.namespace
            && *flag != ns_in_doc
        {
            return Err(CliError::Local(format!(
                "the namespace from the provided object \"{ns_in_doc}\" does not match the namespace \"{flag}\". You must pass '--namespace={ns_in_doc}' to perform this operation."
            )));
        }
        ns_in_doc
    };
    let mut value = v.clone();
    if resource.namespaced
        && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), Value::String(namespace.clone()));
    }
    if how == Check::Full {
        server_apply::check_manifest(resource, &value, &namespace, &name)
            .and_then(|()| objects::prepare_create(resource, &namespace, &value, &Stamp::now()))
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(Manifest {
        source: doc.source.clone(),
        resource,
        namespace,
        name,
        value,
    })
}

/// Reads, parses and checks every document of the `-f` arguments; the
/// first failure is the error, and then nothing may be sent.
pub fn load(
    paths: &[String],
    recursive: bool,
    server: &ServerArgs,
    how: Check,
) -> Result<Vec<Manifest>, CliError> {
    read_documents(paths, recursive)?
        .iter()
        .map(|d| check(d, server, how))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src(name: &str, text: &str) -> Source {
        Source {
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    fn server(ns: Option<&str>) -> ServerArgs {
        ServerArgs {
            server: "http://127.0.0.1:1".into(),
            namespace: ns.map(str::to_string),
        }
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox\n";

    #[test]
    fn yaml_documents() {
        let text = format!(
            "---\n{POD}---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n"
        );
        let docs = parse(&src("all.yaml", &text)).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].value["kind"], "Pod");
        assert_eq!(docs[1].value["spec"]["ports"][0]["port"], 80);
        assert_eq!(docs[1].source, "all.yaml");
    }

    #[test]
    fn json_objects_and_lists() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "PodList", "items": [
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}]}
        ]});
        let docs = parse(&src("l.json", &list.to_string())).unwrap();
        let kinds: Vec<&str> = docs
            .iter()
            .map(|d| d.value["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Namespace", "Pod"]);
        let two = "{\"kind\": \"Namespace\"}\n{\"kind\": \"Node\"}";
        assert_eq!(parse(&src("STDIN", two)).unwrap().len(), 2);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = parse(&src(
            "bad.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [web\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("error: error parsing bad.yaml: "), "{e}");
        assert!(e.contains("line "), "{e}");
        assert!(e.contains("column "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse(&src("bad.json", "{\"kind\": \"Pod\",\n  \"x\": }"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at line 2, column 8"), "{e}");
        let e = parse(&src("s.yaml", "just a string\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 1 is not an object"), "{e}");
    }

    #[test]
    fn checks_kind_namespace_and_fields() {
        let doc = |text: &str| parse(&src("m.yaml", text)).unwrap().remove(0);
        let m = check(&doc(POD), &server(None), Check::Full).unwrap();
        assert_eq!(m.namespace, "default");
        assert_eq!(m.object_path(), "/api/v1/namespaces/default/pods/web");
        assert_eq!(m.object_ref(), "pod/web");
        assert_eq!(m.value["metadata"]["namespace"], "default");
        let m = check(&doc(POD), &server(Some("prod")), Check::Full).unwrap();
        assert_eq!(m.namespace, "prod");

        let e = check(
            &doc("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"),
            &server(None),
            Check::Full,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "error: resource mapping not found for name: \"c\" namespace: \"\" from \"m.yaml\": no matches for kind \"ConfigMap\" in version \"v1\""
        );

        let typo = POD.replace(
            "image: busybox",
            "image: busybox\n    imagePullPolicyy: Always",
        );
        let e = check(&doc(&typo), &server(None), Check::Full)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.containers[0].imagePullPolicyy"), "{e}");
        assert!(e.starts_with("error: error validating \"m.yaml\": "), "{e}");
        // Identity checks do not look at the fields.
        assert!(check(&doc(&typo), &server(None), Check::Identity).is_ok());

        let quantity = POD.replace(
            "image: busybox",
            "image: busybox\n    resources:\n      limits:\n        cpu: lots",
        );
        let e = check(&doc(&quantity), &server(None), Check::Full)
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.containers[0].resources.limits.cpu"), "{e}");

        let other_ns = POD.replace("name: web", "name: web\n  namespace: a");
        let e = check(&doc(&other_ns), &server(Some("b")), Check::Full)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match the namespace \"b\""), "{e}");

        let node = check(
            &doc("apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n"),
            &server(Some("x")),
            Check::Full,
        )
        .unwrap();
        assert_eq!(node.namespace, "");
        assert_eq!(node.object_path(), "/api/v1/nodes/n1");

        let e = check(
            &doc("apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: w-\n"),
            &server(None),
            Check::Full,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("metadata.name: Required value"), "{e}");
    }
}
