//! Byte layout of everything the MVCC layer stores (see the layout table in
//! the [`mvcc`](super) module docs). Pure functions, no IO.

use std::ops::Bound;

use skiff_proto::mvccpb::KeyValue;

use super::KvError;

/// `Cf::SmMeta` key holding the current revision (big-endian i64).
pub(crate) const META_CURRENT_REVISION: &[u8] = b"mvcc/current_revision";
/// `Cf::SmMeta` key holding the compacted revision (big-endian i64).
pub(crate) const META_COMPACT_REVISION: &[u8] = b"mvcc/compact_revision";

/// Length of the revision suffix of a version key: revision and sub index.
const REV_SUFFIX_LEN: usize = 12;

const RECORD_PUT: u8 = 1;
const RECORD_TOMBSTONE: u8 = 2;
const PUT_HEADER_LEN: usize = 1 + 3 * 8;

const LEASE_RECORD_PREFIX: u8 = b'l';
const LEASE_ATTACH_PREFIX: u8 = b'k';
const LEASE_RECORD_V1: u8 = 1;

/// Memcomparable encoding of a user key: 0x00 becomes 0x00 0xFF and the key
/// ends with 0x00 0x00. Encodings compare like the user keys and no encoding
/// is a prefix of another.
pub(crate) fn encode_user_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + REV_SUFFIX_LEN);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The `Cf::Kv` key of `key`'s version written by the `sub`-th write of
/// `revision`: newer versions sort first.
pub(crate) fn version_key(key: &[u8], revision: i64, sub: u32) -> Vec<u8> {
    let mut out = encode_user_key(key);
    out.extend_from_slice(&(!(revision as u64)).to_be_bytes());
    out.extend_from_slice(&(!sub).to_be_bytes());
    out
}

/// Where the versions of `key` at or below `revision` start: a scan from
/// here finds the newest of them first.
pub(crate) fn version_seek(key: &[u8], revision: i64) -> Vec<u8> {
    version_key(key, revision, u32::MAX)
}

/// Splits a `Cf::Kv` key into the encoded user key (with terminator), the
/// revision and the sub index.
pub(crate) fn split_version_key(raw: &[u8]) -> Result<(&[u8], i64, u32), KvError> {
    if raw.len() < 2 + REV_SUFFIX_LEN {
        return Err(KvError::Corrupt(format!(
            "version key too short: {raw:02x?}"
        )));
    }
    let (prefix, suffix) = raw.split_at(raw.len() - REV_SUFFIX_LEN);
    let mut rev = [0u8; 8];
    rev.copy_from_slice(&suffix[..8]);
    let sub = u32::from_be_bytes([suffix[8], suffix[9], suffix[10], suffix[11]]);
    Ok((prefix, !u64::from_be_bytes(rev) as i64, !sub))
}

/// Decodes an encoded user key (as returned by [`split_version_key`]).
pub(crate) fn decode_user_key(encoded: &[u8]) -> Result<Vec<u8>, KvError> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        let b = encoded[i];
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match encoded.get(i + 1) {
            Some(0xFF) => {
                out.push(0);
                i += 2;
            }
            Some(0) if i + 2 == encoded.len() => return Ok(out),
            _ => break,
        }
    }
    Err(KvError::Corrupt(format!(
        "bad encoded user key: {encoded:02x?}"
    )))
}

/// The `Cf::Kv` bounds covering every version of every user key in the
/// etcd range `[key, range_end)` (empty `range_end`: `key` only; `"\0"`:
/// every key `>= key`). `None` when the range is empty.
pub(crate) fn kv_bounds(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, Bound<Vec<u8>>)> {
    let lower = encode_user_key(key);
    let upper = if range_end.is_empty() {
        let mut successor = key.to_vec();
        successor.push(0);
        Bound::Excluded(encode_user_key(&successor))
    } else if range_end == [0] {
        Bound::Unbounded
    } else if range_end <= key {
        return None;
    } else {
        Bound::Excluded(encode_user_key(range_end))
    };
    Some((lower, upper))
}

/// The exclusive upper `Cf::Kv` bound of every version of `key`.
pub(crate) fn versions_end(key: &[u8]) -> Vec<u8> {
    let mut successor = key.to_vec();
    successor.push(0);
    encode_user_key(&successor)
}

