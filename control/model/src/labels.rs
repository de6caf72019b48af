//! Label selectors: the string form (`app=web,tier!=db`, `env in (a,b)`,
//! `tier notin (x)`, `key`, `!key`) and the structured [`LabelSelector`]
//! (`matchLabels` and `matchExpressions`) of Deployments and ReplicaSets,
//! both turned into one [`Selector`] that matches label sets.
//!
//! Semantics follow Kubernetes: requirements are ANDed; `!=` and `notin`
//! also match objects that lack the key; an empty selector matches
//! everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::{is_qualified_name, is_valid_label_value};
use crate::serde_util::nullable;

/// The structured selector of Deployments, ReplicaSets and list calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One entry of `matchExpressions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub operator: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// A selector with only `matchLabels`.
    pub fn from_labels(labels: BTreeMap<String, String>) -> Self {
        LabelSelector {
            match_labels: labels,
            match_expressions: Vec::new(),
        }
    }

    /// Whether the selector has neither labels nor expressions (it matches
    /// everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// The validated selector.
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        let mut reqs = Vec::new();
        for (key, value) in &self.match_labels {
            reqs.push(Requirement::new(key, Operator::Equals, [value.as_str()])?);
        }
        for expr in &self.match_expressions {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_string())),
            };
            reqs.push(Requirement::new(
                &expr.key,
                op,
                expr.values.iter().map(String::as_str),
            )?);
        }
        Ok(Selector::from_requirements(reqs))
    }

    /// Whether `labels` satisfy the selector; an invalid selector matches
    /// nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.to_selector().is_ok_and(|s| s.matches(labels))
    }
}

/// The operator of a [`Requirement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
    /// `in`
    In,
    /// `notin`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
}

/// Why a selector is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse requirement: {message} (at position {position} of {input:?})")]
    Syntax {
        input: String,
        position: usize,
        message: String,
    },
    #[error("invalid label key {key:?}: {}", reasons.join("; "))]
    InvalidKey { key: String, reasons: Vec<String> },
    #[error("invalid label value {value:?}: {}", reasons.join("; "))]
    InvalidValue { value: String, reasons: Vec<String> },
    #[error("{message} (key {key:?})")]
    Values { key: String, message: String },
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
}

