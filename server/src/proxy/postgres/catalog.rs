//! What masking needs from the target's catalog, loaded once per session on the fresh
//! connection before the client sees it (only when the connection has masking rules):
//!
//! - types (`pg_type`): how each result column's values are written ([`Shape`]): arrays with
//!   their element type and delimiter, row types with their fields, domains by their base type,
//!   JSON, hstore, numbers;
//! - relations and their columns (`pg_class`, `pg_attribute`): the source column of a result
//!   column, which the RowDescription gives as a table OID and attribute number, so a column
//!   rule matches the source column whatever the output is called (`select name as n`);
//! - view definitions (`pg_get_viewdef`), parsed with PostgreSQL's own parser: a view column
//!   is ruled when its definition reads a ruled column (see `policy::masking::lineage`).
//!
//! A relation created after the load (in this session, or a temporary one) is not in the
//! catalog: its columns are treated as ruled, since the gateway cannot tell what they were made
//! from. Reconnecting loads the catalog again.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::masking::lineage::{self, Col, Relations, Rule};
use crate::policy::masking::{Field, Masker, Shape};

/// OIDs below this were assigned by initdb: system catalogs and built-in types.
const FIRST_NORMAL_OID: u32 = 16384;

/// The catalog queries, one simple-protocol query string, one result set each in this order.
pub const TYPES_QUERY: &str = "select oid, typtype, typcategory, typelem, typdelim, typbasetype, typrelid, typname \
     from pg_catalog.pg_type";
/// Relations of every kind that has columns.
pub const RELATIONS_QUERY: &str = "select c.oid, n.nspname, c.relname, c.relkind from pg_catalog.pg_class c \
     join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
     where c.relkind in ('r','v','m','p','f','c','S')";
/// [`RELATIONS_QUERY`] for the user's relations only: without column rules, system relations
/// are never looked up by name (only row types' fields, which are loaded for user relations
/// alone), and leaving out their few hundred names keeps each session's catalog small.
pub const USER_RELATIONS_QUERY: &str = "select c.oid, n.nspname, c.relname, c.relkind from pg_catalog.pg_class c \
     join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
     where c.relkind in ('r','v','m','p','f','c','S') and c.oid >= 16384";
/// Columns of the user's relations (system catalogs are matched by name only).
pub const ATTRIBUTES_QUERY: &str = "select a.attrelid, a.attnum, a.attname, a.atttypid from pg_catalog.pg_attribute a \
     join pg_catalog.pg_class c on c.oid = a.attrelid \
     where c.relkind in ('r','v','m','p','f','c','S') and c.oid >= 16384 \
     and a.attnum > 0 and not a.attisdropped order by a.attrelid, a.attnum";
/// Inheritance and partitions: a child table holds its parent's rows, so it takes the
/// parent's column rules.
pub const INHERITS_QUERY: &str =
    "select inhrelid, inhparent from pg_catalog.pg_inherits where inhrelid >= 16384";
/// View definitions (needed only when column rules exist).
pub const VIEWS_QUERY: &str = "select c.oid, pg_catalog.pg_get_viewdef(c.oid) from pg_catalog.pg_class c \
     where c.relkind in ('v','m') and c.oid >= 16384";

/// Columns of the planner statistics views that hold sample values of other tables' columns
/// (`histogram_bounds` of `customers.name` lists names): ruled whenever column rules exist,
/// since the gateway cannot tell which column's values a row holds.
const STATS_VALUES: &[(&str, &[&str])] = &[
    (
        "pg_catalog.pg_stats",
        &["most_common_vals", "most_common_elems", "histogram_bounds"],
    ),
    ("pg_catalog.pg_stats_ext", &["most_common_vals"]),
    (
        "pg_catalog.pg_stats_ext_exprs",
        &["most_common_vals", "most_common_elems", "histogram_bounds"],
    ),
];

fn stats_values(qualified: &str) -> Option<&'static [&'static str]> {
    STATS_VALUES
        .iter()
        .find(|(r, _)| *r == qualified)
        .map(|(_, cols)| *cols)
}

/// One result set: rows of text values (None: NULL).
pub type Rows = Vec<Vec<Option<String>>>;

#[derive(Debug, Clone)]
struct PgType {
    typtype: u8,
    category: u8,
    elem: u32,
    delim: u8,
    base: u32,
    relid: u32,
    name: String,
}

