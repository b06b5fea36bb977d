//! A TraceQL subset: parser and evaluator.
//!
//! Grafana's Tempo datasource searches with TraceQL, so Strata answers the part of it that
//! covers the usual questions — "slow checkouts", "errors of service X", "traces where the
//! gateway calls payment":
//!
//! ```text
//! query      := spansets ( '|' 'count' '(' ')' op number )*
//! spansets   := spanset ( ('&&' | '||' | '>' | '>>' | '~') spanset )*      (left to right)
//! spanset    := '{' [ cond ] '}' | '(' spansets ')'
//! cond       := and ( '||' and )* ;  and := unary ( '&&' unary )*
//! unary      := '!' unary | '(' cond ')' | field op value | field     (field: exists)
//! field      := name | status | kind | duration | statusMessage | rootName | rootServiceName
//!             | traceDuration | span.<key> | resource.<key> | .<key>   (<key> may be "quoted")
//! op         := = | != | > | >= | < | <= | =~ | !~
//! value      := "string" | number | duration (ns us µs ms s m h) | true | false
//!             | error | ok | unset | unspecified | internal | server | client | producer | consumer
//! ```
//!
//! Semantics follow Tempo's: a spanset `{…}` selects the spans of a trace meeting the condition;
//! `A && B` keeps both sets when both are non-empty, `A || B` their union, `A > B` the spans of
//! B whose parent is in A, `A >> B` those with an ancestor in A, `A ~ B` those with a sibling in
//! A; `| count() > n` keeps traces whose set has more than `n` spans. Regexes are fully
//! anchored. A comparison with a missing attribute, or between mismatched types, is false.
//!
//! Not supported (refused with a clear error): aggregates other than `count()`, `select`,
//! `by`, arithmetic, `!>`-style negated structural operators, TraceQL metrics.

use std::collections::{HashMap, HashSet};

use regex::Regex;
use strata_engine::traces::{AttrScope, AttrValue, SearchHints, SpanHint, SpanRecord};

/// A parse error with its byte position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TraceQL parse error at position {pos}: {message}")]
pub struct ParseError {
    /// Byte offset in the query.
    pub pos: usize,
    /// What was expected or found.
    pub message: String,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

/// A field of a span.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// Span name.
    Name,
    /// Status code.
    Status,
    /// Span kind.
    Kind,
    /// Span duration.
    Duration,
    /// Status message (not indexed: always empty).
    StatusMessage,
    /// Name of the trace's root span.
    RootName,
    /// Service of the trace's root span.
    RootServiceName,
    /// Duration of the whole trace.
    TraceDuration,
    /// An attribute: scope `None` is `.key` (span, then resource).
    Attr(Option<AttrScope>, String),
}

/// A literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `"..."`
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A duration in ns.
    Duration(u64),
    /// `true`/`false`.
    Bool(bool),
    /// `error`/`ok`/`unset` (OTLP code).
    Status(u8),
    /// `server`/`client`/… (OTLP kind).
    Kind(u8),
}

/// A condition over one span.
#[derive(Clone, Debug)]
pub enum Cond {
    /// Always true (`{}`).
    True,
    /// `a && b`
    And(Box<Cond>, Box<Cond>),
    /// `a || b`
    Or(Box<Cond>, Box<Cond>),
    /// `!a`
    Not(Box<Cond>),
    /// `field op value`
    Cmp(Field, Op, Value, Option<Regex>),
    /// `field` (the field exists).
    Exists(Field),
}

/// How two spansets combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// `&&`
    And,
    /// `||`
    Or,
    /// `>` (child)
    Child,
    /// `>>` (descendant)
    Descendant,
    /// `~` (sibling)
    Sibling,
}

/// A spanset expression.
#[derive(Clone, Debug)]
pub enum SpansetExpr {
    /// `{ cond }`
    Filter(Cond),
    /// `a op b`
    Binary(Box<SpansetExpr>, SetOp, Box<SpansetExpr>),
}