/// One stored version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Put {
        create_revision: i64,
        version: i64,
        lease: i64,
        value: Vec<u8>,
    },
    Tombstone,
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Record::Put {
                create_revision,
                version,
                lease,
                value,
            } => {
                let mut out = Vec::with_capacity(PUT_HEADER_LEN + value.len());
                out.push(RECORD_PUT);
                out.extend_from_slice(&create_revision.to_be_bytes());
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&lease.to_be_bytes());
                out.extend_from_slice(value);
                out
            }
            Record::Tombstone => vec![RECORD_TOMBSTONE],
        }
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Record, KvError> {
        match raw.first() {
            Some(&RECORD_TOMBSTONE) if raw.len() == 1 => Ok(Record::Tombstone),
            Some(&RECORD_PUT) if raw.len() >= PUT_HEADER_LEN => Ok(Record::Put {
                create_revision: be_i64(&raw[1..9]),
                version: be_i64(&raw[9..17]),
                lease: be_i64(&raw[17..25]),
                value: raw[PUT_HEADER_LEN..].to_vec(),
            }),
            _ => Err(KvError::Corrupt(format!(
                "bad version record of {} bytes",
                raw.len()
            ))),
        }
    }

    /// Whether an encoded record is a tombstone, without copying the value.
    pub(crate) fn is_tombstone(raw: &[u8]) -> Result<bool, KvError> {
        match raw.first() {
            Some(&RECORD_TOMBSTONE) => Ok(true),
            Some(&RECORD_PUT) => Ok(false),
            _ => Err(KvError::Corrupt(format!(
                "bad version record of {} bytes",
                raw.len()
            ))),
        }
    }

    /// The key-value pair this record describes, if it is a put.
    pub(crate) fn into_key_value(self, key: Vec<u8>, mod_revision: i64) -> Option<KeyValue> {
        match self {
            Record::Put {
                create_revision,
                version,
                lease,
                value,
            } => Some(KeyValue {
                key,
                create_revision,
                mod_revision,
                version,
                value,
                lease,
            }),
            Record::Tombstone => None,
        }
    }
}

/// The `Cf::Rev` key of the `sub`-th write of `revision`.
pub(crate) fn rev_key(revision: i64, sub: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&(revision as u64).to_be_bytes());
    out.extend_from_slice(&sub.to_be_bytes());
    out
}

/// The first `Cf::Rev` key of `revision`.
pub(crate) fn rev_key_start(revision: i64) -> Vec<u8> {
    (revision.max(0) as u64).to_be_bytes().to_vec()
}

pub(crate) fn split_rev_key(raw: &[u8]) -> Result<(i64, u32), KvError> {
    if raw.len() != 12 {
        return Err(KvError::Corrupt(format!("bad revision key: {raw:02x?}")));
    }
    Ok((
        be_i64(&raw[..8]),
        u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]),
    ))
}

/// The `Cf::Lease` key of lease `id`'s record.
pub(crate) fn lease_key(id: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(LEASE_RECORD_PREFIX);
    out.extend_from_slice(&(id as u64).to_be_bytes());
    out
}

/// The `Cf::Lease` range holding every lease record.
pub(crate) fn lease_records_range() -> (Vec<u8>, Vec<u8>) {
    (vec![LEASE_RECORD_PREFIX], vec![LEASE_RECORD_PREFIX + 1])
}

pub(crate) fn split_lease_key(raw: &[u8]) -> Result<i64, KvError> {
    if raw.len() != 9 || raw[0] != LEASE_RECORD_PREFIX {
        return Err(KvError::Corrupt(format!("bad lease key: {raw:02x?}")));
    }
    Ok(be_i64(&raw[1..]))
}

/// The `Cf::Lease` marker saying `key` is attached to lease `id`.
pub(crate) fn lease_attach_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut out = lease_attach_prefix(id);
    out.extend_from_slice(key);
    out
}

/// The prefix of every attachment of lease `id`.
pub(crate) fn lease_attach_prefix(id: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(LEASE_ATTACH_PREFIX);
    out.extend_from_slice(&(id as u64).to_be_bytes());
    out
}

