//! Versioned storage encoding of [`MessageInfo`]: one format-version byte followed by
//! the postcard encoding. The version lets a future layout change be detected (and
//! re-analyzed from the raw message) instead of being misread.

use crate::MessageInfo;

/// Current storage format version written by [`MessageInfo::to_bytes`].
pub const FORMAT_VERSION: u8 = 1;

/// Errors of this crate: decoding a stored record, and removing a transfer encoding this crate
/// does not know.
#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    /// The record is empty (no version byte).
    #[error("empty message info record")]
    Empty,
    /// The record was written by an unknown format version; re-analyze the raw message.
    #[error("unsupported message info format version {0}")]
    UnsupportedVersion(u8),
    /// The record could not be encoded or decoded.
    #[error("corrupt message info record: {0}")]
    Codec(#[from] postcard::Error),
    /// [`crate::transfer_decode`] does not know this Content-Transfer-Encoding (RFC 2045 §6.3
    /// allows private `x-` ones); FETCH BINARY answers `NO [UNKNOWN-CTE]` (RFC 3516 §4.2).
    #[error("unknown content transfer encoding {0}")]
    UnknownTransferEncoding(String),
}

impl MessageInfo {
    /// Encodes for storage: `[FORMAT_VERSION] ++ postcard(self)`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MimeError> {
        Ok(postcard::to_extend(self, vec![FORMAT_VERSION])?)
    }

    /// Decodes a record written by [`MessageInfo::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<MessageInfo, MimeError> {
        let (&version, rest) = bytes.split_first().ok_or(MimeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(MimeError::UnsupportedVersion(version));
        }
        Ok(postcard::from_bytes(rest)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analyze;

    #[test]
    fn round_trip() {
        let raw = b"From: a@b\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n";
        let info = analyze(raw);
        let bytes = info.to_bytes().unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(MessageInfo::from_bytes(&bytes).unwrap(), info);
    }

    #[test]
    fn bad_records() {
        assert!(matches!(
            MessageInfo::from_bytes(&[]),
            Err(MimeError::Empty)
        ));
        assert!(matches!(
            MessageInfo::from_bytes(&[9, 1]),
            Err(MimeError::UnsupportedVersion(9))
        ));
        assert!(matches!(
            MessageInfo::from_bytes(&[FORMAT_VERSION, 0xff]),
            Err(MimeError::Codec(_))
        ));
    }
}
