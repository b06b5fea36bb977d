//! Behavioural tests of the WAL through its public API: round trips, torn tails at every
//! offset, corruption and repair, checkpoints and crashes during them, sync modes, concurrency,
//! and the committed v1 fixture.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::format::{self, FILE_HEADER_LEN, FileHeader, FileKind};
use crate::*;

type Owned = Vec<(u8, Vec<u8>)>;

fn opts(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

fn repair_opts(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        recovery: RecoveryMode::Repair,
        ..WalOptions::default()
    }
}

fn append(wal: &Wal, batch: &Owned) {
    let refs: Vec<(u8, &[u8])> = batch.iter().map(|(k, p)| (*k, p.as_slice())).collect();
    wal.append(&refs).unwrap();
}

fn drain(replay: &mut Replay) -> Owned {
    let mut out = Vec::new();
    while let Some(record) = replay.next_record() {
        let record = record.unwrap();
        out.push((record.kind, record.payload.to_vec()));
    }
    out
}

/// Deterministic batch `i`: 1 to 4 records of varying kinds and sizes.
fn batch(i: usize, max_payload: usize) -> Owned {
    (0..1 + i % 4)
        .map(|j| {
            let kind = 1 + ((i + j) % 200) as u8;
            let len = (i * 37 + j * 11) % max_payload;
            let payload = (0..len).map(|b| (b * 7 + i + j) as u8).collect();
            (kind, payload)
        })
        .collect()
}

fn flatten(batches: &[Owned]) -> Owned {
    batches.iter().flatten().cloned().collect()
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(format::segment_file_name(n))
}

/// Offsets of the frames of a segment or checkpoint file, plus its length.
fn frame_offsets(path: &Path) -> (Vec<usize>, usize) {
    let bytes = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    while pos < bytes.len() {
        offsets.push(pos);
        pos += format::decode_frame(&bytes[pos..]).unwrap().encoded_len();
    }
    (offsets, bytes.len())
}

fn wal_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "LOCK")
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Writes `batches` into a fresh WAL in `dir` and closes it; returns the segments used.
fn write_wal(dir: &Path, segment_size: u64, batches: &[Owned]) -> Vec<u64> {
    let (wal, mut replay, report) = Wal::open(dir, opts(segment_size)).unwrap();
    assert!(drain(&mut replay).is_empty());
    assert!(report.is_none());
    for b in batches {
        append(&wal, b);
    }
    let segments = wal.segments();
    wal.close().unwrap();
    segments
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x5A;
    fs::write(path, bytes).unwrap();
}

/// Small deterministic xorshift generator for garbage bytes.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn wal_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
    fn assert_send<T: Send>() {}
    assert_send::<Replay>();
}

#[test]
fn round_trip_many_batches_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Owned> = (0..300).map(|i| batch(i, 300)).collect();
    let segments = write_wal(dir.path(), 4096, &batches);
    assert!(
        segments.len() > 5,
        "expected several rotations, got {segments:?}"
    );
    for s in &segments {
        let len = fs::metadata(seg(dir.path(), *s)).unwrap().len();
        assert!(len <= 4096, "segment {s} has {len} bytes");
    }

    let (wal, mut replay, report) = Wal::open(dir.path(), opts(4096)).unwrap();
    assert!(report.is_none());
    assert_eq!(drain(&mut replay), flatten(&batches));
    let stats = replay.stats();
    assert_eq!(stats.batches, 300);
    assert_eq!(stats.records, flatten(&batches).len() as u64);
    assert_eq!(stats.files, segments.len() as u64);
    // Appends after replay go to a fresh segment and everything survives the next open.
    assert_eq!(wal.current_segment(), segments.last().unwrap() + 1);
    let more: Vec<Owned> = (300..320).map(|i| batch(i, 300)).collect();
    for b in &more {
        append(&wal, b);
    }
    wal.close().unwrap();
    let (_wal, mut replay, report) = Wal::open(dir.path(), opts(4096)).unwrap();
    assert!(report.is_none());
    let mut all = batches.clone();
    all.extend(more);
    assert_eq!(drain(&mut replay), flatten(&all));
}

#[test]
fn reopen_creates_a_fresh_contiguous_segment_each_time() {
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=3u64 {
        let (wal, _replay, _) = Wal::open(dir.path(), opts(4096)).unwrap();
        assert_eq!(wal.current_segment(), round);
        assert_eq!(wal.segments(), (1..=round).collect::<Vec<_>>());
        assert_eq!(wal.last_checkpoint(), None);
    }
}

#[test]
fn a_batch_larger_than_a_segment_gets_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let batches = vec![
        vec![(1, vec![1u8; 100])],
        vec![(2, vec![2u8; 5000])],
        vec![(3, vec![3u8; 10])],
    ];
    let segments = write_wal(dir.path(), 1024, &batches);
    assert_eq!(segments, vec![1, 2, 3]);
    let (_wal, mut replay, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    assert_eq!(drain(&mut replay), flatten(&batches));
}

