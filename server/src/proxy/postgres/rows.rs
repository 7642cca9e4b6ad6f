//! Result rows under masking: the per-result column plan (decided once per RowDescription, or
//! once per COPY), the DataRow rewrite, and the COPY text/CSV row rewrite.
//!
//! A column's rule comes from its source column (see `catalog.rs`), or, for an expression, from
//! the statement's lineage (`policy::masking::lineage`). Values are masked by their type's
//! shape, so arrays, rows, JSON and hstore stay parseable (`policy::masking::value`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use super::binary::BinaryMasker;
use super::catalog::{Catalog, Source};
use super::codec::{self, Column};
use crate::policy::masking::lineage::{self, CopyTo, Outputs, Rule, Statement};
use crate::policy::masking::{MaskCounts, Masked, Masker, Shape};

/// What to do with each column of the current result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColAction {
    /// Sent as it is (a type that cannot carry anything a detector finds).
    Pass,
    /// Whole value replaced (column rule).
    Replace(Rule),
    /// Detectors over the text (the hot path: plain text columns).
    Detect,
    /// Withheld (sent as NULL): a binary value under a column rule.
    Withhold,
    /// A text-format number: withheld when its digits hold what a detector finds.
    Number,
    /// A text-format structured value (array, row, JSON, hstore, ...).
    Shaped(Arc<Shape>),
    /// A binary-format value of this type, read by [`BinaryMasker`].
    Binary(u32),
}

/// Type OIDs whose values (text or binary) cannot carry anything a detector finds: bool,
/// int2, int4, oid, date, time, timestamp, timestamptz, timetz, uuid.
fn harmless(type_oid: u32) -> bool {
    matches!(
        type_oid,
        16 | 21 | 23 | 26 | 1082 | 1083 | 1114 | 1184 | 1266 | 2950
    )
}

/// The per-session state of column rules over statements: the catalog, and what `PREPARE`
/// and `DECLARE` made (so `EXECUTE` and `FETCH` are judged as what they run).
pub struct Lineages {
    /// Outputs of prepared statements (SQL `PREPARE`), by name.
    prepared: HashMap<String, Outputs>,
    /// Outputs of cursors (`DECLARE`), by name.
    cursors: HashMap<String, Outputs>,
    /// The last statement text analysed and its statements.
    last: Option<Analysed>,
}

/// Longest statement text whose lineage is analysed.
const MAX_ANALYZED: usize = 1 << 20;

/// A statement text and what it was found to hold (None: it does not parse).
type Analysed = (Arc<str>, Option<Arc<[Statement]>>);

/// Names remembered per kind; beyond, the oldest are forgotten (an unknown name is then judged
/// conservatively).
const MAX_NAMES: usize = 256;

impl Lineages {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Lineages {
            prepared: HashMap::new(),
            cursors: HashMap::new(),
            last: None,
        }
    }

    /// The statements of a query text (parsed once per distinct text in a row).
    fn statements(&mut self, text: &Arc<str>, catalog: &Catalog) -> Option<Arc<[Statement]>> {
        if let Some((t, s)) = &self.last
            && (Arc::ptr_eq(t, text) || **t == **text)
        {
            return s.clone();
        }
        // A statement this long is not analysed (its parse tree would cost memory in
        // proportion): every expression column is then judged conservatively.
        let parsed: Option<Arc<[Statement]>> = if text.len() > MAX_ANALYZED {
            None
        } else {
            lineage::analyze(text, catalog).map(Into::into)
        };
        // Remember what PREPARE and DECLARE define, for EXECUTE and FETCH later.
        for s in parsed.iter().flat_map(|s| s.iter()) {
            let (map, name, out) = match s {
                Statement::Prepare(n, o) => (&mut self.prepared, n, o),
                Statement::Declare(n, o) => (&mut self.cursors, n, o),
                _ => continue,
            };
            if map.len() >= MAX_NAMES {
                map.clear();
            }
            map.insert(name.clone(), out.clone());
        }
        self.last = Some((text.clone(), parsed.clone()));
        parsed
    }

    /// The outputs of statement `index` of `text`, when they can be known.
    pub fn outputs(&mut self, text: &Arc<str>, index: usize, catalog: &Catalog) -> Option<Outputs> {
        let stmts = self.statements(text, catalog)?;
        match stmts.get(index)? {
            Statement::Rows(o) => Some(o.clone()),
            Statement::Execute(n) => self.prepared.get(n).cloned(),
            Statement::Fetch(n) => self.cursors.get(n).cloned(),
            _ => None,
        }
    }
}

