//! Which output columns of a statement (or of a view's definition) read a column under a column
//! rule: the lineage of each output column, worked out from PostgreSQL's own parse tree
//! (libpg_query, through the `pg_query` crate).
//!
//! A column rule names a source column (`customers.name`). PostgreSQL tells the adapter the
//! source of an output column that is a plain column reference (its table and attribute), which
//! covers aliases; it tells nothing for an expression (`upper(name)`, `name || ''`,
//! `row_to_json(c)`, a view column computed from `name`). This module answers for those: an
//! output column is ruled when its expression reads a ruled column anywhere in it, including
//! in sub-queries inside it, a whole-row reference (`c`, `c.*`) to a relation with a ruled
//! column, or a column of a sub-query, CTE or view that is itself ruled.
//!
//! The analysis is conservative rather than exact: names are matched the way they could be
//! meant, not the way the server's analyser binds them. A column reference that could name a
//! ruled column of any relation in reach counts as reading it; one that names nothing known, or
//! a relation the catalog does not know (created after the session started), counts as reading
//! every ruled column in reach. Over-masking an innocent expression is the accepted cost.
//!
//! Built-in functions that read relations by name, by SQL text or through a cursor
//! (`table_to_xml('customers', ...)`, `query_to_xml('select name ...', ...)`, `ts_stat`), or
//! that hand back data stored out of the tables' sight (large objects: `lo_get`, `loread`;
//! server files; logical decoding) have no column reference to follow: an output calling one
//! counts as reading every ruled column (see [`READS_OUT_OF_SIGHT`]).
//!
//! Not covered (the limits the documentation states): what a function computes internally (a
//! SQL function that reads `customers.name` is a call with no column reference here), values
//! that reach the output only through a `WHERE` clause (`count(*) ... where name like 'A%'`),
//! and data copied into another table.

use std::sync::Arc;

use pg_query::NodeEnum;
use pg_query::protobuf::{self, SelectStmt, SetOperation};
use serde_json::Value;

/// A column rule's replacement text.
pub type Rule = Arc<[u8]>;

/// How deep sub-queries are followed before the analysis gives the conservative answer.
const MAX_DEPTH: usize = 48;

/// Built-in functions whose result carries table data the parse tree does not show: they read
/// relations named by a string, run SQL given as text, fetch from a cursor, or return bytes
/// stored where column rules do not reach (large objects, server files, decoded WAL). Under
/// column rules an expression calling one reads every ruled column.
pub const READS_OUT_OF_SIGHT: &[&str] = &[
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "lo_get",
    "loread",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
    "dblink",
    "dblink_fetch",
    "dblink_get_result",
];

/// One column of a relation, sub-query or result, and its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Col {
    /// The column's name.
    pub name: String,
    /// The rule when the column is under one.
    pub rule: Option<Rule>,
}

/// The relations a statement may name, as the adapter's catalog knows them.
pub trait Relations {
    /// Every relation called `name` (in `schema`, when given; any schema otherwise): for each,
    /// its columns with their rules, or None when its columns are not known (a system catalog).
    /// Empty when no relation of that name is known.
    fn find(&self, schema: Option<&str>, name: &str) -> Vec<Option<Vec<Col>>>;

    /// The rule to apply for a relation the catalog does not know (one created after the
    /// session started): None when no column rule exists at all.
    fn unknown(&self) -> Option<Rule>;
}

/// The output columns of one statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Each output column in order, when the column list could be worked out.
    pub columns: Option<Vec<Col>>,
    /// A rule for output columns whose place could not be worked out: the rule of any ruled
    /// column the outputs read (None when they read none).
    pub any: Option<Rule>,
}

impl Outputs {
    fn opaque(any: Option<Rule>) -> Self {
        Outputs { columns: None, any }
    }

    /// The rule of output column `i` of `n`: its own when the list lines up with what the
    /// server described, the conservative one otherwise.
    pub fn rule_of(&self, i: usize, n: usize) -> Option<&Rule> {
        match &self.columns {
            Some(cols) if cols.len() == n => cols.get(i).and_then(|c| c.rule.as_ref()),
            _ => self.any.as_ref(),
        }
    }

    fn from_cols(cols: Vec<Col>) -> Self {
        let any = cols.iter().find_map(|c| c.rule.clone());
        Outputs {
            columns: Some(cols),
            any,
        }
    }
}

/// What a statement does, as far as masking its results needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// It returns rows with these outputs (a query, a DML statement with RETURNING, a COPY of
    /// a query).
    Rows(Outputs),
    /// `PREPARE name AS ...`: `EXECUTE name` will return these outputs.
    Prepare(String, Outputs),
    /// `DECLARE name CURSOR FOR ...`: `FETCH ... name` will return these outputs.
    Declare(String, Outputs),
    /// `EXECUTE name`: the outputs of what was prepared under that name.
    Execute(String),
    /// `FETCH`/`MOVE` from the cursor of that name.
    Fetch(String),
    /// Returns no rows of data (or nothing this analysis follows).
    Other,
}

/// Analyses every statement of a query string. None when it does not parse (the caller then
/// treats every output without a known source as reading every ruled column).
pub fn analyze(sql: &str, rels: &dyn Relations) -> Option<Vec<Statement>> {
    let parsed = crate::policy::sql::parse_tree(sql)?;
    Some(
        parsed
            .stmts
            .iter()
            .map(|raw| {
                raw.stmt
                    .as_ref()
                    .and_then(|n| n.node.as_ref())
                    .map_or(Statement::Other, |n| statement(n, rels))
            })
            .collect(),
    )
}

