//! The `apps/v1` kinds, ReplicaSet and Deployment, and the `autoscaling/v1`
//! Scale object served by their `/scale` subresource.

use serde::{Deserialize, Serialize};

use crate::core::{ReplicaCondition, ReplicationControllerStatus};
use crate::labels::LabelSelector;
use crate::meta::{IntOrString, ObjectMeta};
use crate::pod::PodTemplateSpec;
use crate::serde_util::{is_false, is_zero, nullable};
use crate::time::Time;

/// A ReplicaSet: keeps `replicas` pods matching a label selector running.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSet {
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: ReplicaSetSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

/// `ReplicaSet.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
}

/// `ReplicaSet.status`: the same fields as a ReplicationController's.
pub type ReplicaSetStatus = ReplicationControllerStatus;

/// A Deployment: rolls a pod template out through ReplicaSets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: DeploymentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

/// `Deployment.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub paused: bool,
}

/// How a Deployment replaces old pods by new ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStrategy {
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
}

/// Bounds of a rolling update, each an absolute number or a percentage of
/// the desired replicas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdateDeployment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// `Deployment.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub replicas: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub updated_replicas: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub ready_replicas: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub available_replicas: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub unavailable_replicas: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<DeploymentCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
}

impl DeploymentStatus {
    /// The condition of the given type (`Available`, `Progressing`).
    pub fn condition(&self, type_: &str) -> Option<&DeploymentCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// A Deployment condition (`Available`, `Progressing`, `ReplicaFailure`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<ReplicaCondition> for DeploymentCondition {
    fn from(c: ReplicaCondition) -> Self {
        DeploymentCondition {
            type_: c.type_,
            status: c.status,
            last_update_time: c.last_transition_time,
            last_transition_time: c.last_transition_time,
            reason: c.reason,
            message: c.message,
        }
    }
}

/// The `autoscaling/v1` Scale object of the `/scale` subresource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scale {
    #[serde(default, deserialize_with = "nullable")]
    pub api_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: ScaleSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ScaleStatus>,
}

/// `Scale.spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleSpec {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub replicas: i32,
}

/// `Scale.status`: observed replicas and the selector as a string.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleStatus {
    #[serde(default, deserialize_with = "nullable")]
    pub replicas: i32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub selector: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_round_trips() {
        let v = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
                "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                "minReadySeconds": 5, "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600, "paused": true
            },
            "status": {
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                "readyReplicas": 3, "availableReplicas": 3, "unavailableReplicas": 1,
                "collisionCount": 1,
                "conditions": [{"type": "Available", "status": "True",
                                "lastUpdateTime": "2024-05-01T12:00:00Z",
                                "lastTransitionTime": "2024-05-01T12:00:00Z",
                                "reason": "MinimumReplicasAvailable", "message": "ok"}]
            }
        });
        let d: Deployment = serde_json::from_value(v.clone()).unwrap();
        let ru = d
            .spec
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(ru.max_surge, Some(IntOrString::from("25%")));
        assert_eq!(ru.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(
            d.status
                .as_ref()
                .unwrap()
                .condition("Available")
                .unwrap()
                .status,
            "True"
        );
        assert_eq!(serde_json::to_value(&d).unwrap(), v);
    }

    #[test]
    fn replica_set_and_scale() {
        let v = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 1}
        });
        let rs: ReplicaSet = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&rs).unwrap(), v);
        let s = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                       "metadata": {"name": "web", "namespace": "default"},
                       "spec": {"replicas": 5}, "status": {"replicas": 2, "selector": "app=web"}});
        let scale: Scale = serde_json::from_value(s.clone()).unwrap();
        assert_eq!(scale.spec.replicas, 5);
        assert_eq!(serde_json::to_value(&scale).unwrap(), s);
        assert!(serde_json::from_value::<Scale>(json!({"spec": {"replica": 1}})).is_err());
    }

    #[test]
    fn condition_conversion() {
        let c = ReplicaCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            last_transition_time: Some(Time::from_unix(5)),
            reason: None,
            message: None,
        };
        let d = DeploymentCondition::from(c);
        assert_eq!(d.last_update_time, Some(Time::from_unix(5)));
    }
}
