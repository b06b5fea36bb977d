//! A minimal protobuf wire-format reader over a borrowed `&[u8]`, and the
//! error type of every hand-written decoder in this crate.
//!
//! # Why hand-written
//!
//! `prost` decodes into owned structs: one `String` per label name and value
//! and one `Vec` per repeated field. On the remote-write path that allocation
//! dominates (about 2 µs per sample). This reader never allocates: it yields
//! `(field number, value)` pairs whose length-delimited payloads are
//! sub-slices of the input, and the message parsers in
//! [`remote_write`](crate::remote_write) build borrowed views from them.
//!
//! # Rules enforced (the protobuf encoding specification)
//!
//! - A key is a varint of at most 32 bits; field number 0 is invalid; wire
//!   types 6 and 7 are invalid.
//! - A varint has at most 10 bytes and must fit in 64 bits (the tenth byte is
//!   0 or 1), as in prost and protobuf-go.
//! - A length prefix must not exceed the bytes that remain: checked before
//!   the slice is taken, so nothing is allocated or read out of bounds.
//! - Groups (wire types 3/4, deprecated) are skipped when they belong to an
//!   unknown field, with a nesting limit; a stray end-group is an error.
//! - What a known field *should* carry is checked by the message parsers,
//!   which reject wire-type mismatches ([`DecodeErrorKind::WrongWireType`]).
//!
//! # Errors carry a field path
//!
//! [`DecodeError`] is boxed so that `Result<T, DecodeError>` stays one word
//! on the hot path; parsers append path segments as the error travels out
//! (`timeseries[3].labels[1].value: invalid UTF-8`), so the path costs
//! nothing until something is wrong.

/// Nesting limit for skipped groups; prost uses 100 for all recursion.
const MAX_GROUP_DEPTH: u32 = 64;

/// The largest valid field number, 2^29 - 1.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Why a protobuf message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a value.
    #[error("truncated {what}")]
    Truncated {
        /// What was being read ("varint", "64-bit value", ...).
        what: &'static str,
    },
    /// A varint longer than 10 bytes or larger than 64 bits.
    #[error("varint longer than 10 bytes or larger than 64 bits")]
    VarintOverflow,
    /// A length prefix larger than what is left of the enclosing message.
    #[error("length prefix {len} exceeds the {remaining} bytes left")]
    LengthOverflow {
        /// The declared length.
        len: u64,
        /// Bytes actually left.
        remaining: usize,
    },
    /// A field key that does not fit 32 bits or names field number 0 or a
    /// number above 2^29-1.
    #[error("invalid field key {key}")]
    InvalidKey {
        /// The raw key varint.
        key: u64,
    },
    /// Wire type 6 or 7, which protobuf does not define.
    #[error("invalid wire type {wire_type}")]
    InvalidWireType {
        /// The raw wire type.
        wire_type: u8,
    },
    /// A known field encoded with a wire type its schema does not allow.
    #[error("wire type {got} where {expected} was expected")]
    WrongWireType {
        /// Wire type(s) the schema allows.
        expected: &'static str,
        /// Wire type found.
        got: &'static str,
    },
    /// An end-group key without a matching start-group.
    #[error("end-group for field {field} without a matching start-group")]
    UnexpectedEndGroup {
        /// Field number of the end-group key.
        field: u32,
    },
    /// A group that does not end before its enclosing message does.
    #[error("group for field {field} is not terminated")]
    UnterminatedGroup {
        /// Field number of the group.
        field: u32,
    },
    /// Groups nested deeper than the decoder allows.
    #[error("groups nested deeper than {MAX_GROUP_DEPTH}")]
    GroupTooDeep,
    /// A string field that is not UTF-8.
    #[error("invalid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// A remote write 2.0 symbol reference past the end of the symbol table.
    #[error("symbol reference {reference} out of range (the request has {symbols} symbols)")]
    SymbolOutOfRange {
        /// The reference.
        reference: u64,
        /// Size of the symbol table.
        symbols: usize,
    },
    /// A remote write 2.0 `labels_refs` list of odd length.
    #[error("odd number of label references ({count}); they must come in name/value pairs")]
    OddLabelRefs {
        /// Number of references found.
        count: usize,
    },
}

/// One step of a field path: a field name and, for repeated fields, the
/// index of the element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    field: &'static str,
    index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: DecodeErrorKind,
    /// Innermost segment first.
    path: Vec<Segment>,
    /// Message name shown when the error is at the top level.
    root: &'static str,
}

/// A protobuf decoding error with the path of the offending field, e.g.
/// `timeseries[3].labels[1].value: invalid UTF-8 (valid up to byte 2)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .0.path_string(), .0.kind)]
pub struct DecodeError(Box<Inner>);