#[test]
fn empty_batch_is_a_no_op_and_reserved_kinds_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(4096)).unwrap();
    wal.append(&[]).unwrap();
    assert!(matches!(
        wal.append(&[(0, b"x".as_slice())]),
        Err(WalError::InvalidRecord {
            index: 0,
            kind: 0,
            ..
        })
    ));
    assert!(matches!(
        wal.append(&[(1, b"ok".as_slice()), (250, b"x".as_slice())]),
        Err(WalError::InvalidRecord {
            index: 1,
            kind: 250,
            ..
        })
    ));
    wal.append(&[(239, b"last user kind".as_slice())]).unwrap();
    wal.close().unwrap();
    let (_wal, mut replay, _) = Wal::open(dir.path(), opts(4096)).unwrap();
    assert_eq!(drain(&mut replay), vec![(239, b"last user kind".to_vec())]);
}

#[test]
fn second_writer_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(4096)).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts(4096)),
        Err(WalError::Locked { .. })
    ));
    wal.close().unwrap();
    assert!(Wal::open(dir.path(), opts(4096)).is_ok());
}

#[test]
fn invalid_options_are_rejected_at_open() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Wal::open(dir.path(), opts(100)),
        Err(WalError::InvalidOptions(_))
    ));
}

/// Builds a single-segment WAL whose last batch spans `[start, end)` of segment 1.
fn single_segment_template(dir: &Path) -> (Vec<Owned>, usize, usize) {
    let batches: Vec<Owned> = (0..5).map(|i| batch(i, 40)).collect();
    write_wal(dir, 1 << 20, &batches);
    let (offsets, len) = frame_offsets(&seg(dir, 1));
    assert_eq!(offsets.len(), 5);
    (batches, *offsets.last().unwrap(), len)
}

/// Opens a damaged copy, checks it recovered to `expected` with one torn-tail drop, then checks
/// that appending and reopening works.
fn assert_torn_tail_recovery(dir: &Path, expected: &Owned, offset: u64, bytes: u64) {
    let (wal, mut replay, report) = Wal::open(dir, opts(1 << 20)).unwrap();
    let report = report.expect("a torn tail must be reported");
    assert_eq!(report.dropped.len(), 1, "{report:?}");
    let drop = &report.dropped[0];
    assert_eq!(drop.file, WalFile::Segment(1));
    assert_eq!(drop.offset, offset);
    assert_eq!(drop.bytes, bytes);
    assert!(matches!(drop.cause, DropCause::TornTail(_)), "{drop:?}");
    assert!(report.is_torn_tail_only());
    assert_eq!(&drain(&mut replay), expected);
    assert_eq!(fs::metadata(seg(dir, 1)).unwrap().len(), offset);
    wal.append(&[(9, b"after".as_slice())]).unwrap();
    wal.close().unwrap();
    let (_wal, mut replay, report) = Wal::open(dir, opts(1 << 20)).unwrap();
    assert!(report.is_none());
    let mut with_new = expected.clone();
    with_new.push((9, b"after".to_vec()));
    assert_eq!(drain(&mut replay), with_new);
}

#[test]
fn torn_tail_at_every_byte_offset_of_the_last_batch() {
    let template = tempfile::tempdir().unwrap();
    let (batches, start, len) = single_segment_template(template.path());
    let bytes = fs::read(seg(template.path(), 1)).unwrap();
    let prefix = flatten(&batches[..4]);
    for cut in start + 1..len {
        let dir = tempfile::tempdir().unwrap();
        fs::write(seg(dir.path(), 1), &bytes[..cut]).unwrap();
        assert_torn_tail_recovery(dir.path(), &prefix, start as u64, (cut - start) as u64);
    }
    // Cut exactly at a frame boundary: nothing is torn, nothing is reported.
    let dir = tempfile::tempdir().unwrap();
    fs::write(seg(dir.path(), 1), &bytes[..start]).unwrap();
    let (_wal, mut replay, report) = Wal::open(dir.path(), opts(1 << 20)).unwrap();
    assert!(report.is_none());
    assert_eq!(drain(&mut replay), prefix);
}

#[test]
fn damaged_byte_anywhere_in_the_last_batch_is_a_torn_tail() {
    let template = tempfile::tempdir().unwrap();
    let (batches, start, len) = single_segment_template(template.path());
    let prefix = flatten(&batches[..4]);
    for at in start..len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        flip(&seg(dir.path(), 1), at);
        assert_torn_tail_recovery(dir.path(), &prefix, start as u64, (len - start) as u64);
    }
}

