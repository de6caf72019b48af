//! Serde helpers shared by the object types.
//!
//! Kubernetes accepts `null` wherever a list or a map may be omitted (YAML's
//! `args:` with nothing after it decodes to `null`), so lists and maps go
//! through [`nullable`], which reads `null` as the empty value.

use serde::{Deserialize, Deserializer};

/// Deserializes `null` as `T::default()`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `skip_serializing_if` for `bool` fields that Kubernetes omits when false.
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// `skip_serializing_if` for counters that Kubernetes omits when zero.
pub(crate) fn is_zero(value: &i32) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Holder {
        #[serde(default, deserialize_with = "nullable")]
        items: Vec<String>,
    }

    #[test]
    fn null_absent_and_present() {
        let null: Holder = serde_json::from_str(r#"{"items":null}"#).unwrap();
        assert!(null.items.is_empty());
        let absent: Holder = serde_json::from_str("{}").unwrap();
        assert!(absent.items.is_empty());
        let some: Holder = serde_json::from_str(r#"{"items":["a"]}"#).unwrap();
        assert_eq!(some.items, vec!["a".to_string()]);
        assert!(is_false(&false));
        assert!(!is_false(&true));
        assert!(is_zero(&0));
        assert!(!is_zero(&1));
    }
}
