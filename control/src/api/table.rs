//! `meta.k8s.io/v1` Table responses (`Accept: application/json;as=Table;
//! g=meta.k8s.io;v=v1`), built from the columns of [`crate::table`].

use serde_json::{Value, json};
use skiff_model::ResourceInfo;

use crate::table::{self, Cell};

fn cell(c: Cell) -> Value {
    match c {
        Cell::Str(s) => Value::String(s),
        Cell::Int(i) => Value::from(i),
    }
}

/// A Table of `objects` of `resource` at `now` (Unix seconds); `metadata`
/// is the list's (resourceVersion, continue).
pub fn table(resource: &ResourceInfo, objects: &[Value], metadata: Value, now: i64) -> Value {
    let columns: Vec<Value> = table::columns(resource.kind)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = table::row(resource.kind, o, now)
                .into_iter()
                .map(cell)
                .collect();
            json!({"cells": cells, "object": o})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    skiff_model::Time::now().unix_seconds()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_model::resources;

    #[test]
    fn pod_table() {
        let pods = resources::lookup("pods").unwrap();
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}]},
                         "status": {"phase": "Pending"}});
        let t = table(
            pods,
            std::slice::from_ref(&pod),
            json!({"resourceVersion": "5"}),
            0,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["cells"][2], "Pending");
        assert_eq!(t["rows"][0]["object"], pod);
        assert_eq!(t["metadata"]["resourceVersion"], "5");
    }
}