#[derive(Debug, Clone)]
struct Attr {
    attnum: i16,
    name: String,
    type_oid: u32,
    rule: Option<Rule>,
    /// Its type is a row type (or an array of one) with a ruled field: an expression over it
    /// (`who::text`) reads a ruled column.
    carries: bool,
}

#[derive(Debug, Clone)]
struct Relation {
    schema: String,
    /// `schema.name`, what table-qualified rules match.
    qualified: String,
    /// Columns in attribute order; None for system relations (not loaded).
    attrs: Option<Vec<Attr>>,
    /// A view's definition, parsed.
    view: Option<pg_query::NodeEnum>,
}

/// The target's catalog as masking needs it. Built once per session.
#[derive(Debug, Default)]
pub struct Catalog {
    /// False when the load failed: rules then match by output column name (fail closed).
    loaded: bool,
    types: HashMap<u32, PgType>,
    relations: HashMap<u32, Relation>,
    by_name: HashMap<String, Vec<u32>>,
    /// Replacement for columns of relations the catalog does not know.
    unknown_rule: Option<Rule>,
    /// Shapes built so far, by type OID.
    shapes: HashMap<u32, Arc<Shape>>,
}

/// Where the value of a result column comes from, as far as column rules are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Decided: the column's rule (None: not ruled).
    Decided(Option<Rule>),
    /// An expression with no source column: the statement's lineage decides.
    Expression,
}

fn oid(v: Option<&Option<String>>) -> Option<u32> {
    v?.as_deref()?.parse().ok()
}

fn text(v: Option<&Option<String>>) -> Option<String> {
    v?.clone()
}

fn byte(v: Option<&Option<String>>) -> u8 {
    v.and_then(|s| s.as_deref())
        .and_then(|s| s.bytes().next())
        .unwrap_or(0)
}

impl Catalog {
    /// A catalog that knows nothing: column rules match by output column name, and values'
    /// shapes come from the built-in types only.
    pub fn unloaded(masker: &Masker) -> Self {
        Catalog {
            unknown_rule: masker.default_column_replacement().map(Arc::from),
            ..Catalog::default()
        }
    }

    /// Builds the catalog from the result sets of [`TYPES_QUERY`], [`RELATIONS_QUERY`],
    /// [`ATTRIBUTES_QUERY`], [`INHERITS_QUERY`] and (optionally) [`VIEWS_QUERY`], and decides
    /// every column's rule.
    pub fn build(
        masker: &Masker,
        types: Rows,
        relations: Rows,
        attrs: Rows,
        inherits: Rows,
        views: Rows,
    ) -> Self {
        let mut c = Catalog::unloaded(masker);
        c.loaded = true;
        for r in types {
            let Some(o) = oid(r.first()) else { continue };
            c.types.insert(
                o,
                PgType {
                    typtype: byte(r.get(1)),
                    category: byte(r.get(2)),
                    elem: oid(r.get(3)).unwrap_or(0),
                    delim: byte(r.get(4)),
                    base: oid(r.get(5)).unwrap_or(0),
                    relid: oid(r.get(6)).unwrap_or(0),
                    name: text(r.get(7)).unwrap_or_default(),
                },
            );
        }
        for r in relations {
            let (Some(o), Some(schema), Some(name)) =
                (oid(r.first()), text(r.get(1)), text(r.get(2)))
            else {
                continue;
            };
            c.by_name.entry(name.clone()).or_default().push(o);
            c.relations.insert(
                o,
                Relation {
                    qualified: format!("{schema}.{name}"),
                    schema,
                    attrs: None,
                    view: None,
                },
            );
        }
        for r in attrs {
            let (Some(rel), Some(attnum), Some(name), Some(type_oid)) = (
                oid(r.first()),
                r.get(1)
                    .and_then(|v| v.as_deref())
                    .and_then(|v| v.parse::<i16>().ok()),
                text(r.get(2)),
                oid(r.get(3)),
            ) else {
                continue;
            };
            if let Some(relation) = c.relations.get_mut(&rel) {
                let rule = masker
                    .column_replacement(Some(&relation.qualified), &name)
                    .map(Arc::from);
                relation.attrs.get_or_insert_with(Vec::new).push(Attr {
                    attnum,
                    name,
                    type_oid,
                    rule,
                    carries: false,
                });
            }
        }
        c.inherit_rules(&inherits);
        for r in views {
            let (Some(o), Some(def)) = (oid(r.first()), text(r.get(1))) else {
                continue;
            };
            let node = crate::policy::sql::parse_tree(&def)
                .and_then(|p| p.stmts.into_iter().next())
                .and_then(|s| s.stmt)
                .and_then(|n| n.node);
            if let Some(rel) = c.relations.get_mut(&o) {
                match node {
                    Some(n) => rel.view = Some(n),
                    // A definition that does not parse: every column ruled.
                    None => {
                        for a in rel.attrs.iter_mut().flatten() {
                            a.rule = a.rule.take().or_else(|| c.unknown_rule.clone());
                        }
                    }
                }
            }
        }
        c.mark_carriers();
        c.resolve_views(masker);
        // Row types' fields take their relations' final rules.
        c.shapes.clear();
        c
    }

