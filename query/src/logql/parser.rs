//! A hand-written recursive-descent parser for LogQL.
//!
//! Errors carry the line and column (1-based) where parsing stopped, in the form Loki clients
//! display: `parse error at line 1, col 14: <what was expected>`.

use regex::Regex;
use strata_engine::{MatchOp, Matcher};

use super::LogqlError;
use super::ast::*;

/// Parses a LogQL query.
pub fn parse(input: &str) -> Result<Expr, LogqlError> {
    let mut p = Parser { s: input, pos: 0 };
    p.ws();
    let expr = if p.peek() == Some(b'{') {
        let log = p.log_expr()?;
        if log.stages.iter().any(|s| matches!(s, Stage::Unwrap(..))) {
            return Err(p.err_at(0, "unwrap is only allowed inside a range aggregation"));
        }
        Expr::Log(log)
    } else {
        Expr::Metric(p.metric_expr(0)?)
    };
    p.ws();
    if p.pos < p.s.len() {
        return Err(p.err("unexpected text after the end of the query"));
    }
    Ok(expr)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'a> Parser<'a> {
    fn err(&self, msg: &str) -> LogqlError {
        self.err_at(self.pos, msg)
    }

    fn err_at(&self, pos: usize, msg: &str) -> LogqlError {
        let before = self.s.get(..pos).unwrap_or(self.s);
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(pos, |i| pos - i - 1) + 1;
        LogqlError::Parse {
            line,
            col,
            msg: msg.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or_default()
    }

    fn ws(&mut self) {
        loop {
            while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                self.pos += 1;
            }
            // `#` comments to the end of the line.
            if self.peek() == Some(b'#') {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &str) -> Result<(), LogqlError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.err(&format!("expected {tok:?}")))
        }
    }

    /// Peeks an identifier without consuming it.
    fn peek_ident(&mut self) -> Option<&'a str> {
        self.ws();
        let b = self.s.as_bytes();
        if !b.get(self.pos).copied().is_some_and(is_ident_start) {
            return None;
        }
        let mut end = self.pos;
        while b.get(end).copied().is_some_and(is_ident) {
            end += 1;
        }
        self.s.get(self.pos..end)
    }

    fn ident(&mut self) -> Result<&'a str, LogqlError> {
        match self.peek_ident() {
            Some(id) => {
                self.pos += id.len();
                Ok(id)
            }
            None => Err(self.err("expected an identifier")),
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek_ident() == Some(kw) {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Result<String, LogqlError> {
        self.ws();
        let start = self.pos;
        let (v, next) = strata_proto::loki::parse_quoted(self.s, self.pos)
            .map_err(|e| self.err_at(start, &format!("invalid string: {e}")))?;
        self.pos = next;
        Ok(v)
    }

    fn number(&mut self) -> Result<f64, LogqlError> {
        self.ws();
        let start = self.pos;
        let b = self.s.as_bytes();
        let mut end = self.pos;
        if matches!(b.get(end), Some(b'-' | b'+')) {
            end += 1;
        }
        while b
            .get(end)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'.' || *c == b'e' || *c == b'E')
        {
            end += 1;
        }
        let text = self.s.get(start..end).unwrap_or_default();
        match text.parse::<f64>() {
            Ok(v) => {
                self.pos = end;
                Ok(v)
            }
            Err(_) => Err(self.err("expected a number")),
        }
    }

    /// A raw token of letters, digits and `.` (number, duration or byte size).
    fn literal_token(&mut self) -> &'a str {
        self.ws();
        let b = self.s.as_bytes();
        let start = self.pos;
        let mut end = start;
        if matches!(b.get(end), Some(b'-' | b'+')) {
            end += 1;
        }
        while b
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
        {
            end += 1;
        }
        self.pos = end;
        self.s.get(start..end).unwrap_or_default()
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, LogqlError> {
        self.expect("{")?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat("}") {
                break;
            }
            let name_pos = self.pos;
            let name = self.ident()?;
            self.ws();
            let op = if self.eat("=~") {
                MatchOp::Regex
            } else if self.eat("!~") {
                MatchOp::NotRegex
            } else if self.eat("!=") {
                MatchOp::NotEqual
            } else if self.eat("=") {
                MatchOp::Equal
            } else {
                return Err(self.err("expected a label matcher operator (=, !=, =~, !~)"));
            };
            let value = self.string()?;
            out.push(
                Matcher::new(op, name, value).map_err(|e| self.err_at(name_pos, &e.to_string()))?,
            );
            self.ws();
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        if out.is_empty() || out.iter().all(|m| m.matches_empty()) {
            return Err(self.err(
                "queries require at least one label matcher that does not match the empty string",
            ));
        }
        Ok(out)
    }

    fn log_expr(&mut self) -> Result<LogExpr, LogqlError> {
        let matchers = self.selector()?;
        let stages = self.stages()?;
        Ok(LogExpr { matchers, stages })
    }

    fn stages(&mut self) -> Result<Vec<Stage>, LogqlError> {
        let mut stages = Vec::new();
        loop {
            self.ws();
            let r = self.rest();
            let op = if r.starts_with("|=") {
                Some(FilterOp::Contains)
            } else if r.starts_with("!=") {
                Some(FilterOp::NotContains)
            } else if r.starts_with("|~") {
                Some(FilterOp::Match)
            } else if r.starts_with("!~") {
                Some(FilterOp::NotMatch)
            } else {
                None
            };
            if let Some(op) = op {
                self.pos += 2;
                let mut values = vec![self.string()?];
                while self.eat_keyword("or") {
                    values.push(self.string()?);
                }
                let mut regexes = Vec::new();
                if matches!(op, FilterOp::Match | FilterOp::NotMatch) {
                    for v in &values {
                        regexes.push(Regex::new(v).map_err(|e| {
                            self.err(&format!("invalid regex in line filter: {e}"))
                        })?);
                    }
                }
                stages.push(Stage::LineFilter {
                    op,
                    values,
                    regexes,
                });
                continue;
            }
            if r.starts_with('|') && !r.starts_with("||") {
                self.pos += 1;
                stages.push(self.stage()?);
                continue;
            }
            break;
        }
        Ok(stages)
    }

    fn stage(&mut self) -> Result<Stage, LogqlError> {
        let start = self.pos;
        let Some(word) = self.peek_ident() else {
            return Err(self.err("expected a pipeline stage after '|'"));
        };
        // A keyword is a stage only if no label-filter operator follows it.
        let after = self.pos + word.len();
        let next_is_op = {
            let rest = self.s.get(after..).unwrap_or_default().trim_start();
            ["=", "!=", ">", "<"].iter().any(|o| rest.starts_with(o))
        };
        if next_is_op && !matches!(word, "label_format" | "drop" | "keep") {
            return Ok(Stage::LabelFilter(self.label_pred()?));
        }
        self.pos = after;
        Ok(match word {
            "json" => {
                let mut params = Vec::new();
                if self.peek_ident().is_some() && !self.at_stage_end() {
                    loop {
                        let name = self.ident()?.to_string();
                        let path = if self.eat("=") {
                            let p = self.string()?;
                            parse_json_path(&p).map_err(|e| self.err(&e))?
                        } else {
                            vec![JsonPathPart::Key(name.clone())]
                        };
                        params.push((name, path));
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                Stage::Json(params)
            }
            "logfmt" => {
                while self.eat("--") {
                    let flag = self.ident()?;
                    if !matches!(flag, "strict" | "keep-empty" | "keep") {
                        return Err(self.err(&format!("unknown logfmt flag --{flag}")));
                    }
                    if flag == "keep" {
                        self.expect("-empty")?;
                    }
                }
                let mut params = Vec::new();
                if self.peek_ident().is_some() && !self.at_stage_end() {
                    loop {
                        let name = self.ident()?.to_string();
                        let key = if self.eat("=") {
                            self.string()?
                        } else {
                            name.clone()
                        };
                        params.push((name, key));
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                Stage::Logfmt(params)
            }
            "regexp" => {
                let at = self.pos;
                let re = self.string()?;
                let re = Regex::new(&re)
                    .map_err(|e| self.err_at(at, &format!("invalid regexp: {e}")))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(self.err_at(at, "regexp needs at least one named capture group"));
                }
                Stage::Regexp(re)
            }
            "pattern" => {
                let at = self.pos;
                let p = self.string()?;
                Stage::Pattern(parse_pattern(&p).map_err(|e| self.err_at(at, &e))?)
            }
            "unpack" => Stage::Unpack,
            "decolorize" => Stage::Decolorize,
            "line_format" => {
                let at = self.pos;
                let t = self.string()?;
                Stage::LineFormat(parse_template(&t).map_err(|e| self.err_at(at, &e))?)
            }
            "label_format" => {
                let mut out = Vec::new();
                loop {
                    let dst = self.ident()?.to_string();
                    self.expect("=")?;
                    self.ws();
                    if matches!(self.peek(), Some(b'"' | b'`')) {
                        let at = self.pos;
                        let t = self.string()?;
                        out.push((
                            dst,
                            LabelFmt::Template(
                                parse_template(&t).map_err(|e| self.err_at(at, &e))?,
                            ),
                        ));
                    } else {
                        out.push((dst, LabelFmt::Rename(self.ident()?.to_string())));
                    }
                    if !self.eat(",") {
                        break;
                    }
                }
                Stage::LabelFormat(out)
            }
            "drop" | "keep" => {
                let mut out = Vec::new();
                loop {
                    let at = self.pos;
                    let name = self.ident()?.to_string();
                    let m = if self.eat("=~") {
                        Some((MatchOp::Regex, self.string()?))
                    } else if self.eat("!~") {
                        Some((MatchOp::NotRegex, self.string()?))
                    } else if self.eat("!=") {
                        Some((MatchOp::NotEqual, self.string()?))
                    } else if self.eat("=") {
                        Some((MatchOp::Equal, self.string()?))
                    } else {
                        None
                    };
                    let m = match m {
                        Some((op, v)) => Some(
                            Matcher::new(op, name.clone(), v)
                                .map_err(|e| self.err_at(at, &e.to_string()))?,
                        ),
                        None => None,
                    };
                    out.push((name, m));
                    if !self.eat(",") {
                        break;
                    }
                }
                if word == "drop" {
                    Stage::Drop(out)
                } else {
                    Stage::Keep(out)
                }
            }
            "unwrap" => {
                let conv_pos = self.pos;
                let first = self.ident()?;
                let (conv, name) = if self.eat("(") {
                    let conv = match first {
                        "duration" | "duration_seconds" => UnwrapConv::Duration,
                        "bytes" => UnwrapConv::Bytes,
                        other => {
                            return Err(self.err_at(
                                conv_pos,
                                &format!("unknown unwrap conversion {other:?}"),
                            ));
                        }
                    };
                    let n = self.ident()?.to_string();
                    self.expect(")")?;
                    (conv, n)
                } else {
                    (UnwrapConv::Number, first.to_string())
                };
                Stage::Unwrap(name, conv)
            }
            _ => {
                self.pos = start;
                Stage::LabelFilter(self.label_pred()?)
            }
        })
    }

    fn at_stage_end(&mut self) -> bool {
        self.ws();
        matches!(self.peek(), None | Some(b'|' | b'[' | b')' | b'!'))
    }

    fn label_pred(&mut self) -> Result<LabelPred, LogqlError> {
        let mut lhs = self.label_pred_and()?;
        while self.eat_keyword("or") {
            let rhs = self.label_pred_and()?;
            lhs = LabelPred::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn label_pred_and(&mut self) -> Result<LabelPred, LogqlError> {
        let mut lhs = self.label_pred_atom()?;
        loop {
            self.ws();
            if self.eat_keyword("and") || self.eat(",") {
                let rhs = self.label_pred_atom()?;
                lhs = LabelPred::And(Box::new(lhs), Box::new(rhs));
            } else if self.peek_ident().is_some_and(|w| w != "or") {
                // Whitespace-separated filters are and-ed, as Loki does.
                let rhs = self.label_pred_atom()?;
                lhs = LabelPred::And(Box::new(lhs), Box::new(rhs));
            } else {
                break;
            }
        }
        Ok(lhs)
    }

    fn label_pred_atom(&mut self) -> Result<LabelPred, LogqlError> {
        if self.eat("(") {
            let p = self.label_pred()?;
            self.expect(")")?;
            return Ok(p);
        }
        let at = self.pos;
        let name = self.ident()?.to_string();
        self.ws();
        let op = if self.eat("==") {
            CmpOp::Eq
        } else if self.eat("=~") {
            let v = self.string()?;
            return Matcher::new(MatchOp::Regex, name, v)
                .map(LabelPred::Str)
                .map_err(|e| self.err_at(at, &e.to_string()));
        } else if self.eat("!~") {
            let v = self.string()?;
            return Matcher::new(MatchOp::NotRegex, name, v)
                .map(LabelPred::Str)
                .map_err(|e| self.err_at(at, &e.to_string()));
        } else if self.eat("!=") {
            CmpOp::Ne
        } else if self.eat(">=") {
            CmpOp::Ge
        } else if self.eat("<=") {
            CmpOp::Le
        } else if self.eat(">") {
            CmpOp::Gt
        } else if self.eat("<") {
            CmpOp::Lt
        } else if self.eat("=") {
            CmpOp::Eq
        } else {
            return Err(self.err("expected a label filter operator"));
        };
        self.ws();
        if matches!(self.peek(), Some(b'"' | b'`')) {
            let v = self.string()?;
            let mop = match op {
                CmpOp::Eq => MatchOp::Equal,
                CmpOp::Ne => MatchOp::NotEqual,
                _ => return Err(self.err("string values only support =, !=, =~ and !~")),
            };
            return Ok(LabelPred::Str(
                Matcher::new(mop, name, v).map_err(|e| self.err_at(at, &e.to_string()))?,
            ));
        }
        let vpos = self.pos;
        let tok = self.literal_token();
        let (value, kind) = parse_num_literal(tok).ok_or_else(|| {
            self.err_at(vpos, &format!("invalid number, duration or size {tok:?}"))
        })?;
        Ok(LabelPred::Num {
            name,
            op,
            value,
            kind,
        })
    }

    fn duration(&mut self) -> Result<i64, LogqlError> {
        self.ws();
        let at = self.pos;
        let tok = self.literal_token();
        parse_duration_ns(tok).ok_or_else(|| self.err_at(at, &format!("invalid duration {tok:?}")))
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, LogqlError> {
        let without = if self.eat_keyword("by") {
            false
        } else if self.eat_keyword("without") {
            true
        } else {
            return Ok(None);
        };
        self.expect("(")?;
        let mut labels = Vec::new();
        loop {
            self.ws();
            if self.eat(")") {
                break;
            }
            labels.push(self.ident()?.to_string());
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        Ok(Some(Grouping { without, labels }))
    }

    fn metric_expr(&mut self, min_prec: u8) -> Result<MetricExpr, LogqlError> {
        let mut lhs = self.metric_unary()?;
        loop {
            self.ws();
            let Some((op, prec, len)) = self.peek_binop() else {
                break;
            };
            if prec < min_prec {
                break;
            }
            self.pos += len;
            let return_bool = self.eat_keyword("bool");
            // `^` is right-associative.
            let next = if op == BinOp::Pow { prec } else { prec + 1 };
            let rhs = self.metric_expr(next)?;
            lhs = MetricExpr::Binary {
                op,
                return_bool,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    fn peek_binop(&self) -> Option<(BinOp, u8, usize)> {
        let r = self.rest();
        let table: [(&str, BinOp, u8); 12] = [
            ("==", BinOp::Eq, 1),
            ("!=", BinOp::Ne, 1),
            (">=", BinOp::Ge, 1),
            ("<=", BinOp::Le, 1),
            (">", BinOp::Gt, 1),
            ("<", BinOp::Lt, 1),
            ("+", BinOp::Add, 2),
            ("-", BinOp::Sub, 2),
            ("*", BinOp::Mul, 3),
            ("/", BinOp::Div, 3),
            ("%", BinOp::Mod, 3),
            ("^", BinOp::Pow, 4),
        ];
        table
            .iter()
            .find(|(t, _, _)| r.starts_with(t))
            .map(|&(t, op, p)| (op, p, t.len()))
    }

    fn metric_unary(&mut self) -> Result<MetricExpr, LogqlError> {
        self.ws();
        let at = self.pos;
        if self.eat("(") {
            let e = self.metric_expr(0)?;
            self.expect(")")?;
            return Ok(e);
        }
        if matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'-' | b'+')) {
            return Ok(MetricExpr::Number(self.number()?));
        }
        let Some(word) = self.peek_ident() else {
            return Err(self.err("expected a metric expression or a stream selector"));
        };
        self.pos += word.len();
        if word == "vector" {
            self.expect("(")?;
            let v = self.number()?;
            self.expect(")")?;
            return Ok(MetricExpr::Vector(v));
        }
        if let Some(func) = RangeFn::from_name(word) {
            self.expect("(")?;
            let param = if func == RangeFn::Quantile {
                let q = self.number()?;
                self.expect(",")?;
                Some(q)
            } else {
                None
            };
            let matchers = self.selector()?;
            let mut stages = self.stages()?;
            self.expect("[")?;
            let range_ns = self.duration()?;
            self.expect("]")?;
            // Loki also accepts the pipeline after the range.
            stages.extend(self.stages()?);
            let offset_ns = if self.eat_keyword("offset") {
                self.duration()?
            } else {
                0
            };
            self.expect(")")?;
            let has_unwrap = stages.iter().any(|s| matches!(s, Stage::Unwrap(..)));
            if func.needs_unwrap() && !has_unwrap {
                return Err(self.err_at(at, &format!("{word} needs an unwrap stage")));
            }
            if !func.needs_unwrap() && has_unwrap {
                return Err(self.err_at(at, &format!("{word} does not take an unwrap stage")));
            }
            let grouping = self.grouping()?;
            if grouping.is_some() && !func.needs_unwrap() {
                return Err(self.err_at(at, &format!("grouping is not allowed on {word}")));
            }
            if range_ns <= 0 {
                return Err(self.err_at(at, "the range must be positive"));
            }
            return Ok(MetricExpr::Range {
                func,
                param,
                log: LogExpr { matchers, stages },
                range_ns,
                offset_ns,
                grouping,
            });
        }
        if let Some(op) = AggOp::from_name(word) {
            let mut grouping = self.grouping()?;
            self.expect("(")?;
            let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
                let k = self.number()?;
                self.expect(",")?;
                Some(k)
            } else {
                None
            };
            let inner = self.metric_expr(0)?;
            self.expect(")")?;
            if grouping.is_none() {
                grouping = self.grouping()?;
            }
            return Ok(MetricExpr::Agg {
                op,
                param,
                grouping,
                inner: Box::new(inner),
            });
        }
        Err(self.err_at(at, &format!("unknown function or aggregation {word:?}")))
    }
}

/// Parses a Prometheus-style duration (`1h30m`, `250ms`, `1.5s`) into nanoseconds.
pub fn parse_duration_ns(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest.get(..n)?.parse().ok()?;
        rest = rest.get(n..)?;
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match rest.get(..u)? {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "w" => 7.0 * 86400e9,
            "y" => 365.0 * 86400e9,
            _ => return None,
        };
        rest = rest.get(u..)?;
        total += num * mult;
    }
    let v = if neg { -total } else { total };
    (v.abs() < 9.2e18).then_some(v as i64)
}

/// Parses a byte size (`20MB`, `1.5KiB`, `512B`) into bytes.
pub fn parse_bytes(s: &str) -> Option<f64> {
    let n = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let num: f64 = s.get(..n)?.parse().ok()?;
    let mult = match s.get(n..)?.to_ascii_lowercase().as_str() {
        "b" | "" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some(num * mult)
}

fn parse_num_literal(tok: &str) -> Option<(f64, NumKind)> {
    if let Ok(v) = tok.parse::<f64>() {
        return Some((v, NumKind::Number));
    }
    if let Some(ns) = parse_duration_ns(tok) {
        return Some((ns as f64 / 1e9, NumKind::Duration));
    }
    parse_bytes(tok).map(|b| (b, NumKind::Bytes))
}

/// Parses a JSON extraction path: `a.b[0]["c d"]`.
fn parse_json_path(p: &str) -> Result<Vec<JsonPathPart>, String> {
    let mut out = Vec::new();
    let b = p.as_bytes();
    let mut i = 0;
    let mut cur = String::new();
    while i < b.len() {
        match b.get(i) {
            Some(b'.') => {
                if !cur.is_empty() {
                    out.push(JsonPathPart::Key(std::mem::take(&mut cur)));
                }
                i += 1;
            }
            Some(b'[') => {
                if !cur.is_empty() {
                    out.push(JsonPathPart::Key(std::mem::take(&mut cur)));
                }
                let close = p
                    .get(i..)
                    .and_then(|r| r.find(']'))
                    .ok_or_else(|| format!("unclosed '[' in JSON path {p:?}"))?;
                let inner = p.get(i + 1..i + close).unwrap_or_default().trim();
                if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                    out.push(JsonPathPart::Key(q.to_string()));
                } else {
                    out.push(JsonPathPart::Index(inner.parse().map_err(|_| {
                        format!("invalid index {inner:?} in JSON path {p:?}")
                    })?));
                }
                i += close + 1;
            }
            Some(&c) => {
                let ch_len = p
                    .get(i..)
                    .and_then(|r| r.chars().next())
                    .map_or(1, char::len_utf8);
                if c < 0x80 {
                    cur.push(c as char);
                } else {
                    cur.push_str(p.get(i..i + ch_len).unwrap_or_default());
                }
                i += ch_len;
            }
            None => break,
        }
    }
    if !cur.is_empty() {
        out.push(JsonPathPart::Key(cur));
    }
    if out.is_empty() {
        return Err(format!("empty JSON path {p:?}"));
    }
    Ok(out)
}

/// Parses a pattern expression: literals and `<name>` / `<_>` captures.
pub fn parse_pattern(p: &str) -> Result<Vec<PatternPart>, String> {
    let mut out = Vec::new();
    let mut rest = p;
    let mut lit = String::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('<')
            && let Some(end) = r.find('>')
        {
            let name = r.get(..end).unwrap_or_default();
            if !name.is_empty()
                && name.bytes().all(is_ident)
                && name.bytes().next().is_some_and(is_ident_start)
            {
                if !lit.is_empty() {
                    out.push(PatternPart::Literal(std::mem::take(&mut lit)));
                }
                if matches!(out.last(), Some(PatternPart::Capture(_))) {
                    return Err("pattern captures must be separated by literal text".into());
                }
                out.push(PatternPart::Capture(
                    (name != "_").then(|| name.to_string()),
                ));
                rest = r.get(end + 1..).unwrap_or_default();
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        lit.push(c);
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
    }
    if !lit.is_empty() {
        out.push(PatternPart::Literal(lit));
    }
    if !out
        .iter()
        .any(|p| matches!(p, PatternPart::Capture(Some(_))))
    {
        return Err("pattern needs at least one named capture such as <name>".into());
    }
    Ok(out)
}

/// Parses a `line_format` / `label_format` template (a subset of Go templates: `{{.label}}`,
/// `{{__line__}}`, `{{__timestamp__}}`, optionally piped through `ToUpper`, `ToLower`,
/// `TrimSpace`, `upper`, `lower`, `trim`).
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find("{{") {
            None => {
                out.push(TemplatePart::Text(rest.to_string()));
                break;
            }
            Some(i) => {
                if i > 0 {
                    out.push(TemplatePart::Text(
                        rest.get(..i).unwrap_or_default().to_string(),
                    ));
                }
                let after = rest.get(i + 2..).unwrap_or_default();
                let end = after
                    .find("}}")
                    .ok_or_else(|| format!("unclosed '{{{{' in template {t:?}"))?;
                let inner = after
                    .get(..end)
                    .unwrap_or_default()
                    .trim()
                    .trim_matches('-')
                    .trim();
                let mut parts = inner.split('|').map(str::trim);
                let head = parts.next().unwrap_or_default();
                let funcs: Vec<String> = parts.map(str::to_string).collect();
                for f in &funcs {
                    if !matches!(
                        f.as_str(),
                        "ToUpper" | "ToLower" | "TrimSpace" | "upper" | "lower" | "trim"
                    ) {
                        return Err(format!("unsupported template function {f:?}"));
                    }
                }
                let part = if head == "__line__" {
                    TemplatePart::Line(funcs)
                } else if head == "__timestamp__" {
                    TemplatePart::Timestamp
                } else if let Some(name) = head.strip_prefix('.') {
                    if name.is_empty() || !name.bytes().all(is_ident) {
                        return Err(format!("invalid label reference {head:?} in template"));
                    }
                    TemplatePart::Label(name.to_string(), funcs)
                } else {
                    return Err(format!("unsupported template action {{{{{inner}}}}}"));
                };
                out.push(part);
                rest = after.get(end + 2..).unwrap_or_default();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_and_metric_queries() {
        let ok = [
            r#"{job="app"}"#,
            r#"{job="app", env=~"prod|dev"} |= "error" != "timeout" |~ "5.." or "4.." | json"#,
            r#"{job="app"} | json | level="error" and status >= 500 | line_format "{{.msg}}""#,
            r#"{job="app"} | logfmt --strict | duration > 10s or size < 20MB"#,
            r#"{job="app"} | pattern "<ip> - <_> \"<method> <path>\"" | method="GET""#,
            r#"{job="app"} | regexp "(?P<status>\\d{3})" | label_format s=status, x="{{.status}}!""#,
            r#"{job="app"} | json a="b.c[0]", d | drop a, b="x" | keep d | unpack"#,
            r#"count_over_time({job="app"}[5m])"#,
            r#"sum by (service) (rate({job="app"} |= "x" [1m]))"#,
            r#"topk(3, sum(bytes_over_time({job="app"}[1h])) by (a))"#,
            r#"quantile_over_time(0.99, {job="app"} | json | unwrap duration(latency) | __error__="" [5m]) by (svc)"#,
            r#"vector(1)+vector(1)"#,
            r#"sum(count_over_time({a="b"}[1m])) / 2 > bool 1"#,
        ];
        for q in ok {
            assert!(parse(q).is_ok(), "{q}: {:?}", parse(q).err());
        }
    }

    #[test]
    fn errors_have_positions() {
        let cases = [
            (r#"{job="app"} |= "x" | "#, "col 22"),
            (r#"{job=app}"#, "col 6"),
            (r#"{job=""}"#, "at least one"),
            (r#"count_over_time({job="a"})"#, "expected \"[\""),
            (r#"sum_over_time({job="a"}[5m])"#, "needs an unwrap"),
            (r#"{job="a"} |~ "(""#, "invalid regex"),
            (r#"frob({job="a"}[5m])"#, "unknown function"),
            (r#"{job="a"} | unwrap x"#, "only allowed inside"),
        ];
        for (q, want) in cases {
            let e = parse(q).unwrap_err().to_string();
            assert!(e.contains(want), "{q}: {e}");
            assert!(e.starts_with("parse error at line 1, col "), "{e}");
        }
    }

    #[test]
    fn literals_and_durations() {
        assert_eq!(parse_duration_ns("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration_ns("250ms"), Some(250_000_000));
        assert_eq!(parse_bytes("20MB"), Some(20e6));
        assert_eq!(parse_bytes("1KiB"), Some(1024.0));
        assert!(parse_pattern("<a><b>").is_err());
        assert_eq!(
            parse_template("x {{ .a | ToUpper }} {{__line__}}").unwrap(),
            vec![
                TemplatePart::Text("x ".into()),
                TemplatePart::Label("a".into(), vec!["ToUpper".into()]),
                TemplatePart::Text(" ".into()),
                TemplatePart::Line(vec![]),
            ]
        );
    }
}