/// A parsed query.
#[derive(Clone, Debug)]
pub struct Query {
    /// The spanset expression.
    pub expr: SpansetExpr,
    /// `| count() op n` filters, in order.
    pub count_filters: Vec<(Op, f64)>,
}

// ------------------------------------------------------------------------------------------
// Lexer
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Pipe,
    AndAnd,
    OrOr,
    Not,
    Tilde,
    Gt,
    GtGt,
    Op(Op),
    Str(String),
    Num(String),
    Ident(String),
}

fn lex(q: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = q.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |pos: usize, m: &str| ParseError {
        pos,
        message: m.to_string(),
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = b.get(i..i + 2).unwrap_or_default();
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'{' => Tok::LBrace,
            b'}' => Tok::RBrace,
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            _ if two == b"&&" => {
                i += 1;
                Tok::AndAnd
            }
            _ if two == b"||" => {
                i += 1;
                Tok::OrOr
            }
            b'|' => Tok::Pipe,
            _ if two == b">>" => {
                i += 1;
                Tok::GtGt
            }
            _ if two == b">=" => {
                i += 1;
                Tok::Op(Op::Ge)
            }
            _ if two == b"<=" => {
                i += 1;
                Tok::Op(Op::Le)
            }
            _ if two == b"!=" => {
                i += 1;
                Tok::Op(Op::Ne)
            }
            _ if two == b"=~" => {
                i += 1;
                Tok::Op(Op::Re)
            }
            _ if two == b"!~" => {
                i += 1;
                Tok::Op(Op::NotRe)
            }
            b'>' => Tok::Gt,
            b'<' => Tok::Op(Op::Lt),
            b'=' => Tok::Op(Op::Eq),
            b'!' => Tok::Not,
            b'~' => Tok::Tilde,
            b'"' | b'`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&ch) = b.get(i) else {
                        return Err(err(start, "unterminated string"));
                    };
                    if ch == quote {
                        break;
                    }
                    if ch == b'\\' && quote == b'"' {
                        i += 1;
                        match b.get(i) {
                            Some(b'n') => s.push('\n'),
                            Some(b't') => s.push('\t'),
                            Some(&e) if e.is_ascii() => s.push(e as char),
                            _ => return Err(err(i, "bad escape in string")),
                        }
                        i += 1;
                        continue;
                    }
                    // Copy one UTF-8 character.
                    let rest = q.get(i..).ok_or_else(|| err(i, "invalid UTF-8"))?;
                    let chr = rest
                        .chars()
                        .next()
                        .ok_or_else(|| err(i, "unterminated string"))?;
                    s.push(chr);
                    i += chr.len_utf8();
                }
                Tok::Str(s)
            }
            b'0'..=b'9' | b'-' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric()
                        || b[j] == b'.'
                        || b[j] == b'_'
                        || b[j] == 0xc2
                        || b[j] == 0xb5)
                {
                    j += 1;
                }
                let s = q
                    .get(i..j)
                    .ok_or_else(|| err(i, "invalid number"))?
                    .to_string();
                i = j;
                out.push((start, Tok::Num(s)));
                continue;
            }
            _ if c == b'.' || c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric()
                        || matches!(b[j], b'.' | b'_' | b'-' | b'/' | b':'))
                {
                    j += 1;
                }
                let mut s = q
                    .get(i..j)
                    .ok_or_else(|| err(i, "invalid identifier"))?
                    .to_string();
                // `span."key with spaces"`
                if s.ends_with('.') && b.get(j) == Some(&b'"') {
                    let mut k = j + 1;
                    while k < b.len() && b[k] != b'"' {
                        k += 1;
                    }
                    if k >= b.len() {
                        return Err(err(j, "unterminated quoted attribute name"));
                    }
                    s.push_str(
                        q.get(j + 1..k)
                            .ok_or_else(|| err(j, "invalid identifier"))?,
                    );
                    j = k + 1;
                }
                i = j;
                out.push((start, Tok::Ident(s)));
                continue;
            }
            _ => {
                return Err(err(
                    i,
                    &format!(
                        "unexpected character {:?}",
                        q.get(i..).and_then(|r| r.chars().next()).unwrap_or('?')
                    ),
                ));
            }
        };
        i += 1;
        out.push((start, tok));
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Parser
// ------------------------------------------------------------------------------------------

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