#[test]
fn garbage_appended_to_the_tail_is_cut_off() {
    for (name, tail) in [
        ("random", garbage(1000, 0x9E37_79B9)),
        ("zeros", vec![0u8; 4096]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Owned> = (0..5).map(|i| batch(i, 40)).collect();
        write_wal(dir.path(), 1 << 20, &batches);
        let len = fs::metadata(seg(dir.path(), 1)).unwrap().len();
        let mut bytes = fs::read(seg(dir.path(), 1)).unwrap();
        bytes.extend_from_slice(&tail);
        fs::write(seg(dir.path(), 1), &bytes).unwrap();
        let (wal, mut replay, report) = Wal::open(dir.path(), opts(1 << 20)).unwrap();
        let report = report.unwrap_or_else(|| panic!("{name}: garbage must be reported"));
        assert_eq!(report.dropped.len(), 1, "{name}");
        assert_eq!(report.dropped[0].offset, len, "{name}");
        assert_eq!(report.bytes_dropped(), tail.len() as u64, "{name}");
        assert_eq!(drain(&mut replay), flatten(&batches), "{name}");
        wal.close().unwrap();
        // Reopening again is clean.
        let (_wal, mut replay, report) = Wal::open(dir.path(), opts(1 << 20)).unwrap();
        assert!(report.is_none(), "{name}");
        assert_eq!(drain(&mut replay), flatten(&batches), "{name}");
    }
}

#[test]
fn garbage_followed_by_a_valid_frame_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Owned> = (0..3).map(|i| batch(i, 40)).collect();
    write_wal(dir.path(), 1 << 20, &batches);
    let path = seg(dir.path(), 1);
    let mut bytes = fs::read(&path).unwrap();
    let (offsets, len) = frame_offsets(&path);
    let valid_frame = bytes[offsets[2]..len].to_vec();
    bytes.extend_from_slice(&garbage(33, 7));
    bytes.extend_from_slice(&valid_frame);
    fs::write(&path, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts(1 << 20)).unwrap_err();
    assert!(
        matches!(err, WalError::Corrupt { segment: 1, offset, .. } if offset == len as u64),
        "{err:?}"
    );
}

#[test]
fn damaged_frame_in_the_newest_segment_followed_by_valid_frames_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Owned> = (0..5).map(|i| batch(i, 40)).collect();
    write_wal(dir.path(), 1 << 20, &batches);
    let (offsets, _) = frame_offsets(&seg(dir.path(), 1));
    flip(&seg(dir.path(), 1), offsets[2] + FRAME_BODY_BYTE);
    let before = fs::read(seg(dir.path(), 1)).unwrap();
    let err = Wal::open(dir.path(), opts(1 << 20)).unwrap_err();
    assert!(
        matches!(
            &err,
            WalError::Corrupt { segment: 1, offset, reason: Corruption::FrameChecksum { .. } }
            if *offset == offsets[2] as u64),
        "{err:?}"
    );
    assert_eq!(
        fs::read(seg(dir.path(), 1)).unwrap(),
        before,
        "a failed open must not modify files"
    );
}

/// Offset inside a frame that lands in its body (past the 16-byte header and the first record
/// header).
const FRAME_BODY_BYTE: usize = 16 + 5 + 1;

/// A WAL over at least four segments; returns the batches and the segment numbers.
fn multi_segment_wal(dir: &Path) -> (Vec<Owned>, Vec<u64>) {
    let batches: Vec<Owned> = (0..60).map(|i| batch(i, 200)).collect();
    let segments = write_wal(dir, 1024, &batches);
    assert!(segments.len() >= 4, "{segments:?}");
    (batches, segments)
}

