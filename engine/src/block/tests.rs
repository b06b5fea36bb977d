//! End-to-end tests of the block layer: write, reopen, compare; crash and corruption handling.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use roaring::RoaringBitmap;

use super::*;
use crate::labels::Labels;

/// Deterministic generator for test data (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One series as the test model holds it.
#[derive(Clone, Debug)]
struct TestSeries {
    labels: Labels,
    chunks: Vec<(i64, i64, u32, u8, Vec<u8>)>,
}

fn random_series(rng: &mut Rng, n: usize, min_t: i64, max_t: i64) -> Vec<TestSeries> {
    let names = [
        "__name__", "job", "instance", "cpu", "mode", "device", "le", "path", "zone", "é",
    ];
    let mut sets = BTreeSet::new();
    while sets.len() < n {
        let mut pairs = Vec::new();
        for name in names {
            if name == "__name__" || rng.below(3) == 0 {
                let card = 1 + rng.below(60);
                pairs.push((
                    name.to_string(),
                    format!("v{}_{}", rng.below(card), "x".repeat(rng.below(4) as usize)),
                ));
            }
        }
        sets.insert(Labels::from_pairs(&pairs).unwrap());
    }
    sets.into_iter()
        .map(|labels| {
            let mut chunks = Vec::new();
            let mut t = min_t + rng.below(1000) as i64;
            for _ in 0..rng.below(6) {
                let dur = rng.below(5000) as i64;
                if t + dur > max_t {
                    break;
                }
                let data: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
                let enc = if rng.below(10) == 0 { 2 } else { 1 };
                chunks.push((t, t + dur, 1 + rng.below(200) as u32, enc, data));
                t += dur + 1 + rng.below(3000) as i64;
            }
            TestSeries { labels, chunks }
        })
        .collect()
}

fn write_block(
    parent: &Path,
    min_t: i64,
    max_t: i64,
    series: &[TestSeries],
    segment_size: u64,
) -> (BlockMeta, PathBuf) {
    let mut opts = BlockWriterOptions::new(min_t, max_t);
    opts.segment_size = segment_size;
    let mut w = BlockWriter::create_with(parent, opts).unwrap();
    for s in series {
        let chunks: Vec<(i64, i64, u32, u8, &[u8])> = s
            .chunks
            .iter()
            .map(|(a, b, n, e, d)| (*a, *b, *n, *e, d.as_slice()))
            .collect();
        w.add_series(&s.labels, &chunks).unwrap();
    }
    w.finish().unwrap()
}

/// Checks every query of the block against the model.
fn check_block(block: &Block, series: &[TestSeries]) {
    assert_eq!(block.num_series() as usize, series.len());
    let mut model: BTreeMap<String, BTreeMap<String, RoaringBitmap>> = BTreeMap::new();
    for (id, s) in series.iter().enumerate() {
        for l in &s.labels {
            model
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(id as u32);
        }
    }
    assert_eq!(
        block.label_names().unwrap(),
        model.keys().cloned().collect::<Vec<_>>()
    );
    for (name, values) in &model {
        assert_eq!(
            block.label_values(name).unwrap(),
            values.keys().cloned().collect::<Vec<_>>()
        );
        for (value, ids) in values {
            assert_eq!(&block.postings(name, value).unwrap(), ids, "{name}={value}");
        }
        assert!(block.postings(name, "no-such-value").unwrap().is_empty());
    }
    assert!(block.postings("no_such_name", "x").unwrap().is_empty());
    assert!(block.label_values("no_such_name").unwrap().is_empty());
    assert_eq!(block.all_postings().len(), series.len() as u64);
    for (id, s) in series.iter().enumerate() {
        let (labels, metas) = block.series(id as u32).unwrap();
        assert_eq!(labels, s.labels);
        assert_eq!(metas.len(), s.chunks.len());
        for (m, (min, max, n, enc, data)) in metas.iter().zip(&s.chunks) {
            assert_eq!(
                (m.min_time, m.max_time, m.num_samples, m.encoding),
                (*min, *max, *n, *enc)
            );
            assert_eq!(&block.chunk(m).unwrap()[..], &data[..]);
        }
    }
    let err = block.series(series.len() as u32).unwrap_err();
    assert!(matches!(err, BlockError::SeriesOutOfRange { .. }), "{err}");
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs).unwrap()
}

