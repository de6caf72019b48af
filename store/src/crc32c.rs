//! CRC-32C (Castagnoli), the checksum of etcd's hashes (Maintenance.Hash,
//! HashKV, `etcdctl snapshot status`).

/// A running CRC-32C.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Crc32c(u32);

impl Crc32c {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut crc = !self.0;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        self.0 = !crc;
    }

    /// The checksum of everything so far.
    pub(crate) fn value(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32c;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut crc = Crc32c::default();
        crc.update(b"123456789");
        assert_eq!(crc.value(), 0xE306_9283);
    }
}