#[test]
fn flipped_byte_in_an_older_segment_is_reported_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_batches, segments) = multi_segment_wal(dir.path());
    let target = segments[1];
    let (offsets, _) = frame_offsets(&seg(dir.path(), target));
    assert!(offsets.len() >= 2);
    flip(&seg(dir.path(), target), offsets[1] + FRAME_BODY_BYTE);
    let files_before = wal_files(dir.path());
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err();
    match err {
        WalError::Corrupt {
            segment,
            offset,
            reason,
        } => {
            assert_eq!(segment, target);
            assert_eq!(offset, offsets[1] as u64);
            assert!(
                matches!(reason, Corruption::FrameChecksum { .. }),
                "{reason:?}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(wal_files(dir.path()), files_before);
    // The error message names both.
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err().to_string();
    assert!(
        err.contains(&format!("segment {target} at offset {}", offsets[1])),
        "{err}"
    );
}

#[test]
fn flipped_header_byte_in_an_older_segment_is_corruption_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (_batches, segments) = multi_segment_wal(dir.path());
    flip(&seg(dir.path(), segments[0]), 9);
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                segment: 1,
                offset: 0,
                reason: Corruption::FileHeaderChecksum { .. }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn repair_keeps_exactly_the_valid_prefix_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, segments) = multi_segment_wal(dir.path());
    let target = segments[1];
    let path = seg(dir.path(), target);
    let (offsets, len) = frame_offsets(&path);
    flip(&path, offsets[1] + FRAME_BODY_BYTE);

    // Which batches survive: all of the first segment plus the first frame of the target.
    let first_frames = frame_offsets(&seg(dir.path(), segments[0])).0.len();
    let survivors = flatten(&batches[..first_frames + 1]);
    let later: Vec<u64> = segments[2..].to_vec();
    let later_bytes: Vec<u64> = later
        .iter()
        .map(|s| fs::metadata(seg(dir.path(), *s)).unwrap().len())
        .collect();
    let later_frames: Vec<u64> = later
        .iter()
        .map(|s| frame_offsets(&seg(dir.path(), *s)).0.len() as u64)
        .collect();

    let (wal, mut replay, report) = Wal::open(dir.path(), repair_opts(1024)).unwrap();
    let report = report.expect("repair must report");
    assert!(!report.is_torn_tail_only());
    assert_eq!(report.dropped.len(), 1 + later.len());
    let cut = &report.dropped[0];
    assert_eq!(cut.file, WalFile::Segment(target));
    assert_eq!(cut.offset, offsets[1] as u64);
    assert_eq!(cut.bytes, (len - offsets[1]) as u64);
    assert!(!cut.file_removed);
    assert_eq!(cut.intact_batches, (offsets.len() - 2) as u64);
    assert!(matches!(
        cut.cause,
        DropCause::Corrupt(Corruption::FrameChecksum { .. })
    ));
    for (i, s) in later.iter().enumerate() {
        let d = &report.dropped[1 + i];
        assert_eq!(d.file, WalFile::Segment(*s));
        assert!(d.file_removed);
        assert_eq!(d.bytes, later_bytes[i]);
        assert_eq!(d.intact_batches, later_frames[i]);
        assert_eq!(d.cause, DropCause::FollowsCorruption);
    }
    // Only the surviving segments remain, plus the fresh (header-only) segment that reuses the
    // number after the cut.
    assert_eq!(
        wal_files(dir.path()),
        (segments[0]..=target + 1)
            .map(format::segment_file_name)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        fs::metadata(seg(dir.path(), target + 1)).unwrap().len(),
        FILE_HEADER_LEN as u64
    );
    assert_eq!(
        report.files_removed(),
        later
            .iter()
            .map(|s| WalFile::Segment(*s))
            .collect::<Vec<_>>()
    );
    assert_eq!(drain(&mut replay), survivors);
    assert_eq!(wal.current_segment(), target + 1);
    wal.append(&[(7, b"post-repair".as_slice())]).unwrap();
    wal.close().unwrap();

    // The repaired WAL opens cleanly in the strict mode.
    let (_wal, mut replay, report) = Wal::open(dir.path(), opts(1024)).unwrap();
    assert!(report.is_none());
    let mut expected = survivors;
    expected.push((7, b"post-repair".to_vec()));
    assert_eq!(drain(&mut replay), expected);
}

#[test]
fn repair_of_a_damaged_older_header_removes_that_segment_and_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, segments) = multi_segment_wal(dir.path());
    flip(&seg(dir.path(), segments[1]), 2);
    let first_frames = frame_offsets(&seg(dir.path(), segments[0])).0.len();
    let (_wal, mut replay, report) = Wal::open(dir.path(), repair_opts(1024)).unwrap();
    let report = report.unwrap();
    assert_eq!(report.dropped[0].file, WalFile::Segment(segments[1]));
    assert_eq!(report.dropped[0].offset, 0);
    assert!(report.dropped[0].file_removed);
    assert!(matches!(
        report.dropped[0].cause,
        DropCause::Corrupt(Corruption::BadMagic { .. })
    ));
    assert_eq!(drain(&mut replay), flatten(&batches[..first_frames]));
}

#[test]
fn truncated_header_of_the_newest_segment_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, segments) = multi_segment_wal(dir.path());
    // Simulate a crash while creating the next segment: only part of its header made it.
    let next = segments.last().unwrap() + 1;
    let header = FileHeader::new(FileKind::Segment, next).encode();
    for keep in [0usize, 1, 10, 19] {
        fs::write(seg(dir.path(), next), &header[..keep]).unwrap();
        let (wal, mut replay, report) = Wal::open(dir.path(), opts(1024)).unwrap();
        let report = report.unwrap();
        assert_eq!(report.dropped.len(), 1);
        assert_eq!(report.dropped[0].file, WalFile::Segment(next));
        assert_eq!(report.dropped[0].bytes, keep as u64);
        assert!(report.dropped[0].file_removed);
        assert!(matches!(
            report.dropped[0].cause,
            DropCause::TornTail(Corruption::ShortFileHeader { .. })
        ));
        assert_eq!(drain(&mut replay), flatten(&batches));
        // The number is reused by the fresh segment; remove it again for the next round.
        assert_eq!(wal.current_segment(), next);
        drop(wal);
        fs::remove_file(seg(dir.path(), next)).unwrap();
    }
}

