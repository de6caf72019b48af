//! Endpoint strings as users and etcdctl write them: `host:port`,
//! `http://host:port` (a trailing `/` is allowed), `[::1]:2379`.
//!
//! TLS is not supported yet, so `https://` is refused rather than silently
//! spoken in plaintext.

use std::fmt;

use crate::ClientError;

/// One parsed endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint as the user wrote it (trimmed): what error messages and
    /// the CLI show, like etcdctl does.
    name: String,
    /// `http://host:port`, what the gRPC channel dials.
    uri: String,
}

impl Endpoint {
    /// Parses `host:port` or `http://host:port[/]`.
    pub fn parse(s: &str) -> Result<Endpoint, ClientError> {
        let name = s.trim();
        let invalid = |why: &str| ClientError::InvalidEndpoint(format!("{name:?}: {why}"));
        if name.is_empty() {
            return Err(invalid("empty endpoint"));
        }
        let host_port = if let Some(rest) = name.strip_prefix("http://") {
            rest.strip_suffix('/').unwrap_or(rest)
        } else if name.starts_with("https://") {
            return Err(invalid("https is not supported (no TLS yet); use http://"));
        } else if name.contains("://") {
            return Err(invalid("only http:// endpoints are supported"));
        } else {
            name
        };
        if host_port.contains('/') {
            return Err(invalid("an endpoint has no path; expected host:port"));
        }
        if host_port.chars().any(char::is_whitespace) {
            return Err(invalid("contains whitespace"));
        }
        let (host, port) =
            split_host_port(host_port).ok_or_else(|| invalid("expected host:port"))?;
        if host.is_empty() {
            return Err(invalid("missing host; expected host:port"));
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 => {}
            _ => return Err(invalid("port must be a number from 1 to 65535")),
        }
        Ok(Endpoint {
            name: name.to_string(),
            uri: format!("http://{host_port}"),
        })
    }

    /// The endpoint as given (trimmed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `http://host:port` URI that is dialed.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Splits `host:port` or `[v6]:port`; `None` if there is no port.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        // A bare IPv6 address without brackets is ambiguous.
        return None;
    }
    Some((host, port))
}

/// Parses every endpoint; an empty list is an error.
pub fn parse_endpoints(endpoints: &[String]) -> Result<Vec<Endpoint>, ClientError> {
    if endpoints.is_empty() {
        return Err(ClientError::InvalidEndpoint(
            "no endpoints given".to_string(),
        ));
    }
    endpoints.iter().map(|e| Endpoint::parse(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, String) {
        let e = Endpoint::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (e.name().to_string(), e.uri().to_string())
    }

    fn err(s: &str) -> String {
        match Endpoint::parse(s) {
            Err(ClientError::InvalidEndpoint(m)) => m,
            other => panic!("{s:?}: expected InvalidEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn accepts_etcd_spellings() {
        assert_eq!(
            ok("127.0.0.1:2379"),
            ("127.0.0.1:2379".into(), "http://127.0.0.1:2379".into())
        );
        assert_eq!(
            ok("http://127.0.0.1:22379"),
            (
                "http://127.0.0.1:22379".into(),
                "http://127.0.0.1:22379".into()
            )
        );
        assert_eq!(
            ok("http://localhost:2379/"),
            (
                "http://localhost:2379/".into(),
                "http://localhost:2379".into()
            )
        );
        assert_eq!(ok(" [::1]:2379 ").1, "http://[::1]:2379");
        assert_eq!(ok("etcd-0.example:2379").1, "http://etcd-0.example:2379");
    }

    #[test]
    fn refuses_bad_endpoints() {
        assert!(err("").contains("empty"));
        assert!(err("127.0.0.1").contains("host:port"));
        assert!(err("127.0.0.1:").contains("port"));
        assert!(err("127.0.0.1:0").contains("port"));
        assert!(err("127.0.0.1:99999").contains("port"));
        assert!(err("127.0.0.1:abc").contains("port"));
        assert!(err(":2379").contains("missing host"));
        assert!(err("https://127.0.0.1:2379").contains("https"));
        assert!(err("unix:///tmp/sock").contains("http://"));
        assert!(err("http://127.0.0.1:2379/v3").contains("path"));
        assert!(err("::1:2379").contains("host:port"));
        assert!(err("a b:1").contains("whitespace"));
    }

    #[test]
    fn list_must_not_be_empty() {
        assert!(matches!(
            parse_endpoints(&[]),
            Err(ClientError::InvalidEndpoint(_))
        ));
        let eps = parse_endpoints(&["a:1".into(), "http://b:2".into()]).unwrap();
        assert_eq!(eps.len(), 2);
        assert!(parse_endpoints(&["a:1".into(), "b".into()]).is_err());
    }
}
