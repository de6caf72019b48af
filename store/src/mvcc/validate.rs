//! Request validation done before proposing, as etcd's v3rpc layer does it
//! (`checkRangeRequest`, `checkPutRequest`, `checkDeleteRequest`,
//! `checkTxnRequest`, `checkIntervals` in `api/v3rpc/key.go`). Pure
//! functions of the request.

use std::collections::HashSet;

use skiff_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use skiff_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

use super::KvError;

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Empty key, or a sort order/target outside the enums.
pub fn validate_range(req: &RangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

/// Empty key, `ignore_value` with a value, `ignore_lease` with a lease.
pub fn validate_put(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// Empty key.
pub fn validate_delete_range(req: &DeleteRangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` then `checkIntervals` on each branch:
/// - more than `max_txn_ops` compares, success ops or failure ops (each
///   counted alone) → [`KvError::TooManyOps`]; a nested txn gets what is
///   left of the budget (`max_txn_ops` minus its parent's largest count);
/// - an empty key in a compare or op → [`KvError::KeyNotProvided`], an op
///   without a request → [`KvError::KeyNotFound`] (etcd's choice);
/// - a key put twice, or put into a range deleted in the same branch,
///   nested txns included → [`KvError::DuplicateKey`]. As in etcd, puts in
///   the success and failure branches of one nested txn do not conflict with
///   each other, two deletes never conflict, and a delete whose `range_end`
///   is `"\0"` conflicts with nothing (etcd's interval check does not treat
///   it as open-ended).
pub fn validate_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), KvError> {
    check_txn(req, max_txn_ops as i64)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn(req: &TxnRequest, max_txn_ops: i64) -> Result<(), KvError> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len()) as i64;
    if ops > max_txn_ops {
        return Err(KvError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::KeyNotProvided);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), KvError> {
    use request_op::Request;
    match &op.request {
        Some(Request::RequestRange(r)) => validate_range(r),
        Some(Request::RequestPut(p)) => validate_put(p),
        Some(Request::RequestDeleteRange(d)) => validate_delete_range(d),
        Some(Request::RequestTxn(t)) => check_txn(t, max_txn_ops),
        None => Err(KvError::KeyNotFound),
    }
}

/// A deleted interval `[start, end)`; `end` empty means the single key.
struct Deleted {
    start: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
    fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            key == self.start.as_slice()
        } else {
            self.start.as_slice() <= key && key < self.end.as_slice()
        }
    }
}

fn intersects(dels: &[Deleted], key: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(key))
}

/// etcd's `checkIntervals`: the keys put and the ranges deleted by `ops`
/// (nested txns included), or [`KvError::DuplicateKey`].
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), KvError> {
    use request_op::Request;
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                start: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&nested.success)?;
        let (puts_else, dels_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || intersects(&dels, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            // then/else are exclusive: a key put in both is fine.
            if (puts.contains(&key) && !puts_then.contains(&key)) || intersects(&dels, &key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || intersects(&dels, &p.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::etcdserverpb::{Compare, request_op::Request};

    fn put(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &[u8], end: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                range_end: end.to_vec(),
                ..Default::default()
            })),
        }
    }

    fn get(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    fn nested(t: TxnRequest) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(t)),
        }
    }

    fn check(t: &TxnRequest) -> Result<(), KvError> {
        validate_txn(t, DEFAULT_MAX_TXN_OPS)
    }

    #[test]
    fn range_put_delete() {
        assert!(matches!(
            validate_range(&RangeRequest::default()),
            Err(KvError::KeyNotProvided)
        ));
        let bad_order = RangeRequest {
            key: b"a".to_vec(),
            sort_order: 3,
            ..Default::default()
        };
        assert!(matches!(
            validate_range(&bad_order),
            Err(KvError::InvalidSortOption)
        ));
        let bad_target = RangeRequest {
            key: b"a".to_vec(),
            sort_target: -1,
            ..Default::default()
        };
        assert!(matches!(
            validate_range(&bad_target),
            Err(KvError::InvalidSortOption)
        ));
        let good = RangeRequest {
            key: b"a".to_vec(),
            sort_order: 2,
            sort_target: 4,
            ..Default::default()
        };
        assert!(validate_range(&good).is_ok());

        assert!(matches!(
            validate_put(&PutRequest::default()),
            Err(KvError::KeyNotProvided)
        ));
        let p = PutRequest {
            key: b"a".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert!(matches!(validate_put(&p), Err(KvError::ValueProvided)));
        let p = PutRequest {
            key: b"a".to_vec(),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert!(matches!(validate_put(&p), Err(KvError::LeaseProvided)));
        assert!(matches!(
            validate_delete_range(&DeleteRangeRequest::default()),
            Err(KvError::KeyNotProvided)
        ));
    }

    #[test]
    fn too_many_ops() {
        let ops = |n: usize| {
            (0..n)
                .map(|i| get(format!("k{i}").as_bytes()))
                .collect::<Vec<_>>()
        };
        assert!(check(&txn(ops(128), ops(128))).is_ok());
        assert!(matches!(
            check(&txn(ops(129), vec![])),
            Err(KvError::TooManyOps)
        ));
        assert!(matches!(
            check(&txn(vec![], ops(129))),
            Err(KvError::TooManyOps)
        ));
        let compares = (0..129)
            .map(|_| Compare {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .collect();
        assert!(matches!(
            check(&TxnRequest {
                compare: compares,
                ..Default::default()
            }),
            Err(KvError::TooManyOps)
        ));
        // A nested txn gets the budget left by its parent's largest branch.
        let mut outer = ops(100);
        outer.push(nested(txn(ops(27), vec![])));
        assert!(check(&txn(outer, vec![])).is_ok());
        let mut outer = ops(100);
        outer.push(nested(txn(ops(28), vec![])));
        assert!(matches!(
            check(&txn(outer, vec![])),
            Err(KvError::TooManyOps)
        ));
    }

    #[test]
    fn empty_keys_and_ops() {
        let t = TxnRequest {
            compare: vec![Compare::default()],
            ..Default::default()
        };
        assert!(matches!(check(&t), Err(KvError::KeyNotProvided)));
        assert!(matches!(
            check(&txn(vec![put(b"")], vec![])),
            Err(KvError::KeyNotProvided)
        ));
        assert!(matches!(
            check(&txn(vec![], vec![RequestOp { request: None }])),
            Err(KvError::KeyNotFound)
        ));
        assert!(matches!(
            check(&txn(vec![nested(txn(vec![get(b"")], vec![]))], vec![])),
            Err(KvError::KeyNotProvided)
        ));
    }

    #[test]
    fn duplicate_keys() {
        assert!(matches!(
            check(&txn(vec![put(b"a"), put(b"a")], vec![])),
            Err(KvError::DuplicateKey)
        ));
        // Branches are checked separately.
        assert!(check(&txn(vec![put(b"a")], vec![put(b"a")])).is_ok());
        // Put into a deleted key or range, in either order.
        assert!(matches!(
            check(&txn(vec![del(b"a", b""), put(b"a")], vec![])),
            Err(KvError::DuplicateKey)
        ));
        assert!(matches!(
            check(&txn(vec![put(b"b"), del(b"a", b"c")], vec![])),
            Err(KvError::DuplicateKey)
        ));
        assert!(check(&txn(vec![put(b"c"), del(b"a", b"c")], vec![])).is_ok());
        // Two deletes never conflict.
        assert!(check(&txn(vec![del(b"a", b"z"), del(b"b", b"")], vec![])).is_ok());
        // etcd quirk: "\0" as range_end is not open-ended here.
        assert!(check(&txn(vec![del(b"a", b"\0"), put(b"b")], vec![])).is_ok());
        // Nested: a put in a nested txn and in the parent.
        let t = txn(
            vec![put(b"a"), nested(txn(vec![put(b"a")], vec![]))],
            vec![],
        );
        assert!(matches!(check(&t), Err(KvError::DuplicateKey)));
        // Nested then/else may put the same key.
        let t = txn(vec![nested(txn(vec![put(b"a")], vec![put(b"a")]))], vec![]);
        assert!(check(&t).is_ok());
        // A nested else put conflicting with an earlier sibling's put.
        let t = txn(
            vec![
                nested(txn(vec![put(b"a")], vec![])),
                nested(txn(vec![], vec![put(b"a")])),
            ],
            vec![],
        );
        assert!(matches!(check(&t), Err(KvError::DuplicateKey)));
        // A parent put into a range deleted by a nested txn.
        let t = txn(
            vec![nested(txn(vec![del(b"a", b"c")], vec![])), put(b"b")],
            vec![],
        );
        assert!(matches!(check(&t), Err(KvError::DuplicateKey)));
        // A nested put into a range the parent deletes.
        let t = txn(
            vec![del(b"a", b"c"), nested(txn(vec![], vec![put(b"b")]))],
            vec![],
        );
        assert!(matches!(check(&t), Err(KvError::DuplicateKey)));
        // Failure branch checked too.
        assert!(matches!(
            check(&txn(vec![], vec![put(b"x"), put(b"x")])),
            Err(KvError::DuplicateKey)
        ));
    }
}