/// Nesting deeper than this is refused (keeps recursion bounded on hostile input).
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.len)
    }

    fn err<T>(&self, m: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            pos: self.at(),
            message: m.into(),
        })
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected {what}"))
        }
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        let expr = self.spansets(0)?;
        let mut count_filters = Vec::new();
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Ident(f)) if f == "count" => {}
                Some(Tok::Ident(f)) => {
                    return self.err(format!(
                        "pipeline stage {f:?} is not supported (only count())"
                    ));
                }
                _ => return self.err("expected count() after '|'"),
            }
            self.expect(Tok::LParen, "'('")?;
            self.expect(Tok::RParen, "')'")?;
            let op = match self.next() {
                Some(Tok::Op(op)) if !matches!(op, Op::Re | Op::NotRe) => op,
                Some(Tok::Gt) => Op::Gt,
                _ => return self.err("expected a comparison after count()"),
            };
            let n = match self.next() {
                Some(Tok::Num(n)) => n.parse::<f64>().map_err(|_| ParseError {
                    pos: self.at(),
                    message: format!("invalid number {n:?}"),
                })?,
                _ => return self.err("expected a number after count() comparison"),
            };
            count_filters.push((op, n));
        }
        if self.pos < self.toks.len() {
            return self.err("unexpected input after the query");
        }
        Ok(Query {
            expr,
            count_filters,
        })
    }

    fn spansets(&mut self, depth: usize) -> Result<SpansetExpr, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("query nests too deeply");
        }
        let mut left = self.spanset(depth)?;
        loop {
            let op = match self.peek() {
                Some(Tok::AndAnd) => SetOp::And,
                Some(Tok::OrOr) => SetOp::Or,
                Some(Tok::Gt) => SetOp::Child,
                Some(Tok::GtGt) => SetOp::Descendant,
                Some(Tok::Tilde) => SetOp::Sibling,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.spanset(depth)?;
            left = SpansetExpr::Binary(Box::new(left), op, Box::new(right));
        }
    }

    fn spanset(&mut self, depth: usize) -> Result<SpansetExpr, ParseError> {
        match self.next() {
            Some(Tok::LBrace) => {
                if self.peek() == Some(&Tok::RBrace) {
                    self.pos += 1;
                    return Ok(SpansetExpr::Filter(Cond::True));
                }
                let c = self.cond(depth + 1)?;
                self.expect(Tok::RBrace, "'}'")?;
                Ok(SpansetExpr::Filter(c))
            }
            Some(Tok::LParen) => {
                let e = self.spansets(depth + 1)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            _ => {
                self.pos = self.pos.saturating_sub(1);
                self.err("expected '{' to start a spanset")
            }
        }
    }

    fn cond(&mut self, depth: usize) -> Result<Cond, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("query nests too deeply");
        }
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Tok::OrOr) {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Cond, ParseError> {
        let mut left = self.unary(depth)?;
        while self.peek() == Some(&Tok::AndAnd) {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Cond, ParseError> {
        if depth > MAX_DEPTH {
            return self.err("query nests too deeply");
        }
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Cond::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let c = self.cond(depth + 1)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(c)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Cond, ParseError> {
        let field = match self.next() {
            Some(Tok::Ident(s)) => field(&s).ok_or_else(|| ParseError {
                pos: self.at(),
                message: format!(
                    "unknown field {s:?} (use span.<key>, resource.<key>, .<key> or an intrinsic)"
                ),
            })?,
            _ => {
                self.pos = self.pos.saturating_sub(1);
                return self.err("expected a field such as span.http.status_code or duration");
            }
        };
        let op = match self.peek() {
            Some(Tok::Op(op)) => *op,
            Some(Tok::Gt) => Op::Gt,
            _ => return Ok(Cond::Exists(field)),
        };
        self.pos += 1;
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::Str(s),
            Some(Tok::Num(n)) => number(&n).ok_or_else(|| ParseError {
                pos: self.at(),
                message: format!("invalid number or duration {n:?}"),
            })?,
            Some(Tok::Ident(s)) => match s.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "unset" => Value::Status(0),
                "ok" => Value::Status(1),
                "error" => Value::Status(2),
                "unspecified" => Value::Kind(0),
                "internal" => Value::Kind(1),
                "server" => Value::Kind(2),
                "client" => Value::Kind(3),
                "producer" => Value::Kind(4),
                "consumer" => Value::Kind(5),
                other => return self.err(format!("expected a value, found {other:?}")),
            },
            _ => return self.err("expected a value after the operator"),
        };
        let re = if matches!(op, Op::Re | Op::NotRe) {
            let Value::Str(s) = &value else {
                return self.err("=~ and !~ need a string");
            };
            Some(Regex::new(&format!("^(?:{s})$")).map_err(|e| ParseError {
                pos: self.at(),
                message: format!("invalid regex {s:?}: {e}"),
            })?)
        } else {
            None
        };
        Ok(Cond::Cmp(field, op, value, re))
    }
}

fn field(s: &str) -> Option<Field> {
    Some(match s {
        "name" => Field::Name,
        "status" => Field::Status,
        "kind" => Field::Kind,
        "duration" => Field::Duration,
        "statusMessage" => Field::StatusMessage,
        "rootName" => Field::RootName,
        "rootServiceName" => Field::RootServiceName,
        "traceDuration" => Field::TraceDuration,
        _ => {
            if let Some(k) = s.strip_prefix("span.") {
                Field::Attr(Some(AttrScope::Span), k.to_string())
            } else if let Some(k) = s.strip_prefix("resource.") {
                Field::Attr(Some(AttrScope::Resource), k.to_string())
            } else if let Some(k) = s.strip_prefix('.') {
                Field::Attr(None, k.to_string())
            } else {
                return None;
            }
        }
    })
    .filter(|f| !matches!(f, Field::Attr(_, k) if k.is_empty()))
}

/// Parses `123`, `1.5`, or a duration such as `2s`, `150ms`, `1m30s`.
fn number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    if let Ok(f) = s.parse::<f64>() {
        return Some(Value::Float(f));
    }
    parse_duration_ns(s).map(Value::Duration)
}

