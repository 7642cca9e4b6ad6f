//! One statement's tree walked node by node: what it does (its own class and that of every
//! statement nested in it), the functions it names in any notation, the tables, unbounded
//! writes, row locks, prepared statements it runs, and the bodies it holds.

use pg_query::protobuf::{
    CmdType, CopyStmt, ExplainStmt, MergeMatchKind, MergeStmt, Node, OnConflictAction, RangeVar,
    RawStmt, VariableSetKind, VariableSetStmt,
};
use pg_query::{NodeEnum, NodeRef};

use super::lex::{Lexed, collapse_whitespace};
use super::statement::{Classified, classify, is_role_setting, is_setting};
use super::{
    Budget, CopyFormat, CopyInfo, FunctionRef, Notation, PreparedDef, Reading, StatementClass,
    StatementInfo, StatementKind, bodies, constant, pg, walk,
};

/// The info of one statement of a parse result.
pub(super) fn raw_statement(
    raw: &RawStmt,
    sql: &str,
    lexed: Option<&Lexed>,
    reading: Reading,
    budget: &mut Budget,
    depth: usize,
) -> StatementInfo {
    let start = usize::try_from(raw.stmt_location)
        .unwrap_or(0)
        .min(sql.len());
    let end = match usize::try_from(raw.stmt_len) {
        // A length of 0 means "to the end of the text".
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => start.saturating_add(len).min(sql.len()),
    };
    let text = match lexed {
        Some(l) => l.normalized(start..end),
        None => collapse_whitespace(sql.get(start..end).unwrap_or_default()),
    };
    let mut info = match raw.stmt.as_deref().and_then(|n| n.node.as_ref()) {
        Some(node) => statement(node, text, budget, depth),
        None => {
            let mut info = StatementInfo::new(
                StatementKind::Other("empty".into()),
                "empty statement".into(),
                true,
                text,
            );
            info.class = StatementClass::Other;
            info
        }
    };
    info.span = start..end;
    info.reading = reading;
    info
}

/// The info of one statement node.
pub(super) fn statement(
    node: &NodeEnum,
    text: String,
    budget: &mut Budget,
    depth: usize,
) -> StatementInfo {
    let (effective, prepare) = peel(node);
    let top = classify(effective.to_ref()).unwrap_or_else(other);
    let mut info = StatementInfo::new(top.kind, top.label.into_owned(), true, text);
    info.tag = classify(node.to_ref())
        .map(|c| c.tag.into_owned())
        .unwrap_or_default();
    info.prepare = prepare;
    if let NodeEnum::CopyStmt(c) = effective {
        info.copy = Some(copy_info(c));
    }
    let mut collector = Collector {
        info: &mut info,
        ctes: Vec::new(),
        budget,
        depth,
    };
    collector.walk(node.to_ref());
    let ctes = collector.ctes;
    info.tables.retain(|t| !ctes.contains(t));
    info.flag_listed_functions();
    info
}

/// A statement type the gateway does not classify: never read-only.
fn other() -> Classified {
    Classified {
        kind: StatementKind::Other("other".into()),
        class: StatementClass::Other,
        label: "statement".into(),
        tag: "".into(),
        kinds: &[],
    }
}

/// Does this EXPLAIN run its statement? (`ANALYZE` whatever its value: fail closed.)
fn explain_executes(e: &ExplainStmt) -> bool {
    e.options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) => d.defname == "analyze" || d.defname == "analyse",
        _ => false,
    })
}

fn inner(n: Option<&Node>) -> Option<&NodeEnum> {
    n.and_then(|n| n.node.as_ref())
}

/// Looks through `EXPLAIN ANALYZE` and `PREPARE` to the statement that runs.
fn peel(node: &NodeEnum) -> (&NodeEnum, Option<PreparedDef>) {
    let mut cur = node;
    let mut prepare = None;
    loop {
        match cur {
            NodeEnum::ExplainStmt(e) if explain_executes(e) => match inner(e.query.as_deref()) {
                Some(q) => cur = q,
                None => return (cur, prepare),
            },
            NodeEnum::PrepareStmt(p) => match inner(p.query.as_deref()) {
                Some(q) => {
                    prepare = Some(PreparedDef {
                        name: p.name.clone(),
                        // A text the deparser cannot print is one `EXECUTE` cannot be judged
                        // by: empty, and the caller blocks the EXECUTE as unknown.
                        text: pg::deparse(q).unwrap_or_default(),
                    });
                    cur = q;
                }
                None => return (cur, prepare),
            },
            _ => return (cur, prepare),
        }
    }
}

fn string_of(n: &Node) -> Option<&str> {
    match n.node.as_ref()? {
        NodeEnum::String(s) => Some(&s.sval),
        _ => None,
    }
}