/// The outputs of one query node (a view's definition, the query of a `COPY (query)`).
pub fn query_outputs(node: &NodeEnum, rels: &dyn Relations) -> Outputs {
    let mut a = Analyzer::new(rels, node);
    a.query(node, &[], 0)
}

fn statement(node: &NodeEnum, rels: &dyn Relations) -> Statement {
    let inner = |q: &Option<Box<protobuf::Node>>| {
        q.as_ref()
            .and_then(|n| n.node.as_ref())
            .map(|n| query_outputs(n, rels))
    };
    match node {
        NodeEnum::SelectStmt(_)
        | NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::MergeStmt(_) => Statement::Rows(query_outputs(node, rels)),
        NodeEnum::CopyStmt(c) if !c.is_from => match inner(&c.query) {
            Some(o) => Statement::Rows(o),
            None => Statement::Other,
        },
        NodeEnum::PrepareStmt(p) => {
            inner(&p.query).map_or(Statement::Other, |o| Statement::Prepare(p.name.clone(), o))
        }
        NodeEnum::DeclareCursorStmt(d) => inner(&d.query).map_or(Statement::Other, |o| {
            Statement::Declare(d.portalname.clone(), o)
        }),
        // A plan or a setting: no table data (EXPLAIN ANALYZE runs the query but returns the
        // plan). Their columns are not ruled.
        NodeEnum::ExplainStmt(_) | NodeEnum::VariableShowStmt(_) => {
            Statement::Rows(Outputs::default())
        }
        NodeEnum::ExecuteStmt(e) => Statement::Execute(e.name.clone()),
        NodeEnum::FetchStmt(f) => Statement::Fetch(f.portalname.clone()),
        _ => Statement::Other,
    }
}

/// One entry of a FROM list: a name it can be referred to by, and its columns.
#[derive(Clone, Debug)]
struct Item {
    alias: String,
    /// None: the columns are not known (a function's result, a system catalog).
    cols: Option<Vec<Col>>,
    /// The rule of a whole-row reference to it (any ruled column it has).
    any: Option<Rule>,
}

impl Item {
    fn new(alias: String, out: Outputs) -> Self {
        Item {
            alias,
            any: out.any,
            cols: out.columns,
        }
    }
}

struct Analyzer<'a> {
    rels: &'a dyn Relations,
    /// CTEs in scope, innermost last.
    ctes: Vec<(String, Outputs)>,
    /// The answer when the analysis must give up: any rule of any relation the whole
    /// statement names.
    fallback: Option<Rule>,
}

impl<'a> Analyzer<'a> {
    fn new(rels: &'a dyn Relations, whole: &NodeEnum) -> Self {
        let mut a = Analyzer {
            rels,
            ctes: Vec::new(),
            fallback: None,
        };
        let refs = collect(&node_json(whole));
        let fallback = refs.relations.iter().find_map(|(schema, name)| {
            let cte = schema.is_none() && refs.ctes.contains(name);
            (!cte)
                .then(|| a.relation_any(schema.as_deref(), name))
                .flatten()
        });
        a.fallback = fallback;
        a
    }

    /// Any rule of the relations called `name`, or the unknown-relation rule.
    fn relation_any(&self, schema: Option<&str>, name: &str) -> Option<Rule> {
        let found = self.rels.find(schema, name);
        if found.is_empty() {
            return self.rels.unknown();
        }
        found
            .iter()
            .flatten()
            .flat_map(|cols| cols.iter())
            .find_map(|c| c.rule.clone())
    }

    fn query(&mut self, node: &NodeEnum, outer: &[Item], depth: usize) -> Outputs {
        if depth > MAX_DEPTH {
            return Outputs::opaque(self.fallback.clone());
        }
        match node {
            NodeEnum::SelectStmt(s) => self.select(s, outer, depth),
            NodeEnum::InsertStmt(s) => {
                let rel = s.relation.as_ref().map(|r| self.range_var(r));
                self.returning(s.returning_clause.as_ref(), rel, &[], outer, depth)
            }
            NodeEnum::UpdateStmt(s) => {
                let rel = s.relation.as_ref().map(|r| self.range_var(r));
                self.returning(
                    s.returning_clause.as_ref(),
                    rel,
                    &s.from_clause,
                    outer,
                    depth,
                )
            }
            NodeEnum::DeleteStmt(s) => {
                let rel = s.relation.as_ref().map(|r| self.range_var(r));
                self.returning(
                    s.returning_clause.as_ref(),
                    rel,
                    &s.using_clause,
                    outer,
                    depth,
                )
            }
            NodeEnum::MergeStmt(s) => {
                let rel = s.relation.as_ref().map(|r| self.range_var(r));
                let source: Vec<protobuf::Node> =
                    s.source_relation.iter().map(|b| (**b).clone()).collect();
                self.returning(s.returning_clause.as_ref(), rel, &source, outer, depth)
            }
            _ => Outputs::opaque(self.fallback.clone()),
        }
    }

    fn returning(
        &mut self,
        clause: Option<&protobuf::ReturningClause>,
        rel: Option<Item>,
        from: &[protobuf::Node],
        outer: &[Item],
        depth: usize,
    ) -> Outputs {
        let Some(clause) = clause.filter(|c| !c.exprs.is_empty()) else {
            return Outputs::default();
        };
        let mut scope: Vec<Item> = rel.into_iter().collect();
        for f in from {
            self.scope_item(f, &mut scope, outer, depth);
        }
        // RETURNING may say `old` and `new` for the target relation (not part of `*`).
        let mut reach = outer.to_vec();
        if let Some(first) = scope.first() {
            for alias in ["old", "new"] {
                reach.push(Item {
                    alias: alias.into(),
                    ..first.clone()
                });
            }
        }
        self.targets(&clause.exprs, &scope, &reach, depth)
    }

