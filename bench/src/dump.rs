//! Reader of `promtool tsdb dump` output, the format of the real capture in
//! `shared/data/metrics/`.
//!
//! Generated data is only as good as the model behind it; the real capture (a node exporter and
//! a Prometheus server scraped every second for 56 minutes) keeps the benchmarks honest. Its
//! format is one sample per line:
//!
//! ```text
//! {__name__="node_cpu_seconds_total", cpu="0", instance="host-1", job="node", mode="idle"} 12345.67 1795239522460
//! ```
//!
//! Label values are Go-quoted strings (`strconv.Quote`): `\"`, `\\`, `\n`, `\t`, `\xNN`,
//! `\uNNNN` … may appear. Values are Go floats and include `NaN`, `+Inf`, `-Inf` and exponents.
//! Lines of one series are contiguous and in time order; the reader does not rely on either:
//! it groups by label set and sorts a series whose samples arrive out of order.
//!
//! A `NaN` in the dump may have been a Prometheus staleness marker (a NaN with a particular bit
//! pattern) — the text format loses the bits, so every `NaN` is read as the canonical NaN.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use strata_engine::{Label, Labels};

/// One series of a dump: its labels and its samples in time order.
pub type DumpSeries = (Labels, Vec<(i64, f64)>);

/// Path of the real capture `real-node-1s.dump.zst`, relative to this crate's manifest (the
/// shared data directory sits beside the repository).
pub fn real_dump_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/metrics/real-node-1s.dump.zst")
}

/// Reads a dump file, zstd-compressed if its name ends in `.zst`, plain text otherwise.
pub fn load_dump(path: &Path) -> anyhow::Result<Vec<DumpSeries>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let is_zst = path.extension().is_some_and(|e| e == "zst");
    let res = if is_zst {
        let dec = zstd::stream::read::Decoder::new(file)
            .with_context(|| format!("start zstd decoding of {}", path.display()))?;
        parse_dump(BufReader::with_capacity(1 << 20, dec))
    } else {
        parse_dump(BufReader::with_capacity(1 << 20, file))
    };
    res.with_context(|| format!("read dump {}", path.display()))
}

/// Parses dump text: series in order of first appearance, samples sorted by time.
pub fn parse_dump(mut r: impl BufRead) -> anyhow::Result<Vec<DumpSeries>> {
    let mut out: Vec<DumpSeries> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut unsorted = vec![false; 0];
    let mut line = String::new();
    let mut last_key = String::new();
    let mut last_idx = usize::MAX;
    let mut lineno = 0u64;
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .with_context(|| format!("read line {}", lineno + 1))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (key, rest) = split_labels(text).with_context(|| format!("line {lineno}"))?;
        let (v, t) = parse_value_ts(rest).with_context(|| format!("line {lineno}"))?;
        let idx = if last_idx != usize::MAX && key == last_key {
            last_idx
        } else {
            let idx = match index.get(key) {
                Some(&i) => i,
                None => {
                    let labels = parse_labels(key).with_context(|| format!("line {lineno}"))?;
                    out.push((labels, Vec::new()));
                    unsorted.push(false);
                    index.insert(key.to_string(), out.len() - 1);
                    out.len() - 1
                }
            };
            last_key.clear();
            last_key.push_str(key);
            last_idx = idx;
            idx
        };
        if let (Some((_, samples)), Some(flag)) = (out.get_mut(idx), unsorted.get_mut(idx)) {
            if samples.last().is_some_and(|&(lt, _)| lt >= t) {
                *flag = true;
            }
            samples.push((t, v));
        }
    }
    for ((_, samples), flag) in out.iter_mut().zip(unsorted) {
        if flag {
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
        }
    }
    Ok(out)
}

/// Splits a line into its `{...}` label text (braces included) and the rest.
fn split_labels(line: &str) -> anyhow::Result<(&str, &str)> {
    let bytes = line.as_bytes();
    if bytes.first() != Some(&b'{') {
        bail!("expected '{{' at the start of the line");
    }
    let mut in_str = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if b == b'}' {
            let (key, rest) = line.split_at(i + 1);
            return Ok((key, rest));
        }
    }
    bail!("unterminated label set")
}

fn parse_value_ts(rest: &str) -> anyhow::Result<(f64, i64)> {
    let mut it = rest.split_ascii_whitespace();
    let (Some(v), Some(t), None) = (it.next(), it.next(), it.next()) else {
        bail!("expected '<value> <timestamp>' after the labels, got {rest:?}");
    };
    Ok((
        parse_go_float(v)?,
        t.parse::<i64>()
            .with_context(|| format!("bad timestamp {t:?}"))?,
    ))
}

