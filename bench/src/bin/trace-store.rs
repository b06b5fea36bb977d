//! `trace-store`: the trace store's headline figures, in process — bytes per span on disk,
//! trace-by-id latency and search latency over a store of `--spans` spans, and the cost of
//! turning OTLP protobuf into stored spans on one core.
//!
//! ```text
//! cargo run --release -p strata-bench --bin trace-store -- [--spans 10000000] [--span-seconds 3600]
//!     [--block-spans 1000000] [--batch 1000] [--lookups 2000] [--searches 20] [--seed 42] [--dir DIR]
//! ```
//!
//! Spans come from `strata-load traces`' call-graph generator, spread over `--span-seconds`
//! ending now, and go through the server's own OTLP decoding and conversion
//! (`strata_server::otlp::traces`) and the store's append path (WAL, fsync per batch, head);
//! every `--block-spans` spans the head is cut into a block. Then, with every block on disk:
//! random trace ids are read back (`TenantTraces::trace`, head empty), and TraceQL searches
//! for one service plus a minimum duration run over the whole range.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use strata_bench::fixture::flag;
use strata_bench::rng::Rng;
use strata_bench::traceload::generate_requests;
use strata_engine::traces::{TraceOptions, TraceStore};
use strata_query::traces::{SearchRequest, parse, search};
use strata_server::otlp::body::Encoding;
use strata_server::otlp::traces::{convert, decode_request};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spans_wanted: usize = flag(&args, "--spans", 1_000_000)?;
    let span_s: u64 = flag(&args, "--span-seconds", 3600)?;
    let block_spans: usize = flag(&args, "--block-spans", 1_000_000)?;
    let batch: usize = flag(&args, "--batch", 1000)?;
    let lookups: usize = flag(&args, "--lookups", 2000)?;
    let searches: usize = flag(&args, "--searches", 20)?;
    let seed: u64 = flag(&args, "--seed", 42)?;
    let dir_arg: String = flag(&args, "--dir", String::new())?;
    let tmp = tempfile::tempdir()?;
    let dir = if dir_arg.is_empty() {
        tmp.path().to_path_buf()
    } else {
        dir_arg.into()
    };

    let (store, _) = TraceStore::open(TraceOptions {
        data_dir: dir.clone(),
        block_age: Duration::from_secs(365 * 86_400),
        max_head_bytes: usize::MAX,
        ..TraceOptions::default()
    })?;
    let t = store.tenant("bench")?;
    let end_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos() as u64;
    // Generate in slices of about one block so memory stays bounded.
    let avg_spans_per_trace = 13.7;
    let total_traces = (spans_wanted as f64 / avg_spans_per_trace) as usize;
    let slice_traces = ((block_spans as f64 / avg_spans_per_trace) as usize).max(1);
    let mut ids: Vec<[u8; 16]> = Vec::new();
    let (mut stored, mut decode_s, mut append_s, mut cut_s, mut wire_bytes) =
        (0usize, 0f64, 0f64, 0f64, 0usize);
    let mut done = 0usize;
    let mut slice = 0u64;
    while done < total_traces {
        let n = slice_traces.min(total_traces - done);
        let span_ns = span_s * 1_000_000_000;
        let slice_end =
            end_ns - span_ns + (span_ns as u128 * (done + n) as u128 / total_traces as u128) as u64;
        let slice_span = (span_ns as u128 * n as u128 / total_traces as u128) as u64;
        let (reqs, _) = generate_requests(
            n,
            batch,
            seed.wrapping_add(slice),
            slice_end,
            slice_span.max(1),
        );
        let bodies: Vec<Vec<u8>> = reqs.iter().map(Message::encode_to_vec).collect();
        drop(reqs);
        for b in &bodies {
            wire_bytes += b.len();
            let t0 = Instant::now();
            let req =
                decode_request(b, Encoding::Protobuf).map_err(|e| anyhow::anyhow!(e.message))?;
            let conv = convert(req);
            decode_s += t0.elapsed().as_secs_f64();
            stored += conv.spans.len();
            if ids.len() < 200_000 {
                ids.extend(
                    conv.spans
                        .iter()
                        .filter(|s| s.is_root())
                        .map(|s| s.trace_id),
                );
            }
            let t1 = Instant::now();
            t.append(conv.spans)?;
            append_s += t1.elapsed().as_secs_f64();
        }
        let t2 = Instant::now();
        t.cut_if_due(true)?;
        cut_s += t2.elapsed().as_secs_f64();
        done += n;
        slice += 1;
        println!("… {stored} spans stored, {} blocks", t.blocks().len());
    }
    let disk = t.blocks_size();
    println!(
        "stored {stored} spans ({} traces) in {} blocks: {disk} bytes on disk = {:.1} bytes/span \
         (OTLP protobuf on the wire: {:.1} bytes/span)",
        total_traces,
        t.blocks().len(),
        disk as f64 / stored as f64,
        wire_bytes as f64 / stored as f64
    );
    println!(
        "one core: OTLP decode + conversion {:.0} spans/s; append (WAL fsync per {batch}-span batch + head) {:.0} spans/s; \
         block cut {:.0} spans/s",
        stored as f64 / decode_s,
        stored as f64 / append_s,
        stored as f64 / cut_s
    );

    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut lat = Vec::with_capacity(lookups);
    let mut found = 0usize;
    for _ in 0..lookups {
        let id = ids[rng.below(ids.len() as u64) as usize];
        let t0 = Instant::now();
        let spans = t.trace(&id)?;
        lat.push(t0.elapsed());
        found += usize::from(!spans.is_empty());
    }
    let by_id_p99 = pct(&mut lat, 0.99);
    println!(
        "trace by id over {} blocks ({lookups} random ids, {found} found): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        t.blocks().len(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );

    let q = r#"{ resource.service.name = "payment" && duration > 30ms }"#;
    let mut lat = Vec::new();
    let mut hits = 0;
    for _ in 0..searches {
        let req = SearchRequest {
            query: parse(q)?,
            start_ns: end_ns - span_s * 1_000_000_000,
            end_ns,
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 20,
            spans_per_spanset: 3,
            max_inspected: 100_000,
        };
        let t0 = Instant::now();
        let r = search(&t, &req)?;
        lat.push(t0.elapsed());
        hits = r.traces.len();
    }
    println!(
        "search {q} over {span_s} s, limit 20 ({hits} found): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    println!(
        "RESULT spans={stored} blocks={} bytes_per_span={:.1} convert_spans_per_sec={:.0} by_id_p99_ms={:.2} search_p99_ms={:.1}",
        t.blocks().len(),
        disk as f64 / stored as f64,
        stored as f64 / decode_s,
        by_id_p99,
        pct(&mut lat, 0.99)
    );
    Ok(())
}
