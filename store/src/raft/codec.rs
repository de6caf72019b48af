//! Encoding of raft's own records (log entries, votes, log ids, RPCs) on disk
//! and between members. postcard: compact, and serde-driven, so openraft's
//! types need no hand-written mapping.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;

/// Encodes a value for the log, the metadata column family or the wire.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("encode: {e}")))
}

/// Decodes what [`encode`] produced.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Command, MemberNode, TypeConfig};
    use openraft::alias::{EntryOf, VoteOf};
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;
    use openraft::{EntryPayload, Membership};
    use std::collections::BTreeMap;

    #[test]
    fn entries_and_votes_round_trip() {
        let id = log_id::<TypeConfig>(3, 2, 7);
        let normal =
            EntryOf::<TypeConfig>::new(id, EntryPayload::Normal(Command::Put(vec![1, 2, 3])));
        assert_eq!(
            decode::<EntryOf<TypeConfig>>(&encode(&normal).unwrap()).unwrap(),
            normal
        );

        let nodes = BTreeMap::from([(
            1u64,
            MemberNode {
                name: "s1".into(),
                peer_urls: vec!["http://a".into()],
            },
        )]);
        let membership = Membership::<u64, MemberNode>::new(vec![[1u64].into()], nodes).unwrap();
        let member_entry = EntryOf::<TypeConfig>::new(id, EntryPayload::Membership(membership));
        assert_eq!(
            decode::<EntryOf<TypeConfig>>(&encode(&member_entry).unwrap()).unwrap(),
            member_entry
        );

        let vote = VoteOf::<TypeConfig>::new(4, 2);
        assert_eq!(
            decode::<VoteOf<TypeConfig>>(&encode(&vote).unwrap()).unwrap(),
            vote
        );
        let committed = VoteOf::<TypeConfig>::new_committed(4, 2);
        assert_eq!(
            decode::<VoteOf<TypeConfig>>(&encode(&committed).unwrap()).unwrap(),
            committed
        );
    }
}