impl Inner {
    fn path_string(&self) -> String {
        if self.path.is_empty() {
            return self.root.to_owned();
        }
        let mut out = String::new();
        for (i, seg) in self.path.iter().rev().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(seg.field);
            if let Some(index) = seg.index {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
        out
    }
}

impl DecodeError {
    /// A new error at the current position (no path yet).
    #[cold]
    pub(crate) fn new(kind: DecodeErrorKind) -> Self {
        Self(Box::new(Inner {
            kind,
            path: Vec::new(),
            root: "message",
        }))
    }

    /// Prepends the field the error happened in.
    #[cold]
    #[must_use]
    pub(crate) fn at(mut self, field: &'static str, index: Option<usize>) -> Self {
        self.0.path.push(Segment { field, index });
        self
    }

    /// Names the top-level message (shown only if the path is empty).
    #[cold]
    #[must_use]
    pub(crate) fn in_message(mut self, root: &'static str) -> Self {
        self.0.root = root;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.0.kind
    }

    /// The dotted field path, e.g. `timeseries[3].labels[1].value`; the
    /// message name when the error is at the top level.
    pub fn path(&self) -> String {
        self.0.path_string()
    }
}

impl From<DecodeErrorKind> for DecodeError {
    fn from(kind: DecodeErrorKind) -> Self {
        Self::new(kind)
    }
}

/// The value of one field as found on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1, little-endian.
    I64(u64),
    /// Wire type 2: the payload.
    Len(&'a [u8]),
    /// Wire types 3/4: a whole group, already skipped.
    Group,
    /// Wire type 5 (no field of these schemas uses it; skipped).
    I32,
}

impl<'a> Value<'a> {
    fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "VARINT",
            Value::I64(_) => "I64",
            Value::Len(_) => "LEN",
            Value::Group => "GROUP",
            Value::I32 => "I32",
        }
    }

    #[cold]
    fn mismatch(&self, expected: &'static str) -> DecodeError {
        DecodeError::new(DecodeErrorKind::WrongWireType {
            expected,
            got: self.wire_name(),
        })
    }

    /// The payload of a length-delimited field.
    #[inline]
    pub(crate) fn len(self) -> Result<&'a [u8], DecodeError> {
        match self {
            Value::Len(b) => Ok(b),
            other => Err(other.mismatch("LEN")),
        }
    }

    /// The value of a varint field.
    #[inline]
    pub(crate) fn varint(self) -> Result<u64, DecodeError> {
        match self {
            Value::Varint(v) => Ok(v),
            other => Err(other.mismatch("VARINT")),
        }
    }

    /// The raw bits of a 64-bit fixed field (`double`, `fixed64`).
    #[inline]
    pub(crate) fn fixed64(self) -> Result<u64, DecodeError> {
        match self {
            Value::I64(v) => Ok(v),
            other => Err(other.mismatch("I64")),
        }
    }

    /// A `string` field, validated as UTF-8.
    #[inline]
    pub(crate) fn str(self) -> Result<&'a str, DecodeError> {
        to_str(self.len()?)
    }

    /// A `double` field.
    #[inline]
    pub(crate) fn double(self) -> Result<f64, DecodeError> {
        self.fixed64().map(f64::from_bits)
    }

    /// An `int64` field (two's complement varint).
    #[inline]
    pub(crate) fn int64(self) -> Result<i64, DecodeError> {
        // Reinterpreting the bits is the protobuf definition of int64.
        self.varint().map(|v| v as i64)
    }

    /// An `int32`/enum field: protobuf truncates the varint to 32 bits.
    #[inline]
    pub(crate) fn int32(self) -> Result<i32, DecodeError> {
        self.varint().map(|v| v as i32)
    }
}

/// Validates `b` as UTF-8.
#[inline]
pub(crate) fn to_str(b: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(b).map_err(|e| {
        DecodeError::new(DecodeErrorKind::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })
    })
}

/// Reads one varint from the front of `buf`.
#[inline]
pub(crate) fn read_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    if let Some((&b, rest)) = buf.split_first()
        && b < 0x80
    {
        *buf = rest;
        return Ok(u64::from(b));
    }
    read_varint_slow(buf)
}

fn read_varint_slow(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(DecodeErrorKind::VarintOverflow.into());
            }
            *buf = buf.get(i + 1..).unwrap_or_default();
            return Ok(value);
        }
    }
    if buf.len() >= 10 {
        Err(DecodeErrorKind::VarintOverflow.into())
    } else {
        Err(DecodeErrorKind::Truncated { what: "varint" }.into())
    }
}

