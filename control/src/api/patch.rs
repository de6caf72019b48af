//! Patches, as pure functions on JSON: JSON merge patch (RFC 7386,
//! `application/merge-patch+json`), JSON patch (RFC 6902,
//! `application/json-patch+json`, `kubectl patch --type=json`) and
//! Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`,
//! what `kubectl apply` sends for an object that exists).
//!
//! The strategic merge patch is a merge patch in which lists with a merge
//! key merge element by element (`containers` by `name`, container `ports`
//! by `containerPort`, ...), with kubectl's directives: `$patch: delete` and
//! `$patch: replace` in an element or a map, `$setElementOrder/<list>`,
//! `$deleteFromPrimitiveList/<list>` and `$retainKeys`.

use serde_json::{Map, Value};

/// RFC 7386: objects merge key by key, `null` removes, anything else
/// replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in patch_map {
        if v.is_null() {
            result.remove(k);
        } else {
            let merged = merge_patch(result.get(k).unwrap_or(&Value::Null), v);
            result.insert(k.clone(), merged);
        }
    }
    Value::Object(result)
}

/// The tokens of a JSON pointer (RFC 6901): `/a/b~1c/0` is `a`, `b/c`, `0`.
fn pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let i: usize = token
        .parse()
        .map_err(|_| format!("invalid array index {token:?}"))?;
    if i > len || (!allow_end && i == len) {
        return Err(format!("array index {i} out of bounds"));
    }
    Ok(i)
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    tokens.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get_mut(t).ok_or_else(|| format!("no field {t:?}")),
        Value::Array(a) => {
            let len = a.len();
            Ok(&mut a[index(t, len, false)?])
        }
        _ => Err(format!("cannot descend into {t:?}")),
    })
}

fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => return Err(format!("cannot add {last:?} to a scalar")),
    }
    Ok(())
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let (last, parent) = tokens
        .split_last()
        .ok_or_else(|| "cannot remove the whole object".to_string())?;
    match get_mut(doc, parent)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| format!("no field {last:?}")),
        Value::Array(a) => {
            let i = index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(format!("cannot remove {last:?} from a scalar")),
    }
}

/// RFC 6902: applies the operations in order; any failing operation fails
/// the whole patch.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or_else(|| "a JSON patch is a list of operations".to_string())?;
    let mut doc = target.clone();
    for op in ops {
        let field = |f: &str| op.get(f).and_then(Value::as_str);
        let path = pointer(field("path").ok_or("an operation has no path")?)?;
        let value = || op.get("value").cloned().ok_or("an operation has no value");
        match field("op").unwrap_or("") {
            "add" => add(&mut doc, &path, value()?)?,
            "remove" => {
                remove(&mut doc, &path)?;
            }
            "replace" => {
                *get_mut(&mut doc, &path)? = value()?;
            }
            "move" => {
                let from = pointer(field("from").ok_or("move has no from")?)?;
                let v = remove(&mut doc, &from)?;
                add(&mut doc, &path, v)?;
            }
            "copy" => {
                let from = pointer(field("from").ok_or("copy has no from")?)?;
                let v = get_mut(&mut doc, &from)?.clone();
                add(&mut doc, &path, v)?;
            }
            "test" => {
                if *get_mut(&mut doc, &path)? != value()? {
                    return Err(format!(
                        "test failed at {}",
                        field("path").unwrap_or_default()
                    ));
                }
            }
            other => return Err(format!("unknown operation {other:?}")),
        }
    }
    Ok(doc)
}

/// The merge key of the list named `field` under the map at `parent_path`
/// (field names from the root), as Kubernetes' types declare them.
fn merge_key(kind: &str, parent_path: &[String], field: &str) -> Option<&'static str> {
    let parent = parent_path.last().map(String::as_str);
    match field {
        "containers" | "initContainers" | "volumes" | "env" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" if kind == "Service" && parent_path == ["spec"] => Some("port"),
        "ports" if matches!(parent, Some("containers" | "initContainers")) => Some("containerPort"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "addresses" if kind == "Node" => Some("type"),
        _ => None,
    }
}

/// Applies a strategic merge patch to an object of `kind`.
pub fn strategic_merge_patch(kind: &str, target: &Value, patch: &Value) -> Result<Value, String> {
    let mut path = Vec::new();
    smp_value(kind, &mut path, Some(target), patch)
}

fn smp_value(
    kind: &str,
    path: &mut Vec<String>,
    target: Option<&Value>,
    patch: &Value,
) -> Result<Value, String> {
    match patch {
        Value::Object(p) => smp_map(kind, path, target.and_then(Value::as_object), p),
        _ => Ok(patch.clone()),
    }
}

