//! CRC-32C (Castagnoli, RFC 3720 §12.1), the checksum in every snapshot file's trailer.
//!
//! Software slice-by-8: eight bytes per step through eight 256-entry tables built at compile
//! time. A snapshot is checksummed once when built and once per read pass when installed, so
//! this runs over every byte of the state machine; byte-at-a-time would be several times slower.
//! (The workspace has no checksum crate of its own; a table implementation is 40 lines.)

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[0]` is the classic byte table; `TABLES[k][b]` is the CRC of byte `b` followed by
/// `k` zero bytes, which lets one step fold eight input bytes.
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

/// A running CRC-32C.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(!0)
    }
}

impl Crc32c {
    /// Feeds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut crc = self.0;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
        }
        self.0 = crc;
    }

    /// The checksum of everything fed so far (the running state is left unchanged).
    pub(crate) fn value(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32c;

    fn crc(data: &[u8]) -> u32 {
        let mut c = Crc32c::default();
        c.update(data);
        c.value()
    }

    /// The check value of the CRC catalogue and the RFC 3720 §B.4 test vectors.
    #[test]
    fn known_vectors() {
        assert_eq!(crc(b"123456789"), 0xE306_9283);
        assert_eq!(crc(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc(&ascending), 0x46DD_794E);
    }

    /// Feeding in pieces of any size gives the same result as one call (the 8-byte fast path
    /// and the byte tail agree).
    #[test]
    fn split_feeding_matches() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = crc(&data);
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let mut c = Crc32c::default();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), whole, "split at {split}");
        }
    }
}
