//! The snapshot file layout, written and read as a stream so that neither side ever holds more
//! than one record.
//!
//! ```text
//! magic        8 bytes   "MRSNAP2\n"
//! header_len   u32 LE    at most 1 MiB
//! header       postcard  Header { format_version, meta }
//! records, each starting with a tag byte:
//!   1 Cf       u8 name_len, name          following Kvs belong to this column family
//!   2 Kv       u32 key_len, u32 value_len, key, value
//!   3 End      u64 number of Kv records   then:
//! crc          u32 LE    CRC-32C of every byte before it
//! ```
//!
//! All integers are little-endian. A reader refuses a file that is shorter or longer than the
//! trailer says, whose checksum or record count does not match, or that names an unknown column
//! family, before the caller acts on its end. Lengths are checked against the bytes left in the
//! file before anything is allocated, so a damaged length cannot make a reader allocate more
//! than the file holds.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use super::crc32c::Crc32c;
use crate::db::{self, FORMAT_VERSION};
use crate::error::{Result, StoreError};
use crate::types::SnapshotMeta;

/// Identifies a Mailraft snapshot file of this layout. (Layout 1 was one postcard stream.)
const MAGIC: [u8; 8] = *b"MRSNAP2\n";
/// Record tags.
const TAG_CF: u8 = 1;
const TAG_KV: u8 = 2;
const TAG_END: u8 = 3;
/// The header is a meta with a membership: small. A larger length means a damaged file.
const MAX_HEADER_LEN: u32 = 1 << 20;
/// Keys are short (ids and mailbox names); a larger length means a damaged file.
const MAX_KEY_LEN: u32 = 1 << 20;

/// What a snapshot contains, at its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    /// On-disk format of the records' values ([`FORMAT_VERSION`] when built by this version).
    pub(crate) format_version: u32,
    /// The Raft position and membership the data corresponds to.
    pub(crate) meta: SnapshotMeta,
}

/// Writes the layout above to `out`, checksumming as it goes.
pub(crate) struct FormatWriter<W: Write> {
    out: W,
    crc: Crc32c,
    /// Kv records written.
    count: u64,
    /// Bytes written.
    len: u64,
}

impl<W: Write> FormatWriter<W> {
    /// Starts a snapshot of `meta` in this build's format.
    pub(crate) fn new(out: W, meta: &SnapshotMeta) -> Result<Self> {
        let header = postcard::to_stdvec(&Header {
            format_version: FORMAT_VERSION,
            meta: meta.clone(),
        })?;
        let header_len = u32::try_from(header.len())
            .ok()
            .filter(|n| *n <= MAX_HEADER_LEN)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("snapshot header of {} bytes", header.len()))
            })?;
        let mut w = FormatWriter {
            out,
            crc: Crc32c::default(),
            count: 0,
            len: 0,
        };
        w.put(&MAGIC)?;
        w.put(&header_len.to_le_bytes())?;
        w.put(&header)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Following key/values belong to column family `name`.
    pub(crate) fn cf(&mut self, name: &str) -> Result<()> {
        let len = u8::try_from(name.len())
            .map_err(|_| StoreError::Corrupt(format!("column family name {name} too long")))?;
        self.put(&[TAG_CF, len])?;
        self.put(name.as_bytes())?;
        Ok(())
    }

    /// One key/value of the current column family.
    pub(crate) fn kv(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|n| *n <= MAX_KEY_LEN)
            .ok_or_else(|| StoreError::Corrupt(format!("key of {} bytes", key.len())))?;
        let value_len = u32::try_from(value.len())
            .map_err(|_| StoreError::Corrupt(format!("value of {} bytes", value.len())))?;
        self.put(&[TAG_KV])?;
        self.put(&key_len.to_le_bytes())?;
        self.put(&value_len.to_le_bytes())?;
        self.put(key)?;
        self.put(value)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the trailer and flushes; returns the output and the file's length.
    pub(crate) fn finish(mut self) -> Result<(W, u64)> {
        self.put(&[TAG_END])?;
        let count = self.count;
        self.put(&count.to_le_bytes())?;
        let crc = self.crc.value();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok((self.out, self.len + 4))
    }
}

/// One step of [`FormatReader::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// Following key/values belong to this state-machine column family.
    Cf(&'static str),
    /// The key and value buffers passed to `next` hold one entry.
    Kv,
    /// The trailer matched: the file is complete.
    End,
}

/// Reads the layout above from `input` (the file's `len` bytes), verifying as it goes.
pub(crate) struct FormatReader<R: Read> {
    input: R,
    crc: Crc32c,
    /// Bytes of the file not read yet.
    remaining: u64,
    /// Kv records read.
    count: u64,
}

/// `UnexpectedEof` from the file means it ended early.
fn map_eof(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        StoreError::Corrupt("snapshot file is truncated".into())
    } else {
        StoreError::Io(e)
    }
}

