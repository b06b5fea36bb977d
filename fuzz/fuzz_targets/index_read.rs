#![no_main]
//! Fuzz target: the block index reader must never panic on arbitrary bytes.
//!
//! Each input becomes the `index` file of an otherwise valid block (`meta.json`, empty
//! `tombstones`, one chunk segment) in a per-process temp dir; the block is then opened and
//! every label name, value, postings list, series and chunk is read. Errors are expected;
//! panics, hangs and unbounded allocations are bugs.
//!
//! The first input byte picks the mode:
//! - even: the rest of the input is the whole index file, which exercises the length, magic,
//!   version and TOC checks (a fuzzer rarely gets past the checksums this way);
//! - odd: the rest is split into the five section bodies and framed with correct offsets and
//!   CRCs by `index_file_from_sections`, so the section decoders (symbols, label table,
//!   postings, series records, chunk metadata) see the fuzzer's bytes. `mode >> 1 & 15` is the
//!   series count in the TOC; the next four bytes are the lengths of the first four sections
//!   and the remainder is the series offsets section.

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_engine::Labels;
use strata_engine::block::{self, Block, BlockMeta, BlockWriter};

/// Series counts for which a fixture block exists.
const FIXTURES: u32 = 16;
/// Fixture used for raw inputs.
const RAW_FIXTURE: usize = 4;

struct Fixture {
    dir: PathBuf,
    meta: BlockMeta,
}

/// One valid block per series count `0..FIXTURES`, created once per process. Their `meta.json`
/// agrees with the TOC that framed inputs get, so `Block::open` reaches the series.
fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let parent = std::env::temp_dir().join(format!(
            "strata-fuzz-index-read-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&parent);
        (0..FIXTURES)
            .map(|k| {
                let mut w = BlockWriter::create(&parent, 0, 1_000_000, 1, Vec::new())
                    .expect("create fixture block");
                for i in 0..k {
                    let labels = Labels::from_pairs(&[("__name__", "m"), ("i", &format!("{i:02}"))])
                        .expect("fixture labels");
                    let t = i64::from(i) * 1000;
                    w.add_series(&labels, &[(t, t + 500, 3, 1, b"chunk bytes")])
                        .expect("add fixture series");
                }
                let (meta, dir) = w.finish().expect("finish fixture block");
                Fixture { dir, meta }
            })
            .collect()
    })
}

/// Splits `rest` into five section bodies as described in the module docs.
fn framed_sections(rest: &[u8]) -> [&[u8]; 5] {
    let (lens, mut body) = rest.split_at(rest.len().min(4));
    let mut out: [&[u8]; 5] = [&[]; 5];
    for (slot, &len) in out.iter_mut().zip(lens) {
        let (section, tail) = body.split_at(usize::from(len).min(body.len()));
        *slot = section;
        body = tail;
    }
    out[4] = body;
    out
}

/// Reads everything the block offers; results are ignored, only panics matter.
fn exercise(block: &Block) {
    for name in block.label_names().unwrap_or_default() {
        for value in block.label_values(&name).unwrap_or_default() {
            let _ = block.postings(&name, &value);
        }
        let _ = block.postings(&name, "absent");
    }
    for id in block.all_postings() {
        if let Ok((_, metas)) = block.series(id) {
            for meta in metas {
                let _ = block.chunk(&meta);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fixtures = fixtures();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (fixture, index) = if mode & 1 == 0 {
        (&fixtures[RAW_FIXTURE], rest.to_vec())
    } else {
        let num_series = u32::from(mode >> 1) % FIXTURES;
        let fixture = &fixtures[num_series as usize];
        let index = block::index_file_from_sections(
            fixture.meta.min_time,
            fixture.meta.max_time,
            num_series,
            framed_sections(rest),
        );
        (fixture, index)
    };
    std::fs::write(fixture.dir.join(block::INDEX_FILE), &index).expect("write index");
    if let Ok(block) = Block::open(&fixture.dir) {
        exercise(&block);
    }
});
