//! `skiff get` (tables from [`skiff_control::table`], `-o
//! wide|yaml|json|name`, `-l`, `--field-selector`, `-A`, `--show-labels`,
//! `-w`) and `skiff api-resources`.

use std::collections::BTreeMap;
use std::io::Write;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use skiff_control::table;
use skiff_model::ResourceInfo;

use super::client::{WATCH_TIMEOUT_SECONDS, query};
use super::tabwriter::TabWriter;
use super::{CliError, Client, ServerArgs, Targets, io_error, meta_str, parse_targets, report};

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The table with the extra columns.
    Wide,
    Yaml,
    Json,
    /// `kind/name` only.
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// KIND[,KIND...] [NAME...], or KIND/NAME...
    #[arg(value_name = "KIND", required = true)]
    pub targets: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Label selector (e.g. `app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Field selector (e.g. `spec.nodeName=node-1`).
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// List across every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After the list, print every change (`-w`).
    #[arg(long)]
    pub watch: bool,
    /// Add a LABELS column.
    #[arg(long)]
    pub show_labels: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What one kind's part of the output holds.
struct Listed {
    resource: &'static ResourceInfo,
    items: Vec<Value>,
    /// The list's resourceVersion (for `-w`).
    revision: String,
}

/// How a table is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStyle {
    pub wide: bool,
    pub namespace_column: bool,
    pub show_labels: bool,
    /// Names as `kind/name` (when several kinds are shown).
    pub kind_prefix: bool,
}

pub async fn get(args: GetArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let targets = parse_targets(&args.targets)?;
    let client = args.server.client()?;
    let namespace = (!args.all_namespaces).then(|| args.server.namespace().to_string());
    if args.watch {
        return watch(&args, &targets, &client, namespace.as_deref(), out).await;
    }
    let mut listed = Vec::new();
    let mut failed = false;
    let single_object;
    match &targets {
        Targets::Kinds { kinds, names } if names.is_empty() => {
            single_object = false;
            for r in kinds {
                listed.push(list(&client, r, namespace.as_deref(), &args).await?);
            }
        }
        _ => {
            let pairs = targets.pairs();
            single_object = pairs.len() == 1;
            failed |=
                fetch_named(&client, &pairs, args.server.namespace(), &mut listed, out).await?;
        }
    }
    let total: usize = listed.iter().map(|l| l.items.len()).sum();
    let listing = matches!(&targets, Targets::Kinds { names, .. } if names.is_empty());
    match args.output {
        Some(Output::Json) | Some(Output::Yaml) => {
            let items: Vec<Value> = listed.into_iter().flat_map(|l| l.items).collect();
            let doc = if single_object && items.len() == 1 {
                items.into_iter().next().expect("one item")
            } else if items.is_empty() && !listing {
                return if failed {
                    Err(CliError::Reported)
                } else {
                    Ok(())
                };
            } else {
                list_document(items)
            };
            let text = if args.output == Some(Output::Json) {
                to_json(&doc)
            } else {
                to_yaml(&doc)?
            };
            out.write_all(text.as_bytes()).map_err(io_error)?;
        }
        Some(Output::Name) => {
            for l in &listed {
                for item in &l.items {
                    writeln!(
                        out,
                        "{}",
                        super::object_ref(l.resource, meta_str(item, "name"))
                    )
                    .map_err(io_error)?;
                }
            }
        }
        Some(Output::Wide) | None => {
            let style = TableStyle {
                wide: args.output == Some(Output::Wide),
                namespace_column: args.all_namespaces,
                show_labels: args.show_labels,
                kind_prefix: targets.several_kinds(),
            };
            let now = skiff_model::Time::now().unix_seconds();
            let mut first = true;
            for l in listed.iter().filter(|l| !l.items.is_empty()) {
                if !first {
                    writeln!(out).map_err(io_error)?;
                }
                first = false;
                let text = table_text(l.resource, &l.items, style, now);
                out.write_all(text.as_bytes()).map_err(io_error)?;
            }
        }
    }
    if total == 0
        && listing
        && args.output != Some(Output::Json)
        && args.output != Some(Output::Yaml)
    {
        let _ = out.flush();
        eprintln!("{}", no_resources_message(&targets, namespace.as_deref()));
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// kubectl's message for an empty list.
pub fn no_resources_message(targets: &Targets, namespace: Option<&str>) -> String {
    let namespaced = match targets {
        Targets::Kinds { kinds, .. } => kinds.iter().any(|r| r.namespaced),
        Targets::Named(pairs) => pairs.iter().any(|(r, _)| r.namespaced),
    };
    match namespace {
        Some(ns) if namespaced => format!("No resources found in {ns} namespace."),
        _ => "No resources found".to_string(),
    }
}

/// The list of one kind, with the selectors.
async fn list(
    client: &Client,
    r: &'static ResourceInfo,
    namespace: Option<&str>,
    args: &GetArgs,
) -> Result<Listed, CliError> {
    let mut params = Vec::new();
    if let Some(l) = &args.selector {
        params.push(("labelSelector", l.as_str()));
    }
    if let Some(f) = &args.field_selector {
        params.push(("fieldSelector", f.as_str()));
    }
    let path = format!("{}{}", r.collection_path(namespace), query(&params));
    let body = client.get(&path).await?;
    let items = body
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(Listed {
        resource: r,
        items,
        revision: body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    })
}

/// Gets named objects; a missing one is reported and the rest go on.
/// Returns whether any failed.
async fn fetch_named(
    client: &Client,
    pairs: &[(&'static ResourceInfo, String)],
    namespace: &str,
    listed: &mut Vec<Listed>,
    out: &mut dyn Write,
) -> Result<bool, CliError> {
    let mut failed = false;
    for (r, name) in pairs {
        match client.get(&r.object_path(namespace, name)).await {
            Ok(obj) => match listed.last_mut() {
                Some(l) if l.resource == *r => l.items.push(obj),
                _ => listed.push(Listed {
                    resource: r,
                    items: vec![obj],
                    revision: String::new(),
                }),
            },
            Err(e @ CliError::Local(_)) => return Err(e),
            Err(e) => {
                report(out, &e);
                failed = true;
            }
        }
    }
    Ok(failed)
}

/// `{"apiVersion": "v1", "kind": "List", ...}` as kubectl prints several
/// objects.
pub fn list_document(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

/// JSON as kubectl prints it: four-space indents, a final newline.
pub fn to_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    serde::Serialize::serialize(v, &mut ser).expect("JSON values serialize");
    buf.push(b'\n');
    String::from_utf8(buf).expect("JSON is UTF-8")
}

pub fn to_yaml(v: &Value) -> Result<String, CliError> {
    serde_saphyr::to_string(v).map_err(|e| CliError::Local(format!("print YAML: {e}")))
}

/// The header cells of a table.
pub fn header(r: &ResourceInfo, style: TableStyle) -> Vec<String> {
    let mut cells = Vec::new();
    if style.namespace_column && r.namespaced {
        cells.push("NAMESPACE".to_string());
    }
    for c in table::columns(r.kind) {
        if c.priority == 0 || style.wide {
            cells.push(c.name.to_ascii_uppercase());
        }
    }
    if style.show_labels {
        cells.push("LABELS".to_string());
    }
    cells
}

/// The cells of one object.
pub fn row(r: &ResourceInfo, obj: &Value, style: TableStyle, now: i64) -> Vec<String> {
    let mut cells = Vec::new();
    if style.namespace_column && r.namespaced {
        cells.push(meta_str(obj, "namespace").to_string());
    }
    let columns = table::columns(r.kind);
    for (c, cell) in columns.iter().zip(table::row(r.kind, obj, now)) {
        if c.priority == 0 || style.wide {
            let text = cell.to_string();
            if c.format == "name" && style.kind_prefix {
                cells.push(super::object_ref(r, &text));
            } else {
                cells.push(text);
            }
        }
    }
    if style.show_labels {
        cells.push(labels_text(obj));
    }
    cells
}

/// `a=1,b=2` (sorted by key), or `<none>`.
pub fn labels_text(obj: &Value) -> String {
    let labels: BTreeMap<String, String> = obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    if labels.is_empty() {
        "<none>".to_string()
    } else {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A whole table, aligned as kubectl aligns it.
pub fn table_text(r: &ResourceInfo, items: &[Value], style: TableStyle, now: i64) -> String {
    let mut t = TabWriter::new(3);
    t.row(&header(r, style));
    for item in items {
        t.row(&row(r, item, style, now));
    }
    t.finish()
}

/// Column widths that grow as rows arrive: the header and rows printed so
/// far set them, a wider cell widens its column from then on.
#[derive(Debug, Default)]
pub struct StreamTable {
    widths: Vec<usize>,
}

impl StreamTable {
    /// Lines for `rows`, widths updated first from all of them.
    pub fn lines(&mut self, rows: &[Vec<String>]) -> String {
        for r in rows {
            for (i, cell) in r.iter().enumerate() {
                let w = cell.chars().count() + 3;
                match self.widths.get_mut(i) {
                    Some(x) => *x = (*x).max(w),
                    None => self.widths.push(w),
                }
            }
        }
        let mut text = String::new();
        for r in rows {
            for (i, cell) in r.iter().enumerate() {
                text.push_str(cell);
                if i + 1 < r.len() {
                    let pad = self.widths[i].saturating_sub(cell.chars().count());
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push('\n');
        }
        text
    }
}

/// `get -w`: the list, then one row per change until the server ends the
/// stream for good or the command is interrupted.
async fn watch(
    args: &GetArgs,
    targets: &Targets,
    client: &Client,
    namespace: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (r, name) = match targets {
        Targets::Kinds { kinds, names } if kinds.len() == 1 && names.len() <= 1 => {
            (kinds[0], names.first().cloned())
        }
        Targets::Named(pairs) if pairs.len() == 1 => (pairs[0].0, Some(pairs[0].1.clone())),
        _ => {
            return Err(CliError::Local(
                "watch is only supported on individual resources and resource collections"
                    .to_string(),
            ));
        }
    };
    let mut field_selector = args.field_selector.clone().unwrap_or_default();
    if let Some(name) = &name {
        if !field_selector.is_empty() {
            field_selector.push(',');
        }
        field_selector.push_str(&format!(
            "metadata.name={}",
            skiff_model::fields::escape_value(name)
        ));
    }
    let list_args = GetArgs {
        targets: Vec::new(),
        output: args.output,
        selector: args.selector.clone(),
        field_selector: (!field_selector.is_empty()).then(|| field_selector.clone()),
        all_namespaces: args.all_namespaces,
        watch: true,
        show_labels: args.show_labels,
        server: args.server.clone(),
    };
    let listed = list(client, r, namespace, &list_args).await?;
    if let (Some(name), true) = (&name, listed.items.is_empty()) {
        return Err(CliError::Server {
            reason: "NotFound".to_string(),
            message: format!(
                "{} \"{name}\" not found",
                if r.group.is_empty() {
                    r.plural.to_string()
                } else {
                    format!("{}.{}", r.plural, r.group)
                }
            ),
        });
    }
    let style = TableStyle {
        wide: args.output == Some(Output::Wide),
        namespace_column: args.all_namespaces,
        show_labels: args.show_labels,
        kind_prefix: false,
    };
    let mut stream_table = StreamTable::default();
    let mut header_printed = false;
    let mut print = |objs: &[Value], out: &mut dyn Write| -> Result<(), CliError> {
        if objs.is_empty() {
            return Ok(());
        }
        let now = skiff_model::Time::now().unix_seconds();
        let text = match args.output {
            Some(Output::Json) => objs.iter().map(to_json).collect(),
            Some(Output::Yaml) => {
                let mut t = String::new();
                for o in objs {
                    t.push_str("---\n");
                    t.push_str(&to_yaml(o)?);
                }
                t
            }
            Some(Output::Name) => objs
                .iter()
                .map(|o| format!("{}\n", super::object_ref(r, meta_str(o, "name"))))
                .collect(),
            _ => {
                let mut rows = Vec::new();
                if !header_printed {
                    rows.push(header(r, style));
                    header_printed = true;
                }
                rows.extend(objs.iter().map(|o| row(r, o, style, now)));
                stream_table.lines(&rows)
            }
        };
        out.write_all(text.as_bytes()).map_err(io_error)?;
        out.flush().map_err(io_error)
    };
    print(&listed.items, out)?;
    let mut revision = listed.revision;
    loop {
        let timeout = WATCH_TIMEOUT_SECONDS.to_string();
        let mut params = vec![
            ("watch", "1"),
            ("resourceVersion", revision.as_str()),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout.as_str()),
        ];
        if let Some(l) = &args.selector {
            params.push(("labelSelector", l.as_str()));
        }
        if !field_selector.is_empty() {
            params.push(("fieldSelector", field_selector.as_str()));
        }
        let path = format!("{}{}", r.collection_path(namespace), query(&params));
        let mut stream = client.watch(&path).await?;
        while let Some(event) = stream.next().await? {
            let object = event.get("object").cloned().unwrap_or(Value::Null);
            match event.get("type").and_then(Value::as_str) {
                Some("ERROR") => {
                    return Err(super::client::server_error(
                        reqwest::StatusCode::INTERNAL_SERVER_ERROR,
                        &object,
                    ));
                }
                Some("BOOKMARK") => {}
                _ => print(std::slice::from_ref(&object), out)?,
            }
            let rv = meta_str(&object, "resourceVersion");
            if !rv.is_empty() {
                revision = rv.to_string();
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct ApiResourcesArgs {
    /// The API server (skiff-control) URL.
    #[arg(long, value_name = "URL", env = "SKIFF_SERVER", default_value = super::client::DEFAULT_SERVER)]
    pub server: String,
}

/// One row of `api-resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    pub name: String,
    pub short_names: Vec<String>,
    pub api_version: String,
    pub namespaced: bool,
    pub kind: String,
}