/// One requirement of a selector: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// A validated requirement: the key is a qualified name, each value a
    /// label value; `=`, `==` and `!=` take exactly one value, `in` and
    /// `notin` at least one, `Exists` and `DoesNotExist` none.
    pub fn new<'a>(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SelectorError> {
        let reasons = is_qualified_name(key);
        if !reasons.is_empty() {
            return Err(SelectorError::InvalidKey {
                key: key.to_string(),
                reasons,
            });
        }
        let values: Vec<&str> = values.into_iter().collect();
        let values_error = |message: &str| SelectorError::Values {
            key: key.to_string(),
            message: message.to_string(),
        };
        match operator {
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(values_error("exactly one value is required"));
            }
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(values_error(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(values_error(
                    "values set must be empty for exists and does not exist",
                ));
            }
            _ => {}
        }
        for value in &values {
            let reasons = is_valid_label_value(value);
            if !reasons.is_empty() {
                return Err(SelectorError::InvalidValue {
                    value: value.to_string(),
                    reasons,
                });
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values: values.into_iter().map(str::to_string).collect(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={first}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={first}", self.key),
            Operator::NotEquals => write!(f, "{}!={first}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A parsed, validated label selector: requirements sorted by key, ANDed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// A selector from requirements (sorted by key, as Kubernetes prints).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }

    /// A selector asking for each of `labels` with `=`.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        LabelSelector::from_labels(labels.clone()).to_selector()
    }

    /// Parses the string form of a selector.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser::new(input).parse()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector has no requirements (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    /// The string form (`app=web,tier in (fe)`), or the error text when the
    /// selector is invalid.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_selector() {
            Ok(s) => write!(f, "{s}"),
            Err(e) => write!(f, "<invalid selector: {e}>"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    End,
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',') || c.is_whitespace()
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    peeked: Option<(usize, Token)>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            pos: 0,
            peeked: None,
        }
    }

    fn error(&self, position: usize, message: impl Into<String>) -> SelectorError {
        SelectorError::Syntax {
            input: self.input.to_string(),
            position,
            message: message.into(),
        }
    }

    /// The next token and where it starts.
    fn lex(&mut self) -> (usize, Token) {
        let rest = &self.input[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let mut chars = trimmed.chars();
        let Some(c) = chars.next() else {
            return (start, Token::End);
        };
        let (len, token) = match c {
            '!' if trimmed.starts_with("!=") => (2, Token::NotEquals),
            '!' => (1, Token::Not),
            '=' if trimmed.starts_with("==") => (2, Token::DoubleEquals),
            '=' => (1, Token::Equals),
            '(' => (1, Token::Open),
            ')' => (1, Token::Close),
            ',' => (1, Token::Comma),
            _ => {
                let len = trimmed.find(is_special).unwrap_or(trimmed.len());
                let word = &trimmed[..len];
                let token = match word {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word.to_string()),
                };
                (len, token)
            }
        };
        self.pos += len;
        (start, token)
    }

    fn next(&mut self) -> (usize, Token) {
        self.peeked.take().unwrap_or_else(|| self.lex())
    }

    fn peek(&mut self) -> &Token {
        if self.peeked.is_none() {
            let t = self.lex();
            self.peeked = Some(t);
        }
        &self.peeked.as_ref().expect("just peeked").1
    }

    fn parse(mut self) -> Result<Selector, SelectorError> {
        let mut reqs = Vec::new();
        if *self.peek() == Token::End {
            return Ok(Selector::everything());
        }
        loop {
            reqs.push(self.requirement()?);
            match self.next() {
                (_, Token::End) => break,
                (_, Token::Comma) => continue,
                (pos, t) => return Err(self.error(pos, format!("found {t:?}, expected ','"))),
            }
        }
        Ok(Selector::from_requirements(reqs))
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            (_, Token::Ident(k)) => Ok(k),
            (pos, t) => Err(self.error(pos, format!("found {t:?}, expected a key"))),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if *self.peek() == Token::Not {
            self.next();
            let key = self.key()?;
            return Requirement::new(&key, Operator::DoesNotExist, []);
        }
        let key = self.key()?;
        let (pos, op) = match self.peek().clone() {
            Token::End | Token::Comma => return Requirement::new(&key, Operator::Exists, []),
            Token::Equals => (self.next().0, Operator::Equals),
            Token::DoubleEquals => (self.next().0, Operator::DoubleEquals),
            Token::NotEquals => (self.next().0, Operator::NotEquals),
            Token::In => (self.next().0, Operator::In),
            Token::NotIn => (self.next().0, Operator::NotIn),
            t => {
                let pos = self.next().0;
                return Err(self.error(
                    pos,
                    format!("found {t:?}, expected one of '=', '==', '!=', 'in', 'notin'"),
                ));
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => match self.peek().clone() {
                Token::Ident(v) => {
                    self.next();
                    vec![v]
                }
                Token::End | Token::Comma => vec![String::new()],
                t => {
                    return Err(self.error(pos, format!("found {t:?}, expected a value")));
                }
            },
        };
        Requirement::new(&key, op, values.iter().map(String::as_str))
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            (_, Token::Open) => {}
            (pos, t) => return Err(self.error(pos, format!("found {t:?}, expected '('"))),
        }
        let mut values = Vec::new();
        if *self.peek() == Token::Close {
            self.next();
            return Ok(values);
        }
        loop {
            match self.next() {
                (_, Token::Ident(v)) => values.push(v),
                (pos, t) => return Err(self.error(pos, format!("found {t:?}, expected a value"))),
            }
            match self.next() {
                (_, Token::Comma) => continue,
                (_, Token::Close) => return Ok(values),
                (pos, t) => {
                    return Err(self.error(pos, format!("found {t:?}, expected ',' or ')'")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn equality_based() {
        let web = labels(&[("app", "web"), ("tier", "fe")]);
        let db = labels(&[("app", "db")]);
        assert!(sel("app=web").matches(&web));
        assert!(sel("app==web").matches(&web));
        assert!(!sel("app=web").matches(&db));
        assert!(sel("app=web,tier=fe").matches(&web));
        assert!(!sel("app=web,tier!=fe").matches(&web));
        assert!(sel("tier!=fe").matches(&db), "!= matches a missing key");
        assert!(sel(" app = web , tier != be ").matches(&web));
        assert!(sel("app=").matches(&labels(&[("app", "")])));
        assert!(!sel("app=").matches(&web));
    }

    #[test]
    fn set_based() {
        let web = labels(&[("app", "web"), ("env", "prod")]);
        assert!(sel("env in (prod,staging)").matches(&web));
        assert!(!sel("env in (dev)").matches(&web));
        assert!(sel("env notin (dev)").matches(&web));
        assert!(!sel("env notin (prod, dev)").matches(&web));
        assert!(
            sel("tier notin (x)").matches(&web),
            "notin matches a missing key"
        );
        assert!(sel("app").matches(&web));
        assert!(!sel("tier").matches(&web));
        assert!(sel("!tier").matches(&web));
        assert!(!sel("!app").matches(&web));
        assert!(sel("app,!tier,env in (prod),app!=db").matches(&web));
        assert!(sel("example.com/role in (a)").matches(&labels(&[("example.com/role", "a")])));
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(sel("").matches(&BTreeMap::new()));
        assert!(sel("   ").is_empty());
        assert!(Selector::everything().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn canonical_string() {
        assert_eq!(
            sel("tier notin (z,x), app=web,!b, env in (b,a),c").to_string(),
            "app=web,!b,c,env in (a,b),tier notin (x,z)"
        );
        assert_eq!(sel("a==b,c!=d").to_string(), "a==b,c!=d");
        let s = sel("a in (x,y),b,!c,d=e,f!=g");
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "=", "a=b=", "a b", "a in b", "a in (b", "a in (b,", "a in (,)", "a,", ",a", "!",
            "!a=b", "a=(b)", "a in", "a!b", "(a)", "a=b c", "in", "a notin",
        ] {
            let err = Selector::parse(bad).expect_err(bad);
            assert!(!err.to_string().is_empty());
        }
        let err = Selector::parse("a in (b").unwrap_err();
        assert!(
            matches!(err, SelectorError::Syntax { position: 7, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn validation_errors() {
        assert!(matches!(
            Selector::parse("-a=b"),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(matches!(
            Selector::parse("a=-b"),
            Err(SelectorError::InvalidValue { .. })
        ));
        assert!(matches!(
            Selector::parse("a in ()"),
            Err(SelectorError::Values { .. })
        ));
        let long = format!("a={}", "v".repeat(64));
        let err = Selector::parse(&long).unwrap_err();
        assert!(
            err.to_string()
                .contains("must be no more than 63 characters"),
            "{err}"
        );
        assert_eq!(
            Selector::parse("a in ()").unwrap_err().to_string(),
            "for 'in', 'notin' operators, values set can't be empty (key \"a\")"
        );
    }

    #[test]
    fn structured_selector() {
        let ls: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "team", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert!(ls.matches(&labels(&[("app", "web"), ("env", "prod"), ("team", "a")])));
        assert!(!ls.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!ls.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("canary", "")
        ])));
        assert!(!ls.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "a"),
            ("tier", "db")
        ])));
        assert_eq!(
            ls.to_string(),
            "app=web,!canary,env in (prod,staging),team,tier notin (db)"
        );
        assert!(LabelSelector::default().matches(&BTreeMap::new()));
        assert!(LabelSelector::default().is_empty());
    }

    #[test]
    fn structured_selector_errors() {
        let bad_op = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Equals".into(),
                values: vec!["b".into()],
            }],
            ..LabelSelector::default()
        };
        assert_eq!(
            bad_op.to_selector(),
            Err(SelectorError::UnknownOperator("Equals".into()))
        );
        assert!(!bad_op.matches(&labels(&[("a", "b")])));
        let exists_with_values = LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Exists".into(),
                values: vec!["b".into()],
            }],
            ..LabelSelector::default()
        };
        assert!(matches!(
            exists_with_values.to_selector(),
            Err(SelectorError::Values { .. })
        ));
        let bad_key = LabelSelector::from_labels(labels(&[("a b", "c")]));
        assert!(matches!(
            bad_key.to_selector(),
            Err(SelectorError::InvalidKey { .. })
        ));
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]", "example\\.com/[a-c]"]
    }

    proptest! {
        /// A parsed selector matches exactly when each requirement does, checked
        /// against a direct model of the operators.
        #[test]
        fn matching_agrees_with_model(
            reqs in prop::collection::vec((key(), 0usize..7, prop::collection::btree_set("[xyz]", 1..3)), 0..4),
            object in prop::collection::btree_map(key(), "[xyz]", 0..4),
        ) {
            let ops = ["=", "==", "!=", " in ", " notin ", "", "!"];
            let text = reqs.iter().map(|(k, op, vals)| {
                let first = vals.iter().next().unwrap();
                match *op {
                    0..=2 => format!("{k}{}{first}", ops[*op]),
                    3 | 4 => format!("{k}{}({})", ops[*op], vals.iter().cloned().collect::<Vec<_>>().join(",")),
                    5 => k.clone(),
                    _ => format!("!{k}"),
                }
            }).collect::<Vec<_>>().join(",");
            let selector = Selector::parse(&text).unwrap();
            let expected = reqs.iter().all(|(k, op, vals)| {
                let v = object.get(k);
                let first = vals.iter().next().unwrap();
                match *op {
                    0 | 1 => v == Some(first),
                    2 => v != Some(first),
                    3 => v.is_some_and(|v| vals.contains(v)),
                    4 => v.is_none_or(|v| !vals.contains(v)),
                    5 => v.is_some(),
                    _ => v.is_none(),
                }
            });
            prop_assert_eq!(selector.matches(&object), expected, "{}", text);
            // The canonical string parses back to the same selector.
            prop_assert_eq!(Selector::parse(&selector.to_string()).unwrap(), selector);
        }
    }
}