/// Parses a TraceQL/Go duration (`1h2m3.5s`, `150ms`, `10us`, `10µs`, `5ns`) into ns.
pub fn parse_duration_ns(s: &str) -> Option<u64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let (num, tail) = rest.split_at(n);
        let v: f64 = num.parse().ok()?;
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += v * mult;
        rest = tail;
    }
    (0.0..1.8e19).contains(&total).then_some(total as u64)
}

/// Parses a TraceQL query.
pub fn parse(q: &str) -> Result<Query, ParseError> {
    if q.len() > 64 * 1024 {
        return Err(ParseError {
            pos: 0,
            message: "query longer than 64 KiB".into(),
        });
    }
    let toks = lex(q)?;
    if toks.is_empty() {
        return Ok(Query {
            expr: SpansetExpr::Filter(Cond::True),
            count_filters: Vec::new(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        len: q.len(),
    };
    p.query()
}

// ------------------------------------------------------------------------------------------
// Evaluation
// ------------------------------------------------------------------------------------------

/// Trace-level facts conditions may use.
pub struct TraceCtx<'a> {
    spans: &'a [SpanRecord],
    root: Option<usize>,
    duration_ns: u64,
    by_id: HashMap<[u8; 8], usize>,
}

impl<'a> TraceCtx<'a> {
    /// Context over the spans of one trace.
    pub fn new(spans: &'a [SpanRecord]) -> Self {
        let by_id: HashMap<[u8; 8], usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let root = spans
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_root())
            .min_by_key(|(_, s)| s.start_ns)
            .map(|(i, _)| i);
        let lo = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let hi = spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
        TraceCtx {
            spans,
            root,
            duration_ns: hi.saturating_sub(lo),
            by_id,
        }
    }

    /// The root span (no parent, earliest), if received.
    pub fn root(&self) -> Option<&SpanRecord> {
        self.root.and_then(|i| self.spans.get(i))
    }

    /// Trace duration (earliest start to latest end).
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns
    }
}