/// The resources of one `APIResourceList` (subresources left out).
pub fn api_resources_of(list: &Value) -> Vec<ApiResource> {
    let group_version = list["groupVersion"].as_str().unwrap_or("").to_string();
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let name = r["name"].as_str()?;
            if name.contains('/') {
                return None;
            }
            Some(ApiResource {
                name: name.to_string(),
                short_names: r["shortNames"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                api_version: group_version.clone(),
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                kind: r["kind"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// kubectl's `api-resources` table.
pub fn api_resources_text(resources: &[ApiResource]) -> String {
    let mut t = TabWriter::new(3);
    t.row(&["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for r in resources {
        t.row(&[
            r.name.as_str(),
            &r.short_names.join(","),
            &r.api_version,
            if r.namespaced { "true" } else { "false" },
            &r.kind,
        ]);
    }
    t.finish()
}

pub async fn api_resources(args: ApiResourcesArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = Client::new(&args.server)?;
    let mut group_versions = Vec::new();
    let core = client.get("/api").await?;
    for v in core["versions"].as_array().into_iter().flatten() {
        if let Some(v) = v.as_str() {
            group_versions.push(format!("/api/{v}"));
        }
    }
    let groups = client.get("/apis").await?;
    for g in groups["groups"].as_array().into_iter().flatten() {
        if let Some(gv) = g["preferredVersion"]["groupVersion"].as_str() {
            group_versions.push(format!("/apis/{gv}"));
        }
    }
    let mut rows = Vec::new();
    for path in group_versions {
        let mut found = api_resources_of(&client.get(&path).await?);
        found.sort_by(|a, b| a.name.cmp(&b.name));
        rows.extend(found);
    }
    out.write_all(api_resources_text(&rows).as_bytes())
        .map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_model::resources::lookup;

    const NOW: i64 = 1_700_000_000;

    fn pod(ns: &str, name: &str, secs_ago: i64) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "labels": {"b": "2", "a": "1"},
                            "creationTimestamp": skiff_model::Time::from_unix(NOW - secs_ago).to_string()},
               "spec": {"containers": [{"name": "app", "image": "busybox"}]},
               "status": {"phase": "Pending"}})
    }

    fn style() -> TableStyle {
        TableStyle {
            wide: false,
            namespace_column: false,
            show_labels: false,
            kind_prefix: false,
        }
    }

    #[test]
    fn pod_tables() {
        let pods = lookup("pods").unwrap();
        let items = [pod("default", "web", 5), pod("prod", "database", 300)];
        assert_eq!(
            table_text(pods, &items, style(), NOW),
            "NAME       READY   STATUS    RESTARTS   AGE\n\
             web        0/1     Pending   0          5s\n\
             database   0/1     Pending   0          5m\n"
        );
        let all = TableStyle {
            namespace_column: true,
            show_labels: true,
            ..style()
        };
        assert_eq!(
            table_text(pods, &items[..1], all, NOW),
            "NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE   LABELS\n\
             default     web    0/1     Pending   0          5s    a=1,b=2\n"
        );
        let wide = TableStyle {
            wide: true,
            kind_prefix: true,
            ..style()
        };
        assert_eq!(
            header(pods, wide),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(row(pods, &items[0], wide, NOW)[0], "pod/web");
        // Cluster-scoped kinds get no namespace column.
        assert_eq!(header(lookup("nodes").unwrap(), all)[0], "NAME");
    }

    #[test]
    fn empty_messages() {
        let pods = parse_targets(&["pods".to_string()]).unwrap();
        let nodes = parse_targets(&["nodes".to_string()]).unwrap();
        assert_eq!(
            no_resources_message(&pods, Some("default")),
            "No resources found in default namespace."
        );
        assert_eq!(no_resources_message(&pods, None), "No resources found");
        assert_eq!(
            no_resources_message(&nodes, Some("default")),
            "No resources found"
        );
    }

    #[test]
    fn json_and_lists_print_as_kubectl() {
        assert_eq!(
            to_json(&json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
        let list = list_document(vec![json!({"kind": "Pod"})]);
        assert_eq!(list["kind"], "List");
        assert_eq!(list["metadata"]["resourceVersion"], "");
        let yaml = to_yaml(&list).unwrap();
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn stream_rows_keep_growing_widths() {
        let mut t = StreamTable::default();
        let first = t.lines(&[
            vec!["NAME".into(), "AGE".into()],
            vec!["a".into(), "1s".into()],
        ]);
        assert_eq!(first, "NAME   AGE\na      1s\n");
        let next = t.lines(&[vec!["longer-name".into(), "2s".into()]]);
        assert_eq!(next, "longer-name   2s\n");
        let after = t.lines(&[vec!["b".into(), "3s".into()]]);
        assert_eq!(after, "b             3s\n");
    }

    #[test]
    fn api_resources_table() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"]},
            {"name": "deployments/scale", "namespaced": true, "kind": "Scale"}]});
        let rows = api_resources_of(&list);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            api_resources_text(&rows),
            "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND\n\
             deployments   deploy       apps/v1      true         Deployment\n"
        );
    }
}