    fn select(&mut self, s: &SelectStmt, outer: &[Item], depth: usize) -> Outputs {
        let ctes_before = self.ctes.len();
        if let Some(with) = &s.with_clause {
            for cte in &with.ctes {
                if let Some(NodeEnum::CommonTableExpr(c)) = cte.node.as_ref() {
                    self.cte(c, with.recursive, outer, depth);
                }
            }
        }
        let out = match SetOperation::try_from(s.op) {
            Ok(SetOperation::SetopNone) | Ok(SetOperation::Undefined) | Err(_) => {
                if !s.values_lists.is_empty() {
                    self.values(&s.values_lists, outer, depth)
                } else {
                    let mut scope = Vec::new();
                    for f in &s.from_clause {
                        self.scope_item(f, &mut scope, outer, depth);
                    }
                    self.targets(&s.target_list, &scope, outer, depth)
                }
            }
            Ok(_) => {
                let l = s
                    .larg
                    .as_ref()
                    .map(|l| self.select(l, outer, depth + 1))
                    .unwrap_or_default();
                let r = s
                    .rarg
                    .as_ref()
                    .map(|r| self.select(r, outer, depth + 1))
                    .unwrap_or_default();
                union(l, r)
            }
        };
        self.ctes.truncate(ctes_before);
        out
    }

    fn cte(
        &mut self,
        c: &protobuf::CommonTableExpr,
        recursive: bool,
        outer: &[Item],
        depth: usize,
    ) {
        let Some(q) = c.ctequery.as_ref().and_then(|n| n.node.as_ref()) else {
            return;
        };
        let names: Vec<String> = c.aliascolnames.iter().filter_map(string_of).collect();
        // A recursive CTE reads itself: first as reading everything, then as what it gave.
        if recursive {
            self.ctes
                .push((c.ctename.clone(), Outputs::opaque(self.fallback.clone())));
        }
        let mut out = self.query(q, outer, depth + 1);
        if recursive {
            self.ctes.pop();
            self.ctes.push((c.ctename.clone(), out.clone()));
            let again = self.query(q, outer, depth + 1);
            self.ctes.pop();
            out = union(out, again);
        }
        self.ctes.push((c.ctename.clone(), rename(out, &names)));
    }

    fn values(&mut self, rows: &[protobuf::Node], outer: &[Item], depth: usize) -> Outputs {
        let mut cols: Vec<Col> = Vec::new();
        for row in rows {
            let Some(NodeEnum::List(list)) = row.node.as_ref() else {
                return Outputs::opaque(self.fallback.clone());
            };
            for (k, e) in list.items.iter().enumerate() {
                let rule = self.expr_rule(e, &[], outer, depth);
                match cols.get_mut(k) {
                    Some(c) => c.rule = c.rule.take().or(rule),
                    None => cols.push(Col {
                        name: format!("column{}", k + 1),
                        rule,
                    }),
                }
            }
        }
        Outputs::from_cols(cols)
    }

    /// The scope items a FROM entry brings.
    fn scope_item(
        &mut self,
        node: &protobuf::Node,
        scope: &mut Vec<Item>,
        outer: &[Item],
        depth: usize,
    ) {
        let Some(n) = node.node.as_ref() else { return };
        match n {
            NodeEnum::RangeVar(r) => {
                let item = self.range_var(r);
                scope.push(item);
            }
            NodeEnum::RangeSubselect(r) => {
                let out = r
                    .subquery
                    .as_ref()
                    .and_then(|q| q.node.as_ref())
                    .map(|q| {
                        // LATERAL sub-queries see the items before them.
                        let mut visible = outer.to_vec();
                        visible.extend(scope.iter().cloned());
                        self.query(q, &visible, depth + 1)
                    })
                    .unwrap_or_default();
                let (alias, names) = alias_of(r.alias.as_ref());
                scope.push(Item::new(alias, rename(out, &names)));
            }
            NodeEnum::JoinExpr(j) => {
                let start = scope.len();
                if let Some(l) = &j.larg {
                    self.scope_item(l, scope, outer, depth);
                }
                if let Some(r) = &j.rarg {
                    self.scope_item(r, scope, outer, depth);
                }
                if let Some(a) = &j.alias {
                    // `(a join b) as j`: j names all of it.
                    let joined: Vec<Item> = scope.get(start..).unwrap_or(&[]).to_vec();
                    let cols = joined
                        .iter()
                        .map(|i| i.cols.clone())
                        .collect::<Option<Vec<_>>>()
                        .map(|v| v.concat());
                    let any = joined.iter().find_map(|i| i.any.clone());
                    let names: Vec<String> = a.colnames.iter().filter_map(string_of).collect();
                    let out = rename(Outputs { columns: cols, any }, &names);
                    scope.push(Item::new(a.aliasname.clone(), out));
                }
            }
            other => {
                // A function, XMLTABLE, JSON_TABLE, TABLESAMPLE ...: what its arguments read.
                let alias = match other {
                    NodeEnum::RangeFunction(f) => alias_of(f.alias.as_ref()).0,
                    NodeEnum::RangeTableSample(t) => {
                        if let Some(NodeEnum::RangeVar(r)) =
                            t.relation.as_ref().and_then(|n| n.node.as_ref())
                        {
                            let item = self.range_var(r);
                            scope.push(item);
                            return;
                        }
                        String::new()
                    }
                    _ => String::new(),
                };
                let mut visible = outer.to_vec();
                visible.extend(scope.iter().cloned());
                let any = self.expr_rule(node, &[], &visible, depth);
                scope.push(Item {
                    alias,
                    cols: None,
                    any,
                });
            }
        }
    }

