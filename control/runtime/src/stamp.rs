//! The time and randomness a create needs, taken in one place so that the
//! code which prepares objects stays pure.

/// The characters of a generated name suffix (Kubernetes' alphabet: no
/// vowels, no confusable digits).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated name suffix.
pub const GENERATED_SUFFIX_LEN: usize = 5;

/// The time and randomness a create needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub uid: String,
    /// RFC 3339, seconds.
    pub now: String,
    /// Appended to `generateName`.
    pub suffix: String,
}

impl Stamp {
    /// A stamp from the clock and the thread's random generator.
    pub fn now() -> Stamp {
        use rand::Rng;
        let mut rng = rand::rng();
        let b: [u8; 16] = rng.random();
        let suffix = (0..GENERATED_SUFFIX_LEN)
            .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
            .collect();
        Stamp {
            uid: uuid_v4(b),
            now: skiff_model::Time::now().to_string(),
            suffix,
        }
    }
}

/// A version 4 (random) UUID from 16 random bytes.
pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(Stamp::now().uid.len(), 36);
    }

    #[test]
    fn suffixes_use_the_name_alphabet() {
        let s = Stamp::now().suffix;
        assert_eq!(s.len(), GENERATED_SUFFIX_LEN);
        assert!(s.bytes().all(|c| NAME_ALPHABET.contains(&c)), "{s}");
    }
}