/// A small block used by the corruption tests.
fn small_block(parent: &Path) -> (PathBuf, Vec<TestSeries>) {
    let mut rng = Rng(7);
    let series = random_series(&mut rng, 12, 0, 100_000);
    let (_, dir) = write_block(parent, 0, 100_000, &series, DEFAULT_SEGMENT_SIZE);
    (dir, series)
}

#[test]
fn thousands_of_random_series_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(42);
    let series = random_series(&mut rng, 3000, 1_000, 500_000);
    // Small segments so that rotation is exercised.
    let (meta, dir) = write_block(tmp.path(), 1_000, 500_000, &series, 64 << 10);
    assert_eq!(meta.stats.num_series, 3000);
    assert_eq!(
        meta.stats.num_chunks,
        series.iter().map(|s| s.chunks.len() as u64).sum::<u64>()
    );
    assert_eq!(meta.compaction.sources, vec![meta.id.clone()]);
    assert_eq!(dir.file_name().unwrap().to_str().unwrap(), meta.id);
    let block = Block::open(&dir).unwrap();
    assert_eq!(block.meta(), &meta);
    assert_eq!(block.dir(), dir);
    assert!(block.tombstones().is_empty());
    assert!(fs::read_dir(dir.join(CHUNKS_DIR)).unwrap().count() > 1);
    check_block(&block, &series);
    let size = block.size_bytes().unwrap();
    let index: u64 = block.index_sections().iter().map(|(_, n)| n).sum();
    assert_eq!(index, fs::metadata(dir.join(INDEX_FILE)).unwrap().len());
    assert!(size > index + block.chunks_size_bytes());
}

#[test]
fn empty_block_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let w = BlockWriter::create(tmp.path(), 0, 10, 1, vec![]).unwrap();
    let (meta, dir) = w.finish().unwrap();
    let block = Block::open(&dir).unwrap();
    assert_eq!(meta.stats, BlockStats::default());
    check_block(&block, &[]);
}

#[test]
fn block_is_send_sync_and_chunks_outlive_it() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Block>();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, series) = small_block(tmp.path());
    let block = Block::open(&dir).unwrap();
    let (id, s) = series
        .iter()
        .enumerate()
        .find(|(_, s)| !s.chunks.is_empty())
        .unwrap();
    let (_, metas) = block.series(id as u32).unwrap();
    let bytes = block.chunk(&metas[0]).unwrap();
    drop(block);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(&bytes[..], &s.chunks[0].4[..]);
}

#[test]
fn tmp_dir_is_not_a_block_until_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::create(tmp.path(), 0, 1000, 1, vec![]).unwrap();
    w.add_series(&labels(&[("__name__", "up")]), &[(0, 10, 2, 1, b"abc")])
        .unwrap();
    let id = w.id().to_string();
    let names: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![format!("{id}.tmp")]);
    assert!(matches!(
        Block::open(&tmp.path().join(&id)).unwrap_err(),
        BlockError::Io { .. }
    ));
    assert!(
        Block::open(w.tmp_dir()).is_err(),
        "unfinished dir must not open"
    );
    let (_, dir) = w.finish().unwrap();
    assert_eq!(dir, tmp.path().join(&id));
    assert!(!tmp.path().join(format!("{id}.tmp")).exists());
    Block::open(&dir).unwrap();
}

#[test]
fn dropped_writer_removes_its_tmp_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::create(tmp.path(), 0, 1000, 1, vec![]).unwrap();
    w.add_series(&labels(&[("a", "b")]), &[(0, 10, 2, 1, b"abc")])
        .unwrap();
    let dir = w.tmp_dir().to_path_buf();
    assert!(dir.exists());
    drop(w);
    assert!(!dir.exists());
}