    fn range_var(&self, r: &protobuf::RangeVar) -> Item {
        let (alias, names) = match &r.alias {
            Some(a) => alias_of(Some(a)),
            None => (r.relname.clone(), Vec::new()),
        };
        let schema = (!r.schemaname.is_empty()).then_some(r.schemaname.as_str());
        if schema.is_none()
            && let Some((_, out)) = self.ctes.iter().rev().find(|(n, _)| *n == r.relname)
        {
            return Item::new(alias, rename(out.clone(), &names));
        }
        let found = self.rels.find(schema, &r.relname);
        let out = match found.as_slice() {
            [] => Outputs::opaque(self.rels.unknown()),
            [Some(cols)] => Outputs::from_cols(cols.clone()),
            several => {
                // The same name in several schemas: whichever the search path picks, a
                // column is ruled if it is ruled in any of them.
                let any = several
                    .iter()
                    .flatten()
                    .flat_map(|c| c.iter())
                    .find_map(|c| c.rule.clone());
                Outputs::opaque(any)
            }
        };
        Item::new(alias, rename(out, &names))
    }

    fn targets(
        &mut self,
        list: &[protobuf::Node],
        scope: &[Item],
        outer: &[Item],
        depth: usize,
    ) -> Outputs {
        let mut cols = Vec::new();
        let mut aligned = true;
        let mut any: Option<Rule> = None;
        for t in list {
            let Some(NodeEnum::ResTarget(rt)) = t.node.as_ref() else {
                continue;
            };
            let Some(val) = rt.val.as_ref() else { continue };
            if let Some(NodeEnum::ColumnRef(c)) = val.node.as_ref()
                && let Some(last) = c.fields.last()
                && matches!(last.node, Some(NodeEnum::AStar(_)))
            {
                // `*` or `q.*` in the target list: one output per column.
                let qual = c.fields.iter().rev().nth(1).and_then(string_of);
                for item in scope
                    .iter()
                    .filter(|i| qual.as_ref().is_none_or(|q| *q == i.alias))
                {
                    match &item.cols {
                        Some(cs) => cols.extend(cs.iter().cloned()),
                        None => aligned = false,
                    }
                    any = any.or_else(|| item.any.clone());
                }
                continue;
            }
            let rule = self.expr_rule(val, scope, outer, depth);
            any = any.or_else(|| rule.clone());
            let name = if rt.name.is_empty() {
                figure_name(val)
            } else {
                rt.name.clone()
            };
            cols.push(Col { name, rule });
        }
        Outputs {
            columns: aligned.then_some(cols),
            any,
        }
    }

    /// The rule an expression's value carries: see the module documentation.
    fn expr_rule(
        &mut self,
        node: &protobuf::Node,
        scope: &[Item],
        outer: &[Item],
        depth: usize,
    ) -> Option<Rule> {
        let refs = collect(&node_json_of(node));
        if refs.reads_out_of_sight {
            return self.rels.unknown();
        }
        if refs.columns.is_empty() && refs.relations.is_empty() {
            return None;
        }
        // Relations named inside the expression (its sub-queries) are in reach too.
        let mut reach: Vec<Item> = scope.iter().chain(outer.iter()).cloned().collect();
        let mut unknown = None;
        for (schema, name) in &refs.relations {
            let found = self.rels.find(schema.as_deref(), name);
            let cte = schema.is_none()
                && (refs.ctes.contains(name) || self.ctes.iter().any(|(n, _)| n == name));
            if found.is_empty() && !cte {
                unknown = unknown.or_else(|| self.rels.unknown());
            }
            if cte && let Some((_, out)) = self.ctes.iter().rev().find(|(n, _)| n == name) {
                reach.push(Item::new(name.clone(), out.clone()));
            }
            for cols in found {
                let out = match cols {
                    Some(c) => Outputs::from_cols(c),
                    None => Outputs::default(),
                };
                reach.push(Item::new(name.clone(), out));
            }
        }
        if unknown.is_some() {
            return unknown;
        }
        if depth > MAX_DEPTH {
            return self.fallback.clone();
        }
        let reach_any = || reach.iter().find_map(|i| i.any.clone());
        for fields in &refs.columns {
            let rule = resolve(fields, &reach).unwrap_or_else(reach_any);
            if rule.is_some() {
                return rule;
            }
        }
        None
    }
}

/// Resolves a column reference against what is in reach. Some(rule) when it names something
/// known (a column, or a whole row); None when it names nothing known.
fn resolve(fields: &[Option<String>], reach: &[Item]) -> Option<Option<Rule>> {
    let col_in = |item: &Item, name: &str| -> Option<Option<Rule>> {
        match &item.cols {
            Some(cols) => cols.iter().find(|c| c.name == name).map(|c| c.rule.clone()),
            // Unknown columns: it may be one of them.
            None => item.any.clone().map(Some),
        }
    };
    match fields {
        // `*` or `q.*`: whole rows.
        [.., None] => {
            let qual = fields.iter().rev().nth(1).cloned().flatten();
            let items = reach
                .iter()
                .filter(|i| qual.as_ref().is_none_or(|q| *q == i.alias));
            Some(items.clone().find_map(|i| i.any.clone()))
        }
        [Some(name)] => {
            let hits: Vec<Option<Rule>> = reach.iter().filter_map(|i| col_in(i, name)).collect();
            if !hits.is_empty() {
                return Some(hits.into_iter().flatten().next());
            }
            // Not a column: a whole-row reference to an alias (`row_to_json(c)`).
            let rows: Vec<&Item> = reach.iter().filter(|i| i.alias == *name).collect();
            (!rows.is_empty()).then(|| rows.iter().find_map(|i| i.any.clone()))
        }
        [.., Some(qual), Some(name)] => {
            let items: Vec<&Item> = reach.iter().filter(|i| i.alias == *qual).collect();
            if items.is_empty() {
                return None;
            }
            let hits: Vec<Option<Rule>> = items.iter().filter_map(|i| col_in(i, name)).collect();
            // `c.f` may also pick field f of a whole-row value: then it reads the row.
            if hits.is_empty() {
                return Some(items.iter().find_map(|i| i.any.clone()));
            }
            Some(hits.into_iter().flatten().next())
        }
        _ => None,
    }
}