/// `catalog.schema.name` of a RangeVar, parts that are set.
fn relation_name(r: &RangeVar) -> String {
    [&r.catalogname, &r.schemaname, &r.relname]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(".")
}

fn copy_info(c: &CopyStmt) -> CopyInfo {
    let (direction, endpoint) = match classify(NodeRef::CopyStmt(c)).map(|k| k.kind) {
        Some(StatementKind::Copy {
            direction,
            endpoint,
        }) => (direction, endpoint),
        _ => (super::CopyDirection::To, super::CopyEndpoint::Client),
    };
    let mut format = CopyFormat::Text;
    for o in &c.options {
        if let Some(NodeEnum::DefElem(d)) = o.node.as_ref()
            && d.defname == "format"
        {
            let name = d.arg.as_deref().and_then(string_of).unwrap_or_default();
            format = match name {
                "text" => CopyFormat::Text,
                "csv" => CopyFormat::Csv,
                "binary" => CopyFormat::Binary,
                other => CopyFormat::Other(other.to_owned()),
            };
        }
    }
    CopyInfo {
        direction,
        endpoint,
        format,
        relation: c.relation.as_ref().map(relation_name),
        columns: c
            .attlist
            .iter()
            .filter_map(string_of)
            .map(str::to_owned)
            .collect(),
        query: inner(c.query.as_deref()).and_then(|q| pg::deparse(q).ok()),
    }
}

/// What the walk knows about where it is.
#[derive(Clone, Copy, Default)]
struct Place {
    /// Under a plain EXPLAIN: statements are planned, not run, so they add no class or deny
    /// kind (their functions and tables still count).
    explained: bool,
}

struct Collector<'a, 'b> {
    info: &'a mut StatementInfo,
    ctes: Vec<String>,
    budget: &'b mut Budget,
    depth: usize,
}

impl Collector<'_, '_> {
    /// Visits every node under `root`, depth first in field order, without recursion (the
    /// tree can be as deep as the decoder allows).
    fn walk(&mut self, root: NodeRef<'_>) {
        let mut stack = vec![(root, Place::default())];
        let mut children = Vec::new();
        while let Some((node, place)) = stack.pop() {
            let place = self.visit(node, place);
            walk::for_each_child(node, &mut |child| children.push(child));
            stack.extend(children.drain(..).rev().map(|child| (child, place)));
        }
    }

    fn merge(&mut self, c: &Classified) {
        self.info.raise_class(c.class, &c.label);
        for kind in c.kinds {
            self.info.add_keyword(kind, &c.label);
        }
    }

    fn unbounded(&mut self, why: String) {
        if self.info.unbounded_write.is_none() {
            self.info.unbounded_write = Some(why);
        }
    }

    /// A WHERE that bounds nothing: missing, or true for every row.
    fn check_where(&mut self, what: &str, condition: Option<&Node>) {
        match condition {
            None => self.unbounded(format!("{what} without WHERE")),
            Some(c) => {
                let t = constant::truth(c);
                self.info.numbers_matter |= t.used_numbers;
                if t.value == Some(true) {
                    self.unbounded(format!("{what} with a WHERE that is always true"));
                }
            }
        }
    }

