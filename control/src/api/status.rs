//! The one place where API errors become Kubernetes `Status` objects.
//!
//! Handlers return [`ApiError`]; [`ApiError::to_status`] gives the `Status`
//! (reason, code, message and details as kube-apiserver writes them) and the
//! `IntoResponse` impl sends it as JSON with the status code. Registry
//! errors join with the resource and name they concern in
//! [`ApiError::from_registry`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use skiff_model::ResourceInfo;
use skiff_model::meta::{StatusCause, StatusDetails};
use skiff_model::{Status, resources};

use super::registry::RegistryError;

/// An error of the API, as the client will see it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{} {name:?} not found", qualified(resource))]
    NotFound {
        resource: &'static ResourceInfo,
        name: String,
    },
    /// A namespace that does not exist, named by a request path.
    #[error("namespaces {0:?} not found")]
    NamespaceNotFound(String),
    /// A path that names nothing skiff serves.
    #[error("the server could not find the requested resource")]
    PathNotFound,
    #[error("{} {name:?} already exists", qualified(resource))]
    AlreadyExists {
        resource: &'static ResourceInfo,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
        qualified(resource)
    )]
    Conflict {
        resource: &'static ResourceInfo,
        name: String,
    },
    /// A precondition (uid or resourceVersion in DeleteOptions) that failed.
    #[error(
        "Operation cannot be fulfilled on {} {name:?}: {message}",
        qualified(resource)
    )]
    PreconditionFailed {
        resource: &'static ResourceInfo,
        name: String,
        message: String,
    },
    #[error("{}", Status::invalid(kind, group, name, causes.clone()).message)]
    Invalid {
        kind: &'static str,
        group: &'static str,
        name: String,
        causes: Vec<StatusCause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// A resourceVersion or continue token older than the store keeps.
    #[error("{0}")]
    Expired(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// A read at a revision the store has not reached.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: i64, current: i64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
}

/// `pods`, `deployments.apps`: how kube-apiserver names a resource in
/// messages.
fn qualified(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        r.plural.to_string()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

impl ApiError {
    /// The error a registry call returned, about `name` of `resource`.
    pub fn from_registry(err: RegistryError, resource: &'static ResourceInfo, name: &str) -> Self {
        let name = name.to_string();
        match err {
            RegistryError::NotFound => ApiError::NotFound { resource, name },
            RegistryError::AlreadyExists => ApiError::AlreadyExists { resource, name },
            RegistryError::Conflict => ApiError::Conflict { resource, name },
            RegistryError::Compacted { revision } => ApiError::Expired(format!(
                "too old resource version: the store was compacted at revision {revision}"
            )),
            RegistryError::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            RegistryError::Unavailable(message) => ApiError::Unavailable(message),
            RegistryError::Store(message)
            | RegistryError::Corrupt(message)
            | RegistryError::Invalid(message) => ApiError::Internal(message),
            e @ (RegistryError::Fenced { .. } | RegistryError::Claimed { .. }) => {
                ApiError::Internal(e.to_string())
            }
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::NamespaceNotFound(_) | ApiError::PathNotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::PreconditionFailed { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooLargeResourceVersion { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Kubernetes' reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NamespaceNotFound(_) | ApiError::PathNotFound => {
                "NotFound"
            }
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::PreconditionFailed { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::Expired(_) => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType => "UnsupportedMediaType",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Status {
        if let ApiError::Invalid {
            kind,
            group,
            name,
            causes,
        } = self
        {
            return Status::invalid(kind, group, name, causes.clone());
        }
        let mut status = Status::failure(self.code().as_u16(), self.reason(), self.to_string());
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name }
            | ApiError::PreconditionFailed { resource, name, .. } => Some(StatusDetails {
                name: name.clone(),
                group: resource.group.to_string(),
                kind: resource.plural.to_string(),
                ..StatusDetails::default()
            }),
            ApiError::NamespaceNotFound(name) => Some(StatusDetails {
                name: name.clone(),
                kind: "namespaces".to_string(),
                ..StatusDetails::default()
            }),
            ApiError::TooLargeResourceVersion { .. } => Some(StatusDetails {
                retry_after_seconds: Some(1),
                ..StatusDetails::default()
            }),
            ApiError::Internal(message) => Some(StatusDetails {
                causes: vec![StatusCause {
                    reason: skiff_model::CauseType::Other,
                    message: message.clone(),
                    field: String::new(),
                }],
                ..StatusDetails::default()
            }),
            _ => None,
        };
        status.details = details;
        status
    }
}

/// The 422 for an object of `resource` named `name`.
pub fn invalid(resource: &'static ResourceInfo, name: &str, causes: Vec<StatusCause>) -> ApiError {
    ApiError::Invalid {
        kind: resource.kind,
        group: resource.group,
        name: name.to_string(),
        causes,
    }
}

/// The resource of a namespace, for errors about one.
pub fn namespaces() -> &'static ResourceInfo {
    resources::lookup("namespaces").expect("namespaces are in the resource table")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::warn!(code = code.as_u16(), error = %self, "request failed");
        }
        let too_large = matches!(self, ApiError::TooLarge(_));
        let mut response = super::json_response(code, &self.to_status());
        if too_large {
            // The rest of the body was not read: the connection cannot
            // carry another request.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_model::CauseType;

    fn pods() -> &'static ResourceInfo {
        resources::lookup("pods").unwrap()
    }

    #[test]
    fn messages_are_kubernetes() {
        let deploy = resources::lookup("deployments").unwrap();
        let e = ApiError::Conflict {
            resource: pods(),
            name: "web".into(),
        };
        assert_eq!(
            e.to_string(),
            "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let s = e.to_status();
        assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
        assert_eq!(s.details.unwrap().kind, "pods");
        let e = ApiError::NotFound {
            resource: deploy,
            name: "web".into(),
        };
        assert_eq!(e.to_string(), "deployments.apps \"web\" not found");
        let s = e.to_status();
        assert_eq!((s.code, s.kind.as_str()), (404, "Status"));
        assert_eq!(s.details.unwrap().group, "apps");
        let e = ApiError::AlreadyExists {
            resource: pods(),
            name: "web".into(),
        };
        assert_eq!(e.to_string(), "pods \"web\" already exists");
        assert_eq!(
            ApiError::NamespaceNotFound("x".into()).to_string(),
            "namespaces \"x\" not found"
        );
    }

    #[test]
    fn invalid_names_fields() {
        let cause = StatusCause {
            reason: CauseType::FieldValueRequired,
            message: "Required value".into(),
            field: "spec.containers[0].image".into(),
        };
        let s = invalid(pods(), "web", vec![cause]).to_status();
        assert_eq!(s.code, 422);
        assert_eq!(s.reason, "Invalid");
        assert_eq!(
            s.message,
            "Pod \"web\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(
            s.details.unwrap().causes[0].field,
            "spec.containers[0].image"
        );
    }

    #[test]
    fn registry_errors_map() {
        let e = ApiError::from_registry(RegistryError::Compacted { revision: 7 }, pods(), "w");
        assert_eq!(e.code(), StatusCode::GONE);
        assert_eq!(e.reason(), "Expired");
        let e = ApiError::from_registry(RegistryError::Unavailable("down".into()), pods(), "w");
        assert_eq!(e.to_status().code, 503);
        assert_eq!(e.reason(), "ServiceUnavailable");
    }
}