impl Default for Lineages {
    fn default() -> Self {
        Lineages::new()
    }
}

/// The statement a result belongs to: its text and its index in a multi-statement string.
pub type StatementRef<'a> = Option<(&'a Arc<str>, usize)>;

/// The plan for a RowDescription's columns.
pub fn plan_for(
    masker: &Masker,
    catalog: &mut Catalog,
    lineages: &mut Lineages,
    cols: &[Column],
    stmt: StatementRef<'_>,
) -> Vec<ColAction> {
    let rules = masker.has_column_rules();
    // The statement's lineage, only when some column has no source to decide it.
    let mut outputs: Option<Option<Outputs>> = None;
    let n = cols.len();
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            let rule = if rules {
                match catalog.source(masker, c.table_oid, c.attnum, &c.name) {
                    Source::Decided(r) => r,
                    Source::Expression => {
                        let out = outputs.get_or_insert_with(|| {
                            stmt.and_then(|(t, k)| lineages.outputs(t, k, catalog))
                        });
                        let by_lineage = match out {
                            Some(o) => o.rule_of(i, n).cloned(),
                            // No statement or one that does not parse: every ruled column
                            // may be behind this expression.
                            None => catalog.unknown_rule().cloned(),
                        };
                        by_lineage
                            .or_else(|| masker.column_replacement(None, &c.name).map(Arc::from))
                    }
                }
            } else {
                None
            };
            action(masker, catalog, rule, c.type_oid, c.format)
        })
        .collect()
}

fn action(
    masker: &Masker,
    catalog: &mut Catalog,
    rule: Option<Rule>,
    type_oid: u32,
    format: i16,
) -> ColAction {
    match (rule, format) {
        (Some(r), 0) => ColAction::Replace(r),
        (Some(_), _) => ColAction::Withhold,
        (None, _) if harmless(type_oid) => ColAction::Pass,
        (None, 0) => {
            let shape = catalog.shape(type_oid);
            match &*shape {
                Shape::Text => ColAction::Detect,
                Shape::Number => ColAction::Number,
                _ if !masker.has_detectors()
                    && !shape.has_rules()
                    && !masker.has_column_rules() =>
                {
                    ColAction::Pass
                }
                _ => ColAction::Shaped(shape),
            }
        }
        (None, _) => ColAction::Binary(type_oid),
    }
}

/// Masks the values of DataRows and COPY rows.
pub struct RowMasker<'a> {
    /// The rules.
    pub masker: &'a Masker,
    /// Type information for binary and structured values.
    pub catalog: &'a mut Catalog,
    /// What was masked.
    pub counts: &'a mut MaskCounts,
    /// Reused output buffer.
    pub scratch: &'a mut Vec<u8>,
}