#[test]
fn cleanup_incomplete_removes_half_written_blocks_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (done, _) = small_block(tmp.path());
    // Simulate a crash mid-write: the writer never finishes and never drops.
    let mut w = BlockWriter::create(tmp.path(), 0, 1000, 1, vec![]).unwrap();
    w.add_series(&labels(&[("a", "b")]), &[(0, 10, 2, 1, b"abc")])
        .unwrap();
    let crashed = w.tmp_dir().to_path_buf();
    std::mem::forget(w);
    // A crash before the chunks dir existed.
    let bare = tmp.path().join(format!("{}.tmp", new_block_id()));
    fs::create_dir(&bare).unwrap();
    // Not ours: left alone.
    fs::create_dir(tmp.path().join("notes.tmp")).unwrap();
    fs::write(
        tmp.path().join(format!("{}.tmp", new_block_id())),
        b"a file",
    )
    .unwrap();

    let mut expected = vec![crashed.clone(), bare.clone()];
    expected.sort();
    assert_eq!(cleanup_incomplete(tmp.path()).unwrap(), expected);
    assert!(!crashed.exists() && !bare.exists());
    assert!(tmp.path().join("notes.tmp").exists());
    Block::open(&done).unwrap();
    assert!(cleanup_incomplete(tmp.path()).unwrap().is_empty());
    assert!(
        cleanup_incomplete(&tmp.path().join("missing"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn add_series_rejects_bad_input_and_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::create(tmp.path(), 100, 1000, 1, vec![]).unwrap();
    let b = labels(&[("__name__", "b")]);
    w.add_series(&b, &[(100, 200, 5, 1, b"x")]).unwrap();
    let err = w
        .add_series(&labels(&[("__name__", "a")]), &[])
        .unwrap_err();
    assert!(matches!(err, BlockError::OutOfOrder { .. }), "{err}");
    let err = w.add_series(&b, &[]).unwrap_err();
    assert!(matches!(err, BlockError::OutOfOrder { .. }), "{err}");
    let c = labels(&[("__name__", "c")]);
    let bad: [&[ChunkInput<'_>]; 5] = [
        &[(300, 200, 1, 1, b"x")],                         // min > max
        &[(50, 200, 1, 1, b"x")],                          // before block
        &[(900, 1001, 1, 1, b"x")],                        // after block
        &[(200, 300, 0, 1, b"x")],                         // no samples
        &[(200, 300, 1, 1, b"x"), (300, 400, 1, 1, b"y")], // overlap (inclusive bounds)
    ];
    for chunks in bad {
        let err = w.add_series(&c, chunks).unwrap_err();
        assert!(
            matches!(err, BlockError::InvalidSeries { .. }),
            "{chunks:?}: {err}"
        );
    }
    let err = w.add_series(&Labels::default(), &[]).unwrap_err();
    assert!(matches!(err, BlockError::InvalidSeries { .. }), "{err}");
    w.add_series(&c, &[(200, 300, 1, 1, b"x"), (301, 1000, 1, 1, b"y")])
        .unwrap();
    let (meta, dir) = w.finish().unwrap();
    assert_eq!(meta.stats.num_series, 2);
    assert_eq!(meta.stats.num_chunks, 3);
    assert_eq!(meta.stats.num_samples, 7);
    let block = Block::open(&dir).unwrap();
    assert_eq!(block.series(1).unwrap().0, c);
}

#[test]
fn create_rejects_bad_options() {
    let tmp = tempfile::tempdir().unwrap();
    for (min, max) in [(10, 9), (i64::MIN, i64::MAX)] {
        let err = BlockWriter::create(tmp.path(), min, max, 1, vec![]).unwrap_err();
        assert!(matches!(err, BlockError::InvalidArgument(_)), "{err}");
    }
    let err = BlockWriter::create(tmp.path(), 0, 1, 2, vec!["nope".into()]).unwrap_err();
    assert!(matches!(err, BlockError::InvalidArgument(_)), "{err}");
    let mut opts = BlockWriterOptions::new(0, 1);
    opts.resolution_ms = -1;
    assert!(BlockWriter::create_with(tmp.path(), opts).is_err());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn meta_options_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let sources = vec![new_block_id(), new_block_id()];
    let mut opts = BlockWriterOptions::new(-5, 5);
    opts.level = 3;
    opts.sources = sources.clone();
    opts.resolution_ms = 300_000;
    let (meta, dir) = BlockWriter::create_with(tmp.path(), opts)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(
        meta.compaction,
        CompactionMeta {
            level: 3,
            sources,
            parents: Vec::new()
        }
    );
    assert_eq!(meta.resolution_ms, 300_000);
    assert_eq!(read_meta(&dir).unwrap(), meta);
}

#[test]
fn tombstones_are_loaded_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, series) = small_block(tmp.path());
    let mut t = Tombstones::new();
    t.add(3, 10, 20);
    write_tombstones(&dir, &t).unwrap();
    assert_eq!(
        Block::open(&dir).unwrap().tombstones().intervals(3),
        &[(10, 20)]
    );
    t.add(series.len() as u32, 0, 1);
    write_tombstones(&dir, &t).unwrap();
    let err = Block::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::Corrupt {
                section: "tombstones body",
                ..
            }
        ),
        "{err}"
    );
    fs::remove_file(dir.join(TOMBSTONES_FILE)).unwrap();
    assert!(matches!(
        Block::open(&dir).unwrap_err(),
        BlockError::Io { .. }
    ));
}