    /// A child table (inheritance, a partition) takes its parents' rules for the columns it
    /// shares with them, through every level (`customers.name` covers `customers_2024.name`).
    fn inherit_rules(&mut self, inherits: &Rows) {
        let pairs: Vec<(u32, u32)> = inherits
            .iter()
            .filter_map(|r| Some((oid(r.first())?, oid(r.get(1))?)))
            .collect();
        for _ in 0..8 {
            let mut changed = false;
            for (child, parent) in &pairs {
                let ruled: Vec<(String, Rule)> = self
                    .relations
                    .get(parent)
                    .and_then(|p| p.attrs.as_ref())
                    .map(|attrs| {
                        attrs
                            .iter()
                            .filter_map(|a| Some((a.name.clone(), a.rule.clone()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                let Some(attrs) = self.relations.get_mut(child).and_then(|c| c.attrs.as_mut())
                else {
                    continue;
                };
                for a in attrs.iter_mut().filter(|a| a.rule.is_none()) {
                    if let Some((_, r)) = ruled.iter().find(|(n, _)| *n == a.name) {
                        a.rule = Some(r.clone());
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Marks columns whose type carries a ruled field.
    fn mark_carriers(&mut self) {
        let typed: Vec<(u32, usize, u32)> = self
            .relations
            .iter()
            .flat_map(|(o, r)| {
                r.attrs
                    .iter()
                    .flatten()
                    .enumerate()
                    .filter(|(_, a)| a.type_oid >= FIRST_NORMAL_OID)
                    .map(move |(i, a)| (*o, i, a.type_oid))
            })
            .collect();
        for (rel, i, type_oid) in typed {
            let carries = self.shape(type_oid).has_rules();
            if let Some(a) = self
                .relations
                .get_mut(&rel)
                .and_then(|r| r.attrs.as_mut())
                .and_then(|a| a.get_mut(i))
            {
                a.carries = carries;
            }
        }
    }

    /// Decides the rules of view columns: a column is ruled when its definition reads a ruled
    /// column (or a rule names the view's own column). Views over views settle over passes,
    /// starting from "every view column ruled" and only ever un-ruling; a chain deeper than the
    /// passes allowed stays ruled.
    fn resolve_views(&mut self, masker: &Masker) {
        let views: Vec<u32> = self
            .relations
            .iter()
            .filter(|(_, r)| r.view.is_some())
            .map(|(o, _)| *o)
            .collect();
        if views.is_empty() || !masker.has_column_rules() {
            return;
        }
        let start = self.unknown_rule.clone();
        for v in &views {
            if let Some(rel) = self.relations.get_mut(v) {
                for a in rel.attrs.iter_mut().flatten() {
                    a.rule = start.clone();
                }
            }
        }
        for _ in 0..views.len().min(16) + 1 {
            let mut changed = false;
            let mut next: Vec<(u32, Vec<Option<Rule>>)> = Vec::new();
            for v in &views {
                let Some(rel) = self.relations.get(v) else {
                    continue;
                };
                let (Some(node), Some(attrs)) = (&rel.view, &rel.attrs) else {
                    continue;
                };
                let out = lineage::query_outputs(node, self);
                let n = attrs.len();
                let rules: Vec<Option<Rule>> = attrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        masker
                            .column_replacement(Some(&rel.qualified), &a.name)
                            .map(Arc::from)
                            .or_else(|| out.rule_of(i, n).cloned())
                    })
                    .collect();
                if attrs
                    .iter()
                    .zip(&rules)
                    .any(|(a, r)| a.rule.is_some() != r.is_some())
                {
                    changed = true;
                }
                next.push((*v, rules));
            }
            for (v, rules) in next {
                if let Some(attrs) = self.relations.get_mut(&v).and_then(|r| r.attrs.as_mut()) {
                    for (a, r) in attrs.iter_mut().zip(rules) {
                        a.rule = r;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The rule for a result column from its source (table OID and attribute number, 0 when
    /// it has none) and its output name.
    pub fn source(&self, masker: &Masker, table_oid: u32, attnum: i16, name: &str) -> Source {
        if table_oid == 0 {
            return Source::Expression;
        }
        if !self.loaded {
            return Source::Decided(masker.column_replacement(None, name).map(Arc::from));
        }
        match self.relations.get(&table_oid) {
            Some(rel) if stats_values(&rel.qualified).is_some_and(|c| c.contains(&name)) => {
                Source::Decided(self.unknown_rule.clone())
            }
            Some(rel) => match &rel.attrs {
                Some(attrs) => match attrs.iter().find(|a| a.attnum == attnum) {
                    Some(a) => Source::Decided(a.rule.clone()),
                    None => Source::Decided(
                        masker
                            .column_replacement(Some(&rel.qualified), name)
                            .map(Arc::from),
                    ),
                },
                None => Source::Decided(
                    masker
                        .column_replacement(Some(&rel.qualified), name)
                        .map(Arc::from),
                ),
            },
            None if table_oid < FIRST_NORMAL_OID => {
                Source::Decided(masker.column_replacement(None, name).map(Arc::from))
            }
            // Created after the catalog was loaded: what it holds is not known.
            None => Source::Decided(self.unknown_rule.clone()),
        }
    }

    /// The shape of values of a type.
    pub fn shape(&mut self, type_oid: u32) -> Arc<Shape> {
        self.shape_at(type_oid, 0)
    }

    fn shape_at(&mut self, type_oid: u32, depth: usize) -> Arc<Shape> {
        if let Some(s) = self.shapes.get(&type_oid) {
            return s.clone();
        }
        if depth > 16 {
            return Arc::new(Shape::Whole);
        }
        let shape = match self.types.get(&type_oid).cloned() {
            None => builtin_shape(type_oid),
            Some(t) => match (t.typtype, t.category) {
                (b'd', _) => return self.shape_at(t.base, depth + 1),
                (_, b'A') if t.elem != 0 => {
                    let elem = self.shape_at(t.elem, depth + 1);
                    let delim = self
                        .types
                        .get(&t.elem)
                        .map(|e| e.delim)
                        .filter(|d| *d != 0)
                        .unwrap_or(b',');
                    Shape::Array { elem, delim }
                }
                (b'c', _) => self.record_shape(t.relid, depth),
                (b'r' | b'm', _) => Shape::Whole,
                (b'e', _) => Shape::Text,
                (b'p', _) if type_oid == RECORD => Shape::Record(None),
                (_, b'N') => Shape::Number,
                (_, b'G') => Shape::Whole,
                _ if type_oid == JSON || type_oid == JSONB => Shape::Json,
                _ if t.name == "hstore" => Shape::Hstore,
                _ => Shape::Text,
            },
        };
        let shape = Arc::new(shape);
        self.shapes.insert(type_oid, shape.clone());
        shape
    }

    fn record_shape(&mut self, relid: u32, depth: usize) -> Shape {
        let Some(attrs) = self.relations.get(&relid).and_then(|r| r.attrs.clone()) else {
            return Shape::Record(None);
        };
        let fields: Vec<Field> = attrs
            .iter()
            .map(|a| Field {
                shape: (*self.shape_at(a.type_oid, depth + 1)).clone(),
                rule: a.rule.clone(),
            })
            .collect();
        Shape::Record(Some(fields.into()))
    }

    /// The columns of a relation named in a COPY statement, in attribute order, with their
    /// rules and type OIDs. None when the relation is not known.
    pub fn copy_columns(
        &self,
        schema: Option<&str>,
        name: &str,
    ) -> Option<Vec<(String, u32, Option<Rule>)>> {
        let found: Vec<&Relation> = self
            .by_name
            .get(name)?
            .iter()
            .filter_map(|o| self.relations.get(o))
            .filter(|r| schema.is_none_or(|s| r.schema == s))
            .collect();
        match found.as_slice() {
            [rel] => rel.attrs.as_ref().map(|attrs| {
                attrs
                    .iter()
                    .map(|a| (a.name.clone(), a.type_oid, a.rule.clone()))
                    .collect()
            }),
            _ => None,
        }
    }

    /// How a value of this type is sent in binary format, as far as masking can read it.
    pub fn binary_kind(&mut self, type_oid: u32) -> BinaryKind {
        // A domain is sent as its base type.
        let mut oid = type_oid;
        for _ in 0..16 {
            match self.types.get(&oid) {
                Some(t) if t.typtype == b'd' => oid = t.base,
                _ => break,
            }
        }
        match oid {
            16 | 21 | 23 | 26 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266 | 2950 => {
                return BinaryKind::Harmless;
            }
            25 | 1043 | 1042 | 19 | 705 | 142 | 18 => return BinaryKind::Text,
            JSON => return BinaryKind::Json,
            JSONB => return BinaryKind::Jsonb,
            20 | 790 => return BinaryKind::Int8,
            700 => return BinaryKind::Float4,
            701 => return BinaryKind::Float8,
            1700 => return BinaryKind::Numeric,
            _ => {}
        }
        let t = self.types.get(&oid).cloned();
        match t {
            Some(t) if t.typtype == b'e' || t.name == "citext" => BinaryKind::Text,
            _ => match &*self.shape(oid) {
                Shape::Array { .. } => BinaryKind::Array,
                Shape::Record(fields) => BinaryKind::Record(fields.clone()),
                Shape::Hstore => BinaryKind::Hstore,
                _ => BinaryKind::Opaque,
            },
        }
    }

    /// The rule for a relation the catalog does not know.
    pub fn unknown_rule(&self) -> Option<&Rule> {
        self.unknown_rule.as_ref()
    }
}

impl Relations for Catalog {
    fn find(&self, schema: Option<&str>, name: &str) -> Vec<Option<Vec<Col>>> {
        let Some(oids) = self.by_name.get(name) else {
            return Vec::new();
        };
        oids.iter()
            .filter_map(|o| self.relations.get(o))
            .filter(|r| schema.is_none_or(|s| r.schema == s))
            .map(|r| {
                if let Some(values) = stats_values(&r.qualified)
                    && self.unknown_rule.is_some()
                {
                    // Only the sample-value columns are listed: any other reference to the
                    // view resolves to "a ruled column in reach" (over-masking expressions
                    // on the statistics views, which is rare and safe).
                    return Some(
                        values
                            .iter()
                            .map(|c| Col {
                                name: (*c).to_string(),
                                rule: self.unknown_rule.clone(),
                            })
                            .collect(),
                    );
                }
                r.attrs.as_ref().map(|attrs| {
                    attrs
                        .iter()
                        .map(|a| Col {
                            name: a.name.clone(),
                            rule: a
                                .rule
                                .clone()
                                .or_else(|| a.carries.then(|| self.unknown_rule.clone()).flatten()),
                        })
                        .collect()
                })
            })
            .collect()
    }

    fn unknown(&self) -> Option<Rule> {
        self.unknown_rule.clone()
    }
}

/// How a binary value is read for masking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryKind {
    /// Cannot carry anything a detector finds (bool, int4, dates, uuid, ...).
    Harmless,
    /// The bytes are the text.
    Text,
    /// `json`: the text.
    Json,
    /// `jsonb`: a version byte, then the text.
    Jsonb,
    /// An 8-byte integer (`int8`, `money`).
    Int8,
    /// `float4`.
    Float4,
    /// `float8`.
    Float8,
    /// `numeric`.
    Numeric,
    /// An array: element type and values inside.
    Array,
    /// A row: field types and values inside; the fields' rules when the type is a relation's.
    Record(Option<Arc<[Field]>>),
    /// `hstore`.
    Hstore,
    /// Anything else: cannot be read, withheld.
    Opaque,
}

const RECORD: u32 = 2249;
const JSON: u32 = 114;
const JSONB: u32 = 3802;

/// Shapes of built-in types, for when the catalog could not be loaded.
fn builtin_shape(oid: u32) -> Shape {
    let array = |elem: Shape| Shape::Array {
        elem: Arc::new(elem),
        delim: b',',
    };
    match oid {
        20 | 21 | 23 | 26 | 700 | 701 | 790 | 1700 => Shape::Number,
        1005 | 1007 | 1016 | 1021 | 1022 | 1028 | 1231 | 791 => array(Shape::Number),
        JSON | JSONB => Shape::Json,
        199 | 3807 => array(Shape::Json),
        RECORD => Shape::Record(None),
        2287 => array(Shape::Record(None)),
        1009 | 1015 | 1014 | 1003 | 143 => array(Shape::Text),
        3904 | 3906 | 3908 | 3910 | 3912 | 3926 | 600 | 601 | 602 | 603 | 604 | 718 => Shape::Whole,
        _ => Shape::Text,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::policy::masking::MaskingConfig;

    fn masker(columns: &[&str]) -> Masker {
        Masker::compile(&[MaskingConfig {
            name: "m".into(),
            detectors: vec!["email".into()],
            columns: columns.iter().map(|s| s.to_string()).collect(),
            replacement: None,
        }])
        .unwrap()
    }

    fn row(v: &[&str]) -> Vec<Option<String>> {
        v.iter()
            .map(|s| (*s != "NULL").then(|| s.to_string()))
            .collect()
    }

    /// `public.customers(id int4, name text, tags text[], who contact)` (oid 16400, row type
    /// 16401), composite `contact(label text, email text)` (relation 16410, type 16411), views
    /// `v(n, shout, id)` over customers and `w(loud)` over v.
    fn catalog(columns: &[&str]) -> (Masker, Catalog) {
        let m = masker(columns);
        let types = vec![
            row(&["23", "b", "N", "0", ",", "0", "0", "int4"]),
            row(&["25", "b", "S", "0", ",", "0", "0", "text"]),
            row(&["1009", "b", "A", "25", ",", "0", "0", "_text"]),
            row(&["603", "b", "G", "600", ";", "0", "0", "box"]),
            row(&["1020", "b", "A", "603", ",", "0", "0", "_box"]),
            row(&["3802", "b", "U", "0", ",", "0", "0", "jsonb"]),
            row(&["16401", "c", "C", "0", ",", "0", "16400", "customers"]),
            row(&["16411", "c", "C", "0", ",", "0", "16410", "contact"]),
            row(&["16412", "b", "A", "16411", ",", "0", "0", "_contact"]),
            row(&["16420", "d", "S", "0", ",", "25", "0", "email_address"]),
            row(&["16430", "b", "U", "0", ",", "0", "0", "hstore"]),
        ];
        let relations = vec![
            row(&["16400", "public", "customers", "r"]),
            row(&["16410", "public", "contact", "c"]),
            row(&["16440", "public", "v", "v"]),
            row(&["16450", "public", "w", "v"]),
            row(&["2619", "pg_catalog", "pg_statistic", "r"]),
            row(&["12000", "pg_catalog", "pg_stats", "v"]),
            row(&["16460", "public", "customers_2024", "r"]),
            row(&["16470", "public", "customers_2024_12", "r"]),
        ];
        let attrs = vec![
            row(&["16400", "1", "id", "23"]),
            row(&["16400", "2", "name", "25"]),
            row(&["16400", "4", "tags", "1009"]),
            row(&["16400", "5", "who", "16411"]),
            row(&["16410", "1", "label", "25"]),
            row(&["16410", "2", "email", "16420"]),
            row(&["16440", "1", "n", "25"]),
            row(&["16440", "2", "shout", "25"]),
            row(&["16440", "3", "id", "23"]),
            row(&["16450", "1", "loud", "25"]),
            row(&["16460", "1", "id", "23"]),
            row(&["16460", "2", "name", "25"]),
            row(&["16470", "1", "name", "25"]),
            row(&["16470", "2", "id", "23"]),
        ];
        let views = vec![
            row(&[
                "16440",
                " SELECT customers.name AS n, upper(customers.name) AS shout, customers.id FROM customers;",
            ]),
            row(&["16450", " SELECT (v.shout || '!'::text) AS loud FROM v;"]),
        ];
        let inherits = vec![row(&["16460", "16400"]), row(&["16470", "16460"])];
        let c = Catalog::build(&m, types, relations, attrs, inherits, views);
        (m, c)
    }

    fn ruled(c: &Catalog, m: &Masker, rel: u32, attnum: i16, name: &str) -> bool {
        match c.source(m, rel, attnum, name) {
            Source::Decided(r) => r.is_some(),
            Source::Expression => panic!("no source"),
        }
    }

    #[test]
    fn rules_follow_the_source_column_through_views() {
        let (m, c) = catalog(&["customers.name", "contact.email"]);
        assert!(ruled(&c, &m, 16400, 2, "n"), "an alias of a ruled column");
        assert!(
            !ruled(&c, &m, 16400, 1, "name"),
            "another column output as `name`"
        );
        assert!(ruled(&c, &m, 16440, 1, "n") && ruled(&c, &m, 16440, 2, "shout"));
        assert!(!ruled(&c, &m, 16440, 3, "id"));
        assert!(ruled(&c, &m, 16450, 1, "loud"), "a view over a view");
        assert!(ruled(&c, &m, 16460, 2, "name"), "a partition");
        assert!(
            ruled(&c, &m, 16470, 1, "name"),
            "a partition of a partition"
        );
        assert!(!ruled(&c, &m, 16470, 2, "id"));
        assert!(
            ruled(&c, &m, 99999, 1, "x"),
            "a relation created after the load"
        );
        assert!(
            !ruled(&c, &m, 2619, 1, "starelid"),
            "a system catalog by name"
        );
        assert!(
            ruled(&c, &m, 12000, 9, "histogram_bounds"),
            "planner statistics"
        );
        assert_eq!(c.source(&m, 0, 0, "x"), Source::Expression);
        // No column rules: nothing ruled, views not even resolved.
        let (m, c) = catalog(&[]);
        assert!(!ruled(&c, &m, 16440, 1, "n"));
        assert!(!ruled(&c, &m, 99999, 1, "x"));
    }

    #[test]
    fn shapes_come_from_pg_type() {
        let (_, mut c) = catalog(&["contact.email"]);
        assert_eq!(*c.shape(25), Shape::Text);
        assert_eq!(*c.shape(23), Shape::Number);
        assert_eq!(*c.shape(3802), Shape::Json);
        assert_eq!(*c.shape(16430), Shape::Hstore);
        assert_eq!(*c.shape(16420), Shape::Text, "a domain is its base type");
        assert!(matches!(&*c.shape(1020), Shape::Array { delim: b';', .. }));
        let Shape::Array { elem, .. } = &*c.shape(16412) else {
            panic!("an array of a composite");
        };
        let Shape::Record(Some(fields)) = &**elem else {
            panic!("the composite's fields");
        };
        assert_eq!(fields.len(), 2);
        assert!(fields[0].rule.is_none() && fields[1].rule.is_some());
        // The table's row type: `who` carries the composite's rule.
        assert!(c.shape(16401).has_rules());
        assert_eq!(c.binary_kind(16420), BinaryKind::Text);
        assert_eq!(c.binary_kind(1009), BinaryKind::Array);
        assert_eq!(c.binary_kind(23), BinaryKind::Harmless);
        assert!(matches!(c.binary_kind(16411), BinaryKind::Record(Some(_))));
        assert_eq!(c.binary_kind(603), BinaryKind::Opaque);
        // Nothing loaded: built-in types only.
        let mut u = Catalog::unloaded(&masker(&[]));
        assert_eq!(*u.shape(1700), Shape::Number);
        assert!(matches!(&*u.shape(1009), Shape::Array { .. }));
        assert_eq!(*u.shape(16411), Shape::Text);
    }

    #[test]
    fn lineage_sees_row_typed_columns_and_copy_columns() {
        let (m, c) = catalog(&["contact.email"]);
        let stmts = lineage::analyze("select who::text, id from customers", &c).unwrap();
        let lineage::Statement::Rows(out) = &stmts[0] else {
            panic!("rows");
        };
        assert!(out.rule_of(0, 2).is_some() && out.rule_of(1, 2).is_none());
        let cols = c.copy_columns(None, "customers").unwrap();
        assert_eq!(
            cols.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(),
            ["id", "name", "tags", "who"]
        );
        assert!(c.copy_columns(Some("other"), "customers").is_none());
        let _ = m;
    }
}