impl RowMasker<'_> {
    /// One value under its action: None when it stays as it is, Some(None) for NULL,
    /// Some(Some(bytes)) for new bytes (in `scratch` or the rule).
    fn value<'v>(&'v mut self, action: &'v ColAction, v: &[u8]) -> Option<Option<&'v [u8]>> {
        let masked = match action {
            ColAction::Pass => return None,
            ColAction::Replace(r) => {
                self.counts.record_column();
                return Some(Some(r));
            }
            ColAction::Withhold => {
                self.counts.record_withheld();
                return Some(None);
            }
            ColAction::Detect => {
                self.scratch.clear();
                if self.masker.mask_into(v, self.scratch, self.counts) {
                    Masked::Changed
                } else {
                    Masked::Same
                }
            }
            ColAction::Number => {
                if self.masker.number_detected(v) {
                    self.counts.record_withheld();
                    Masked::Null
                } else {
                    Masked::Same
                }
            }
            ColAction::Shaped(shape) => {
                self.scratch.clear();
                self.masker.mask_as(shape, v, self.scratch, self.counts)
            }
            ColAction::Binary(oid) => {
                self.scratch.clear();
                BinaryMasker {
                    masker: self.masker,
                    catalog: self.catalog,
                    counts: self.counts,
                }
                .mask(*oid, v, self.scratch)
            }
        };
        match masked {
            Masked::Same => None,
            Masked::Null => Some(None),
            Masked::Changed => Some(Some(&self.scratch[..])),
        }
    }

    /// Rewrites one DataRow under the plan. A row nothing changes (the common case) is copied
    /// in one piece; only from its first changed value on is a row re-encoded value by value.
    pub fn data_row(&mut self, plan: &[ColAction], msg: &[u8], out: &mut BytesMut) {
        let Ok(values) = codec::data_row_values(msg) else {
            out.extend_from_slice(msg);
            return;
        };
        let n = plan.len() as i16;
        // Where the re-encoded row starts in `out`, once a value changed.
        let mut row = None;
        for (i, v) in values.enumerate() {
            let Ok(v) = v else {
                // A malformed value: what came before is sent re-encoded, the rest dropped.
                row.get_or_insert_with(|| begin_copy(out, n, msg, i));
                break;
            };
            let action = plan.get(i).unwrap_or(&ColAction::Detect);
            let change = match v {
                None => None,
                Some(v) => self.value(action, v),
            };
            match change {
                None if row.is_none() => {}
                None => codec::put_value(out, v),
                Some(new) => {
                    row.get_or_insert_with(|| begin_copy(out, n, msg, i));
                    codec::put_value(out, new);
                }
            }
        }
        match row {
            Some(start) => codec::end_row(out, start),
            None => out.extend_from_slice(msg),
        }
    }

    /// Rewrites one COPY row (one CopyData message's payload) under the COPY plan into `out`.
    /// Returns false when it stays as it came.
    pub fn copy_row(&mut self, plan: &mut CopyPlan, data: &[u8], out: &mut Vec<u8>) -> bool {
        if plan.header_pending {
            plan.header_pending = false;
            // The header names columns: detectors only.
            return self.masker.mask_into(data, out, self.counts);
        }
        let CopyPlan {
            format,
            cols,
            fields,
            decoded,
            ..
        } = plan;
        if !split_copy_row(format, data, fields) {
            // Not a row this parser reads: detectors over the line, and nothing of a ruled
            // column passes.
            if cols.iter().any(|c| matches!(c, ColAction::Replace(_))) {
                self.counts.record_withheld();
                out.clear();
                return true;
            }
            return self.masker.mask_into(data, out, self.counts);
        }
        let mut changed = false;
        let mut copied = 0;
        for (i, f) in fields.iter().enumerate() {
            if f.null {
                continue;
            }
            let raw = data.get(f.start..f.end).unwrap_or(&[]);
            let content: &[u8] = if f.escaped {
                decode_copy_field(format, raw, decoded);
                decoded
            } else {
                raw
            };
            let action = cols.get(i).unwrap_or(&ColAction::Detect);
            let Some(new) = self.value(action, content) else {
                continue;
            };
            if !changed {
                changed = true;
                out.clear();
                out.reserve(data.len() + 16);
            }
            out.extend_from_slice(data.get(copied..f.start).unwrap_or(&[]));
            match new {
                None => out.extend_from_slice(format.null()),
                Some(bytes) => encode_copy_field(format, bytes, out),
            }
            copied = f.end;
        }
        if changed {
            out.extend_from_slice(data.get(copied..).unwrap_or(&[]));
        }
        changed
    }
}

