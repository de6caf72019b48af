//! Key-range helpers with etcd's conventions (clientv3 `GetPrefixRangeEnd`,
//! `WithFromKey`).

/// The `range_end` that means "every key greater than or equal to `key`".
pub const FROM_KEY_RANGE_END: &[u8] = b"\0";

/// The `range_end` covering every key that starts with `prefix`: the prefix
/// with its last byte incremented, after dropping trailing `0xff` bytes
/// (`"a\xff"` → `"b"`). A prefix of only `0xff` bytes (or an empty one) has
/// no upper bound, so the result is `"\0"`, meaning "to the end".
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    FROM_KEY_RANGE_END.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_range_end(b"foo"), b"fop");
        assert_eq!(prefix_range_end(b"/registry/pods/"), b"/registry/pods0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
    }
}