#[test]
fn every_truncation_of_the_index_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = small_block(tmp.path());
    let path = dir.join(INDEX_FILE);
    let good = fs::read(&path).unwrap();
    for cut in 0..good.len() {
        fs::write(&path, &good[..cut]).unwrap();
        let err = Block::open(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                BlockError::Truncated {
                    section: "header" | "toc",
                    ..
                } | BlockError::Checksum { section: "toc", .. }
            ),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    fs::write(&path, &good).unwrap();
    Block::open(&dir).unwrap();
}

#[test]
fn every_flipped_index_byte_is_detected_with_its_section() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = small_block(tmp.path());
    let path = dir.join(INDEX_FILE);
    let good = fs::read(&path).unwrap();
    let sections = Block::open(&dir).unwrap().index_sections();
    // Byte ranges of each named part.
    let mut parts = Vec::new();
    let mut at = 0usize;
    for (name, len) in &sections {
        parts.push((*name, at..at + *len as usize));
        at += *len as usize;
    }
    assert_eq!(at, good.len());
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let err = Block::open(&dir).unwrap_err();
        let part = parts.iter().find(|(_, r)| r.contains(&i)).unwrap().0;
        match part {
            "header" if i < 4 => assert!(
                matches!(err, BlockError::BadMagic { .. }),
                "byte {i}: {err}"
            ),
            "header" => assert!(
                matches!(err, BlockError::UnsupportedVersion { got: 17, .. }),
                "byte {i}: {err}"
            ),
            section => assert!(
                matches!(&err, BlockError::Checksum { section: s, .. } if *s == section),
                "byte {i} in {section}: {err}"
            ),
        }
        assert!(err.to_string().contains("index"), "{err}");
    }
}

