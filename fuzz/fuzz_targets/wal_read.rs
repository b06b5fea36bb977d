//! Fuzzes the WAL decoders with arbitrary bytes taken as the contents of a segment file.
//!
//! Exercises exactly the functions recovery, replay and checkpointing run over bytes read from
//! disk: the file header decoder, frame scanning, the resynchronising search for a valid frame
//! after damage, and the record iterator. Beyond "never panics", it checks that scanning stops
//! where the damage is, and that every frame that verifies re-encodes to the identical bytes
//! (so the decoder accepts nothing the encoder would not produce).
//!
//! Run with `cargo fuzz run wal_read` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_wal::format::{
    self, FILE_HEADER_LEN, FileHeader, FileKind, FrameEncoder, is_reserved_kind,
};

fuzz_target!(|data: &[u8]| {
    // File headers of both kinds: must return, never panic; a decoded header re-encodes.
    for kind in [FileKind::Segment, FileKind::Checkpoint] {
        if let Ok(header) = FileHeader::decode(data, kind) {
            assert_eq!(&header.encode()[..], &data[..FILE_HEADER_LEN]);
        }
    }

    // Frame scanning, from the end of the header (as recovery does) and from offset 0.
    for start in [FILE_HEADER_LEN.min(data.len()), 0] {
        let scan = format::scan_frames(data, start);
        assert!(scan.valid_len >= start && scan.valid_len <= data.len());
        match &scan.damage {
            Some((offset, _)) => {
                assert_eq!(*offset, scan.valid_len);
                // The torn-tail test recovery applies after damage.
                if let Some(next) = format::find_valid_frame(data, offset + 1) {
                    assert!(next > *offset);
                    assert!(format::decode_frame(&data[next..]).is_ok());
                }
            }
            None => assert_eq!(scan.valid_len, data.len()),
        }
        let (batches, records) = format::count_intact(data, start);
        assert!(batches >= scan.batches && records >= scan.records);
    }

    // Every frame that verifies re-encodes byte for byte, and its records are well formed.
    let mut encoder = FrameEncoder::new();
    let mut pos = FILE_HEADER_LEN.min(data.len());
    while let Ok(frame) = format::decode_frame(&data[pos..]) {
        encoder.clear();
        let mut count = 0u32;
        for record in frame.records() {
            assert!(!is_reserved_kind(record.kind));
            encoder
                .push(record.kind, record.payload)
                .expect("verified record re-encodes");
            count += 1;
        }
        assert_eq!(count, frame.count());
        let reencoded = encoder.finish().expect("a verified frame has records");
        assert_eq!(reencoded, &data[pos..pos + frame.encoded_len()]);
        pos += frame.encoded_len();
    }
});