/// Iterates over the fields of one message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over the encoded fields of one message.
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next field, or `None` at the end of the message.
    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (number, wire_type) = read_key(&mut self.buf)?;
        let value = match wire_type {
            0 => Value::Varint(read_varint(&mut self.buf)?),
            1 => Value::I64(u64::from_le_bytes(self.take_array("64-bit value")?)),
            2 => Value::Len(self.take_len()?),
            3 => {
                skip_group(&mut self.buf, number, 1)?;
                Value::Group
            }
            4 => return Err(DecodeErrorKind::UnexpectedEndGroup { field: number }.into()),
            5 => {
                self.take_array::<4>("32-bit value")?;
                Value::I32
            }
            other => {
                return Err(DecodeErrorKind::InvalidWireType { wire_type: other }.into());
            }
        };
        Ok(Some((number, value)))
    }

    #[inline]
    fn take_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let Some((head, rest)) = self.buf.split_first_chunk::<N>() else {
            return Err(DecodeErrorKind::Truncated { what }.into());
        };
        self.buf = rest;
        Ok(*head)
    }

    #[inline]
    fn take_len(&mut self) -> Result<&'a [u8], DecodeError> {
        take_len(&mut self.buf)
    }
}

/// Reads a length prefix and the payload it announces.
#[inline]
fn take_len<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = read_varint(buf)?;
    let remaining = buf.len();
    match usize::try_from(len)
        .ok()
        .and_then(|n| buf.split_at_checked(n))
    {
        Some((payload, rest)) => {
            *buf = rest;
            Ok(payload)
        }
        None => Err(DecodeErrorKind::LengthOverflow { len, remaining }.into()),
    }
}

/// Reads a field key and splits it into field number and wire type.
#[inline]
fn read_key(buf: &mut &[u8]) -> Result<(u32, u8), DecodeError> {
    let key = read_varint(buf)?;
    let number = key >> 3;
    if key > u64::from(u32::MAX) || number == 0 || number > MAX_FIELD_NUMBER {
        return Err(DecodeErrorKind::InvalidKey { key }.into());
    }
    // Both fit: number <= 2^29-1 and the wire type is 3 bits.
    Ok((number as u32, (key & 7) as u8))
}

/// Skips the body of a group that started with field `number`, up to and
/// including its end-group key.
fn skip_group(buf: &mut &[u8], number: u32, depth: u32) -> Result<(), DecodeError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(DecodeErrorKind::GroupTooDeep.into());
    }
    loop {
        if buf.is_empty() {
            return Err(DecodeErrorKind::UnterminatedGroup { field: number }.into());
        }
        let (inner, wire_type) = read_key(buf)?;
        match wire_type {
            0 => {
                read_varint(buf)?;
            }
            1 => skip_bytes(buf, 8, "64-bit value")?,
            2 => {
                take_len(buf)?;
            }
            3 => skip_group(buf, inner, depth + 1)?,
            4 if inner == number => return Ok(()),
            4 => return Err(DecodeErrorKind::UnexpectedEndGroup { field: inner }.into()),
            5 => skip_bytes(buf, 4, "32-bit value")?,
            other => {
                return Err(DecodeErrorKind::InvalidWireType { wire_type: other }.into());
            }
        }
    }
}

fn skip_bytes(buf: &mut &[u8], n: usize, what: &'static str) -> Result<(), DecodeError> {
    match buf.get(n..) {
        Some(rest) => {
            *buf = rest;
            Ok(())
        }
        None => Err(DecodeErrorKind::Truncated { what }.into()),
    }
}

/// Calls `f` for each element of a repeated varint field that may be packed
/// (one LEN value holding many varints) or not (one VARINT per element).
#[inline]
pub(crate) fn for_each_packed_varint(
    value: Value<'_>,
    mut f: impl FnMut(u64) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    match value {
        Value::Varint(v) => f(v),
        Value::Len(mut b) => {
            while !b.is_empty() {
                f(read_varint(&mut b)?)?;
            }
            Ok(())
        }
        other => Err(other.mismatch("VARINT or LEN (packed)")),
    }
}