/// Begins a re-encoded DataRow of `n` values in `out` with the first `k` values of `msg`
/// unchanged; returns where it starts (for [`codec::end_row`]).
fn begin_copy(out: &mut BytesMut, n: i16, msg: &[u8], k: usize) -> usize {
    let start = codec::begin_row(out, n);
    if let Ok(values) = codec::data_row_values(msg) {
        for v in values.take(k).flatten() {
            codec::put_value(out, v);
        }
    }
    start
}

/// How COPY rows are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// `text`: fields separated by `delim`, backslash escapes, `null` for NULL.
    Text {
        /// Field separator.
        delim: u8,
        /// The NULL string.
        null: Vec<u8>,
    },
    /// `csv`: fields separated by `delim`, quoted with `quote`, `escape` before a quote
    /// inside, an unquoted `null` for NULL.
    Csv {
        /// Field separator.
        delim: u8,
        /// Quote character.
        quote: u8,
        /// Escape character (the quote by default).
        escape: u8,
        /// The NULL string.
        null: Vec<u8>,
    },
}

impl CopyFormat {
    fn null(&self) -> &[u8] {
        match self {
            CopyFormat::Text { null, .. } | CopyFormat::Csv { null, .. } => null,
        }
    }
}

/// The plan of one COPY TO STDOUT, with the buffers its rows reuse.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// The row format.
    pub format: CopyFormat,
    /// An action per column.
    pub cols: Vec<ColAction>,
    /// A header line (column names) comes first.
    pub header_pending: bool,
    /// The current row's fields.
    fields: Vec<CopyField>,
    /// A field's decoded content.
    decoded: Vec<u8>,
}

impl CopyPlan {
    /// A plan for rows of `format` with an action per column.
    pub fn new(format: CopyFormat, cols: Vec<ColAction>, header_pending: bool) -> Self {
        CopyPlan {
            format,
            cols,
            header_pending,
            fields: Vec::new(),
            decoded: Vec::new(),
        }
    }
}

/// What a COPY under masking will do.
#[derive(Debug, Clone)]
pub enum CopyDecision {
    /// Mask each row under this plan.
    Mask(CopyPlan),
    /// Refuse: swallow the data and answer this error instead of its completion.
    Refuse(String),
}

/// Decides how to mask a COPY TO STDOUT: from the statement (relation, column list, options,
/// or the query) and the column count and format the target announced.
pub fn copy_plan(
    masker: &Masker,
    catalog: &mut Catalog,
    stmt: StatementRef<'_>,
    ncols: usize,
    binary: bool,
) -> CopyDecision {
    if binary {
        return CopyDecision::Refuse(BINARY_COPY_REFUSED.into());
    }
    let copy = stmt.and_then(|(t, k)| lineage::copy_to(t, k, catalog));
    let Some(copy) = copy else {
        if masker.has_column_rules() {
            return CopyDecision::Refuse(
                "hoop: this COPY's columns cannot be worked out, and column masking rules apply \
                 to this connection; copy a query with named columns instead"
                    .into(),
            );
        }
        return CopyDecision::Mask(CopyPlan::new(
            CopyFormat::Text {
                delim: b'\t',
                null: b"\\N".to_vec(),
            },
            vec![ColAction::Shaped(Arc::new(Shape::Unknown)); ncols],
            false,
        ));
    };
    let (format, header) = copy_format(&copy);
    let cols = copy_columns(masker, catalog, &copy, ncols);
    CopyDecision::Mask(CopyPlan::new(format, cols, header))
}

/// The error a binary COPY under masking gets.
pub const BINARY_COPY_REFUSED: &str = "hoop: COPY in binary format cannot be masked, and masking \
     applies to this connection; use COPY ... TO STDOUT in text or csv format";