#[test]
fn truncated_header_of_an_older_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (_batches, segments) = multi_segment_wal(dir.path());
    let path = seg(dir.path(), segments[1]);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..12]).unwrap();
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                segment,
                offset: 0,
                reason: Corruption::ShortFileHeader { needed: 20, available: 12 },
            }
            if segment == segments[1]),
        "{err:?}"
    );
}

#[test]
fn unknown_format_version_is_a_typed_error_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    write_wal(dir.path(), 4096, &[batch(1, 10)]);
    let path = seg(dir.path(), 1);
    let mut bytes = fs::read(&path).unwrap();
    bytes[4..6].copy_from_slice(&99u16.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    for options in [opts(4096), repair_opts(4096)] {
        let err = Wal::open(dir.path(), options).unwrap_err();
        assert!(
            matches!(
                &err,
                WalError::UnsupportedVersion { version: 99, oldest: 1, current: 1, path: p }
                    if *p == path
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "repair must not touch a file it cannot read"
    );
}

#[test]
fn segment_header_naming_another_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (_batches, segments) = multi_segment_wal(dir.path());
    let path = seg(dir.path(), segments[0]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[..FILE_HEADER_LEN].copy_from_slice(&FileHeader::new(FileKind::Segment, 77).encode());
    fs::write(&path, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                offset: 0,
                reason: Corruption::SequenceMismatch {
                    expected: 1,
                    got: 77
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn missing_segment_is_corruption_and_repair_drops_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, segments) = multi_segment_wal(dir.path());
    let missing = segments[2];
    fs::remove_file(seg(dir.path(), missing)).unwrap();
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                segment,
                offset: 0,
                reason: Corruption::MissingSegment { next_present },
            }
            if segment == missing && next_present == missing + 1),
        "{err:?}"
    );
    let kept_frames: usize = segments[..2]
        .iter()
        .map(|s| frame_offsets(&seg(dir.path(), *s)).0.len())
        .sum();
    let (wal, mut replay, report) = Wal::open(dir.path(), repair_opts(1024)).unwrap();
    let report = report.unwrap();
    assert_eq!(report.dropped[0].file, WalFile::Segment(missing));
    assert_eq!(
        report.files_removed(),
        segments[3..]
            .iter()
            .map(|s| WalFile::Segment(*s))
            .collect::<Vec<_>>()
    );
    assert_eq!(drain(&mut replay), flatten(&batches[..kept_frames]));
    assert_eq!(wal.current_segment(), missing);
}

#[test]
fn replay_reports_a_file_damaged_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_batches, segments) = multi_segment_wal(dir.path());
    let (_wal, mut replay, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    let target = segments[2];
    let (offsets, _) = frame_offsets(&seg(dir.path(), target));
    flip(&seg(dir.path(), target), offsets[0] + FRAME_BODY_BYTE);
    let mut saw_error = None;
    while let Some(record) = replay.next_record() {
        if let Err(e) = record {
            saw_error = Some(e);
        }
    }
    assert!(
        matches!(
            saw_error,
            Some(WalError::Corrupt { segment, offset, .. })
                if segment == target && offset == offsets[0] as u64
        ),
        "{saw_error:?}"
    );
    assert!(
        replay.next_record().is_none(),
        "replay stops after an error"
    );
}

fn keep_fn(kind: u8, payload: &[u8]) -> CheckpointAction {
    match kind {
        1 => CheckpointAction::Keep,
        2 if payload.last().is_some_and(|b| b % 2 == 0) => CheckpointAction::Rewrite {
            kind: 3,
            payload: [b"re:".as_slice(), payload].concat(),
        },
        3 => CheckpointAction::Keep,
        _ => CheckpointAction::Drop,
    }
}

fn apply_keep(records: &Owned) -> Owned {
    records
        .iter()
        .filter_map(|(k, p)| match keep_fn(*k, p) {
            CheckpointAction::Keep => Some((*k, p.clone())),
            CheckpointAction::Rewrite { kind, payload } => Some((kind, payload)),
            CheckpointAction::Drop => None,
        })
        .collect()
}

/// Records alternating between "series" (kind 1) and "samples" (kind 2).
fn series_and_samples(range: std::ops::Range<usize>) -> Vec<Owned> {
    range
        .map(|i| {
            vec![
                (1, format!("series-{i}").into_bytes()),
                (2, vec![i as u8; 60]),
            ]
        })
        .collect()
}

