//! The span as the trace store keeps it, and its binary encoding.
//!
//! The store does not interpret OTLP: the server hands it a [`SpanRecord`] holding the fields
//! the store indexes and searches (ids, times, service, name, kind, status, scalar attributes)
//! plus an opaque `payload` — the span as the client sent it (the server stores the OTLP
//! protobuf of a one-span `ResourceSpans`), returned unchanged when the trace is read.
//!
//! # Encoding (format version 1)
//!
//! Used inside WAL records and inside block trace frames (`docs/FORMAT.md`, section
//! "Trace store"). Integers are little-endian; `uvarint` is LEB128; `str` is `uvarint len | bytes`
//! (UTF-8).
//!
//! ```text
//! span := trace_id [16] | span_id [8] | parent_span_id [8] (all zero: no parent)
//!       | start_ns u64 | end_ns u64 | kind u8 | status u8
//!       | service str | name str
//!       | attr_count uvarint | attr*
//!       | payload_len uvarint | payload bytes
//! attr := scope u8 (0 resource, 1 span) | key str | type u8 | value
//!         type 1 string: str | 2 int: i64 | 3 float: f64 bits | 4 bool: u8 (0/1)
//! spans := count uvarint | span*
//! ```
//!
//! Decoding checks every length against the bytes left and never panics on bad input.

/// Span kind as OTLP numbers it (0 unspecified, 1 internal, 2 server, 3 client, 4 producer,
/// 5 consumer).
pub type SpanKind = u8;

/// OTLP span kind: unspecified.
pub const KIND_UNSPECIFIED: SpanKind = 0;
/// OTLP span kind: internal.
pub const KIND_INTERNAL: SpanKind = 1;
/// OTLP span kind: server.
pub const KIND_SERVER: SpanKind = 2;
/// OTLP span kind: client.
pub const KIND_CLIENT: SpanKind = 3;
/// OTLP span kind: producer.
pub const KIND_PRODUCER: SpanKind = 4;
/// OTLP span kind: consumer.
pub const KIND_CONSUMER: SpanKind = 5;

/// OTLP status code: unset.
pub const STATUS_UNSET: u8 = 0;
/// OTLP status code: ok.
pub const STATUS_OK: u8 = 1;
/// OTLP status code: error.
pub const STATUS_ERROR: u8 = 2;

/// Where an attribute came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrScope {
    /// A resource attribute (`resource.` in TraceQL).
    Resource = 0,
    /// A span attribute (`span.` in TraceQL).
    Span = 1,
}

/// A scalar attribute value (arrays, maps and bytes are kept only in the payload).
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// A 64-bit integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl AttrValue {
    /// The value as a string, as tag-value listings print it.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => f.to_string(),
            AttrValue::Bool(b) => b.to_string(),
        }
    }

    /// The TraceQL type name (`string`, `int`, `float`, `bool`).
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::Str(_) => "string",
            AttrValue::Int(_) => "int",
            AttrValue::Float(_) => "float",
            AttrValue::Bool(_) => "bool",
        }
    }
}

/// One searchable attribute of a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    /// Resource or span attribute.
    pub scope: AttrScope,
    /// The key (`http.status_code`).
    pub key: String,
    /// The value.
    pub value: AttrValue,
}

/// One span as the trace store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    /// 16-byte trace id (never all zero).
    pub trace_id: [u8; 16],
    /// 8-byte span id (never all zero).
    pub span_id: [u8; 8],
    /// Parent span id; all zero for a root span.
    pub parent_span_id: [u8; 8],
    /// Start, Unix nanoseconds.
    pub start_ns: u64,
    /// End, Unix nanoseconds (`>= start_ns`).
    pub end_ns: u64,
    /// OTLP span kind.
    pub kind: SpanKind,
    /// OTLP status code.
    pub status: u8,
    /// `service.name` of the resource (`unknown_service` when missing).
    pub service: String,
    /// Span name (operation).
    pub name: String,
    /// Scalar resource and span attributes, for search.
    pub attrs: Vec<Attr>,
    /// The span as received, opaque to the store.
    pub payload: Vec<u8>,
}