fn cmp_ord(op: Op, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => o == Equal,
        Op::Ne => o != Equal,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Re | Op::NotRe => false,
    }
}

fn cmp_str(op: Op, a: &str, v: &Value, re: Option<&Regex>) -> bool {
    match (op, v) {
        (Op::Re, _) => re.is_some_and(|r| r.is_match(a)),
        (Op::NotRe, _) => re.is_some_and(|r| !r.is_match(a)),
        (_, Value::Str(s)) => cmp_ord(op, a.cmp(s.as_str())),
        _ => false,
    }
}

fn cmp_num(op: Op, a: f64, v: &Value) -> bool {
    let b = match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Duration(d) => *d as f64,
        _ => return false,
    };
    a.partial_cmp(&b).is_some_and(|o| cmp_ord(op, o))
}

fn cmp_attr(op: Op, a: &AttrValue, v: &Value, re: Option<&Regex>) -> bool {
    match a {
        AttrValue::Str(s) => cmp_str(op, s, v, re),
        AttrValue::Int(i) => !matches!(v, Value::Duration(_)) && cmp_num(op, *i as f64, v),
        AttrValue::Float(f) => !matches!(v, Value::Duration(_)) && cmp_num(op, *f, v),
        AttrValue::Bool(b) => match v {
            Value::Bool(x) => matches!(op, Op::Eq) == (b == x) && matches!(op, Op::Eq | Op::Ne),
            _ => false,
        },
    }
}

fn eval_cond(c: &Cond, s: &SpanRecord, t: &TraceCtx<'_>) -> bool {
    match c {
        Cond::True => true,
        Cond::And(a, b) => eval_cond(a, s, t) && eval_cond(b, s, t),
        Cond::Or(a, b) => eval_cond(a, s, t) || eval_cond(b, s, t),
        Cond::Not(a) => !eval_cond(a, s, t),
        Cond::Exists(f) => match f {
            Field::Attr(scope, k) => s.attr(*scope, k).is_some(),
            Field::RootName | Field::RootServiceName => t.root().is_some(),
            _ => true,
        },
        Cond::Cmp(f, op, v, re) => {
            let re = re.as_ref();
            match f {
                Field::Name => cmp_str(*op, &s.name, v, re),
                Field::StatusMessage => cmp_str(*op, "", v, re),
                Field::RootName => t.root().is_some_and(|r| cmp_str(*op, &r.name, v, re)),
                Field::RootServiceName => t.root().is_some_and(|r| cmp_str(*op, &r.service, v, re)),
                Field::Duration => {
                    matches!(v, Value::Duration(_) | Value::Int(_) | Value::Float(_))
                        && cmp_num(*op, s.duration_ns() as f64, v)
                }
                Field::TraceDuration => cmp_num(*op, t.duration_ns() as f64, v),
                Field::Status => match v {
                    Value::Status(c) => {
                        cmp_ord(*op, s.status.cmp(c)) && matches!(op, Op::Eq | Op::Ne)
                    }
                    _ => false,
                },
                Field::Kind => match v {
                    Value::Kind(k) => cmp_ord(*op, s.kind.cmp(k)) && matches!(op, Op::Eq | Op::Ne),
                    _ => false,
                },
                Field::Attr(scope, k) => {
                    if *scope != Some(AttrScope::Span)
                        && k == "service.name"
                        && s.attr(*scope, k).is_none()
                    {
                        return cmp_str(*op, &s.service, v, re);
                    }
                    s.attr(*scope, k).is_some_and(|a| cmp_attr(*op, a, v, re))
                }
            }
        }
    }
}

