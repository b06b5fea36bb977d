//! `strata-proto`: the Prometheus wire protocols Strata speaks — remote
//! write 1.0 and 2.0, remote read — as schemas, types and fast decoders.
//!
//! # Layout
//!
//! - `proto/` (in the crate directory) holds the `.proto` schemas of record,
//!   with the field numbers that Prometheus puts on the wire.
//! - [`prompb`] and [`write_v2`] mirror them as hand-written prost structs
//!   (`#[derive(prost::Message)]`), so no `protoc` and no build script is
//!   needed. Tests encode with these types and decode with the fast parser,
//!   which keeps schema, mirror and parser in step.
//! - [`remote_write`] is the hot path: a zero-copy wire parser that hands
//!   each series of a write request to a visitor as borrowed `&str` labels
//!   and `(timestamp, value)` samples, with no allocation per label or
//!   sample. [`wire`] is the protobuf reader underneath it.
//! - [`validate`] holds the label-set rules (sorted, unique, non-empty,
//!   charset) as separate functions so the server picks its policy.
//! - [`snappy`] decompresses request bodies with a size limit enforced
//!   before allocation.
//! - [`loki`] is the Loki push request (`logproto.PushRequest`, structured
//!   metadata included) and the parser of Loki's stream-label strings.
//! - [`remote_read`] decodes read requests and writes `SAMPLES` responses
//!   and CRC-32C framed `STREAMED_XOR_CHUNKS` responses, whose chunks are
//!   encoded by [`xor_chunk`] in Prometheus' own XOR chunk format.
//!
//! # Untrusted input
//!
//! Every decoder here takes bytes from the network. None of them panics,
//! indexes without a check, or allocates in proportion to a length it has
//! not checked against the input; errors name the offending field.

pub mod loki;
pub mod prompb;
pub mod remote_read;
pub mod remote_write;
pub mod snappy;
pub mod validate;
pub mod wire;
pub mod write_v2;
pub mod xor_chunk;

/// The prost version these types are built with, for
/// `prost::Message::{encode, decode}` in dependents.
pub use prost;
pub use remote_write::{
    FloatSample, LabelRef, SeriesRef, WriteStats, WriteVisitor, decode_write_v1, decode_write_v2,
};
pub use wire::{DecodeError, DecodeErrorKind};