#[test]
fn wrong_magic_and_unknown_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = small_block(tmp.path());
    let path = dir.join(INDEX_FILE);
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"PROM");
    fs::write(&path, &bad).unwrap();
    let err = Block::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::BadMagic {
                expected: [b'S', b'T', b'I', b'X'],
                got: [b'P', b'R', b'O', b'M'],
                ..
            }
        ),
        "{err}"
    );
    let mut bad = good.clone();
    bad[4] = 2;
    fs::write(&path, &bad).unwrap();
    let err = Block::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::UnsupportedVersion {
                got: 2,
                oldest: 1,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
    fs::write(&path, &good).unwrap();

    let seg = dir.join(CHUNKS_DIR).join("000001");
    let good_seg = fs::read(&seg).unwrap();
    let mut bad = good_seg.clone();
    bad[4] = 9;
    fs::write(&seg, &bad).unwrap();
    let err = Block::open(&dir).unwrap_err();
    assert!(
        matches!(err, BlockError::UnsupportedVersion { got: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("000001"), "{err}");
}

#[test]
fn truncated_chunk_segment_names_the_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, series) = small_block(tmp.path());
    let seg = dir.join(CHUNKS_DIR).join("000001");
    let len = fs::metadata(&seg).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let block = Block::open(&dir).unwrap();
    let last = (0..series.len() as u32)
        .rev()
        .find(|&id| !series[id as usize].chunks.is_empty())
        .unwrap();
    let (_, metas) = block.series(last).unwrap();
    let m = metas.last().unwrap();
    let err = block.chunk(m).unwrap_err();
    assert!(
        matches!(err, BlockError::ChunkTruncated { chunk_ref, .. } if chunk_ref == m.chunk_ref),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("{:#x}", m.chunk_ref)),
        "{err}"
    );
    assert!(err.to_string().contains("000001"), "{err}");
    // Earlier chunks are still readable.
    let (_, metas) = block.series(0).unwrap();
    for m in metas
        .iter()
        .filter(|x| x.chunk_ref != metas.last().unwrap().chunk_ref || last != 0)
    {
        block.chunk(m).unwrap();
    }
}

#[test]
fn meta_json_missing_garbled_or_inconsistent() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = small_block(tmp.path());
    let meta_path = dir.join(META_FILE);
    let good = fs::read_to_string(&meta_path).unwrap();
    fs::remove_file(&meta_path).unwrap();
    assert!(matches!(
        Block::open(&dir).unwrap_err(),
        BlockError::Io { op: "read", .. }
    ));
    fs::write(&meta_path, &good[..good.len() / 2]).unwrap();
    assert!(matches!(
        Block::open(&dir).unwrap_err(),
        BlockError::Meta { .. }
    ));
    fs::write(&meta_path, "[]").unwrap();
    assert!(matches!(
        Block::open(&dir).unwrap_err(),
        BlockError::Meta { .. }
    ));
    let mut m: BlockMeta = serde_json::from_str(&good).unwrap();
    m.stats.num_series += 1;
    fs::write(&meta_path, serde_json::to_string(&m).unwrap()).unwrap();
    let err = Block::open(&dir).unwrap_err();
    assert!(
        matches!(err, BlockError::Meta { .. }) && err.to_string().contains("num_series"),
        "{err}"
    );
    let mut m: BlockMeta = serde_json::from_str(&good).unwrap();
    m.max_time += 1;
    fs::write(&meta_path, serde_json::to_string(&m).unwrap()).unwrap();
    assert!(matches!(
        Block::open(&dir).unwrap_err(),
        BlockError::Meta { .. }
    ));
    let mut m: BlockMeta = serde_json::from_str(&good).unwrap();
    m.version = 2;
    fs::write(&meta_path, serde_json::to_string(&m).unwrap()).unwrap();
    assert!(matches!(
        Block::open(&dir).unwrap_err(),
        BlockError::UnsupportedVersion { got: 2, .. }
    ));
    fs::write(&meta_path, &good).unwrap();
    Block::open(&dir).unwrap();
}

/// Reads every series, label and chunk of a block whose index may be garbage; returns the
/// number of errors seen. Must never panic.
fn exercise(block: &Block) -> usize {
    let mut errors = 0;
    let names = block.label_names().unwrap_or_default();
    for n in &names {
        match block.label_values(n) {
            Ok(values) => {
                for v in values {
                    errors += usize::from(block.postings(n, &v).is_err());
                }
            }
            Err(_) => errors += 1,
        }
    }
    for id in 0..block.num_series().min(5000) {
        match block.series(id) {
            Ok((_, metas)) => {
                for m in metas {
                    errors += usize::from(block.chunk(&m).is_err());
                }
            }
            Err(_) => errors += 1,
        }
    }
    errors
}