fn eval_set(e: &SpansetExpr, t: &TraceCtx<'_>) -> Vec<usize> {
    match e {
        SpansetExpr::Filter(c) => (0..t.spans.len())
            .filter(|&i| eval_cond(c, &t.spans[i], t))
            .collect(),
        SpansetExpr::Binary(a, op, b) => {
            let l = eval_set(a, t);
            let r = eval_set(b, t);
            match op {
                SetOp::And => {
                    if l.is_empty() || r.is_empty() {
                        Vec::new()
                    } else {
                        union(l, r)
                    }
                }
                SetOp::Or => union(l, r),
                SetOp::Child => {
                    let ls: HashSet<[u8; 8]> = l.iter().map(|&i| t.spans[i].span_id).collect();
                    r.into_iter()
                        .filter(|&i| ls.contains(&t.spans[i].parent_span_id))
                        .collect()
                }
                SetOp::Descendant => {
                    let ls: HashSet<[u8; 8]> = l.iter().map(|&i| t.spans[i].span_id).collect();
                    r.into_iter()
                        .filter(|&i| {
                            let mut cur = t.spans[i].parent_span_id;
                            // Bounded walk: cycles in bad data cannot loop forever.
                            for _ in 0..t.spans.len() {
                                if ls.contains(&cur) {
                                    return true;
                                }
                                match t.by_id.get(&cur) {
                                    Some(&p) => cur = t.spans[p].parent_span_id,
                                    None => return false,
                                }
                            }
                            false
                        })
                        .collect()
                }
                SetOp::Sibling => {
                    let parents: HashMap<[u8; 8], Vec<[u8; 8]>> =
                        l.iter().fold(HashMap::new(), |mut m, &i| {
                            m.entry(t.spans[i].parent_span_id)
                                .or_default()
                                .push(t.spans[i].span_id);
                            m
                        });
                    r.into_iter()
                        .filter(|&i| {
                            let s = &t.spans[i];
                            !s.is_root()
                                && parents
                                    .get(&s.parent_span_id)
                                    .is_some_and(|ids| ids.iter().any(|id| *id != s.span_id))
                        })
                        .collect()
                }
            }
        }
    }
}

fn union(mut a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
    a.extend(b);
    a.sort_unstable();
    a.dedup();
    a
}

impl Query {
    /// The matching spans of a trace (indexes into `spans`), or `None` if the trace does not
    /// match.
    pub fn matches(&self, spans: &[SpanRecord]) -> Option<Vec<usize>> {
        let t = TraceCtx::new(spans);
        let set = eval_set(&self.expr, &t);
        if set.is_empty() {
            return None;
        }
        for (op, n) in &self.count_filters {
            let c = set.len() as f64;
            if !c.partial_cmp(n).is_some_and(|o| cmp_ord(*op, o)) {
                return None;
            }
        }
        Some(set)
    }