#[test]
fn checkpoint_keeps_rewrites_drops_and_deletes_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    let first = series_and_samples(0..40);
    for b in &first {
        append(&wal, b);
    }
    let next = wal.rotate().unwrap();
    assert_eq!(wal.current_segment(), next);
    assert!(next > 3);
    let stats = wal.checkpoint(next - 1, keep_fn).unwrap();
    let expected_ckpt = apply_keep(&flatten(&first));
    assert_eq!(stats.upto_segment, next - 1);
    assert_eq!(stats.previous_checkpoint, None);
    assert_eq!(stats.records_read, 80);
    assert_eq!(stats.records_kept, 40);
    assert_eq!(stats.records_rewritten, 20);
    assert_eq!(stats.records_dropped, 20);
    assert_eq!(stats.segments_deleted, (1..next).collect::<Vec<_>>());
    assert_eq!(
        stats.bytes_written,
        fs::metadata(dir.path().join(format::checkpoint_file_name(next - 1)))
            .unwrap()
            .len()
    );
    assert_eq!(wal.segments(), vec![next]);
    assert_eq!(wal.last_checkpoint(), Some(next - 1));
    assert_eq!(
        wal_files(dir.path()),
        vec![
            format::segment_file_name(next),
            format::checkpoint_file_name(next - 1)
        ]
    );

    let second = series_and_samples(40..50);
    for b in &second {
        append(&wal, b);
    }
    wal.close().unwrap();
    let (wal, mut replay, report) = Wal::open(dir.path(), opts(1024)).unwrap();
    assert!(report.is_none());
    let mut expected = expected_ckpt.clone();
    expected.extend(flatten(&second));
    assert_eq!(drain(&mut replay), expected);

    // A second checkpoint passes the first checkpoint's records through `keep` again.
    let next2 = wal.rotate().unwrap();
    let stats = wal.checkpoint(next2 - 1, keep_fn).unwrap();
    assert_eq!(stats.previous_checkpoint, Some(next - 1));
    assert!(
        !dir.path()
            .join(format::checkpoint_file_name(next - 1))
            .exists()
    );
    wal.close().unwrap();
    let (_wal, mut replay, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    assert_eq!(drain(&mut replay), apply_keep(&expected));
}

#[test]
fn checkpoint_rejects_bad_ranges_and_bad_rewrites_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    for b in series_and_samples(0..20) {
        append(&wal, &b);
    }
    let active = wal.current_segment();
    assert!(matches!(
        wal.checkpoint(active, keep_fn),
        Err(WalError::InvalidCheckpoint { .. })
    ));
    let before = wal_files(dir.path());
    let err = wal
        .checkpoint(active - 1, |_, _| CheckpointAction::Rewrite {
            kind: 0,
            payload: vec![],
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            WalError::InvalidRecord {
                index: 0,
                kind: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        wal_files(dir.path()),
        before,
        "a failed checkpoint leaves no files behind"
    );
    assert_eq!(wal.last_checkpoint(), None);
    wal.checkpoint(active - 1, keep_fn).unwrap();
    assert!(matches!(
        wal.checkpoint(active - 1, keep_fn),
        Err(WalError::InvalidCheckpoint { .. })
    ));
    assert!(matches!(
        wal.checkpoint(0, keep_fn),
        Err(WalError::InvalidCheckpoint { .. })
    ));
}

#[test]
fn checkpoint_runs_while_other_threads_append() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(2048)).unwrap();
    let wal = Arc::new(wal);
    let early = series_and_samples(0..30);
    for b in &early {
        append(&wal, b);
    }
    let upto = wal.rotate().unwrap() - 1;
    let writer = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            for b in series_and_samples(30..130) {
                append(&wal, &b);
            }
        })
    };
    wal.checkpoint(upto, keep_fn).unwrap();
    writer.join().unwrap();
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    let (_wal, mut replay, report) = Wal::open(dir.path(), opts(2048)).unwrap();
    assert!(report.is_none());
    let mut expected = apply_keep(&flatten(&early));
    expected.extend(flatten(&series_and_samples(30..130)));
    assert_eq!(drain(&mut replay), expected);
}

#[test]
fn leftover_temporary_checkpoint_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Owned> = (0..10).map(|i| batch(i, 100)).collect();
    write_wal(dir.path(), 1024, &batches);
    let tmp = dir.path().join(format::checkpoint_temp_file_name(3));
    // A crash mid-checkpoint: half a file, in any state.
    let mut partial = FileHeader::new(FileKind::Checkpoint, 3).encode().to_vec();
    partial.extend_from_slice(&garbage(100, 3));
    fs::write(&tmp, partial).unwrap();
    let (_wal, mut replay, report) = Wal::open(dir.path(), opts(1024)).unwrap();
    assert!(report.is_none());
    assert!(!tmp.exists());
    assert_eq!(drain(&mut replay), flatten(&batches));
}

