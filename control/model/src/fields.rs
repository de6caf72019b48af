//! Field selectors (`metadata.name=web,spec.nodeName!=`): a parser, the
//! fields each kind supports, and a matcher over an object's JSON.
//!
//! As in Kubernetes, requirements are comma-joined and ANDed, operators are
//! `=`, `==` and `!=`, a field that is absent reads as the empty string, and
//! `\`, `,` and `=` inside a value are escaped with a backslash.

use std::fmt;

use serde_json::Value;

/// The operator of a field requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
}

/// One `field<op>value` term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Why a field selector is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    #[error("invalid selector: {0:?}; can't understand {1:?}")]
    Syntax(String, String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// Fields every kind can be selected by.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The fields of `kind`, beyond `metadata.name` and `metadata.namespace`,
/// that a field selector may name.
pub fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.hostname",
            "status.phase",
            "status.podIP",
        ],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicationController" | "ReplicaSet" => &["status.replicas"],
        "Service" => &["spec.type", "spec.clusterIP"],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &[],
    }
}

/// Whether `field` may be used in a field selector on `kind`.
pub fn is_supported_field(kind: &str, field: &str) -> bool {
    COMMON_FIELDS.contains(&field) || kind_fields(kind).contains(&field)
}

/// Splits on `sep` where it is not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Undoes the escaping of a value; `None` for a dangling or unknown escape.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                e @ ('\\' | ',' | '=') => out.push(e),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Escapes `\`, `,` and `=` in a value.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Finds the first unescaped operator of a term: position, length, operator.
fn find_operator(term: &str) -> Option<(usize, usize, FieldOperator)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'!' if b.get(i + 1) == Some(&b'=') => return Some((i, 2, FieldOperator::NotEquals)),
            b'=' if b.get(i + 1) == Some(&b'=') => {
                return Some((i, 2, FieldOperator::DoubleEquals));
            }
            b'=' => return Some((i, 1, FieldOperator::Equals)),
            _ => {}
        }
        i += 1;
    }
    None
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the string form. The empty string matches everything.
    pub fn parse(input: &str) -> Result<Self, FieldSelectorError> {
        let mut requirements = Vec::new();
        if input.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for term in split_unescaped(input, ',') {
            let bad = || FieldSelectorError::Syntax(input.to_string(), term.to_string());
            let (pos, len, operator) = find_operator(term).ok_or_else(bad)?;
            let field = term[..pos].trim();
            if field.is_empty() || field.contains('\\') {
                return Err(bad());
            }
            let value = unescape(&term[pos + len..]).ok_or_else(bad)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Parses and checks that every field is supported for `kind`.
    pub fn parse_for_kind(input: &str, kind: &str) -> Result<Self, FieldSelectorError> {
        let selector = FieldSelector::parse(input)?;
        selector.check_kind(kind)?;
        Ok(selector)
    }

    /// Refuses a field that `kind` cannot be selected by.
    pub fn check_kind(&self, kind: &str) -> Result<(), FieldSelectorError> {
        match self
            .requirements
            .iter()
            .find(|r| !is_supported_field(kind, &r.field))
        {
            Some(r) => Err(FieldSelectorError::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value a selector on exactly `field` with `=`/`==` asks for, if
    /// any (a watch on `spec.nodeName=node-1` can be narrowed with it).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }

    /// Whether the object satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(object, &r.field);
            match r.operator {
                FieldOperator::Equals | FieldOperator::DoubleEquals => actual == r.value,
                FieldOperator::NotEquals => actual != r.value,
            }
        })
    }
}

/// The value of a dotted field of a JSON object as a selector compares it:
/// strings as they are, booleans and numbers printed, absent or `null` as
/// `""`. `source` of an Event reads its `source.component`, as in Kubernetes.
pub fn field_value(object: &Value, field: &str) -> String {
    let field = if field == "source" && object.get("kind").and_then(Value::as_str) == Some("Event")
    {
        "source.component"
    } else {
        field
    };
    let mut current = object;
    for part in field.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::DoubleEquals => "==",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = FieldSelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn pod(name: &str, ns: &str, node: Option<&str>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": ns}, "spec": {}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    fn fs(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn matches_names_namespaces_and_nodes() {
        let p = pod("web", "default", Some("node-1"));
        assert!(fs("metadata.name=web").matches(&p));
        assert!(fs("metadata.name==web").matches(&p));
        assert!(!fs("metadata.name!=web").matches(&p));
        assert!(fs("metadata.namespace=default,spec.nodeName=node-1").matches(&p));
        assert!(!fs("metadata.namespace=default,spec.nodeName=node-2").matches(&p));
        assert!(fs("spec.nodeName!=node-2").matches(&p));
        assert!(fs("").matches(&p));
        // An unscheduled pod has spec.nodeName "".
        let pending = pod("web", "default", None);
        assert!(fs("spec.nodeName=").matches(&pending));
        assert!(!fs("spec.nodeName!=").matches(&pending));
        assert!(fs("spec.nodeName!=").matches(&p));
    }

    #[test]
    fn value_kinds() {
        let node =
            json!({"kind": "Node", "metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert!(fs("spec.unschedulable=true").matches(&node));
        let rs = json!({"kind": "ReplicaSet", "status": {"replicas": 3}});
        assert!(fs("status.replicas=3").matches(&rs));
        let ev = json!({"kind": "Event", "source": {"component": "skiff-scheduler"},
                        "involvedObject": {"name": "web", "uid": "u1"}});
        assert!(
            fs("source=skiff-scheduler,involvedObject.name=web,involvedObject.uid=u1").matches(&ev)
        );
    }

    #[test]
    fn escapes() {
        let p = pod("a,b=c", "default", None);
        let s = fs(r"metadata.name=a\,b\=c");
        assert_eq!(s.requirements()[0].value, "a,b=c");
        assert!(s.matches(&p));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c");
        assert_eq!(escape_value(r"x\y"), r"x\\y");
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "metadata.name",
            "=web",
            "a=b,",
            ",a=b",
            r"a=b\",
            r"a=\x",
            "a!b",
        ] {
            assert!(FieldSelector::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            FieldSelector::parse("metadata.name")
                .unwrap_err()
                .to_string(),
            "invalid selector: \"metadata.name\"; can't understand \"metadata.name\""
        );
    }

    #[test]
    fn supported_fields_per_kind() {
        assert!(FieldSelector::parse_for_kind("spec.nodeName=n", "Pod").is_ok());
        assert!(FieldSelector::parse_for_kind("metadata.name=n", "Deployment").is_ok());
        assert_eq!(
            FieldSelector::parse_for_kind("spec.nodeName=n", "Service"),
            Err(FieldSelectorError::UnsupportedField("spec.nodeName".into()))
        );
        assert_eq!(
            FieldSelector::parse_for_kind("spec.foo=1", "Pod")
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.foo"
        );
        assert!(
            FieldSelector::parse_for_kind(
                "involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=U",
                "Event"
            )
            .is_ok()
        );
    }

    #[test]
    fn required_value() {
        let s = fs("spec.nodeName=node-1,metadata.name!=x");
        assert_eq!(s.required_value("spec.nodeName"), Some("node-1"));
        assert_eq!(s.required_value("metadata.name"), None);
        assert!(FieldSelector::everything().is_empty());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(values in prop::collection::vec(("[a-z.]{1,10}", 0usize..3, "[a-z,=\\\\ !-]{0,6}"), 1..4)) {
            let reqs = values.into_iter().map(|(field, op, value)| FieldRequirement {
                field: field.trim_matches('.').to_string() + "x",
                operator: [FieldOperator::Equals, FieldOperator::DoubleEquals, FieldOperator::NotEquals][op],
                value,
            }).collect();
            let s = FieldSelector { requirements: reqs };
            prop_assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
        }
    }
}