fn copy_format(copy: &CopyTo) -> (CopyFormat, bool) {
    let opt = |name: &str| {
        copy.options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes().to_vec())
    };
    let first = |name: &str, default: u8| {
        opt(name)
            .and_then(|v| v.first().copied())
            .unwrap_or(default)
    };
    let header = opt("header").is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_slice(),
            b"false" | b"off" | b"0" | b"no"
        )
    });
    if copy.format == "csv" {
        let quote = first("quote", b'"');
        (
            CopyFormat::Csv {
                delim: first("delimiter", b','),
                quote,
                escape: first("escape", quote),
                null: opt("null").unwrap_or_default(),
            },
            header,
        )
    } else {
        (
            CopyFormat::Text {
                delim: first("delimiter", b'\t'),
                null: opt("null").unwrap_or_else(|| b"\\N".to_vec()),
            },
            header,
        )
    }
}

fn copy_columns(
    masker: &Masker,
    catalog: &mut Catalog,
    copy: &CopyTo,
    ncols: usize,
) -> Vec<ColAction> {
    let rules = masker.has_column_rules();
    if let Some(q) = &copy.query {
        // COPY (query): each output's rule from the lineage; types are not announced, so
        // values are read by what they look like.
        return (0..ncols)
            .map(|i| match q.rule_of(i, ncols).filter(|_| rules) {
                Some(r) => ColAction::Replace(r.clone()),
                None => ColAction::Shaped(Arc::new(Shape::Unknown)),
            })
            .collect();
    }
    let Some((schema, name)) = &copy.relation else {
        return vec![ColAction::Shaped(Arc::new(Shape::Unknown)); ncols];
    };
    let Some(all) = catalog.copy_columns(schema.as_deref(), name) else {
        // A relation the catalog does not know: everything is ruled when rules exist.
        let unknown = catalog.unknown_rule().cloned().filter(|_| rules);
        return (0..ncols)
            .map(|_| match &unknown {
                Some(r) => ColAction::Replace(r.clone()),
                None => ColAction::Shaped(Arc::new(Shape::Unknown)),
            })
            .collect();
    };
    let chosen: Vec<(String, u32, Option<Rule>)> = if copy.columns.is_empty() {
        all
    } else {
        copy.columns
            .iter()
            .map(|c| {
                all.iter().find(|(n, _, _)| n == c).cloned().unwrap_or((
                    c.clone(),
                    0,
                    catalog.unknown_rule().cloned(),
                ))
            })
            .collect()
    };
    chosen
        .into_iter()
        .map(|(_, type_oid, rule)| action(masker, catalog, rule.filter(|_| rules), type_oid, 0))
        .collect()
}

/// One field of a COPY row: its raw span, whether it is NULL, and whether it has escapes or
/// quotes to decode.
#[derive(Debug, Clone, Copy)]
struct CopyField {
    start: usize,
    end: usize,
    null: bool,
    escaped: bool,
}