fn union(a: Outputs, b: Outputs) -> Outputs {
    let any = a.any.clone().or_else(|| b.any.clone());
    match (a.columns, b.columns) {
        (Some(x), Some(y)) if x.len() == y.len() => Outputs {
            columns: Some(
                x.into_iter()
                    .zip(y)
                    .map(|(l, r)| Col {
                        name: l.name,
                        rule: l.rule.or(r.rule),
                    })
                    .collect(),
            ),
            any,
        },
        _ => Outputs { columns: None, any },
    }
}

/// Applies an alias's column names to the first outputs.
fn rename(mut out: Outputs, names: &[String]) -> Outputs {
    if let Some(cols) = out.columns.as_mut() {
        for (c, n) in cols.iter_mut().zip(names) {
            c.name.clone_from(n);
        }
    }
    out
}

fn alias_of(a: Option<&protobuf::Alias>) -> (String, Vec<String>) {
    match a {
        Some(a) => (
            a.aliasname.clone(),
            a.colnames.iter().filter_map(string_of).collect(),
        ),
        None => (String::new(), Vec::new()),
    }
}

fn string_of(n: &protobuf::Node) -> Option<String> {
    match n.node.as_ref()? {
        NodeEnum::String(s) => Some(s.sval.clone()),
        _ => None,
    }
}

/// The name PostgreSQL gives an unnamed output column (`FigureColname`), closely enough for
/// references to it by name.
fn figure_name(n: &protobuf::Node) -> String {
    match n.node.as_ref() {
        Some(NodeEnum::ColumnRef(c)) => c.fields.last().and_then(string_of),
        Some(NodeEnum::FuncCall(f)) => f.funcname.last().and_then(string_of),
        Some(NodeEnum::TypeCast(t)) => t.arg.as_ref().map(|a| figure_name(a)),
        _ => None,
    }
    .unwrap_or_else(|| "?column?".into())
}

/// What an expression refers to.
#[derive(Default)]
struct Refs {
    /// Column references: their names, None for `*`.
    columns: Vec<Vec<Option<String>>>,
    /// Relations named anywhere inside (sub-queries): (schema, name).
    relations: Vec<(Option<String>, String)>,
    /// Names of CTEs defined anywhere inside (a relation of that name may be one).
    ctes: Vec<String>,
    /// A call to one of [`READS_OUT_OF_SIGHT`] anywhere inside.
    reads_out_of_sight: bool,
}

fn node_json(n: &NodeEnum) -> Value {
    serde_json::to_value(n).unwrap_or(Value::Null)
}

fn node_json_of(n: &protobuf::Node) -> Value {
    serde_json::to_value(n).unwrap_or(Value::Null)
}