    /// Looks at one node; returns the place its children are in.
    fn visit(&mut self, node: NodeRef<'_>, mut place: Place) -> Place {
        let executing_wrapper = match node {
            NodeRef::PrepareStmt(_) => true,
            NodeRef::ExplainStmt(e) => explain_executes(e),
            _ => false,
        };
        if !place.explained
            && !executing_wrapper
            && let Some(c) = classify(node)
        {
            self.merge(&c);
        }
        match node {
            NodeRef::ExplainStmt(e) if !explain_executes(e) => place.explained = true,
            NodeRef::SelectStmt(s) if !place.explained && !s.locking_clause.is_empty() => {
                self.info.add_keyword("lock", "SELECT ... FOR UPDATE/SHARE");
            }
            NodeRef::InsertStmt(i) if !place.explained => {
                let updates = i
                    .on_conflict_clause
                    .as_ref()
                    .is_some_and(|c| c.action == OnConflictAction::OnconflictUpdate as i32);
                if updates {
                    self.info
                        .add_keyword("update", "INSERT ... ON CONFLICT DO UPDATE");
                }
            }
            NodeRef::UpdateStmt(u) if !place.explained => {
                self.check_where("UPDATE", u.where_clause.as_deref());
                self.check_settings_write(u.relation.as_ref());
            }
            NodeRef::DeleteStmt(d) if !place.explained => {
                self.check_where("DELETE", d.where_clause.as_deref());
            }
            NodeRef::MergeStmt(m) if !place.explained => self.merge_actions(m),
            NodeRef::TruncateStmt(_) if !place.explained => {
                self.unbounded("TRUNCATE removes every row".into());
            }
            NodeRef::ExecuteStmt(e) if !place.explained && self.info.executes.is_none() => {
                self.info.executes = Some(e.name.clone());
            }
            NodeRef::VariableSetStmt(s) => self.check_encoding_setting(s),
            NodeRef::DoStmt(d) => bodies::do_block(d, self.info, self.budget, self.depth),
            NodeRef::CreateFunctionStmt(f) => {
                bodies::create_function(f, self.info, self.budget, self.depth);
            }
            NodeRef::FuncCall(f) => {
                self.function(&f.funcname, Notation::Call);
                self.check_set_config(f);
            }
            NodeRef::ColumnRef(c) => {
                // `t.f`, `s.t.f`: every field after the first may be a function applied to
                // what precedes it.
                for field in c.fields.iter().skip(1) {
                    self.field(field);
                }
            }
            NodeRef::AIndirection(a) => {
                for field in &a.indirection {
                    self.field(field);
                }
            }
            NodeRef::RangeVar(r) => {
                let name = relation_name(r);
                if !self.info.tables.contains(&name) {
                    self.info.tables.push(name);
                }
            }
            NodeRef::CommonTableExpr(c) => self.ctes.push(c.ctename.clone()),
            NodeRef::RangeTableSample(r) => self.function(&r.method, Notation::Call),
            NodeRef::CreateTrigStmt(t) => self.function(&t.funcname, Notation::Reference),
            NodeRef::CreateEventTrigStmt(t) => self.function(&t.funcname, Notation::Reference),
            NodeRef::CreateCastStmt(c) => {
                if let Some(f) = &c.func {
                    self.function(&f.objname, Notation::Reference);
                }
            }
            NodeRef::CreateTransformStmt(t) => {
                for f in [&t.fromsql, &t.tosql].into_iter().flatten() {
                    self.function(&f.objname, Notation::Reference);
                }
            }
            NodeRef::DefineStmt(d) => self.support_functions(&d.definition),
            _ => {}
        }
        place
    }

    /// Records a function named by a list of name parts (`schema.name`).
    fn function(&mut self, parts: &[Node], notation: Notation) {
        let names: Vec<&str> = parts.iter().filter_map(string_of).collect();
        let Some((name, schema)) = names.split_last() else {
            return;
        };
        self.info.add_function(FunctionRef {
            name: (*name).to_owned(),
            schema: (!schema.is_empty()).then(|| schema.join(".")),
            notation,
        });
    }

    fn field(&mut self, field: &Node) {
        if let Some(name) = string_of(field) {
            self.info.add_function(FunctionRef {
                name: name.to_owned(),
                schema: None,
                notation: Notation::Field,
            });
        }
    }

    /// `CREATE OPERATOR (function = f)`, `CREATE AGGREGATE (sfunc = f)`, `CREATE TYPE
    /// (input = f)`: options that name a function the object will call.
    fn support_functions(&mut self, definition: &[Node]) {
        const FUNCTION_OPTIONS: &[&str] = &[
            "function",
            "procedure",
            "sfunc",
            "finalfunc",
            "combinefunc",
            "serialfunc",
            "deserialfunc",
            "msfunc",
            "minvfunc",
            "mfinalfunc",
            "input",
            "output",
            "receive",
            "send",
            "typmod_in",
            "typmod_out",
            "analyze",
            "subscript",
            "restrict",
            "join",
            "canonical",
            "subtype_diff",
            "handler",
            "validator",
            "inline",
        ];
        for d in definition {
            let Some(NodeEnum::DefElem(d)) = d.node.as_ref() else {
                continue;
            };
            if !FUNCTION_OPTIONS.contains(&d.defname.as_str()) {
                continue;
            }
            match inner(d.arg.as_deref()) {
                Some(NodeEnum::TypeName(t)) => self.function(&t.names, Notation::Reference),
                Some(NodeEnum::List(l)) => self.function(&l.items, Notation::Reference),
                Some(NodeEnum::String(s)) => self.info.add_function(FunctionRef {
                    name: s.sval.clone(),
                    schema: None,
                    notation: Notation::Reference,
                }),
                _ => {}
            }
        }
    }

