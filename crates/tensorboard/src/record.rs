//! TFRecord framing: `u64 length (LE) | masked CRC-32C of the length | data | masked CRC-32C
//! of the data`. The mask is TensorFlow's: rotate right by 15 bits, add 0xa282ead8.

use std::io::{self, Write};

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TensorFlow's masked CRC-32C.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = CRC32C.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Frame one record into `out`.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let length = (data.len() as u64).to_le_bytes();
    let mut frame = Vec::with_capacity(data.len() + 16);
    frame.extend_from_slice(&length);
    frame.extend_from_slice(&masked_crc32c(&length).to_le_bytes());
    frame.extend_from_slice(data);
    frame.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    // One write per record: a crash leaves at most this record incomplete.
    out.write_all(&frame)
}

/// Why reading records stopped before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadStop {
    /// Every byte was consumed by complete, valid records.
    End,
    /// The bytes end inside a record (a write cut short): `at` is the record's offset.
    Truncated {
        /// Offset of the incomplete record.
        at: usize,
    },
    /// A checksum does not match: `at` is the record's offset.
    Corrupt {
        /// Offset of the bad record.
        at: usize,
    },
    /// A record's checksums hold but its bytes are not an `Event` (read by [`crate::read`]).
    Undecodable {
        /// Index of the record.
        record: usize,
    },
}

/// Read every complete, valid record, stopping at the first incomplete or corrupt one, as
/// TensorBoard's reader does.
pub fn read_records(bytes: &[u8]) -> (Vec<&[u8]>, ReadStop) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 12) else {
            return (records, ReadStop::Truncated { at });
        };
        let (length_bytes, length_crc) = header.split_at(8);
        if masked_crc32c(length_bytes).to_le_bytes() != length_crc {
            return (records, ReadStop::Corrupt { at });
        }
        let mut length = [0u8; 8];
        length.copy_from_slice(length_bytes);
        let Ok(length) = usize::try_from(u64::from_le_bytes(length)) else {
            return (records, ReadStop::Corrupt { at });
        };
        let end = at
            .checked_add(12)
            .and_then(|s| s.checked_add(length))
            .and_then(|e| e.checked_add(4));
        let Some(record) = end.and_then(|end| bytes.get(at + 12..end)) else {
            return (records, ReadStop::Truncated { at });
        };
        let (data, data_crc) = record.split_at(length);
        if masked_crc32c(data).to_le_bytes() != data_crc {
            return (records, ReadStop::Corrupt { at });
        }
        records.push(data);
        at += 16 + length;
    }
    (records, ReadStop::End)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // CRC-32C check value for "123456789" is 0xE3069283.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
        // TensorFlow's masked CRC of the empty string (crc 0): rotr(0,15) + mask.
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
    }

    #[test]
    fn records_round_trip_and_stop_at_damage() {
        let mut bytes = Vec::new();
        for data in [&b"first"[..], b"", b"third record"] {
            write_record(&mut bytes, data).unwrap();
        }
        let (records, stop) = read_records(&bytes);
        assert_eq!(records, vec![&b"first"[..], b"", b"third record"]);
        assert_eq!(stop, ReadStop::End);

        // Cut inside the last record: the first two survive.
        let cut = &bytes[..bytes.len() - 3];
        let (records, stop) = read_records(cut);
        assert_eq!(records.len(), 2);
        assert_eq!(stop, ReadStop::Truncated { at: 21 + 16 });

        // Flip a data byte of the first record: nothing after it is trusted.
        let mut flipped = bytes.clone();
        flipped[13] ^= 1;
        let (records, stop) = read_records(&flipped);
        assert!(records.is_empty());
        assert_eq!(stop, ReadStop::Corrupt { at: 0 });
    }
}