/// Parses a float as Go prints it: decimal, exponent, `NaN`, `+Inf`, `-Inf`.
pub fn parse_go_float(s: &str) -> anyhow::Result<f64> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().with_context(|| format!("bad value {s:?}")),
    }
}

/// Parses `{a="b", c="d"}` into labels.
fn parse_labels(text: &str) -> anyhow::Result<Labels> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .context("label set must be enclosed in braces")?;
    let mut labels = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').context("expected '=' after a label name")?;
        let (name, after) = rest.split_at(eq);
        let name = name.trim();
        let after = after.get(1..).unwrap_or("").trim_start();
        let (value, consumed) =
            unquote_go(after).with_context(|| format!("value of label {name:?}"))?;
        labels.push(Label::new(name, value));
        rest = after.get(consumed..).unwrap_or("").trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            bail!("expected ',' between labels, got {rest:?}");
        }
    }
    Labels::new(labels).map_err(|e| anyhow::anyhow!("{e}"))
}

fn hex_digits(s: &[u8]) -> anyhow::Result<u32> {
    let text = std::str::from_utf8(s).context("escape is not ASCII")?;
    u32::from_str_radix(text, 16).with_context(|| format!("bad hex escape {text:?}"))
}

/// Decodes a Go-quoted string at the start of `s`. Returns the value and the number of bytes
/// consumed (quotes included). Bytes that do not form UTF-8 (from `\xNN` escapes) are replaced
/// by U+FFFD, since labels are strings.
pub fn unquote_go(s: &str) -> anyhow::Result<(String, usize)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        bail!("expected '\"'");
    }
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let value = match String::from_utf8(out) {
                    Ok(v) => v,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                return Ok((value, i + 1));
            }
            b'\\' => {
                let esc = *b.get(i + 1).context("dangling backslash")?;
                i += 2;
                let simple = match esc {
                    b'a' => Some(0x07),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0c),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'v' => Some(0x0b),
                    b'\\' => Some(b'\\'),
                    b'"' => Some(b'"'),
                    b'\'' => Some(b'\''),
                    _ => None,
                };
                if let Some(byte) = simple {
                    out.push(byte);
                    continue;
                }
                match esc {
                    b'x' => {
                        let v = hex_digits(b.get(i..i + 2).context("short \\x escape")?)?;
                        out.push(v as u8);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let digits = b.get(i - 1..i + 2).context("short octal escape")?;
                        let text = std::str::from_utf8(digits).context("escape is not ASCII")?;
                        let v = u32::from_str_radix(text, 8)
                            .with_context(|| format!("bad octal escape {text:?}"))?;
                        out.push(u8::try_from(v).context("octal escape above 255")?);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let len = if esc == b'u' { 4 } else { 8 };
                        let v = hex_digits(b.get(i..i + len).context("short unicode escape")?)?;
                        let ch = char::from_u32(v)
                            .with_context(|| format!("invalid code point {v:#x}"))?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += len;
                    }
                    other => bail!("unknown escape \\{}", char::from(other)),
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    bail!("unterminated string")
}

/// Writes one series in dump format (one line per sample), the inverse of [`parse_dump`]:
/// values are printed so that they parse back to the same `f64`.
pub fn write_dump_series(
    w: &mut impl std::io::Write,
    labels: &Labels,
    samples: &[(i64, f64)],
) -> std::io::Result<()> {
    let mut key = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            key.push_str(", ");
        }
        key.push_str(&l.name);
        key.push('=');
        quote_go(&l.value, &mut key);
    }
    key.push('}');
    for &(t, v) in samples {
        writeln!(w, "{key} {} {t}", format_go_float(v))?;
    }
    Ok(())
}