impl SpanRecord {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    /// True when the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id == [0; 8]
    }

    /// The first attribute with this key in this scope (`None` scope: span first, then resource).
    pub fn attr(&self, scope: Option<AttrScope>, key: &str) -> Option<&AttrValue> {
        let find = |s: AttrScope| {
            self.attrs
                .iter()
                .find(|a| a.scope == s && a.key == key)
                .map(|a| &a.value)
        };
        match scope {
            Some(s) => find(s),
            None => find(AttrScope::Span).or_else(|| find(AttrScope::Resource)),
        }
    }

    /// Bytes this span takes in memory, approximately (for head accounting).
    pub fn approx_size(&self) -> usize {
        96 + self.service.len()
            + self.name.len()
            + self.payload.len()
            + self
                .attrs
                .iter()
                .map(|a| {
                    40 + a.key.len()
                        + if let AttrValue::Str(s) = &a.value {
                            s.len()
                        } else {
                            0
                        }
                })
                .sum::<usize>()
    }
}

/// Why bytes did not decode as spans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid span encoding at byte {offset}: {reason}")]
pub struct SpanDecodeError {
    /// Offset into the decoded buffer.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Appends a LEB128 unsigned varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends one span.
pub fn encode_span(out: &mut Vec<u8>, s: &SpanRecord) {
    out.extend_from_slice(&s.trace_id);
    out.extend_from_slice(&s.span_id);
    out.extend_from_slice(&s.parent_span_id);
    out.extend_from_slice(&s.start_ns.to_le_bytes());
    out.extend_from_slice(&s.end_ns.to_le_bytes());
    out.push(s.kind);
    out.push(s.status);
    put_str(out, &s.service);
    put_str(out, &s.name);
    put_uvarint(out, s.attrs.len() as u64);
    for a in &s.attrs {
        out.push(a.scope as u8);
        put_str(out, &a.key);
        match &a.value {
            AttrValue::Str(v) => {
                out.push(1);
                put_str(out, v);
            }
            AttrValue::Int(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_le_bytes());
            }
            AttrValue::Float(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            AttrValue::Bool(v) => {
                out.push(4);
                out.push(u8::from(*v));
            }
        }
    }
    put_uvarint(out, s.payload.len() as u64);
    out.extend_from_slice(&s.payload);
}

/// Appends `count | span*`.
pub fn encode_spans<'a>(out: &mut Vec<u8>, spans: impl ExactSizeIterator<Item = &'a SpanRecord>) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        encode_span(out, s);
    }
}

/// A bounds-checked reader over an encoded buffer.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn err(&self, reason: &'static str) -> SpanDecodeError {
        SpanDecodeError {
            offset: self.pos,
            reason,
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], SpanDecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("truncated"))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SpanDecodeError> {
        let b = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SpanDecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SpanDecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SpanDecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, SpanDecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// A length that must fit in what is left.
    pub(crate) fn len(&mut self) -> Result<usize, SpanDecodeError> {
        let n = self.uvarint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.remaining())
            .ok_or_else(|| self.err("length exceeds the bytes left"))
    }

    pub(crate) fn str(&mut self) -> Result<String, SpanDecodeError> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.err("string is not UTF-8"))
    }
}

/// Decodes one span.
pub(crate) fn decode_span(r: &mut Reader<'_>) -> Result<SpanRecord, SpanDecodeError> {
    let trace_id = r.array::<16>()?;
    let span_id = r.array::<8>()?;
    let parent_span_id = r.array::<8>()?;
    let start_ns = r.u64()?;
    let end_ns = r.u64()?;
    let kind = r.u8()?;
    let status = r.u8()?;
    let service = r.str()?;
    let name = r.str()?;
    let n = r.uvarint()?;
    // Each attribute takes at least 4 bytes: a count larger than that is corrupt.
    if n > (r.remaining() / 4) as u64 {
        return Err(r.err("attribute count exceeds the bytes left"));
    }
    let mut attrs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let scope = match r.u8()? {
            0 => AttrScope::Resource,
            1 => AttrScope::Span,
            _ => return Err(r.err("unknown attribute scope")),
        };
        let key = r.str()?;
        let value = match r.u8()? {
            1 => AttrValue::Str(r.str()?),
            2 => AttrValue::Int(r.u64()? as i64),
            3 => AttrValue::Float(f64::from_bits(r.u64()?)),
            4 => AttrValue::Bool(r.u8()? != 0),
            _ => return Err(r.err("unknown attribute type")),
        };
        attrs.push(Attr { scope, key, value });
    }
    let plen = r.len()?;
    let payload = r.bytes(plen)?.to_vec();
    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        start_ns,
        end_ns,
        kind,
        status,
        service,
        name,
        attrs,
        payload,
    })
}

