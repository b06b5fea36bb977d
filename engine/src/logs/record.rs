//! The log store's WAL record: one accepted push, exactly the entries the store accepted.
//!
//! # Layout (record kind [`RECORD_LOG_PUSH`], payload version 1)
//!
//! ```text
//! u8       payload version (1)
//! uvarint  stream count
//! per stream:
//!   uvarint  label count, then per label: uvarint-prefixed name, uvarint-prefixed value
//!   uvarint  entry count
//!   per entry: zigzag varint ts (ns), uvarint-prefixed line,
//!              uvarint metadata pair count, then uvarint-prefixed name and value per pair
//! ```
//!
//! The WAL frame around it carries the CRC; this payload is decoded with bounds checks and
//! refuses invalid UTF-8 and invalid label sets.

use crate::labels::{Label, Labels};

use super::LogError;
use super::chunk::LogEntry;
use super::codec::{Reader, put_bytes, put_uvarint, put_varint};

/// WAL record kind of a log push.
pub const RECORD_LOG_PUSH: u8 = 1;
/// Payload version of [`RECORD_LOG_PUSH`].
pub const RECORD_VERSION: u8 = 1;

/// Entries of one stream, as pushed and as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntries {
    /// The stream's label set.
    pub labels: Labels,
    /// Its entries, in the order received.
    pub entries: Vec<LogEntry>,
}

/// Encodes streams into a record payload.
pub fn encode_push(streams: &[StreamEntries], out: &mut Vec<u8>) {
    out.push(RECORD_VERSION);
    put_uvarint(out, streams.len() as u64);
    for s in streams {
        put_uvarint(out, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_bytes(out, l.name.as_bytes());
            put_bytes(out, l.value.as_bytes());
        }
        put_uvarint(out, s.entries.len() as u64);
        for e in &s.entries {
            put_varint(out, e.ts);
            put_bytes(out, e.line.as_bytes());
            put_uvarint(out, e.metadata.len() as u64);
            for (n, v) in &e.metadata {
                put_bytes(out, n.as_bytes());
                put_bytes(out, v.as_bytes());
            }
        }
    }
}

/// Decodes a record payload.
pub fn decode_push(payload: &[u8]) -> Result<Vec<StreamEntries>, LogError> {
    let mut r = Reader::new(payload, "log WAL record");
    let v = r.take(1, "version")?.first().copied().unwrap_or(0);
    if v != RECORD_VERSION {
        return Err(LogError::UnsupportedVersion {
            what: "log WAL record",
            version: u32::from(v),
        });
    }
    let n = r.len("stream count", r.remaining())?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let nl = r.len("label count", r.remaining())?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            let name = r.str("label name")?;
            let value = r.str("label value")?;
            labels.push(Label::new(name, value));
        }
        let labels = Labels::new(labels).map_err(|e| LogError::Corrupt {
            what: "log WAL record",
            offset: r.pos(),
            reason: e.to_string(),
        })?;
        let ne = r.len("entry count", r.remaining())?;
        let mut entries = Vec::with_capacity(ne);
        for _ in 0..ne {
            let ts = r.varint("timestamp")?;
            let line = r.str("line")?.to_string();
            let nm = r.len("metadata count", r.remaining())?;
            let mut metadata = Vec::with_capacity(nm);
            for _ in 0..nm {
                let name = r.str("metadata name")?.to_string();
                let value = r.str("metadata value")?.to_string();
                metadata.push((name, value));
            }
            entries.push(LogEntry { ts, line, metadata });
        }
        out.push(StreamEntries { labels, entries });
    }
    if r.remaining() != 0 {
        return Err(LogError::Corrupt {
            what: "log WAL record",
            offset: r.pos(),
            reason: format!("{} trailing bytes", r.remaining()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn push_records_round_trip(
            streams in proptest::collection::vec(
                (
                    proptest::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{1,5}", 1..4),
                    proptest::collection::vec(
                        (any::<i64>(), ".{0,30}", proptest::collection::vec(("[a-z]{1,4}", ".{0,6}"), 0..2)),
                        0..5,
                    ),
                ),
                0..4,
            )
        ) {
            let streams: Vec<StreamEntries> = streams
                .into_iter()
                .map(|(l, e)| StreamEntries {
                    labels: Labels::from_pairs(&l.into_iter().collect::<Vec<_>>()).unwrap(),
                    entries: e
                        .into_iter()
                        .map(|(ts, line, metadata)| LogEntry { ts, line, metadata })
                        .collect(),
                })
                .collect();
            let mut buf = Vec::new();
            encode_push(&streams, &mut buf);
            prop_assert_eq!(decode_push(&buf).unwrap(), streams);
            for cut in 0..buf.len() {
                let _ = decode_push(&buf[..cut]);
            }
        }
    }
}
