//! PromQL text from the network: parsing and evaluating any query string over a small store
//! must return a value or an error, never panic or hang, as an instant and as a range query.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use strata_engine::{Head, HeadOptions, Labels, Querier};
use strata_query::{EvalOptions, instant_query, range_query};

fn store() -> &'static Querier {
    static Q: OnceLock<Querier> = OnceLock::new();
    Q.get_or_init(|| {
        let head = Arc::new(Head::new(HeadOptions::default()));
        let mut acc = Vec::new();
        for (i, (name, job)) in [("up", "a"), ("up", "b"), ("x_total", "a"), ("h_bucket", "a")]
            .iter()
            .enumerate()
        {
            let Ok(l) = Labels::from_pairs(&[("__name__", *name), ("job", *job), ("le", "1")])
            else {
                continue;
            };
            let (r, _) = head.get_or_create(&l);
            let samples: Vec<(i64, f64)> =
                (0..40).map(|k| (k * 15_000, (k as usize * (i + 1)) as f64)).collect();
            let _ = head.append(r, &samples, &mut acc);
        }
        Querier::new(head, Vec::new())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = EvalOptions {
        max_samples: 100_000,
        timeout: Some(std::time::Duration::from_secs(2)),
        ..EvalOptions::default()
    };
    let q = store();
    let _ = instant_query(q, text, 300_000, &opts);
    let _ = range_query(q, text, 0, 600_000, 15_000, &opts);
});