#[test]
fn crash_between_checkpoint_rename_and_cleanup_replays_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    let early = series_and_samples(0..30);
    for b in &early {
        append(&wal, b);
    }
    let upto = wal.rotate().unwrap() - 1;
    wal.checkpoint(upto, |_, _| CheckpointAction::Keep).unwrap();
    // Recreate the state just after the rename, before the old files were deleted: build the
    // same segments (and an older checkpoint) in a second WAL written with the same data.
    let old = tempfile::tempdir().unwrap();
    let (old_wal, _, _) = Wal::open(old.path(), opts(1024)).unwrap();
    for b in &early {
        append(&old_wal, b);
    }
    old_wal.rotate().unwrap();
    let second_ckpt = old_wal
        .checkpoint(1, |_, _| CheckpointAction::Keep)
        .unwrap();
    assert_eq!(second_ckpt.upto_segment, 1);
    old_wal.close().unwrap();
    let later = series_and_samples(30..35);
    for b in &later {
        append(&wal, b);
    }
    wal.close().unwrap();
    // Restore stale files: an older checkpoint and segments the new checkpoint covers.
    fs::copy(
        old.path().join(format::checkpoint_file_name(1)),
        dir.path().join(format::checkpoint_file_name(1)),
    )
    .unwrap();
    for s in 2..=upto {
        fs::copy(seg(old.path(), s), seg(dir.path(), s)).unwrap();
    }
    let (_wal, mut replay, report) = Wal::open(dir.path(), opts(1024)).unwrap();
    assert!(report.is_none());
    let mut expected = flatten(&early);
    expected.extend(flatten(&later));
    assert_eq!(drain(&mut replay), expected);
    assert!(!dir.path().join(format::checkpoint_file_name(1)).exists());
    for s in 2..=upto {
        assert!(!seg(dir.path(), s).exists());
    }
}

#[test]
fn corrupt_checkpoint_is_a_hard_error_and_repair_keeps_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(1024)).unwrap();
    // Enough data for two checkpoint frames (frames are cut at 1 MiB).
    let big: Vec<Owned> = (0..24).map(|i| vec![(1, vec![i as u8; 100_000])]).collect();
    for b in &big {
        append(&wal, b);
    }
    let upto = wal.rotate().unwrap() - 1;
    wal.checkpoint(upto, |_, _| CheckpointAction::Keep).unwrap();
    append(&wal, &vec![(5, b"later".to_vec())]);
    wal.close().unwrap();
    let path = dir.path().join(format::checkpoint_file_name(upto));
    let (offsets, _) = frame_offsets(&path);
    assert!(offsets.len() >= 2);
    flip(&path, offsets[1] + FRAME_BODY_BYTE);
    let err = Wal::open(dir.path(), opts(1024)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::CorruptCheckpoint { checkpoint, offset, .. }
                if checkpoint == upto && offset == offsets[1] as u64
        ),
        "{err:?}"
    );
    let (_wal, mut replay, report) = Wal::open(dir.path(), repair_opts(1024)).unwrap();
    let report = report.unwrap();
    assert_eq!(report.dropped[0].file, WalFile::Checkpoint(upto));
    assert_eq!(report.files_removed(), vec![WalFile::Segment(upto + 1)]);
    let survivors = drain(&mut replay);
    let first_frame_records = survivors.len();
    assert!(first_frame_records > 0 && first_frame_records < 24);
    assert_eq!(survivors, flatten(&big[..first_frame_records]));
}

#[test]
fn interval_sync_mode_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        sync: SyncMode::Interval(Duration::from_millis(10)),
        ..opts(4096)
    };
    let (wal, _, _) = Wal::open(dir.path(), options.clone()).unwrap();
    let batches: Vec<Owned> = (0..50).map(|i| batch(i, 100)).collect();
    for b in &batches {
        append(&wal, b);
    }
    // Wait (generously) for the background thread to catch up; no timing is asserted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wal.is_fully_synced() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(wal.is_fully_synced(), "background sync never ran");
    append(&wal, &vec![(1, b"tail".to_vec())]);
    wal.sync().unwrap();
    assert!(wal.is_fully_synced());
    wal.close().unwrap();
    let (_wal, mut replay, _) = Wal::open(dir.path(), options).unwrap();
    let mut expected = flatten(&batches);
    expected.push((1, b"tail".to_vec()));
    assert_eq!(drain(&mut replay), expected);
}