/// Splits one COPY row (with its line terminator) into `fields`. False when it does not parse.
fn split_copy_row(format: &CopyFormat, data: &[u8], fields: &mut Vec<CopyField>) -> bool {
    fields.clear();
    let Some(line) = data
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
    else {
        return false;
    };
    let mut i = 0;
    match format {
        CopyFormat::Text { delim, null } => loop {
            let start = i;
            let mut escaped = false;
            while let Some(&b) = line.get(i) {
                if b == b'\\' {
                    escaped = true;
                    i += 2;
                } else if b == *delim {
                    break;
                } else {
                    i += 1;
                }
            }
            let end = i.min(line.len());
            let raw = line.get(start..end).unwrap_or(&[]);
            fields.push(CopyField {
                start,
                end,
                null: raw == null.as_slice(),
                escaped,
            });
            if i >= line.len() {
                return true;
            }
            i += 1;
        },
        CopyFormat::Csv {
            delim,
            quote,
            escape,
            null,
        } => loop {
            let start = i;
            let quoted = line.get(i) == Some(quote);
            if quoted {
                i += 1;
                loop {
                    let Some(&b) = line.get(i) else {
                        return false;
                    };
                    if b == *escape && escape != quote && line.get(i + 1).is_some() {
                        i += 2;
                    } else if b == *quote {
                        if escape == quote && line.get(i + 1) == Some(quote) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            } else {
                while let Some(&b) = line.get(i) {
                    if b == *delim {
                        break;
                    }
                    i += 1;
                }
            }
            let raw = line.get(start..i).unwrap_or(&[]);
            fields.push(CopyField {
                start,
                end: i,
                null: !quoted && raw == null.as_slice(),
                escaped: quoted,
            });
            match line.get(i) {
                None => return true,
                Some(b) if b == delim => i += 1,
                Some(_) => return false,
            }
        },
    }
}

/// Decodes a field's escapes (text) or quotes (CSV) into `out`.
fn decode_copy_field(format: &CopyFormat, raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match format {
        CopyFormat::Text { .. } => {
            let mut i = 0;
            while let Some(&b) = raw.get(i) {
                if b != b'\\' {
                    out.push(b);
                    i += 1;
                    continue;
                }
                let Some(&e) = raw.get(i + 1) else { break };
                i += 2;
                match e {
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'0'..=b'7' => {
                        let mut n = u32::from(e - b'0');
                        for _ in 0..2 {
                            match raw.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    n = n * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((n & 0xff) as u8);
                    }
                    b'x' => {
                        let hex = |b: u8| (b as char).to_digit(16);
                        let mut n = 0u32;
                        let mut got = 0;
                        while got < 2 {
                            match raw.get(i).and_then(|b| hex(*b)) {
                                Some(d) => {
                                    n = n * 16 + d;
                                    i += 1;
                                    got += 1;
                                }
                                None => break,
                            }
                        }
                        if got == 0 {
                            out.push(b'x');
                        } else {
                            out.push((n & 0xff) as u8);
                        }
                    }
                    other => out.push(other),
                }
            }
        }
        CopyFormat::Csv { quote, escape, .. } => {
            let inner = raw
                .strip_prefix(&[*quote][..])
                .and_then(|r| r.strip_suffix(&[*quote][..]))
                .unwrap_or(raw);
            let mut i = 0;
            while let Some(&b) = inner.get(i) {
                if b == *escape && matches!(inner.get(i + 1), Some(n) if n == quote || n == escape)
                {
                    if let Some(&n) = inner.get(i + 1) {
                        out.push(n);
                    }
                    i += 2;
                } else {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }
}

/// Writes a masked field in the row's format (always quoted in CSV).
fn encode_copy_field(format: &CopyFormat, v: &[u8], out: &mut Vec<u8>) {
    match format {
        CopyFormat::Text { delim, .. } => {
            for &b in v {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' if *delim == b'\t' => out.extend_from_slice(b"\\t"),
                    b if b == *delim => {
                        out.push(b'\\');
                        out.push(b);
                    }
                    b => out.push(b),
                }
            }
        }
        CopyFormat::Csv { quote, escape, .. } => {
            out.push(*quote);
            for &b in v {
                if b == *quote || (b == *escape && escape != quote) {
                    out.push(*escape);
                }
                out.push(b);
            }
            out.push(*quote);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::policy::masking::MaskingConfig;

    fn masker() -> Masker {
        Masker::compile(&[MaskingConfig {
            name: "pii".into(),
            detectors: vec!["email".into(), "credit_card".into()],
            columns: vec!["customers.name".into()],
            replacement: None,
        }])
        .unwrap()
    }

    fn row(values: &[Option<&[u8]>]) -> BytesMut {
        let mut out = BytesMut::new();
        let start = codec::begin_row(&mut out, values.len() as i16);
        for v in values {
            codec::put_value(&mut out, *v);
        }
        codec::end_row(&mut out, start);
        out
    }

    fn masked(plan: &[ColAction], values: &[Option<&[u8]>]) -> (BytesMut, BytesMut, MaskCounts) {
        let m = masker();
        let mut catalog = Catalog::unloaded(&m);
        let msg = row(values);
        let (mut out, mut counts, mut scratch) =
            (BytesMut::new(), MaskCounts::default(), Vec::new());
        RowMasker {
            masker: &m,
            catalog: &mut catalog,
            counts: &mut counts,
            scratch: &mut scratch,
        }
        .data_row(plan, &msg, &mut out);
        (msg, out, counts)
    }

    #[test]
    fn a_row_nothing_changes_is_sent_as_it_came() {
        let plan = [ColAction::Detect, ColAction::Pass, ColAction::Detect];
        let (msg, out, counts) = masked(&plan, &[Some(b"42"), None, Some(b"plain text")]);
        assert_eq!(out, msg);
        assert_eq!(counts, MaskCounts::default());
    }

    #[test]
    fn a_row_is_re_encoded_from_its_first_changed_value() {
        let plan = [
            ColAction::Detect,
            ColAction::Pass,
            ColAction::Detect,
            ColAction::Withhold,
            ColAction::Replace(Arc::from(&b"****"[..])),
            ColAction::Number,
            ColAction::Shaped(Arc::new(Shape::Array {
                elem: Arc::new(Shape::Text),
                delim: b',',
            })),
        ];
        let (_, out, counts) = masked(
            &plan,
            &[
                Some(b"7"),
                None,
                Some(b"card 4111 1111 1111 1111 ok"),
                Some(b"\x00\x01"),
                Some(b"secret"),
                Some(b"4111111111111111"),
                Some(b"{ada@example.com,x}"),
            ],
        );
        let want = row(&[
            Some(b"7"),
            None,
            Some(b"card **** **** **** 1111 ok"),
            None,
            Some(b"****"),
            None,
            Some(b"{\"***@example.com\",x}"),
        ]);
        assert_eq!(out, want);
        assert_eq!(
            (counts.credit_card, counts.columns, counts.email),
            (1, 1, 1)
        );
        assert_eq!(counts.withheld, 2);
    }

    #[test]
    fn binary_values_are_read_by_type() {
        let card = 4_111_111_111_111_111i64;
        let plan = [
            ColAction::Binary(3802),
            ColAction::Binary(701),
            ColAction::Binary(20),
            ColAction::Binary(20),
            ColAction::Binary(1009),
            ColAction::Binary(17),
        ];
        // text[] {ada@example.com, NULL}: ndim 1, no nulls flag set (the mask adds none),
        // element type text, one dimension of 2 from 1.
        let mut arr = Vec::new();
        for w in [1i32, 1, 25, 2, 1] {
            arr.extend_from_slice(&w.to_be_bytes());
        }
        arr.extend_from_slice(&15i32.to_be_bytes());
        arr.extend_from_slice(b"ada@example.com");
        arr.extend_from_slice(&(-1i32).to_be_bytes());
        let f = (card as f64).to_be_bytes();
        let (_, out, _) = masked(
            &plan,
            &[
                Some(b"\x01{\"card\": \"4111 1111 1111 1111\"}"),
                Some(&f),
                Some(&card.to_be_bytes()),
                Some(&42i64.to_be_bytes()),
                Some(&arr),
                Some(b"raw bytes"),
            ],
        );
        let vals: Vec<Option<Vec<u8>>> = codec::data_row_values(&out)
            .unwrap()
            .map(|v| v.unwrap().map(<[u8]>::to_vec))
            .collect();
        assert_eq!(
            vals[0].as_deref(),
            Some(&b"\x01{\"card\": \"**** **** **** 1111\"}"[..])
        );
        assert_eq!(vals[1], None, "a float8 holding a card number is withheld");
        assert_eq!(vals[2], None);
        assert_eq!(vals[3].as_deref(), Some(&42i64.to_be_bytes()[..]));
        let (_, _, items) = super::super::binary::read_array(vals[4].as_deref().unwrap()).unwrap();
        assert_eq!(items, vec![Some(&b"***@example.com"[..]), None]);
        assert_eq!(vals[5], None, "bytea cannot be read: withheld");
    }

    fn plan_of(sql: &str, ncols: usize, binary: bool) -> CopyDecision {
        let m = masker();
        let mut catalog = Catalog::unloaded(&m);
        let text: Arc<str> = sql.into();
        copy_plan(&m, &mut catalog, Some((&text, 0)), ncols, binary)
    }

    #[test]
    fn copy_plans_read_the_statement() {
        let CopyDecision::Mask(p) = plan_of(
            "copy (select 1, name, upper(name) from customers) to stdout with (format csv, header, delimiter ';', null 'N/A', quote '''')",
            3,
            false,
        ) else {
            panic!("masked");
        };
        assert_eq!(
            p.format,
            CopyFormat::Csv {
                delim: b';',
                quote: b'\'',
                escape: b'\'',
                null: b"N/A".to_vec()
            }
        );
        assert!(p.header_pending);
        // The catalog knows nothing here: both name columns read a ruled column by lineage
        // (an unknown relation counts as ruled); the constant does not.
        assert!(matches!(p.cols[0], ColAction::Shaped(_)));
        assert!(matches!(p.cols[1], ColAction::Replace(_)));
        assert!(matches!(p.cols[2], ColAction::Replace(_)));
        // A relation the catalog does not know: every field ruled.
        let CopyDecision::Mask(p) = plan_of("copy customers to stdout", 2, false) else {
            panic!("masked");
        };
        assert!(p.cols.iter().all(|c| matches!(c, ColAction::Replace(_))));
        assert!(matches!(
            plan_of("copy customers to stdout", 2, true),
            CopyDecision::Refuse(_)
        ));
        // No statement to read, under column rules: refused.
        let m = masker();
        let mut catalog = Catalog::unloaded(&m);
        assert!(matches!(
            copy_plan(&m, &mut catalog, None, 2, false),
            CopyDecision::Refuse(_)
        ));
    }

    fn copy_rows(format: CopyFormat, cols: Vec<ColAction>, line: &str) -> String {
        let m = masker();
        let mut catalog = Catalog::unloaded(&m);
        let (mut counts, mut scratch) = (MaskCounts::default(), Vec::new());
        let mut plan = CopyPlan::new(format, cols, false);
        let mut out = Vec::new();
        let changed = RowMasker {
            masker: &m,
            catalog: &mut catalog,
            counts: &mut counts,
            scratch: &mut scratch,
        }
        .copy_row(&mut plan, line.as_bytes(), &mut out);
        if changed {
            String::from_utf8(out).unwrap()
        } else {
            line.to_string()
        }
    }

    #[test]
    fn copy_text_and_csv_rows_are_masked_by_field() {
        let text = CopyFormat::Text {
            delim: b'\t',
            null: b"\\N".to_vec(),
        };
        let rule = ColAction::Replace(Arc::from(&b"****"[..]));
        let arr = ColAction::Shaped(Arc::new(Shape::Array {
            elem: Arc::new(Shape::Text),
            delim: b',',
        }));
        assert_eq!(
            copy_rows(
                text.clone(),
                vec![
                    ColAction::Pass,
                    rule.clone(),
                    ColAction::Detect,
                    arr.clone(),
                    ColAction::Detect
                ],
                "1\tAda\tada@example.com\t{bob@example.org}\t\\N\n"
            ),
            "1\t****\t***@example.com\t{\"***@example.org\"}\t\\N\n"
        );
        // An escaped tab inside a value stays inside it.
        assert_eq!(
            copy_rows(
                text,
                vec![ColAction::Detect, rule.clone()],
                "a\\tada@example.com\tAda\n"
            ),
            "a\\t***@example.com\t****\n"
        );
        let csv = CopyFormat::Csv {
            delim: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
        };
        assert_eq!(
            copy_rows(
                csv,
                vec![
                    ColAction::Pass,
                    rule,
                    ColAction::Detect,
                    arr,
                    ColAction::Detect
                ],
                "1,\"Ada, \"\"the\"\" first\",ada@example.com,\"{bob@example.org,\"\"x y\"\"}\",\n"
            ),
            "1,\"****\",\"***@example.com\",\"{\"\"***@example.org\"\",\"\"x y\"\"}\",\n"
        );
    }
}
