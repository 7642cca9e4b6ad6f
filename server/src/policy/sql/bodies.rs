//! Code kept in strings that runs later: DO blocks, function and procedure bodies, and the
//! strings PL/pgSQL's `EXECUTE` runs. Their statements count for the deny kinds, unbounded
//! writes and functions of the statement that holds them (their class does not: the body runs
//! later, and DO / CREATE FUNCTION are classed on their own).
//!
//! `LANGUAGE sql` bodies are analyzed like any text (both readings when they hold a backslash).
//! PL/pgSQL bodies go through PostgreSQL's PL/pgSQL parser (libpg_query compiles them and
//! hands back every SQL expression and statement with its parse mode); each is then parsed
//! and walked like a statement. What cannot be read is marked unverifiable:
//! - `EXECUTE` (and `OPEN ... FOR EXECUTE`, `RETURN QUERY EXECUTE`, `FOR ... IN EXECUTE`) of
//!   anything but a constant string: SQL built at run time;
//! - a PL/pgSQL body with a backslash in a plain string: PostgreSQL may compile it with
//!   `standard_conforming_strings` off, and libpg_query's PL/pgSQL parser reads only the
//!   standard way (`E'...'` strings are the same in both and fine);
//! - bodies in other languages (plpython, plperl, ...), and bodies that do not compile.

use pg_query::NodeEnum;
use pg_query::protobuf::{CreateFunctionStmt, DoStmt, Node, ParseResult};
use serde_json::Value;

use super::lex::Lexed;
use super::{Budget, MAX_BODY_DEPTH, Reading, StatementInfo, analyze_text, collect, pg};

const IN_DO: &str = "inside a DO block";
const IN_FUNCTION: &str = "inside a function body";

/// The `arg` of the DefElem called `name` in `options`.
fn option<'a>(options: &'a [Node], name: &str) -> Option<&'a NodeEnum> {
    options.iter().find_map(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname == name => {
            d.arg.as_deref().and_then(|a| a.node.as_ref())
        }
        _ => None,
    })
}

fn string(node: Option<&NodeEnum>) -> Option<&str> {
    match node? {
        NodeEnum::String(s) => Some(&s.sval),
        _ => None,
    }
}

/// `DO [LANGUAGE l] 'body'`.
pub(super) fn do_block(d: &DoStmt, info: &mut StatementInfo, budget: &mut Budget, depth: usize) {
    let language = string(option(&d.args, "language")).unwrap_or("plpgsql");
    let Some(body) = string(option(&d.args, "as")) else {
        return;
    };
    if !language.eq_ignore_ascii_case("plpgsql") {
        info.mark_unverifiable(format!(
            "a DO block in language {language} cannot be checked"
        ));
        return;
    }
    let tag = dollar_tag(body);
    let wrapper = format!("DO {tag}{body}{tag}");
    plpgsql(&wrapper, body, info, IN_DO, budget, depth);
}

/// `CREATE FUNCTION` / `CREATE PROCEDURE`: the body by language. SQL-standard bodies
/// (`BEGIN ATOMIC ... END`, `RETURN expr`) are part of the tree and walked with it.
pub(super) fn create_function(
    f: &CreateFunctionStmt,
    info: &mut StatementInfo,
    budget: &mut Budget,
    depth: usize,
) {
    let language = string(option(&f.options, "language"))
        .unwrap_or("sql")
        .to_ascii_lowercase();
    let parts: Vec<&str> = match option(&f.options, "as") {
        Some(NodeEnum::List(l)) => l
            .items
            .iter()
            .filter_map(|i| string(i.node.as_ref()))
            .collect(),
        Some(NodeEnum::String(s)) => vec![s.sval.as_str()],
        _ => Vec::new(),
    };
    match language.as_str() {
        // Native code: as powerful as LOAD.
        "c" | "internal" => {
            info.add_keyword("admin", "CREATE FUNCTION ... LANGUAGE C");
            info.add_keyword("load", "CREATE FUNCTION ... LANGUAGE C");
        }
        _ if parts.is_empty() => {}
        "sql" => {
            for body in parts {
                let nested = nested_text(body, info, budget, depth);
                info.absorb_body(&nested, IN_FUNCTION);
            }
        }
        "plpgsql" => {
            let Some(body) = parts.first() else {
                return;
            };
            match function_wrapper(f, body) {
                Ok(wrapper) => plpgsql(&wrapper, body, info, IN_FUNCTION, budget, depth),
                Err(e) => info.mark_unverifiable(format!(
                    "the function cannot be prepared for checking ({})",
                    e.0
                )),
            }
        }
        other => info.mark_unverifiable(format!(
            "a function body in language {other} cannot be checked"
        )),
    }
}