    /// MERGE actions name their deny kinds; `ON` that holds for every pair of rows makes an
    /// unconditional `WHEN MATCHED THEN DELETE/UPDATE` touch every row, and `ON` that never
    /// holds does the same for `WHEN NOT MATCHED BY SOURCE`.
    fn merge_actions(&mut self, m: &MergeStmt) {
        let on = m
            .join_condition
            .as_deref()
            .map(constant::truth)
            .unwrap_or_default();
        self.info.numbers_matter |= on.used_numbers;
        for clause in &m.merge_when_clauses {
            let Some(NodeEnum::MergeWhenClause(w)) = clause.node.as_ref() else {
                continue;
            };
            let action = match CmdType::try_from(w.command_type).ok() {
                Some(CmdType::CmdInsert) => ("insert", "INSERT"),
                Some(CmdType::CmdUpdate) => ("update", "UPDATE"),
                Some(CmdType::CmdDelete) => ("delete", "DELETE"),
                _ => continue,
            };
            self.info
                .add_keyword(action.0, &format!("MERGE ... {}", action.1));
            if action.0 == "insert" {
                continue;
            }
            let condition = w
                .condition
                .as_deref()
                .map(constant::truth)
                .unwrap_or_default();
            self.info.numbers_matter |= condition.used_numbers;
            let unconditional = w.condition.is_none() || condition.value == Some(true);
            let kind = MergeMatchKind::try_from(w.match_kind).ok();
            let whole = match kind {
                Some(MergeMatchKind::MergeWhenMatched) => on.value == Some(true),
                Some(MergeMatchKind::MergeWhenNotMatchedBySource) => on.value == Some(false),
                _ => false,
            };
            if unconditional && whole {
                let when = if kind == Some(MergeMatchKind::MergeWhenMatched) {
                    "ON a condition that is always true, WHEN MATCHED"
                } else {
                    "ON a condition that is never true, WHEN NOT MATCHED BY SOURCE"
                };
                self.unbounded(format!("MERGE {when} THEN {}", action.1));
            }
        }
    }

    /// `SET client_encoding` to anything but UTF-8 makes the server decode the next messages
    /// differently from the gateway (in SJIS, BIG5, GBK and others a multibyte character can
    /// end in `\` or `;`). Also reached for `ALTER ROLE/DATABASE/SYSTEM ... SET` and a
    /// function's `SET` clause, whose settings a later session or call starts with.
    fn check_encoding_setting(&mut self, s: &VariableSetStmt) {
        if !is_setting(&s.name, "client_encoding") || s.kind != VariableSetKind::VarSetValue as i32
        {
            return;
        }
        let value = s.args.first().and_then(|a| match a.node.as_ref() {
            Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                Some(pg_query::protobuf::a_const::Val::Sval(v)) => Some(v.sval.as_str()),
                _ => None,
            },
            _ => string_of(a),
        });
        if !value.is_some_and(super::functions::is_utf8_encoding) {
            self.info.mark_unverifiable(
                "it sets client_encoding to an encoding other than UTF-8, in which the server \
                 would read later statements differently from the gateway"
                    .into(),
            );
        }
    }

    /// `UPDATE pg_settings SET setting = ...` calls `set_config` for each row it touches (a
    /// rule on the view), so it can change any setting, `client_encoding` and `role` included,
    /// with the name and value in places the setting checks do not read. Unverifiable: use SET.
    fn check_settings_write(&mut self, relation: Option<&RangeVar>) {
        let settings = relation.is_some_and(|r| {
            r.relname == "pg_settings" && (r.schemaname.is_empty() || r.schemaname == "pg_catalog")
        });
        if settings {
            self.info.add_keyword("set", "UPDATE pg_settings");
            self.info.mark_unverifiable(
                "it updates pg_settings, which changes settings as set_config does, with names \
                 and values the gateway does not check; use SET"
                    .into(),
            );
        }
    }

    /// `set_config(name, value, local)` is `SET name = value`.
    fn check_set_config(&mut self, f: &pg_query::protobuf::FuncCall) {
        let is_set_config = f
            .funcname
            .last()
            .and_then(string_of)
            .is_some_and(|n| n == "set_config");
        if !is_set_config {
            return;
        }
        let constant = |n: Option<&Node>| match inner(n) {
            Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                Some(pg_query::protobuf::a_const::Val::Sval(v)) => {
                    Some(v.sval.to_ascii_lowercase())
                }
                _ => None,
            },
            _ => None,
        };
        match constant(f.args.first()) {
            Some(name) if is_role_setting(&name) => {
                let label = format!("set_config('{name}', ...)");
                self.info.raise_class(StatementClass::Admin, &label);
                for kind in ["set_role", "set", "admin"] {
                    self.info.add_keyword(kind, &label);
                }
            }
            Some(name) if is_setting(&name, "client_encoding") => {
                let value = constant(f.args.get(1));
                if !value.is_some_and(|v| super::functions::is_utf8_encoding(&v)) {
                    self.info.mark_unverifiable(
                        "it sets client_encoding to an encoding other than UTF-8, in which the \
                         server would read later statements differently from the gateway"
                            .into(),
                    );
                }
            }
            Some(_) => self.info.add_keyword("set", "set_config"),
            None => self.info.mark_unverifiable(
                "set_config with a setting name computed at run time may change the role or the \
                 client encoding"
                    .into(),
            ),
        }
    }
}