/// The smallest encoded span: ids and times (50 bytes) plus four empty lengths (service, name,
/// attribute count, payload).
const MIN_SPAN_BYTES: usize = 54;

/// Decodes `count | span*`, requiring that nothing follows.
pub fn decode_spans(buf: &[u8]) -> Result<Vec<SpanRecord>, SpanDecodeError> {
    let mut r = Reader::new(buf);
    let n = r.uvarint()?;
    // A span takes at least MIN_SPAN_BYTES bytes.
    if n > (r.remaining() / MIN_SPAN_BYTES) as u64 {
        return Err(r.err("span count exceeds the bytes left"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(decode_span(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err(r.err("trailing bytes after the last span"));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_span() -> impl Strategy<Value = SpanRecord> {
        let attr = (
            prop_oneof![Just(AttrScope::Resource), Just(AttrScope::Span)],
            "[a-z.]{0,12}",
            prop_oneof![
                ".{0,20}".prop_map(AttrValue::Str),
                any::<i64>().prop_map(AttrValue::Int),
                any::<u64>().prop_map(|b| AttrValue::Float(f64::from_bits(b))),
                any::<bool>().prop_map(AttrValue::Bool),
            ],
        )
            .prop_map(|(scope, key, value)| Attr { scope, key, value });
        (
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            any::<[u8; 8]>(),
            any::<u64>(),
            any::<u64>(),
            0u8..6,
            0u8..3,
            ".{0,16}",
            ".{0,16}",
            proptest::collection::vec(attr, 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(
                |(
                    trace_id,
                    span_id,
                    parent_span_id,
                    start_ns,
                    end_ns,
                    kind,
                    status,
                    service,
                    name,
                    attrs,
                    payload,
                )| {
                    SpanRecord {
                        trace_id,
                        span_id,
                        parent_span_id,
                        start_ns,
                        end_ns,
                        kind,
                        status,
                        service,
                        name,
                        attrs,
                        payload,
                    }
                },
            )
    }

    /// Floats compare by bits so NaN payloads round-trip too.
    fn same(a: &[SpanRecord], b: &[SpanRecord]) -> bool {
        let mut ea = Vec::new();
        encode_spans(&mut ea, a.iter());
        let mut eb = Vec::new();
        encode_spans(&mut eb, b.iter());
        ea == eb && a.len() == b.len()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn spans_round_trip(spans in proptest::collection::vec(arb_span(), 0..5)) {
            let mut buf = Vec::new();
            encode_spans(&mut buf, spans.iter());
            let back = decode_spans(&buf).unwrap();
            prop_assert!(same(&spans, &back));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_spans(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(spans in proptest::collection::vec(arb_span(), 1..3), cut in 0usize..1000) {
            let mut buf = Vec::new();
            encode_spans(&mut buf, spans.iter());
            let cut = cut % buf.len();
            prop_assert!(decode_spans(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn the_smallest_span_round_trips() {
        let s = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [0; 8],
            start_ns: 1,
            end_ns: 2,
            kind: 0,
            status: 0,
            service: String::new(),
            name: String::new(),
            attrs: vec![],
            payload: vec![],
        };
        let mut buf = Vec::new();
        encode_spans(&mut buf, [s.clone(), s.clone()].iter());
        assert_eq!(buf.len(), 1 + 2 * MIN_SPAN_BYTES);
        assert_eq!(decode_spans(&buf).unwrap(), vec![s.clone(), s]);
    }

    #[test]
    fn varint_overflow_is_refused() {
        let mut r = Reader::new(&[0xff; 11]);
        assert!(r.uvarint().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(r.uvarint().unwrap(), u64::MAX);
    }
}