/// Checks a repeated 64-bit fixed field that may be packed or not.
#[inline]
pub(crate) fn check_packed_fixed64(value: Value<'_>) -> Result<(), DecodeError> {
    match value {
        Value::I64(_) => Ok(()),
        Value::Len(b) if b.len().is_multiple_of(8) => Ok(()),
        Value::Len(_) => Err(DecodeErrorKind::Truncated {
            what: "packed 64-bit value",
        }
        .into()),
        other => Err(other.mismatch("I64 or LEN (packed)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn varint_round_trips_edge_values() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let bytes = encode_varint(v);
            let mut s = bytes.as_slice();
            assert_eq!(read_varint(&mut s).unwrap(), v);
            assert!(s.is_empty());
        }
    }

    #[test]
    fn varint_overflow_and_truncation_are_errors() {
        // Tenth byte 0x02 would set bit 64.
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(
            read_varint(&mut too_big.as_slice()).unwrap_err().kind(),
            &DecodeErrorKind::VarintOverflow
        );
        let eleven = [0x80u8; 11];
        assert_eq!(
            read_varint(&mut eleven.as_slice()).unwrap_err().kind(),
            &DecodeErrorKind::VarintOverflow
        );
        assert_eq!(
            read_varint(&mut [0x80u8, 0x80].as_slice())
                .unwrap_err()
                .kind(),
            &DecodeErrorKind::Truncated { what: "varint" }
        );
        assert!(read_varint(&mut [].as_slice()).is_err());
    }

    #[test]
    fn keys_reject_field_zero_and_bad_wire_types() {
        let mut r = Reader::new(&[0x02, 0x00]);
        assert!(matches!(
            r.next_field().unwrap_err().kind(),
            DecodeErrorKind::InvalidKey { key: 2 }
        ));
        let mut r = Reader::new(&[0x0e]);
        assert_eq!(
            r.next_field().unwrap_err().kind(),
            &DecodeErrorKind::InvalidWireType { wire_type: 6 }
        );
        let mut r = Reader::new(&[0x0c]);
        assert_eq!(
            r.next_field().unwrap_err().kind(),
            &DecodeErrorKind::UnexpectedEndGroup { field: 1 }
        );
    }

    #[test]
    fn length_prefix_beyond_input_is_rejected_before_slicing() {
        // Field 1, LEN, length 2^63.
        let mut bytes = vec![0x0a];
        bytes.extend(encode_varint(1 << 63));
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.next_field().unwrap_err().kind(),
            &DecodeErrorKind::LengthOverflow {
                len: 1 << 63,
                remaining: 0
            }
        );
    }

    #[test]
    fn groups_are_skipped_and_must_be_closed() {
        // field 5 start-group { field 1 varint 7; field 2 start { } end 2 } end 5, then field 1 varint 9
        let bytes = [0x2b, 0x08, 0x07, 0x13, 0x14, 0x2c, 0x08, 0x09];
        let mut r = Reader::new(&bytes);
        assert!(matches!(r.next_field().unwrap(), Some((5, Value::Group))));
        assert!(matches!(
            r.next_field().unwrap(),
            Some((1, Value::Varint(9)))
        ));
        assert!(r.next_field().unwrap().is_none());

        let mut r = Reader::new(&[0x2b, 0x08, 0x07]);
        assert_eq!(
            r.next_field().unwrap_err().kind(),
            &DecodeErrorKind::UnterminatedGroup { field: 5 }
        );
        // Mismatched end-group number.
        let mut r = Reader::new(&[0x2b, 0x34]);
        assert_eq!(
            r.next_field().unwrap_err().kind(),
            &DecodeErrorKind::UnexpectedEndGroup { field: 6 }
        );
        // Deep nesting is bounded.
        let deep = vec![0x0b; 1000];
        let mut r = Reader::new(&deep);
        assert_eq!(
            r.next_field().unwrap_err().kind(),
            &DecodeErrorKind::GroupTooDeep
        );
    }

    #[test]
    fn error_display_names_the_path() {
        let e = DecodeError::new(DecodeErrorKind::InvalidUtf8 { valid_up_to: 2 })
            .at("value", None)
            .at("labels", Some(1))
            .at("timeseries", Some(3))
            .in_message("WriteRequest");
        assert_eq!(
            e.to_string(),
            "timeseries[3].labels[1].value: invalid UTF-8 (valid up to byte 2)"
        );
        assert_eq!(e.path(), "timeseries[3].labels[1].value");
        let top = DecodeError::new(DecodeErrorKind::VarintOverflow).in_message("WriteRequest");
        assert_eq!(
            top.to_string(),
            "WriteRequest: varint longer than 10 bytes or larger than 64 bits"
        );
    }

    #[test]
    fn wire_type_mismatch_is_reported() {
        let e = Value::Varint(1).len().unwrap_err();
        assert_eq!(
            e.kind(),
            &DecodeErrorKind::WrongWireType {
                expected: "LEN",
                got: "VARINT"
            }
        );
        assert!(Value::Len(&[1, 2, 3]).fixed64().is_err());
        assert!(check_packed_fixed64(Value::Len(&[0; 7])).is_err());
        assert!(check_packed_fixed64(Value::Len(&[0; 16])).is_ok());
    }
}