impl<R: Read> FormatReader<R> {
    /// Reads and checks the magic and the header of a file of `len` bytes.
    pub(crate) fn open(input: R, len: u64) -> Result<(Self, Header)> {
        let mut r = FormatReader {
            input,
            crc: Crc32c::default(),
            remaining: len,
            count: 0,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic)
            .map_err(|_| StoreError::Corrupt("not a mailraft snapshot (too short)".into()))?;
        if magic != MAGIC {
            return Err(StoreError::Corrupt(
                "not a mailraft snapshot (bad magic)".into(),
            ));
        }
        let header_len = r.take_u32()?;
        if header_len > MAX_HEADER_LEN {
            return Err(StoreError::Corrupt(format!(
                "snapshot header of {header_len} bytes"
            )));
        }
        let mut header = Vec::new();
        r.take_vec(&mut header, header_len)?;
        let header: Header = postcard::from_bytes(&header)?;
        db::check_supported(header.format_version)?;
        if header.format_version < db::OLDEST_READABLE_FORMAT {
            // Older snapshots would be converted here; none that old was ever released.
            return Err(StoreError::Corrupt(format!(
                "no upgrade path from snapshot format {}",
                header.format_version
            )));
        }
        Ok((r, header))
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.remaining {
            return Err(StoreError::Corrupt("snapshot file is truncated".into()));
        }
        self.input.read_exact(buf).map_err(map_eof)?;
        self.crc.update(buf);
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn take_u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads `len` bytes into `buf` (reused between records, so it grows to the largest value
    /// and no further).
    fn take_vec(&mut self, buf: &mut Vec<u8>, len: u32) -> Result<()> {
        let len = len as usize;
        if len as u64 > self.remaining {
            return Err(StoreError::Corrupt("snapshot file is truncated".into()));
        }
        buf.clear();
        buf.resize(len, 0);
        self.take(buf)
    }

    /// The next record; for [`Record::Kv`] the entry is in `key` and `value`.
    pub(crate) fn next(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<Record> {
        let mut tag = [0u8; 1];
        self.take(&mut tag)?;
        match tag[0] {
            TAG_CF => {
                let mut len = [0u8; 1];
                self.take(&mut len)?;
                let mut name = vec![0u8; usize::from(len[0])];
                self.take(&mut name)?;
                let known = db::state_machine_cfs().find(|n| n.as_bytes() == name.as_slice());
                known.map(Record::Cf).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "snapshot has unknown table {}",
                        String::from_utf8_lossy(&name)
                    ))
                })
            }
            TAG_KV => {
                let key_len = self.take_u32()?;
                let value_len = self.take_u32()?;
                if key_len > MAX_KEY_LEN {
                    return Err(StoreError::Corrupt(format!(
                        "snapshot key of {key_len} bytes"
                    )));
                }
                self.take_vec(key, key_len)?;
                self.take_vec(value, value_len)?;
                self.count += 1;
                Ok(Record::Kv)
            }
            TAG_END => {
                let mut count = [0u8; 8];
                self.take(&mut count)?;
                let count = u64::from_le_bytes(count);
                // The checksum covers everything before it, so it is read around the CRC.
                let expected_crc = self.crc.value();
                let mut crc = [0u8; 4];
                if self.remaining < 4 {
                    return Err(StoreError::Corrupt("snapshot file is truncated".into()));
                }
                self.input.read_exact(&mut crc).map_err(map_eof)?;
                self.remaining -= 4;
                if count != self.count {
                    return Err(StoreError::Corrupt(format!(
                        "snapshot has {} entries, trailer says {count}",
                        self.count
                    )));
                }
                if u32::from_le_bytes(crc) != expected_crc {
                    return Err(StoreError::Corrupt("snapshot checksum mismatch".into()));
                }
                if self.remaining != 0 {
                    return Err(StoreError::Corrupt(format!(
                        "{} bytes after the snapshot trailer",
                        self.remaining
                    )));
                }
                Ok(Record::End)
            }
            other => Err(StoreError::Corrupt(format!("snapshot record tag {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FormatReader, FormatWriter, Record};
    use crate::error::StoreError;
    use crate::types::SnapshotMeta;

    fn sample() -> Vec<u8> {
        let mut w = FormatWriter::new(Vec::new(), &SnapshotMeta::default()).expect("header");
        w.cf("sm_state").expect("cf");
        w.kv(b"k1", b"v1").expect("kv");
        w.kv(b"", &[7u8; 300]).expect("kv");
        w.cf("messages").expect("cf");
        w.kv(&[0, 255], b"").expect("kv");
        let (bytes, len) = w.finish().expect("finish");
        assert_eq!(bytes.len() as u64, len);
        bytes
    }

    type Records = Vec<(Record, Vec<u8>, Vec<u8>)>;

    fn read_all(bytes: &[u8]) -> Result<(SnapshotMeta, Records), StoreError> {
        let (mut r, header) = FormatReader::open(bytes, bytes.len() as u64)?;
        let mut out = Vec::new();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        loop {
            let rec = r.next(&mut k, &mut v)?;
            let end = rec == Record::End;
            out.push((rec, k.clone(), v.clone()));
            if end {
                return Ok((header.meta, out));
            }
        }
    }

    #[test]
    fn round_trip() {
        let (meta, got) = read_all(&sample()).expect("read");
        assert_eq!(meta, SnapshotMeta::default());
        let kinds: Vec<&Record> = got.iter().map(|(r, _, _)| r).collect();
        assert_eq!(
            kinds,
            [
                &Record::Cf("sm_state"),
                &Record::Kv,
                &Record::Kv,
                &Record::Cf("messages"),
                &Record::Kv,
                &Record::End
            ]
        );
        assert_eq!(
            (got[1].1.as_slice(), got[1].2.as_slice()),
            (&b"k1"[..], &b"v1"[..])
        );
        assert_eq!(got[2].2, vec![7u8; 300]);
        assert_eq!(got[4].1, vec![0, 255]);
    }

    /// Every proper prefix is refused, and so is any single flipped bit or an extra byte.
    #[test]
    fn damage_is_detected() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(
                read_all(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes accepted"
            );
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    read_all(&damaged).is_err(),
                    "flipped bit {bit} of byte {i} accepted"
                );
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err(), "trailing byte accepted");
    }
}