/// Analyzes SQL text found in a body, one level deeper.
fn nested_text(
    text: &str,
    info: &mut StatementInfo,
    budget: &mut Budget,
    depth: usize,
) -> Vec<StatementInfo> {
    if depth + 1 > MAX_BODY_DEPTH {
        info.mark_unverifiable(format!(
            "bodies nested more than {MAX_BODY_DEPTH} deep are not checked"
        ));
        return Vec::new();
    }
    analyze_text(text, Reading::Standard, budget, depth + 1)
}

/// A dollar-quote tag that does not occur in `body`.
fn dollar_tag(body: &str) -> String {
    let mut n = 0u32;
    loop {
        let tag = format!("$hoop{n}$");
        if !body.contains(&tag) {
            return tag;
        }
        n += 1;
    }
}

/// A `CREATE FUNCTION` text libpg_query's PL/pgSQL parser accepts for this function. Its
/// signature matters to the compiler (RETURN rules depend on the result type and OUT
/// parameters), so it is the statement itself as the deparser prints it, except for trigger
/// functions: libpg_query cannot print those compiled, so their body is nested in a block that
/// declares the trigger variables, in a function returning `record` (or `void` for event
/// triggers).
fn function_wrapper(f: &CreateFunctionStmt, body: &str) -> Result<String, pg::ParseError> {
    let returns = f
        .return_type
        .as_ref()
        .and_then(|t| t.names.last())
        .and_then(|n| string(n.node.as_ref()))
        .unwrap_or_default();
    let (result, variables) = match returns {
        "trigger" => (
            "record",
            "new record; old record; tg_name name; tg_when text; tg_level text; tg_op text; \
             tg_relid oid; tg_relname name; tg_table_name name; tg_table_schema name; \
             tg_nargs integer; tg_argv text[];",
        ),
        "event_trigger" => ("void", "tg_event text; tg_tag text;"),
        _ => return pg::deparse(&NodeEnum::CreateFunctionStmt(Box::new(f.clone()))),
    };
    // The body is a block, which is a statement of the outer block: it needs a `;` unless it
    // already ends with one.
    let ends_with_semicolon = Lexed::scan(body).is_ok_and(|l| {
        l.tokens
            .iter()
            .rev()
            .find(|t| {
                t.token != pg_query::protobuf::Token::SqlComment as i32
                    && t.token != pg_query::protobuf::Token::CComment as i32
            })
            .is_some_and(|t| t.token == pg_query::protobuf::Token::Ascii59 as i32)
    });
    let separator = if ends_with_semicolon { "" } else { ";" };
    let inner = format!("DECLARE {variables} BEGIN\n{body}\n{separator}\nEND");
    let tag = dollar_tag(&inner);
    Ok(format!(
        "CREATE FUNCTION hoop_trigger() RETURNS {result} LANGUAGE plpgsql AS {tag}{inner}{tag}"
    ))
}

/// One SQL piece of a PL/pgSQL body.
struct Piece<'a> {
    query: &'a str,
    mode: Option<pg::Mode>,
    /// The text of an `EXECUTE`: the SQL it runs is the expression's value.
    dynamic: bool,
}

/// Analyzes a PL/pgSQL body through `wrapper` (a DO or CREATE FUNCTION text holding it).
fn plpgsql(
    wrapper: &str,
    body: &str,
    info: &mut StatementInfo,
    place: &str,
    budget: &mut Budget,
    depth: usize,
) {
    if depth + 1 > MAX_BODY_DEPTH {
        info.mark_unverifiable(format!(
            "bodies nested more than {MAX_BODY_DEPTH} deep are not checked"
        ));
        return;
    }
    let lexed = match Lexed::scan(body) {
        Ok(l) => l,
        Err(e) => {
            info.mark_unverifiable(format!("the PL/pgSQL body does not parse ({})", e.0));
            return;
        }
    };
    if lexed.tokens.len() > budget.tokens {
        info.mark_unverifiable("bodies too large to check".into());
        return;
    }
    budget.tokens -= lexed.tokens.len();
    if lexed.depends_on_standard_strings() {
        info.mark_unverifiable(format!(
            "a plain string {place} holds a backslash, so the body reads differently when \
             standard_conforming_strings is off (write E'...' strings)"
        ));
        return;
    }
    let json = match pg::parse_plpgsql(wrapper) {
        Ok(json) => json,
        Err(e) => {
            info.mark_unverifiable(format!("the PL/pgSQL body does not parse ({})", e.0));
            return;
        }
    };
    let mut nested = Vec::new();
    for piece in pieces(&json) {
        analyze_piece(&piece, info, &mut nested, budget, depth);
    }
    info.absorb_body(&nested, place);
}