/// The exclusive end of the attachments of lease `id`.
pub(crate) fn lease_attach_end(id: i64) -> Vec<u8> {
    match (id as u64).checked_add(1) {
        Some(next) => {
            let mut out = vec![LEASE_ATTACH_PREFIX];
            out.extend_from_slice(&next.to_be_bytes());
            out
        }
        None => vec![LEASE_ATTACH_PREFIX + 1],
    }
}

pub(crate) fn encode_lease_record(ttl: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(LEASE_RECORD_V1);
    out.extend_from_slice(&ttl.to_be_bytes());
    out
}

pub(crate) fn decode_lease_record(raw: &[u8]) -> Result<i64, KvError> {
    if raw.len() != 9 || raw[0] != LEASE_RECORD_V1 {
        return Err(KvError::Corrupt(format!("bad lease record: {raw:02x?}")));
    }
    Ok(be_i64(&raw[1..]))
}

pub(crate) fn encode_i64(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub(crate) fn decode_i64(raw: &[u8]) -> Result<i64, KvError> {
    if raw.len() != 8 {
        return Err(KvError::Corrupt(format!("bad i64 of {} bytes", raw.len())));
    }
    Ok(be_i64(raw))
}

fn be_i64(raw: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[..8]);
    i64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newest_version_sorts_first() {
        assert!(version_key(b"a", 5, 0) < version_key(b"a", 4, 0));
        assert!(version_key(b"a", 5, 1) < version_key(b"a", 5, 0));
        assert!(version_seek(b"a", 5) < version_key(b"a", 5, 7));
        assert!(version_key(b"a", 6, 0) < version_seek(b"a", 5));
        assert!(version_key(b"a", 1, 0) < version_key(b"a\0", 9, 0));
        assert!(version_key(b"a", 1, 0) < version_key(b"b", 9, 0));
        assert!(version_key(b"a\xff", 1, 0) < versions_end(b"a\xff"));
    }

    #[test]
    fn bounds() {
        assert!(kv_bounds(b"b", b"a").is_none());
        assert!(kv_bounds(b"b", b"b").is_none());
        let (lo, hi) = kv_bounds(b"a", b"\0").unwrap();
        assert_eq!(lo, encode_user_key(b"a"));
        assert_eq!(hi, Bound::Unbounded);
    }

    #[test]
    fn records_round_trip() {
        let put = Record::Put {
            create_revision: 3,
            version: 2,
            lease: -7,
            value: b"v\0".to_vec(),
        };
        assert_eq!(Record::decode(&put.encode()).unwrap(), put);
        assert_eq!(
            Record::decode(&Record::Tombstone.encode()).unwrap(),
            Record::Tombstone
        );
        assert!(Record::decode(&[9]).is_err());
        assert_eq!(split_rev_key(&rev_key(77, 3)).unwrap(), (77, 3));
        assert_eq!(split_lease_key(&lease_key(-5)).unwrap(), -5);
        assert_eq!(decode_lease_record(&encode_lease_record(60)).unwrap(), 60);
        assert!(lease_attach_key(1, b"zz") < lease_attach_end(1));
        assert!(lease_attach_key(u64::MAX as i64, b"zz") < lease_attach_end(-1));
    }

    proptest! {
        #[test]
        fn encoding_preserves_order_and_round_trips(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()], 0..8),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8), any::<u8>()], 0..8),
            ra in 1i64..1000,
            rb in 1i64..1000,
            sa in 0u32..3,
            sb in 0u32..3,
        ) {
            let ka = version_key(&a, ra, sa);
            let kb = version_key(&b, rb, sb);
            let expected = a.cmp(&b).then(rb.cmp(&ra)).then(sb.cmp(&sa));
            prop_assert_eq!(ka.cmp(&kb), expected);
            let (prefix, rev, sub) = split_version_key(&ka).unwrap();
            prop_assert_eq!((rev, sub), (ra, sa));
            prop_assert_eq!(decode_user_key(prefix).unwrap(), a.clone());
            prop_assert!(ka < versions_end(&a));
            prop_assert!(ka >= encode_user_key(&a));
        }
    }
}
