//! String checks behind validation, with Kubernetes' messages: DNS-1123
//! subdomains and labels, qualified names (label keys), label values and
//! port names. Each returns the list of problems, empty when the string is
//! valid.

/// Longest DNS-1123 label (namespace, service names).
pub const DNS1123_LABEL_MAX_LEN: usize = 63;
/// Longest DNS-1123 subdomain (pod, deployment, ... names).
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
/// Longest label value and name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LEN: usize = 63;
/// Longest IANA service name (port names).
pub const PORT_NAME_MAX_LEN: usize = 15;

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn dns1123_label_syntax(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// A lowercase RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63
/// characters.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LEN {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LEN));
    }
    if !dns1123_label_syntax(value) {
        errs.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
             regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .to_string(),
        );
    }
    errs
}

/// A DNS-1035 label (service names): like a DNS-1123 label but starting
/// with a letter: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LEN {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LEN));
    }
    if !dns1123_label_syntax(value) || !value.as_bytes()[0].is_ascii_lowercase() {
        errs.push(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
             with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', \
              or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                .to_string(),
        );
    }
    errs
}

/// An environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok_first = |c: u8| c.is_ascii_alphabetic() || matches!(c, b'-' | b'.' | b'_');
    if !b.is_empty() && ok_first(b[0]) && b.iter().all(|&c| ok_first(c) || c.is_ascii_digit()) {
        Vec::new()
    } else {
        vec![
            "a valid environment variable name must consist of alphabetic characters, digits, '_', \
             '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  \
             or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"
                .to_string(),
        ]
    }
}

/// A lowercase RFC 1123 subdomain: dot-separated labels, at most 253
/// characters.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LEN));
    }
    if !value.split('.').all(dns1123_label_syntax) {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
             regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .to_string(),
        );
    }
    errs
}

fn qualified_name_part_syntax(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_SYNTAX: &str = "name part must consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  \
     or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// A qualified name (label and annotation keys): an optional DNS-1123
/// subdomain prefix and `/`, then a name of at most 63 alphanumerics, `-`,
/// `_` or `.`, starting and ending alphanumeric.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            errs.push(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and \
                 must start and end with an alphanumeric character, with an optional DNS subdomain \
                 prefix and '/' (e.g. 'example.com/MyName')"
                    .to_string(),
            );
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX_LEN {
            errs.push(format!(
                "name part {}",
                max_len_error(QUALIFIED_NAME_MAX_LEN)
            ));
        }
        if !qualified_name_part_syntax(name) {
            errs.push(QUALIFIED_NAME_SYNTAX.to_string());
        }
    }
    errs
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > QUALIFIED_NAME_MAX_LEN {
        errs.push(max_len_error(QUALIFIED_NAME_MAX_LEN));
    }
    if !value.is_empty() && !qualified_name_part_syntax(value) {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
             or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
             'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                .to_string(),
        );
    }
    errs
}

/// An IANA service name (container and service port names): at most 15
/// lowercase alphanumerics or `-`, at least one letter, no `--`, not
/// starting or ending with `-`.
pub fn is_valid_port_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > PORT_NAME_MAX_LEN {
        errs.push(max_len_error(PORT_NAME_MAX_LEN));
    }
    let b = value.as_bytes();
    if !b.iter().all(|&c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !b.iter().any(u8::is_ascii_lowercase) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if value.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if value.starts_with('-') || value.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// A port number: 1 to 65535.
pub fn is_valid_port_num(port: i32) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_label() {
        for ok in ["a", "abc", "a-b", "0", "a1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad).is_empty(), "{bad}");
        }
        assert_eq!(is_dns1123_label(&"a".repeat(64)), vec![max_len_error(63)]);
    }

    #[test]
    fn dns1035_label() {
        assert!(is_dns1035_label("web-1").is_empty());
        assert!(!is_dns1035_label("1web").is_empty());
        assert!(!is_dns1035_label("").is_empty());
        assert!(!is_dns1035_label("Web").is_empty());
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "MY_VAR", "my.env-name", "_x1", "-a"] {
            assert!(is_env_var_name(ok).is_empty(), "{ok}");
        }
        for bad in ["", "1A", "A B", "A=B", "a/b"] {
            assert!(!is_env_var_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn dns1123_subdomain() {
        for ok in ["a", "a.b", "web-1.default", "example.com"] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.b", "a_b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        let long = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        assert!(is_dns1123_subdomain(&long).is_empty());
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "app",
            "App_1",
            "my.name",
            "example.com/app",
            "a/b",
            &"x".repeat(63),
        ] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "/a",
            "a/",
            "a/b/c",
            "Ex.com/a",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(!is_qualified_name(bad).is_empty(), "{bad}");
        }
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "A-b_c.d", &"v".repeat(63)] {
            assert!(is_valid_label_value(ok).is_empty(), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a/b", &"v".repeat(64)] {
            assert!(!is_valid_label_value(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn port_names_and_numbers() {
        for ok in ["http", "web-1", "a", "h2c"] {
            assert!(is_valid_port_name(ok).is_empty(), "{ok}");
        }
        for bad in [
            "",
            "HTTP",
            "123",
            "a--b",
            "-a",
            "a-",
            "sixteen-chars-xx",
            "a_b",
        ] {
            assert!(!is_valid_port_name(bad).is_empty(), "{bad}");
        }
        assert!(is_valid_port_num(1).is_empty());
        assert!(is_valid_port_num(65535).is_empty());
        assert!(!is_valid_port_num(0).is_empty());
        assert!(!is_valid_port_num(65536).is_empty());
    }
}
