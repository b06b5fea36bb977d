//! The Loki push protocol: `logproto.PushRequest` (schema in `proto/logproto/push.proto`) as
//! hand-written prost structs, and the parser of Loki's stream-label strings.
//!
//! A push body is a snappy-compressed protobuf (the default of Promtail, Grafana Alloy,
//! Fluent Bit and Vector's Loki sinks). The stream's labels travel as one string in selector
//! syntax (`{job="app", env="prod"}`), parsed by [`parse_labels`]. Lines are declared `string`
//! by Loki but decoded here as bytes, so that the server can name the entry whose line is not
//! UTF-8 (Strata refuses such lines; see `docs/API.md`).

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// Streams of the request.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Labels in selector syntax.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// Entries.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Optional hash (ignored).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// Entry time.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The line (bytes; UTF-8 is checked by the caller).
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    /// Structured metadata.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPairAdapter {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Timestamp {
    /// Unix nanoseconds, or `None` if out of range.
    pub fn to_nanos(self) -> Option<i64> {
        i64::try_from(i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos)).ok()
    }

    /// From Unix nanoseconds.
    pub fn from_nanos(ns: i64) -> Timestamp {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }
}

/// Decodes an uncompressed push request.
pub fn decode_push_request(body: &[u8]) -> Result<PushRequest, prost::DecodeError> {
    <PushRequest as prost::Message>::decode(body)
}

/// Parses a stream-label string `{name="value", ...}` into pairs (in the given order).
/// Values use Go/PromQL string escapes (`\"`, `\\`, `\n`, `\t`, `\uXXXX` …). Errors give the
/// byte position.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return Err(format!(
            "position {i}: expected '{{' at the start of the labels"
        ));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut i);
        match b.get(i) {
            Some(b'}') => {
                i += 1;
                break;
            }
            None => return Err(format!("position {i}: unterminated labels, expected '}}'")),
            _ => {}
        }
        let start = i;
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        {
            i += 1;
        }
        if start == i {
            return Err(format!("position {i}: expected a label name"));
        }
        let name = s.get(start..i).unwrap_or_default().to_string();
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(format!(
                "position {i}: expected '=' after label name {name:?}"
            ));
        }
        i += 1;
        skip_ws(&mut i);
        let (value, next) = parse_quoted(s, i)?;
        i = next;
        out.push((name, value));
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => return Err(format!("position {i}: expected ',' or '}}' after a label")),
        }
    }
    skip_ws(&mut i);
    if i != b.len() {
        return Err(format!("position {i}: unexpected text after the labels"));
    }
    Ok(out)
}

/// Parses a double-quoted (or back-quoted, raw) string starting at byte `i`; returns the value
/// and the position after the closing quote.
pub fn parse_quoted(s: &str, i: usize) -> Result<(String, usize), String> {
    let b = s.as_bytes();
    let quote = match b.get(i) {
        Some(&q @ (b'"' | b'`')) => q,
        _ => return Err(format!("position {i}: expected a quoted string")),
    };
    let mut out = String::new();
    let mut chars = s.get(i + 1..).unwrap_or_default().char_indices();
    while let Some((off, c)) = chars.next() {
        let pos = i + 1 + off;
        if c as u32 == u32::from(quote) {
            return Ok((out, pos + 1));
        }
        if c != '\\' || quote == b'`' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            break;
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' | '"' | '\'' | '`' => out.push(e),
            'u' | 'U' | 'x' => {
                let n = match e {
                    'u' => 4,
                    'U' => 8,
                    _ => 2,
                };
                let mut v = 0u32;
                for _ in 0..n {
                    let d = chars
                        .next()
                        .and_then(|(_, h)| h.to_digit(16))
                        .ok_or_else(|| format!("position {pos}: invalid \\{e} escape"))?;
                    v = v * 16 + d;
                }
                out.push(
                    char::from_u32(v)
                        .ok_or_else(|| format!("position {pos}: invalid code point {v:#x}"))?,
                );
            }
            other => return Err(format!("position {pos}: unknown escape \\{other}")),
        }
    }
    Err(format!("position {i}: unterminated string"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    #[test]
    fn labels_parse_with_escapes_and_positions() {
        assert_eq!(
            parse_labels(r#"{job="app", msg="a \"b\"\n", x_y="1"}"#).unwrap(),
            vec![
                ("job".into(), "app".into()),
                ("msg".into(), "a \"b\"\n".into()),
                ("x_y".into(), "1".into())
            ]
        );
        assert_eq!(parse_labels("{}").unwrap(), vec![]);
        assert!(
            parse_labels("{job=app}")
                .unwrap_err()
                .contains("position 5")
        );
        assert!(
            parse_labels("job=\"a\"")
                .unwrap_err()
                .contains("position 0")
        );
        assert!(parse_labels("{job=\"a\"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn push_requests_round_trip(
            streams in proptest::collection::vec(
                ("[a-z]{1,6}", proptest::collection::vec((any::<i64>(), ".{0,20}", "[a-z]{0,5}"), 0..4)),
                0..4,
            )
        ) {
            let req = PushRequest {
                streams: streams
                    .iter()
                    .map(|(job, entries)| StreamAdapter {
                        labels: format!("{{job={job:?}}}"),
                        entries: entries
                            .iter()
                            .map(|(ts, line, m)| EntryAdapter {
                                timestamp: Some(Timestamp::from_nanos(*ts)),
                                line: line.as_bytes().to_vec(),
                                structured_metadata: if m.is_empty() { vec![] } else {
                                    vec![LabelPairAdapter { name: "k".into(), value: m.clone() }]
                                },
                            })
                            .collect(),
                        hash: 0,
                    })
                    .collect(),
            };
            let bytes = req.encode_to_vec();
            let back = decode_push_request(&bytes).unwrap();
            prop_assert_eq!(&back, &req);
            for (s, (job, entries)) in back.streams.iter().zip(&streams) {
                prop_assert_eq!(parse_labels(&s.labels).unwrap(), vec![("job".to_string(), job.clone())]);
                for (e, (ts, _, _)) in s.entries.iter().zip(entries) {
                    prop_assert_eq!(e.timestamp.and_then(Timestamp::to_nanos), Some(*ts));
                }
            }
            for cut in 0..bytes.len().min(64) {
                let _ = decode_push_request(&bytes[..cut]);
            }
        }

        #[test]
        fn label_parser_never_panics(s in ".{0,40}") {
            let _ = parse_labels(&s);
        }
    }
}