/// Splits a valid index file into its section bodies (for re-framing mutated sections).
fn sections_of(index: &[u8], sizes: &[(&'static str, u64)]) -> Vec<Vec<u8>> {
    let mut at = 0usize;
    let mut out = Vec::new();
    for (name, len) in sizes {
        let len = *len as usize;
        if *name != "header" && *name != "toc" {
            out.push(index[at..at + len].to_vec());
        }
        at += len;
    }
    out
}

fn reframe(meta: &BlockMeta, num_series: u32, s: &[Vec<u8>]) -> Vec<u8> {
    index_file_from_sections(
        meta.min_time,
        meta.max_time,
        num_series,
        [&s[0], &s[1], &s[2], &s[3], &s[4]],
    )
}

#[test]
fn checksummed_section_mutations_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, series) = small_block(tmp.path());
    let path = dir.join(INDEX_FILE);
    let good = fs::read(&path).unwrap();
    let block = Block::open(&dir).unwrap();
    let (meta, sizes) = (block.meta().clone(), block.index_sections());
    drop(block);
    let sections = sections_of(&good, &sizes);
    // Reframing unchanged sections reproduces the file byte for byte.
    assert_eq!(reframe(&meta, series.len() as u32, &sections), good);
    let mut rng = Rng(99);
    let mut outcomes = [0usize; 3]; // open failed, opened with read errors, clean
    for round in 0..1500 {
        let mut s = sections.clone();
        let which = round % 5;
        if s[which].is_empty() {
            continue;
        }
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(s[which].len() as u64) as usize;
            s[which][i] ^= 1 << rng.below(8);
        }
        fs::write(&path, reframe(&meta, series.len() as u32, &s)).unwrap();
        match Block::open(&dir) {
            Err(e) => {
                assert!(matches!(e, BlockError::Corrupt { .. }), "{e}");
                outcomes[0] += 1;
            }
            Ok(b) => outcomes[if exercise(&b) > 0 { 1 } else { 2 }] += 1,
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_blocks_roundtrip(seed in any::<u64>(), n in 0usize..60, seg in prop_oneof![Just(64u64), Just(4096), Just(DEFAULT_SEGMENT_SIZE)]) {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed);
        let series = random_series(&mut rng, n, -10_000, 40_000);
        let (_, dir) = write_block(tmp.path(), -10_000, 40_000, &series, seg);
        let block = Block::open(&dir).unwrap();
        check_block(&block, &series);
    }

    #[test]
    fn checksummed_garbage_index_never_panics(
        sections in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 5),
        num_series in 0u32..8,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = small_block(tmp.path());
        let meta = read_meta(&dir).unwrap();
        fs::write(dir.join(INDEX_FILE), reframe(&meta, num_series, &sections)).unwrap();
        let mut m = meta.clone();
        m.stats.num_series = u64::from(num_series);
        fs::write(dir.join(META_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
        fs::write(dir.join(TOMBSTONES_FILE), Tombstones::new().encode()).unwrap();
        if let Ok(block) = Block::open(&dir) {
            let _ = exercise(&block);
            prop_assert_eq!(block.num_series(), num_series);
        }
    }
}

/// Node-exporter-like series: one host, ~10 labels each, realistic metric and label names.
fn node_exporter_like(n: usize) -> Vec<Labels> {
    let base = [
        ("instance", "node-1.prod.example.com:9100"),
        ("job", "node"),
        ("env", "production"),
        ("region", "eu-west-1"),
        ("cluster", "k8s-main"),
        ("datacenter", "dc-ams-3"),
        ("os", "linux"),
        ("team", "infrastructure"),
    ];
    let mut metrics: Vec<(String, Vec<(&str, String)>)> = Vec::new();
    for cpu in 0..16 {
        for mode in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ] {
            metrics.push((
                "node_cpu_seconds_total".into(),
                vec![("cpu", cpu.to_string()), ("mode", mode.into())],
            ));
        }
        for m in [
            "node_cpu_guest_seconds_total",
            "node_cpu_scaling_frequency_hertz",
        ] {
            metrics.push((m.into(), vec![("cpu", cpu.to_string())]));
        }
    }
    for dev in ["nvme0n1", "nvme1n1", "sda", "sdb", "dm-0", "dm-1"] {
        for m in [
            "node_disk_io_now",
            "node_disk_io_time_seconds_total",
            "node_disk_read_bytes_total",
            "node_disk_read_time_seconds_total",
            "node_disk_reads_completed_total",
            "node_disk_reads_merged_total",
            "node_disk_write_time_seconds_total",
            "node_disk_writes_completed_total",
            "node_disk_writes_merged_total",
            "node_disk_written_bytes_total",
            "node_disk_discards_completed_total",
            "node_disk_flush_requests_total",
        ] {
            metrics.push((m.into(), vec![("device", dev.into())]));
        }
    }
    for (dev, mp, fs) in [
        ("/dev/nvme0n1p2", "/", "ext4"),
        ("/dev/nvme0n1p1", "/boot/efi", "vfat"),
        ("/dev/nvme1n1", "/var/lib/data", "xfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/dev/shm", "tmpfs"),
        ("/dev/sda1", "/mnt/backup", "ext4"),
    ] {
        for m in [
            "node_filesystem_avail_bytes",
            "node_filesystem_device_error",
            "node_filesystem_files",
            "node_filesystem_files_free",
            "node_filesystem_free_bytes",
            "node_filesystem_readonly",
            "node_filesystem_size_bytes",
        ] {
            metrics.push((
                m.into(),
                vec![
                    ("device", dev.into()),
                    ("fstype", fs.into()),
                    ("mountpoint", mp.into()),
                ],
            ));
        }
    }
    for dev in ["eth0", "eth1", "lo", "docker0", "veth1a2b3c", "cni0"] {
        for m in [
            "node_network_receive_bytes_total",
            "node_network_receive_drop_total",
            "node_network_receive_errs_total",
            "node_network_receive_packets_total",
            "node_network_transmit_bytes_total",
            "node_network_transmit_drop_total",
            "node_network_transmit_errs_total",
            "node_network_transmit_packets_total",
            "node_network_up",
            "node_network_mtu_bytes",
            "node_network_speed_bytes",
            "node_network_carrier",
            "node_network_info",
        ] {
            metrics.push((m.into(), vec![("device", dev.into())]));
        }
    }
    let mut i = 0;
    while metrics.len() < n {
        let area = [
            "memory",
            "vmstat",
            "netstat",
            "sockstat",
            "pressure",
            "schedstat",
            "timex",
            "nf_conntrack",
        ][i % 8];
        metrics.push((format!("node_{area}_metric_{}_total", i / 8), vec![]));
        i += 1;
    }
    let mut out: Vec<Labels> = metrics
        .into_iter()
        .take(n)
        .map(|(name, extra)| {
            let mut pairs: Vec<(String, String)> = base
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            pairs.push(("__name__".into(), name));
            pairs.extend(extra.into_iter().map(|(a, b)| (a.to_string(), b)));
            Labels::from_pairs(&pairs).unwrap()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Index size for ~900 node-exporter-like series. Run with `--nocapture` to see the figures.
#[test]
fn index_size_for_node_exporter_like_block() {
    let series = node_exporter_like(893);
    assert_eq!(series.len(), 893);
    let avg_labels = series.iter().map(Labels::len).sum::<usize>() as f64 / series.len() as f64;
    for (chunks_per_series, samples_per_chunk) in [(4u32, 120u32), (28, 120), (1, 3360)] {
        let tmp = tempfile::tempdir().unwrap();
        let step = 15_000i64;
        let span = i64::from(chunks_per_series * samples_per_chunk) * step;
        let mut w = BlockWriter::create(tmp.path(), 0, span - 1, 1, vec![]).unwrap();
        let blob = [0u8; 150];
        for l in &series {
            let chunks: Vec<(i64, i64, u32, u8, &[u8])> = (0..i64::from(chunks_per_series))
                .map(|c| {
                    let min = c * i64::from(samples_per_chunk) * step;
                    (
                        min,
                        min + i64::from(samples_per_chunk - 1) * step,
                        samples_per_chunk,
                        1u8,
                        &blob[..],
                    )
                })
                .collect();
            w.add_series(l, &chunks).unwrap();
        }
        let (meta, dir) = w.finish().unwrap();
        let block = Block::open(&dir).unwrap();
        let index = fs::metadata(dir.join(INDEX_FILE)).unwrap().len();
        let framing = block.chunks_size_bytes() - meta.stats.num_chunks * 150;
        let samples = meta.stats.num_samples;
        println!(
            "{} series, {avg_labels:.1} labels/series, {chunks_per_series} chunks × {samples_per_chunk} samples: index {index} B ({:.4} B/sample), chunk framing {framing} B ({:.4} B/sample), sections {:?}",
            series.len(),
            index as f64 / samples as f64,
            framing as f64 / samples as f64,
            block.index_sections()
        );
        // Budget guard: the index must stay a small fraction of 0.45 B/sample.
        assert!(
            index < 52_000 + 2 * meta.stats.num_chunks,
            "index {index} B"
        );
    }
}

/// Figures for the docs: write/open/read speed of a 100k-series block. Prints, asserts only
/// correctness. Run with
/// `cargo test --release -p strata-engine --lib block::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run explicitly in release mode"]
fn measure_open_and_reads() {
    use std::time::Instant;
    let hosts = 112;
    let per_host = node_exporter_like(893);
    let mut all: Vec<Labels> = Vec::with_capacity(hosts * per_host.len());
    for h in 0..hosts {
        for l in &per_host {
            let pairs: Vec<(String, String)> = l
                .iter()
                .map(|x| {
                    let v = if x.name == "instance" {
                        format!("node-{h}.prod.example.com:9100")
                    } else {
                        x.value.clone()
                    };
                    (x.name.clone(), v)
                })
                .collect();
            all.push(Labels::from_pairs(&pairs).unwrap());
        }
    }
    all.sort();
    let tmp = tempfile::tempdir().unwrap();
    let step = 15_000i64;
    let blob = [7u8; 100];
    let t = Instant::now();
    let mut w = BlockWriter::create(tmp.path(), 0, 480 * step - 1, 1, vec![]).unwrap();
    for l in &all {
        let chunks: Vec<ChunkInput<'_>> = (0..4i64)
            .map(|c| (c * 120 * step, (c * 120 + 119) * step, 120, 1, &blob[..]))
            .collect();
        w.add_series(l, &chunks).unwrap();
    }
    let (meta, dir) = w.finish().unwrap();
    let write = t.elapsed();
    let t = Instant::now();
    let block = Block::open(&dir).unwrap();
    let open = t.elapsed();
    let n = block.num_series();
    let t = Instant::now();
    let mut chunks = 0usize;
    for id in 0..n {
        chunks += block.series(id).unwrap().1.len();
    }
    let series = t.elapsed();
    let t = Instant::now();
    let mut bytes = 0usize;
    for id in (0..n).step_by(7) {
        for m in block.series(id).unwrap().1 {
            bytes += block.chunk(&m).unwrap().len();
        }
    }
    let chunk_reads = t.elapsed();
    let names = block.label_values("__name__").unwrap();
    let t = Instant::now();
    let mut hits = 0u64;
    for v in &names {
        hits += block.postings("__name__", v).unwrap().len();
    }
    let postings = t.elapsed();
    assert_eq!(chunks as u64, meta.stats.num_chunks);
    assert_eq!(hits, u64::from(n));
    assert!(bytes > 0);
    let index = fs::metadata(dir.join(INDEX_FILE)).unwrap().len();
    println!(
        "{n} series, {} chunks: write+fsync {write:?}; open {open:?}; index {index} B ({:.1} B/series); series() {:.0} ns/op; chunk() incl. CRC {:.0} ns/op; postings() {:.0} ns/op over {} values",
        meta.stats.num_chunks,
        index as f64 / f64::from(n),
        series.as_nanos() as f64 / f64::from(n),
        chunk_reads.as_nanos() as f64 / (f64::from(n) / 7.0 * 4.0),
        postings.as_nanos() as f64 / names.len() as f64,
        names.len()
    );
}