/// Every column reference and relation name in a parse tree, at any depth. Walks the tree's
/// serialised form so that no node type (array constructors, indirection, JSON constructors,
/// XML expressions, ...) can hide a reference from it.
fn collect(v: &Value) -> Refs {
    let mut refs = Refs::default();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::Object(c)) = map.get("ColumnRef") {
                    let fields = c
                        .get("fields")
                        .and_then(Value::as_array)
                        .map(|fs| {
                            fs.iter()
                                .map(|f| {
                                    f.pointer("/node/String/sval")
                                        .and_then(Value::as_str)
                                        .map(String::from)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    refs.columns.push(fields);
                }
                if let Some(Value::Object(f)) = map.get("FuncCall")
                    && let Some(name) = f
                        .get("funcname")
                        .and_then(Value::as_array)
                        .and_then(|n| n.last())
                        .and_then(|n| n.pointer("/node/String/sval"))
                        .and_then(Value::as_str)
                    && READS_OUT_OF_SIGHT.contains(&name)
                {
                    refs.reads_out_of_sight = true;
                }
                if let Some(Value::Object(c)) = map.get("CommonTableExpr")
                    && let Some(name) = c.get("ctename").and_then(Value::as_str)
                {
                    refs.ctes.push(name.to_string());
                }
                if let Some(Value::Object(r)) = map.get("RangeVar") {
                    let s = r.get("schemaname").and_then(Value::as_str).unwrap_or("");
                    let name = r.get("relname").and_then(Value::as_str).unwrap_or("");
                    refs.relations
                        .push(((!s.is_empty()).then(|| s.to_string()), name.to_string()));
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    refs
}

/// True when the text calls `set_config` with a name or value that is not a constant (a
/// literal, or a parameter the client binds), or holds code (a DO block, a function or
/// procedure body) that calls it at all. Under column rules such a statement is refused: a
/// setting carries a value past every later statement (`current_setting`, `SHOW`,
/// `pg_settings`), where no column rule can follow it. A cheap look for the name (or a
/// Unicode-escaped identifier that may spell it) comes first.
pub fn sets_config_from_data(sql: &str) -> bool {
    let has = |w: &str| {
        sql.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    };
    if !(has("set_config") || has("u&") || has("pg_settings")) {
        return false;
    }
    // Every reading: the session may read backslashes either way. Unparsable text does not
    // run either.
    let trees = crate::policy::sql::parse_trees(sql);
    let mut bodies = false;
    for raw in trees.iter().flat_map(|t| &t.stmts) {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        bodies |= matches!(node, NodeEnum::DoStmt(_) | NodeEnum::CreateFunctionStmt(_));
        let tree = node_json(node);
        if set_config_calls(&tree).any(|args| !args_constant(args)) || updates_settings(&tree) {
            return true;
        }
    }
    // Bodies are read by the guardrails' analysis (PL/pgSQL through its own parser); their
    // calls' arguments are not judged: any call counts.
    bodies
        && crate::policy::sql::analyze(sql)
            .iter()
            .any(|i| i.functions.iter().any(|f| f.name == "set_config"))
}

/// Does a serialised parse tree update `pg_settings` anywhere (a data-modifying CTE too)? Each
/// updated row is a `set_config` call whose value the statement computes.
fn updates_settings(v: &Value) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                let settings = map
                    .get("UpdateStmt")
                    .and_then(|u| u.pointer("/relation/relname"))
                    .and_then(Value::as_str)
                    == Some("pg_settings");
                if settings {
                    return true;
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    false
}

/// The argument lists of every `set_config` call in a serialised parse tree.
fn set_config_calls(v: &Value) -> impl Iterator<Item = &[Value]> {
    let mut calls = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::Object(f)) = map.get("FuncCall")
                    && f.get("funcname")
                        .and_then(Value::as_array)
                        .and_then(|n| n.last())
                        .and_then(|n| n.pointer("/node/String/sval"))
                        .and_then(Value::as_str)
                        == Some("set_config")
                {
                    calls.push(
                        f.get("args")
                            .and_then(Value::as_array)
                            .map_or(&[][..], Vec::as_slice),
                    );
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    calls.into_iter()
}

/// The name and value of a `set_config` call are literals or bound parameters (a cast of
/// one included). Named-notation and missing arguments are not constant.
fn args_constant(args: &[Value]) -> bool {
    fn constant(v: &Value) -> bool {
        let Some(node) = v.get("node") else {
            return false;
        };
        if node.get("AConst").is_some() || node.get("ParamRef").is_some() {
            return true;
        }
        node.pointer("/TypeCast/arg").is_some_and(constant)
    }
    args.len() >= 2 && args.iter().take(2).all(constant)
}

/// The relation, columns, format options and query of a `COPY ... TO` statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyTo {
    /// `(schema, name)` of the relation copied, when it is one.
    pub relation: Option<(Option<String>, String)>,
    /// The column list, when given.
    pub columns: Vec<String>,
    /// The format: `text`, `csv` or `binary`.
    pub format: String,
    /// Options by name (`delimiter`, `null`, `quote`, `escape`, `header`), as written.
    pub options: Vec<(String, String)>,
    /// The outputs of `COPY (query)`.
    pub query: Option<Outputs>,
}

/// Reads the COPY ... TO statement of a query string, if it is one (the only statement, or
/// the `index`-th).
pub fn copy_to(sql: &str, index: usize, rels: &dyn Relations) -> Option<CopyTo> {
    let parsed = crate::policy::sql::parse_tree(sql)?;
    let raw = parsed.stmts.get(index)?;
    let Some(NodeEnum::CopyStmt(c)) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
        return None;
    };
    if c.is_from {
        return None;
    }
    let mut out = CopyTo {
        relation: c.relation.as_ref().map(|r| {
            (
                (!r.schemaname.is_empty()).then(|| r.schemaname.clone()),
                r.relname.clone(),
            )
        }),
        columns: c.attlist.iter().filter_map(string_of).collect(),
        format: "text".into(),
        ..CopyTo::default()
    };
    for o in &c.options {
        if let Some(NodeEnum::DefElem(d)) = o.node.as_ref() {
            let value = d
                .arg
                .as_ref()
                .and_then(|a| a.node.as_ref())
                .map(|a| match a {
                    NodeEnum::String(s) => s.sval.clone(),
                    NodeEnum::Boolean(b) => if b.boolval { "true" } else { "false" }.into(),
                    NodeEnum::Integer(i) => i.ival.to_string(),
                    _ => String::new(),
                })
                .unwrap_or_else(|| "true".into());
            if d.defname == "format" {
                out.format = value.to_ascii_lowercase();
            } else {
                out.options.push((d.defname.clone(), value));
            }
        }
    }
    if let Some(q) = c.query.as_ref().and_then(|n| n.node.as_ref()) {
        out.query = Some(query_outputs(q, rels));
    }
    Some(out)
}

/// True when the text holds a `COPY ... TO` in binary format (refused under masking before it
/// runs: binary COPY data cannot be masked). A cheap look for the two words comes first.
pub fn is_binary_copy_to(sql: &str) -> bool {
    let has = |w: &str| {
        sql.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    };
    if !(has("copy") && has("binary")) {
        return false;
    }
    let trees = crate::policy::sql::parse_trees(sql);
    trees.iter().flat_map(|t| &t.stmts).any(|raw| {
        matches!(
            raw.stmt.as_ref().and_then(|n| n.node.as_ref()),
            Some(NodeEnum::CopyStmt(c)) if !c.is_from && c.options.iter().any(|o| matches!(
                o.node.as_ref(),
                Some(NodeEnum::DefElem(d)) if d.defname == "format"
                    && d.arg.as_ref().and_then(|a| a.node.as_ref()).is_some_and(|a| matches!(
                        a, NodeEnum::String(s) if s.sval.eq_ignore_ascii_case("binary")))
            ))
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// `customers(id, name, email, card)` with `name` and `card` ruled, `items(id, qty)`,
    /// `pg_catalog.pg_class` with unknown columns; anything else is unknown.
    struct Fake;

    fn rule() -> Rule {
        Arc::from(&b"****"[..])
    }

    impl Relations for Fake {
        fn find(&self, _schema: Option<&str>, name: &str) -> Vec<Option<Vec<Col>>> {
            let col = |n: &str, ruled: bool| Col {
                name: n.into(),
                rule: ruled.then(rule),
            };
            match name {
                "customers" => vec![Some(vec![
                    col("id", false),
                    col("name", true),
                    col("email", false),
                    col("card", true),
                ])],
                "items" => vec![Some(vec![col("id", false), col("qty", false)])],
                "pg_class" => vec![None],
                _ => vec![],
            }
        }
        fn unknown(&self) -> Option<Rule> {
            Some(rule())
        }
    }

    fn outputs(sql: &str) -> Outputs {
        match analyze(sql, &Fake).unwrap().pop().unwrap() {
            Statement::Rows(o) => o,
            other => panic!("{sql}: {other:?}"),
        }
    }

    /// Which outputs are ruled, as a string of `R` and `.`; `?` when not aligned.
    fn ruled(sql: &str) -> String {
        let o = outputs(sql);
        match &o.columns {
            Some(cols) => cols
                .iter()
                .map(|c| if c.rule.is_some() { 'R' } else { '.' })
                .collect(),
            None => format!("?{}", if o.any.is_some() { 'R' } else { '.' }),
        }
    }

    #[test]
    fn expressions_over_ruled_columns_are_ruled() {
        for (sql, want) in [
            ("select name as n, id from customers", "R."),
            ("select upper(name), id, email from customers", "R.."),
            ("select id, name || '' from customers c", ".R"),
            ("select row_to_json(c) from customers c", "R"),
            ("select c::text, to_json(c.*) from customers c", "RR"),
            ("select string_agg(name, ',') from customers", "R"),
            ("select format('%s', c.name) from customers c", "R"),
            ("select array[name], (card) from customers", "RR"),
            ("select reverse(card) from customers", "R"),
            ("select (select name from customers limit 1)", "R"),
            ("select json_build_object('n', name) from customers", "R"),
            ("select count(*), max(id) from customers", ".."),
            ("select email, id from customers", ".."),
            ("select qty * 2 from items", "."),
            ("select 1, 'x'", ".."),
            ("select upper(name) from items", "."),
        ] {
            assert_eq!(ruled(sql), want, "{sql}");
        }
    }

    #[test]
    fn sub_queries_ctes_and_set_operations_carry_rules() {
        for (sql, want) in [
            (
                "with x as (select name as n, id from customers) select upper(n), id from x",
                "R.",
            ),
            ("select upper(n) from (select name n from customers) s", "R"),
            (
                "select upper(b) from (select * from customers) s(a, b)",
                "R",
            ),
            (
                "select id from items union select length(name) from customers",
                "R",
            ),
            (
                "with recursive r(v) as (select name from customers union all select v from r) select v || '' from r",
                "R",
            ),
            ("select *, upper(name) from customers", ".R.RR"),
            ("select s.* from (select upper(name) from customers) s", "R"),
            (
                "select x from customers c, lateral (select c.name x) l",
                "R",
            ),
            ("select t.a from (values (1), (2)) t(a)", "."),
            (
                "select i.id, upper(c.name) from items i join customers c on c.id = i.id",
                ".R",
            ),
            (
                "select j.qty from (items i join customers c using (id)) j",
                ".",
            ),
        ] {
            assert_eq!(ruled(sql), want, "{sql}");
        }
    }

    #[test]
    fn what_cannot_be_worked_out_is_ruled() {
        // A relation the catalog does not know (created in this session).
        assert_eq!(ruled("select upper(x) from new_table"), "R");
        // Columns that cannot be listed: conservative answer for every output without source.
        assert_eq!(ruled("select * from generate_series(1, 3)"), "?.");
        assert_eq!(
            ruled("select * from customers, generate_series(1, 3)"),
            "?R"
        );
        // A function in FROM fed a ruled column.
        assert_eq!(
            ruled("select * from unnest(array(select name from customers))"),
            "?R"
        );
        // A system catalog: columns unknown, nothing ruled.
        assert_eq!(ruled("select relname from pg_class"), ".");
    }

    #[test]
    fn built_ins_reading_out_of_sight_are_ruled() {
        for (sql, want) in [
            ("select table_to_xml('customers', true, false, '')", "R"),
            (
                "select 1, pg_catalog.database_to_xml(true, false, '')",
                ".R",
            ),
            (
                "select schema_to_xml_and_xmlschema('public', true, false, '')",
                "R",
            ),
            (
                "select query_to_xml('select name from customers', true, false, '')",
                "R",
            ),
            ("select cursor_to_xml('c', 10, false, true, '')", "R"),
            (
                "select xpath('//name/text()', table_to_xml('customers', true, false, ''))",
                "R",
            ),
            (
                "select * from ts_stat('select to_tsvector(''simple'', name) from customers')",
                "?R",
            ),
            (
                "select ts_rewrite('a'::tsquery, 'select t, s from aliases')",
                "R",
            ),
            ("select convert_from(lo_get(424242), 'UTF8')", "R"),
            ("select loread(0, 100)", "R"),
            ("select pg_read_file('/tmp/x')", "R"),
            ("select \"lo_get\"(1)::text as x, 2", "R."),
            ("select xmlelement(name x, 'y')", "."),
        ] {
            assert_eq!(ruled(sql), want, "{sql}");
        }
    }

    #[test]
    fn texts_that_read_two_ways_are_judged_in_both() {
        // With standard_conforming_strings off `'a\''` is a string and the ruled expression
        // after it is code; the default reading cannot parse the text, so the one reading that
        // can is followed.
        let off_only = "select 'a\\'' , name || 'x' from customers where id = 1 --'";
        assert_eq!(ruled(off_only), ".R");
        // Both readings parse, differently (the default one sees one string): no lineage,
        // every ruled column may be behind each expression.
        let both = "select 'a\\'' || name || '' from customers --'";
        assert_eq!(analyze(both, &Fake), None);
        assert_eq!(copy_to(both, 0, &Fake), None);
        assert!(sets_config_from_data(
            "update pg_settings set setting = (select name from customers limit 1) where name = 'application_name'"
        ));
        assert!(sets_config_from_data(
            "with u as (update pg_catalog.pg_settings set setting = 'x' where name = 'a.b' returning 1) select 1"
        ));
        let set = "select 'a\\'', set_config('my.x', (select name from customers), false) --'";
        assert!(sets_config_from_data(set));
        assert!(is_binary_copy_to(
            "select 'a\\'' ; copy customers to stdout (format binary) --'"
        ));
        // A backslash both readings agree on leaves one tree.
        assert!(analyze("select E'a\\n', name from customers", &Fake).is_some());
    }

    #[test]
    fn set_config_from_data_is_found() {
        for (sql, want) in [
            (
                "select set_config('my.x', name, false) from customers",
                true,
            ),
            (
                "select pg_catalog.set_config('my.x', (select name from customers limit 1), false)",
                true,
            ),
            ("select set_config(name, 'x', false) from customers", true),
            ("select set_config('my.x', 'a' || 'b', false)", true),
            ("select * from set_config('my.x', upper('a'), false)", true),
            (
                "prepare p as select set_config('my.x', name, true) from customers",
                true,
            ),
            (
                "select U&\"set\\005fconfig\"('my.x', name, false) from customers",
                true,
            ),
            (
                "do $$ begin perform set_config('my.x', (select name from customers limit 1), false); end $$",
                true,
            ),
            ("select set_config('my.x', 'Ada', false)", false),
            ("select set_config('search_path', $1, false)", false),
            (
                "select set_config('my.x', '1'::text, false), current_setting('my.x')",
                false,
            ),
            ("select name from customers", false),
            ("select 'set_config(name)'", false),
            ("select set_config(", false),
        ] {
            assert_eq!(sets_config_from_data(sql), want, "{sql}");
        }
    }

    #[test]
    fn dml_returning_prepare_declare_execute_fetch() {
        assert_eq!(
            ruled("insert into customers values (3, 'Cy') returning upper(name), id"),
            "R."
        );
        assert_eq!(ruled("update customers set id = id returning card"), "R");
        assert_eq!(ruled("delete from items returning *"), "..");
        let s = analyze(
            "prepare p as select upper(name) from customers; execute p; \
             declare c cursor for select card || '' from customers; fetch 2 from c; select 1",
            &Fake,
        )
        .unwrap();
        assert!(matches!(&s[0], Statement::Prepare(n, o) if n == "p" && o.any.is_some()));
        assert_eq!(s[1], Statement::Execute("p".into()));
        assert!(matches!(&s[2], Statement::Declare(n, o) if n == "c" && o.any.is_some()));
        assert_eq!(s[3], Statement::Fetch("c".into()));
        assert!(analyze("select from", &Fake).is_none());
        // Plans and settings carry no table data; a CALL is code, judged conservatively by
        // the caller (its outputs are not known).
        assert_eq!(
            ruled("explain analyze select upper(name) from customers"),
            "?."
        );
        assert_eq!(ruled("show search_path"), "?.");
        assert_eq!(analyze("call p(null)", &Fake).unwrap()[0], Statement::Other);
    }

    #[test]
    fn copy_statements_are_read() {
        let c = copy_to(
            "copy public.customers (name, id) to stdout with (format csv, delimiter ';', header)",
            0,
            &Fake,
        )
        .unwrap();
        assert_eq!(
            c.relation,
            Some((Some("public".into()), "customers".into()))
        );
        assert_eq!(c.columns, vec!["name", "id"]);
        assert_eq!(c.format, "csv");
        assert!(c.options.contains(&("delimiter".into(), ";".into())));
        let c = copy_to("copy customers to stdout csv header", 0, &Fake).unwrap();
        assert_eq!(c.format, "csv");
        let c = copy_to(
            "select 1; copy (select upper(name), id from customers) to stdout",
            1,
            &Fake,
        )
        .unwrap();
        let q = c.query.unwrap();
        assert_eq!(
            (q.rule_of(0, 2).is_some(), q.rule_of(1, 2).is_some()),
            (true, false)
        );
        assert!(copy_to("copy customers from stdin", 0, &Fake).is_none());
        assert!(is_binary_copy_to(
            "COPY customers TO STDOUT WITH (FORMAT BINARY)"
        ));
        assert!(is_binary_copy_to(
            "select 1; copy customers to stdout binary"
        ));
        assert!(!is_binary_copy_to(
            "copy customers from stdin with (format binary)"
        ));
        assert!(!is_binary_copy_to("select 'copy binary'"));
    }
}