fn smp_map(
    kind: &str,
    path: &mut Vec<String>,
    target: Option<&Map<String, Value>>,
    patch: &Map<String, Value>,
) -> Result<Value, String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            return Ok(Value::Object(m));
        }
        Some("delete") => return Ok(Value::Null),
        Some(other) => return Err(format!("unknown patch type {other:?} in a map")),
        None => {}
    }
    let mut result = target.cloned().unwrap_or_default();
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
            if let Some(Value::Array(items)) = result.get_mut(field) {
                items.retain(|i| !remove.contains(&i));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(format!("unknown directive {k:?}"));
        }
        if v.is_null() {
            result.remove(k);
            continue;
        }
        let merged = match (v, merge_key(kind, path, k)) {
            (Value::Array(items), Some(key)) => {
                path.push(k.clone());
                let r = smp_list(kind, path, result.get(k), items, key);
                path.pop();
                let order = patch
                    .get(&format!("$setElementOrder/{k}"))
                    .and_then(Value::as_array);
                r.map(|list| order_by(list, order, key))?
            }
            _ => {
                path.push(k.clone());
                let r = smp_value(kind, path, result.get(k), v);
                path.pop();
                r?
            }
        };
        if merged.is_null() {
            result.remove(k);
        } else {
            result.insert(k.clone(), merged);
        }
    }
    Ok(Value::Object(result))
}

fn smp_list(
    kind: &str,
    path: &mut Vec<String>,
    target: Option<&Value>,
    patch: &[Value],
    key: &str,
) -> Result<Value, String> {
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let items = patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(Value::Array(items));
    }
    let mut result: Vec<Value> = target
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for item in patch {
        let Some(k) = item.get(key) else {
            return Err(format!(
                "an element of list {} has no merge key {key:?}",
                path.join(".")
            ));
        };
        let pos = result.iter().position(|e| e.get(key) == Some(k));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                result.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let merged = smp_value(kind, path, Some(&result[i]), item)?;
                result[i] = merged;
            }
            (None, false) => {
                let merged = smp_value(kind, path, None, item)?;
                result.push(merged);
            }
        }
    }
    Ok(Value::Array(result))
}

/// Orders a merged list as `$setElementOrder` says; elements it does not
/// name keep their place after the named ones.
fn order_by(list: Value, order: Option<&Vec<Value>>, key: &str) -> Value {
    let (Value::Array(items), Some(order)) = (&list, order) else {
        return list;
    };
    let mut ordered: Vec<Value> = Vec::with_capacity(items.len());
    for o in order {
        if let Some(item) = items
            .iter()
            .find(|i| i.get(key).is_some() && i.get(key) == o.get(key))
        {
            ordered.push(item.clone());
        }
    }
    for item in items {
        if !ordered.iter().any(|o| o.get(key) == item.get(key)) {
            ordered.push(item.clone());
        }
    }
    Value::Array(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "l": [3]});
        assert_eq!(
            merge_patch(&target, &patch),
            json!({"a": "z", "c": {"d": "e"}, "l": [3]})
        );
        assert_eq!(merge_patch(&json!({"a": 1}), &json!([1])), json!([1]));
    }

    #[test]
    fn json_patch_rfc6902() {
        let doc = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"list": [1, 2]}});
        let ops = json!([
            {"op": "add", "path": "/spec/list/1", "value": 9},
            {"op": "add", "path": "/spec/list/-", "value": 3},
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
            {"op": "copy", "from": "/metadata/labels", "path": "/spec/copied"},
            {"op": "move", "from": "/spec/copied", "path": "/spec/moved"},
            {"op": "test", "path": "/spec/list/0", "value": 1},
            {"op": "remove", "path": "/spec/list/0"}
        ]);
        let out = json_patch(&doc, &ops).unwrap();
        assert_eq!(out["spec"]["list"], json!([9, 2, 3]));
        assert_eq!(out["metadata"]["labels"]["a/b"], "2");
        assert_eq!(out["spec"]["moved"], json!({"a/b": "2"}));
        assert!(out["spec"].get("copied").is_none());
        for bad in [
            json!([{"op": "remove", "path": "/nope"}]),
            json!([{"op": "test", "path": "/spec/list/0", "value": 5}]),
            json!([{"op": "replace", "path": "/spec/list/7", "value": 5}]),
            json!([{"op": "frob", "path": "/spec"}]),
            json!({"op": "add"}),
        ] {
            assert!(json_patch(&doc, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}
        ], "nodeName": "n1"}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "a:2"}]
        }});
        let out = strategic_merge_patch("Pod", &pod, &patch).unwrap();
        assert_eq!(out["spec"]["containers"][0]["name"], "b");
        assert_eq!(out["spec"]["containers"][1]["image"], "a:2");
        assert_eq!(
            out["spec"]["containers"][1]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(out["spec"]["nodeName"], "n1");
        let delete = json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}});
        let out = strategic_merge_patch("Pod", &pod, &delete).unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
        // A list without a merge key is replaced; null removes a field.
        let args =
            json!({"spec": {"containers": [{"name": "a", "args": ["x"]}], "nodeName": null}});
        let out = strategic_merge_patch("Pod", &pod, &args).unwrap();
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["x"]));
        assert!(out["spec"].get("nodeName").is_none());
    }

    #[test]
    fn strategic_directives() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
            "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}
        });
        let out = strategic_merge_patch("Deployment", &obj, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let replace = json!({"spec": {"$patch": "replace", "replicas": 2}});
        let out = strategic_merge_patch("Deployment", &obj, &replace).unwrap();
        assert_eq!(out["spec"], json!({"replicas": 2}));
        assert!(strategic_merge_patch("Pod", &obj, &json!({"$bogus": 1})).is_err());
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let p = json!({"spec": {"ports": [{"port": 443}]}});
        let out = strategic_merge_patch("Service", &svc, &p).unwrap();
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
    }
}