    /// Storage hints implied by the query: conditions every matching trace must meet.
    pub fn hints(&self, start_ns: u64, end_ns: u64) -> SearchHints {
        let mut h = SearchHints {
            start_ns,
            end_ns,
            ..SearchHints::default()
        };
        // The spanset that must be non-empty for the trace to match, if there is exactly one
        // per side (`&&` and structural operators need both sides; `||` needs neither).
        fn required<'a>(e: &'a SpansetExpr, out: &mut Vec<&'a Cond>) {
            match e {
                SpansetExpr::Filter(c) => out.push(c),
                SpansetExpr::Binary(a, op, b) => match op {
                    SetOp::Or => {}
                    SetOp::And => {
                        required(a, out);
                        required(b, out);
                    }
                    // The result set is a subset of the right side, and the left side must
                    // be non-empty.
                    SetOp::Child | SetOp::Descendant | SetOp::Sibling => {
                        required(a, out);
                        required(b, out);
                    }
                },
            }
        }
        let mut conds = Vec::new();
        required(&self.expr, &mut conds);
        // Hints come from the first required spanset only. A trace split across the head and
        // blocks is visited part by part, and the spans matching two different spansets may
        // sit in different parts; the spans of one spanset's condition are one span each, so
        // the part holding a span that meets the first spanset is always visited, and the
        // whole trace is then read and checked.
        if let Some(c) = conds.first() {
            let mut conj = Vec::new();
            conjuncts(c, &mut conj);
            let mut span = SpanHint::default();
            for (f, op, v) in conj {
                match (f, op, v) {
                    (Field::Name, Op::Eq, Value::Str(s)) => {
                        span.name = Some(s.clone());
                        h.terms.push((None, "name".into(), s.clone()));
                    }
                    (Field::Attr(sc, k), Op::Eq, Value::Str(s))
                        if k == "service.name" && *sc != Some(AttrScope::Span) =>
                    {
                        span.service = Some(s.clone());
                    }
                    (Field::Attr(Some(sc), k), Op::Eq, v) => {
                        let text = match v {
                            Value::Str(s) => s.clone(),
                            Value::Int(i) => i.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => continue,
                        };
                        h.terms.push((Some(*sc), k.clone(), text));
                    }
                    (Field::Duration, Op::Gt | Op::Ge, Value::Duration(d)) => {
                        span.min_duration_ns = Some(*d)
                    }
                    (Field::Duration, Op::Lt | Op::Le, Value::Duration(d)) => {
                        span.max_duration_ns = Some(*d)
                    }
                    (Field::Status, Op::Eq, Value::Status(s)) => span.status = Some(*s),
                    (Field::Kind, Op::Eq, Value::Kind(k)) => span.kind = Some(*k),
                    _ => {}
                }
            }
            h.span = span;
        }
        h
    }
}