#[test]
fn concurrent_appends_keep_every_batch_whole_and_in_per_thread_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(dir.path(), opts(4096)).unwrap();
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..6u8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..150u32 {
                    let mut tag = vec![t];
                    tag.extend_from_slice(&i.to_le_bytes());
                    let body = vec![t; 20 + (i as usize % 50)];
                    wal.append(&[(1, tag.as_slice()), (2, body.as_slice())])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    let (_wal, mut replay, _) = Wal::open(dir.path(), opts(4096)).unwrap();
    let records = drain(&mut replay);
    assert_eq!(records.len(), 6 * 150 * 2);
    let mut next = [0u32; 6];
    for pair in records.chunks(2) {
        let (k1, tag) = &pair[0];
        let (k2, body) = &pair[1];
        assert_eq!(
            (*k1, *k2),
            (1, 2),
            "records of one batch must stay adjacent"
        );
        let t = tag[0] as usize;
        let i = u32::from_le_bytes(tag[1..5].try_into().unwrap());
        assert_eq!(i, next[t], "thread {t} out of order");
        assert_eq!(body, &vec![tag[0]; 20 + (i as usize % 50)]);
        next[t] += 1;
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal_v1")
}

fn fixture_records() -> (Owned, Owned) {
    let early: Owned = vec![
        (1, b"series a".to_vec()),
        (2, vec![0xAB; 24]),
        (1, b"series b".to_vec()),
        (2, Vec::new()),
    ];
    let late: Owned = vec![(2, b"late samples".to_vec()), (239, vec![0, 1, 2, 3])];
    (early, late)
}

/// Writes the v1 fixture into `dir`: a checkpoint over segment 1 and a live segment 2.
fn write_fixture(dir: &Path) {
    let (early, late) = fixture_records();
    let work = tempfile::tempdir().unwrap();
    let (wal, _, _) = Wal::open(work.path(), opts(4096)).unwrap();
    append(&wal, &early[..2].to_vec());
    append(&wal, &early[2..].to_vec());
    assert_eq!(wal.rotate().unwrap(), 2);
    wal.checkpoint(1, |kind, _| {
        if kind == 2 {
            CheckpointAction::Drop
        } else {
            CheckpointAction::Keep
        }
    })
    .unwrap();
    append(&wal, &late);
    wal.close().unwrap();
    fs::create_dir_all(dir).unwrap();
    copy_dir(work.path(), dir);
}

/// Format compatibility: the committed v1 fixture opens and replays, and today's writer still
/// produces it byte for byte (a change here needs a version bump and a new fixture).
#[test]
fn v1_fixture_opens_and_matches_the_current_writer() {
    let fixture = fixture_dir();
    if !fixture.join(format::segment_file_name(2)).exists() {
        write_fixture(&fixture);
    }
    let fresh = tempfile::tempdir().unwrap();
    write_fixture(fresh.path());
    assert_eq!(wal_files(&fixture), wal_files(fresh.path()));
    for name in wal_files(&fixture) {
        assert_eq!(
            fs::read(fixture.join(&name)).unwrap(),
            fs::read(fresh.path().join(&name)).unwrap(),
            "{name}"
        );
    }

    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture, copy.path());
    let (wal, mut replay, report) = Wal::open(copy.path(), opts(4096)).unwrap();
    assert!(report.is_none());
    assert_eq!(wal.last_checkpoint(), Some(1));
    let (early, late) = fixture_records();
    let mut expected: Owned = early.into_iter().filter(|(k, _)| *k != 2).collect();
    expected.extend(late);
    assert_eq!(drain(&mut replay), expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_batches_round_trip(
        batches in proptest::collection::vec(
            proptest::collection::vec(
                (1u8..240, proptest::collection::vec(any::<u8>(), 0..300)),
                1..6,
            ),
            1..16,
        ),
        segment_size in 1024u64..4096,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let options =
            WalOptions { sync: SyncMode::Interval(Duration::from_secs(60)), ..opts(segment_size) };
        let (wal, _, _) = Wal::open(dir.path(), options.clone()).unwrap();
        for b in &batches {
            append(&wal, b);
        }
        drop(wal); // Drop syncs, like close.
        let (_wal, mut replay, report) = Wal::open(dir.path(), options).unwrap();
        prop_assert!(report.is_none());
        prop_assert_eq!(drain(&mut replay), flatten(&batches));
        prop_assert_eq!(replay.stats().batches, batches.len() as u64);
    }

    #[test]
    fn truncating_the_newest_segment_anywhere_keeps_a_batch_prefix(
        n in 1usize..8,
        cut_fraction in 0.0f64..1.0,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Owned> = (0..n).map(|i| batch(i, 80)).collect();
        write_wal(dir.path(), 1 << 20, &batches);
        let path = seg(dir.path(), 1);
        let (offsets, len) = frame_offsets(&path);
        let cut = (len as f64 * cut_fraction) as usize;
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..cut]).unwrap();
        let (_wal, mut replay, _) = Wal::open(dir.path(), opts(1 << 20)).unwrap();
        let complete = offsets.iter().skip(1).chain([&len]).filter(|&&end| end <= cut).count();
        prop_assert_eq!(drain(&mut replay), flatten(&batches[..complete]));
    }
}