/// Formats a float so that [`parse_go_float`] reads back the same value (`NaN`, `+Inf`,
/// `-Inf` spelled as Go spells them).
pub fn format_go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Appends `s` as a Go-quoted string (the escapes [`unquote_go`] reads).
pub fn quote_go(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_series_values_and_timestamps() {
        let text = r#"{__name__="up", instance="a:9100", job="node"} 1 1000
{__name__="up", instance="a:9100", job="node"} 0 2000
{__name__="x_bucket", le="+Inf"} 1.8446744073709552e+19 1000

{__name__="g", job="j"} NaN 5
{__name__="g", job="j"} +Inf 6
{__name__="g", job="j"} -Inf 7
{__name__="g", job="j"} -3.5e-07 8
"#;
        let d = parse_dump(text.as_bytes()).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[0].0,
            Labels::from_pairs(&[("__name__", "up"), ("instance", "a:9100"), ("job", "node")])
                .unwrap()
        );
        assert_eq!(d[0].1, vec![(1000, 1.0), (2000, 0.0)]);
        assert_eq!(d[1].0.get("le"), Some("+Inf"));
        assert_eq!(d[1].1, vec![(1000, 18_446_744_073_709_551_615.0)]);
        let g = &d[2].1;
        assert!(g[0].1.is_nan());
        assert_eq!(g[1].1, f64::INFINITY);
        assert_eq!(g[2].1, f64::NEG_INFINITY);
        assert_eq!(g[3], (8, -3.5e-7));
    }

    #[test]
    fn unquotes_go_escapes() {
        let text = r#"{__name__="m", path="C:\\dir\\f", q="say \"hi\", ok}", nl="a\nb\t\u00e9\x41\101"} 2 10"#;
        let d = parse_dump(text.as_bytes()).unwrap();
        let l = &d[0].0;
        assert_eq!(l.get("path"), Some(r"C:\dir\f"));
        assert_eq!(l.get("q"), Some("say \"hi\", ok}"));
        assert_eq!(l.get("nl"), Some("a\nb\té\u{41}A"));
        assert_eq!(d[0].1, vec![(10, 2.0)]);
        assert_eq!(unquote_go(r#""x" rest"#).unwrap(), ("x".to_string(), 3));
    }

    #[test]
    fn regroups_interleaved_series_and_sorts_them() {
        let text = "{__name__=\"a\"} 1 20\n{__name__=\"b\"} 1 10\n{__name__=\"a\"} 2 10\n";
        let d = parse_dump(text.as_bytes()).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1, vec![(10, 2.0), (20, 1.0)]);
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "up 1 2",
            "{__name__=\"up\" 1 2",
            "{__name__=\"up\"} 1",
            "{__name__=\"up\"} x 2",
            "{__name__=\"up\"} 1 2.5",
            "{__name__=\"up\", a=\"\\q\"} 1 2",
            "{__name__=\"up\" a=\"b\"} 1 2",
            "{__name__=\"up\", __name__=\"x\"} 1 2",
        ] {
            let err = parse_dump(bad.as_bytes()).unwrap_err();
            assert!(format!("{err:#}").contains("line 1"), "{bad}: {err:#}");
        }
    }

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("1e3").unwrap(), 1000.0);
        assert_eq!(parse_go_float("2.097152e+06").unwrap(), 2_097_152.0);
        assert!(parse_go_float("NaN").unwrap().is_nan());
        assert!(parse_go_float("+Inf").unwrap().is_infinite());
        assert!(parse_go_float("--1").is_err());
    }

    #[test]
    fn real_capture_loads() {
        let d = load_dump(&real_dump_path()).unwrap();
        assert_eq!(d.len(), 893, "series count stated in the data README");
        let samples: usize = d.iter().map(|s| s.1.len()).sum();
        assert_eq!(samples, 3_011_161, "sample count stated in the data README");
        for (l, s) in &d {
            assert!(l.get("__name__").is_some());
            assert!(s.windows(2).all(|w| w[0].0 < w[1].0), "{l}");
        }
    }

    #[test]
    fn generated_data_round_trips_through_the_text_format() {
        let mut g = crate::Generator::new(crate::GenConfig::new(3, 2));
        let data = g.series_samples(5);
        let mut text = Vec::new();
        for (l, s) in g.series().iter().zip(&data) {
            write_dump_series(&mut text, l, s).unwrap();
        }
        let back = parse_dump(text.as_slice()).unwrap();
        assert_eq!(back.len(), g.num_series());
        for ((l, s), (bl, bs)) in g.series().iter().zip(&data).zip(&back) {
            assert_eq!(l, bl);
            assert_eq!(s, bs);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn quoting_round_trips(value in "\\PC{1,20}|[\"\\\\\n\t\u{0}-\u{1f} a-z]{1,20}") {
            let mut q = String::new();
            quote_go(&value, &mut q);
            let (back, used) = unquote_go(&q).unwrap();
            proptest::prop_assert_eq!(back, value);
            proptest::prop_assert_eq!(used, q.len());
        }

        #[test]
        fn floats_round_trip(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            let back = parse_go_float(&format_go_float(v)).unwrap();
            proptest::prop_assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()));
        }
    }
}