/// Every `PLpgSQL_expr` of the compiled body, anywhere in it (statements, conditions, variable
/// defaults, cursor queries, RAISE arguments...), walked without recursion.
fn pieces(json: &Value) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut stack: Vec<(&Value, bool)> = vec![(json, false)];
    while let Some((value, dynamic)) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev().map(|v| (v, dynamic))),
            Value::Object(map) => {
                if let Some(Value::Object(expr)) = map.get("PLpgSQL_expr") {
                    out.push(Piece {
                        query: expr
                            .get("query")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        mode: expr
                            .get("parseMode")
                            .and_then(Value::as_i64)
                            .and_then(pg::Mode::from_plpgsql),
                        dynamic,
                    });
                    continue;
                }
                for (key, v) in map.iter().rev() {
                    // `EXECUTE expr` and `FOR x IN EXECUTE expr` keep the expression under
                    // `query`; `OPEN c FOR EXECUTE` and `RETURN QUERY EXECUTE` under
                    // `dynquery`.
                    let dynamic_stmt = matches!(
                        key.as_str(),
                        "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors"
                    );
                    match v {
                        Value::Object(stmt) if dynamic_stmt => {
                            for (field, fv) in stmt.iter().rev() {
                                stack.push((fv, field == "query"));
                            }
                        }
                        _ => stack.push((v, key == "dynquery")),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn analyze_piece(
    piece: &Piece<'_>,
    info: &mut StatementInfo,
    nested: &mut Vec<StatementInfo>,
    budget: &mut Budget,
    depth: usize,
) {
    let Some(mode) = piece.mode else {
        info.mark_unverifiable("the PL/pgSQL body holds an expression of an unknown kind".into());
        return;
    };
    let tree = match pg::parse(piece.query, mode, true) {
        Ok(tree) => tree,
        Err(e) => {
            info.mark_unverifiable(format!(
                "an expression of the PL/pgSQL body does not parse ({})",
                e.0
            ));
            return;
        }
    };
    if piece.dynamic {
        match constant_string(&tree) {
            Some(sql) => {
                let inner = nested_text(sql, info, budget, depth + 1);
                nested.extend(inner);
            }
            None => info.mark_unverifiable(
                "it runs SQL built at run time (EXECUTE of an expression that is not a constant \
                 string), which the gateway cannot check"
                    .into(),
            ),
        }
    }
    for raw in &tree.stmts {
        if let Some(node) = raw.stmt.as_deref().and_then(|n| n.node.as_ref()) {
            let text = super::lex::collapse_whitespace(piece.query);
            nested.push(collect::statement(node, text, budget, depth + 1));
        }
    }
}

/// The string an expression is, when it is one constant (`'...'`, `$$...$$`, `E'...'`,
/// optionally cast to a text type).
fn constant_string(tree: &ParseResult) -> Option<&str> {
    let [raw] = tree.stmts.as_slice() else {
        return None;
    };
    let NodeEnum::SelectStmt(s) = raw.stmt.as_deref()?.node.as_ref()? else {
        return None;
    };
    let [target] = s.target_list.as_slice() else {
        return None;
    };
    let NodeEnum::ResTarget(t) = target.node.as_ref()? else {
        return None;
    };
    let mut value = t.val.as_deref()?.node.as_ref()?;
    if let NodeEnum::TypeCast(c) = value {
        value = c.arg.as_deref()?.node.as_ref()?;
    }
    match value {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            pg_query::protobuf::a_const::Val::Sval(s) => Some(&s.sval),
            _ => None,
        },
        _ => None,
    }
}