fn conjuncts<'a>(c: &'a Cond, out: &mut Vec<(&'a Field, &'a Op, &'a Value)>) {
    match c {
        Cond::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        Cond::Cmp(f, op, v, _) => out.push((f, op, v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use strata_engine::traces::Attr;

    fn span(
        id: u8,
        parent: u8,
        service: &str,
        name: &str,
        dur_ms: u64,
        status: u8,
        code: i64,
    ) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [id; 8],
            parent_span_id: [parent; 8],
            start_ns: 1_000_000_000 + u64::from(id) * 1_000_000,
            end_ns: 1_000_000_000 + u64::from(id) * 1_000_000 + dur_ms * 1_000_000,
            kind: if parent == 0 { 2 } else { 3 },
            status,
            service: service.into(),
            name: name.into(),
            attrs: vec![
                Attr {
                    scope: AttrScope::Resource,
                    key: "service.name".into(),
                    value: AttrValue::Str(service.into()),
                },
                Attr {
                    scope: AttrScope::Span,
                    key: "http.status_code".into(),
                    value: AttrValue::Int(code),
                },
            ],
            payload: vec![],
        }
    }

    fn trace() -> Vec<SpanRecord> {
        vec![
            span(1, 0, "gateway", "GET /checkout", 3000, 0, 200),
            span(2, 1, "checkout", "place", 2500, 2, 500),
            span(3, 2, "payment", "charge", 2100, 2, 503),
            span(4, 1, "auth", "verify", 10, 0, 200),
        ]
    }

    fn ids(q: &str) -> Option<Vec<u8>> {
        let t = trace();
        parse(q)
            .unwrap()
            .matches(&t)
            .map(|v| v.into_iter().map(|i| t[i].span_id[0]).collect())
    }

    #[test]
    fn the_issue_example_matches() {
        assert_eq!(
            ids(
                r#"{ resource.service.name = "checkout" && span.http.status_code >= 500 && duration > 2s }"#
            ),
            Some(vec![2])
        );
        assert_eq!(
            ids(r#"{ resource.service.name = "checkout" && duration > 3s }"#),
            None
        );
    }

    #[test]
    fn operators_and_intrinsics() {
        assert_eq!(ids("{}"), Some(vec![1, 2, 3, 4]));
        assert_eq!(ids("{ status = error }"), Some(vec![2, 3]));
        assert_eq!(ids("{ kind = server }"), Some(vec![1]));
        assert_eq!(ids(r#"{ name =~ "ch.*" }"#), Some(vec![3]));
        assert_eq!(ids(r#"{ name !~ "ch.*|GET.*" }"#), Some(vec![2, 4]));
        assert_eq!(
            ids(r#"{ .service.name = "auth" || duration < 20ms }"#),
            Some(vec![4])
        );
        assert_eq!(ids(r#"{ !(status = error) }"#), Some(vec![1, 4]));
        assert_eq!(
            ids(r#"{ rootServiceName = "gateway" && traceDuration > 2.5s && name = "verify" }"#),
            Some(vec![4])
        );
        assert_eq!(ids("{ span.http.status_code }"), Some(vec![1, 2, 3, 4]));
        assert_eq!(ids("{ span.missing = 1 }"), None);
        assert_eq!(ids(r#"{ span.http.status_code = "500" }"#), None);
    }

    #[test]
    fn spanset_operators_and_count() {
        assert_eq!(
            ids(r#"{ .service.name = "gateway" } >> { .service.name = "payment" }"#),
            Some(vec![3])
        );
        assert_eq!(
            ids(r#"{ .service.name = "gateway" } > { .service.name = "payment" }"#),
            None
        );
        assert_eq!(
            ids(r#"{ .service.name = "checkout" } ~ { .service.name = "auth" }"#),
            Some(vec![4])
        );
        assert_eq!(
            ids(r#"{ .service.name = "auth" } && { status = error }"#),
            Some(vec![2, 3, 4])
        );
        assert_eq!(
            ids(r#"{ .service.name = "nope" } && { status = error }"#),
            None
        );
        assert_eq!(
            ids(r#"{ .service.name = "nope" } || { status = error }"#),
            Some(vec![2, 3])
        );
        assert_eq!(ids("{ status = error } | count() > 1"), Some(vec![2, 3]));
        assert_eq!(ids("{ status = error } | count() > 2"), None);
    }

    #[test]
    fn hints_are_conservative() {
        let q = parse(r#"{ resource.service.name = "checkout" && span.http.status_code = 500 && duration > 2s }"#).unwrap();
        let h = q.hints(0, 10);
        assert_eq!(h.span.service.as_deref(), Some("checkout"));
        assert_eq!(h.span.min_duration_ns, Some(2_000_000_000));
        assert_eq!(
            h.terms,
            vec![(
                Some(AttrScope::Span),
                "http.status_code".to_string(),
                "500".to_string()
            )]
        );
        let q = parse(r#"{ name = "a" } || { name = "b" }"#).unwrap();
        assert!(q.hints(0, 10).terms.is_empty());
        // Both sides must match, but possibly in different parts of a split trace: only the
        // first side prunes.
        let q = parse(r#"{ name = "a" } && { span.x = "b" }"#).unwrap();
        assert_eq!(
            q.hints(0, 10).terms,
            vec![(None, "name".to_string(), "a".to_string())]
        );
        let q = parse(r#"{ name = "a" || duration > 1s }"#).unwrap();
        let h = q.hints(0, 10);
        assert!(h.terms.is_empty() && h.span.min_duration_ns.is_none());
    }

    #[test]
    fn errors_name_the_position() {
        for bad in [
            "{",
            "{ duration > }",
            "{ foo = 1 }",
            "{ .a = 1 } | sum(x) > 1",
            "{ .a =~ \"(\" }",
            "{ .a = \"x }",
            "x",
            "{ } }",
            "{ .a = 1s2 }",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.pos <= bad.len(), "{bad}: {e}");
        }
        let deep = "(".repeat(500) + "{}" + &")".repeat(500);
        assert!(parse(&deep).is_err());
        let deep = "{ ".to_string() + &"!".repeat(500) + ".a }";
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("2s"), Some(2_000_000_000));
        assert_eq!(parse_duration_ns("1.5ms"), Some(1_500_000));
        assert_eq!(parse_duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration_ns("10µs"), Some(10_000));
        assert_eq!(parse_duration_ns("5"), None);
        assert_eq!(parse_duration_ns("5x"), None);
    }
}
