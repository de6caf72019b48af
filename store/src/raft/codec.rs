//! Encoding of raft's own records (log entries, votes, log ids, RPCs) on disk
//! and between members. postcard: compact, and serde-driven, so openraft's
//! types need no hand-written mapping.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;

/// Encodes a value for the log, the metadata column family or the wire.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("encode: {e}")))
}

/// Decodes what [`encode`] produced.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Command, MemberNode, TypeConfig};
    use openraft::alias::{EntryOf, LogIdOf, VoteOf};
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderIdExt;
    use openraft::{EntryPayload, Membership};
    use std::collections::BTreeMap;

    #[test]
    fn entries_and_votes_round_trip() {
        let log_id = LogIdOf::<TypeConfig>::new_term_index(3, 7);
        let normal: EntryOf<TypeConfig> =
            EntryOf::<TypeConfig>::new(log_id, EntryPayload::Normal(Command::Put(vec![1, 2, 3])));
        assert_eq!(decode::<EntryOf<TypeConfig>>(&encode(&normal).unwrap()).unwrap(), normal);

        let nodes = BTreeMap::from([(1u64, MemberNode { name: "s1".into(), peer_urls: vec!["http://a".into()] })]);
        let membership = Membership::<TypeConfig>::new_with_defaults(vec![[1u64].into()], nodes);
        let member_entry = EntryOf::<TypeConfig>::new(log_id, EntryPayload::Membership(membership));
        assert_eq!(decode::<EntryOf<TypeConfig>>(&encode(&member_entry).unwrap()).unwrap(), member_entry);

        let vote = VoteOf::<TypeConfig>::new(4, 2);
        assert_eq!(decode::<VoteOf<TypeConfig>>(&encode(&vote).unwrap()).unwrap(), vote);
        let _ = openraft::alias::LeaderIdOf::<TypeConfig>::new_with_default_term(1);
    }
}
