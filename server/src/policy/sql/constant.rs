//! Conditions that hold for every row whatever the data: `WHERE true`, `WHERE 1 = 1`,
//! `ON 't'`, `WHERE NOT false`, `WHERE id = id`. A DELETE, UPDATE or MERGE bounded only by
//! such a condition is as unbounded as one without it.
//!
//! This is a small evaluator of constants, not a prover: `WHERE id > -1` or
//! `WHERE id IS NOT NULL OR id IS NULL` still count as bounds (docs/policy.md lists this).

use pg_query::NodeEnum;
use pg_query::protobuf::a_const::Val;
use pg_query::protobuf::{AConst, AExprKind, BoolExprType, Node, NullTestType, TypeName};

/// What evaluating a condition found.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Truth {
    /// Some(true) when the condition holds for every row.
    pub(super) value: Option<bool>,
    /// A number literal's value decided the answer.
    pub(super) used_numbers: bool,
}

/// Evaluates `node` as a condition, when it is made of constants only.
pub(super) fn truth(node: &Node) -> Truth {
    let mut t = Truth::default();
    t.value = eval(node, &mut t.used_numbers, 0);
    t
}

/// Constant expressions nested deeper than this are not evaluated (the tree itself is at most
/// about 45 levels deep, see `pg.rs`).
const MAX_DEPTH: usize = 64;

fn eval(node: &Node, numbers: &mut bool, depth: usize) -> Option<bool> {
    if depth > MAX_DEPTH {
        return None;
    }
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => const_bool(c, numbers),
        NodeEnum::TypeCast(c) => {
            if !is_bool_type(c.type_name.as_ref()) {
                return None;
            }
            match c.arg.as_deref()?.node.as_ref()? {
                NodeEnum::AConst(a) => match &a.val {
                    // `1::boolean` is true, `0::boolean` false.
                    Some(Val::Ival(i)) => {
                        *numbers = true;
                        Some(i.ival != 0)
                    }
                    _ => const_bool(a, numbers),
                },
                _ => eval(c.arg.as_deref()?, numbers, depth + 1),
            }
        }
        NodeEnum::BoolExpr(b) => {
            let op = BoolExprType::try_from(b.boolop).ok()?;
            let mut values = b.args.iter().map(|a| eval(a, numbers, depth + 1));
            match op {
                BoolExprType::NotExpr => values.next().flatten().map(|v| !v),
                BoolExprType::AndExpr => {
                    let all: Vec<Option<bool>> = values.collect();
                    if all.contains(&Some(false)) {
                        Some(false)
                    } else if all.iter().all(|v| *v == Some(true)) {
                        Some(true)
                    } else {
                        None
                    }
                }
                BoolExprType::OrExpr => {
                    let all: Vec<Option<bool>> = values.collect();
                    if all.contains(&Some(true)) {
                        Some(true)
                    } else if all.iter().all(|v| *v == Some(false)) {
                        Some(false)
                    } else {
                        None
                    }
                }
                BoolExprType::Undefined => None,
            }
        }
        NodeEnum::AExpr(e) if e.kind == AExprKind::AexprOp as i32 => {
            let op = match e.name.as_slice() {
                [n] => match n.node.as_ref()? {
                    NodeEnum::String(s) => s.sval.as_str(),
                    _ => return None,
                },
                _ => return None,
            };
            compare(op, e.lexpr.as_deref()?, e.rexpr.as_deref()?, numbers)
        }
        NodeEnum::NullTest(n) => {
            let arg = n.arg.as_deref()?.node.as_ref()?;
            let is_null = match arg {
                NodeEnum::AConst(c) => c.isnull,
                _ => return None,
            };
            match NullTestType::try_from(n.nulltesttype).ok()? {
                NullTestType::IsNull => Some(is_null),
                NullTestType::IsNotNull => Some(!is_null),
                NullTestType::Undefined => None,
            }
        }
        _ => None,
    }
}

fn is_bool_type(t: Option<&TypeName>) -> bool {
    t.and_then(|t| t.names.last())
        .and_then(|n| match n.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .is_some_and(|name| name == "bool" || name == "boolean")
}

/// A constant used as a condition: `true`, `'t'`, `'yes'`... (PostgreSQL's boolean input).
fn const_bool(c: &AConst, numbers: &mut bool) -> Option<bool> {
    if c.isnull {
        // NULL never holds.
        return Some(false);
    }
    match c.val.as_ref()? {
        Val::Boolval(b) => Some(b.boolval),
        Val::Sval(s) => parse_bool(&s.sval),
        Val::Ival(_) | Val::Fval(_) => {
            // `WHERE 1` is an error in PostgreSQL, not a condition.
            *numbers = true;
            None
        }
        Val::Bsval(_) => None,
    }
}

/// PostgreSQL's `parse_bool`: case-insensitive prefixes of true/false/yes/no, `on`/`off`
/// (two letters at least) and `1`/`0`, surrounding whitespace allowed.
fn parse_bool(s: &str) -> Option<bool> {
    let v = s.trim().to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    let prefix_of = |word: &str| word.starts_with(v.as_str());
    match v.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        "on" => Some(true),
        "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// A comparison of two constants, or of a column with itself.
fn compare(op: &str, l: &Node, r: &Node, numbers: &mut bool) -> Option<bool> {
    let (l, r) = (l.node.as_ref()?, r.node.as_ref()?);
    if let (NodeEnum::ColumnRef(a), NodeEnum::ColumnRef(b)) = (l, r) {
        // `id = id` holds for every row where id is not null.
        return (a.fields == b.fields && matches!(op, "=" | "<=" | ">=")).then_some(true);
    }
    let (NodeEnum::AConst(a), NodeEnum::AConst(b)) = (l, r) else {
        return None;
    };
    let ordering = match (a.val.as_ref()?, b.val.as_ref()?) {
        (Val::Sval(x), Val::Sval(y)) => x.sval.cmp(&y.sval),
        (x, y) => {
            let (x, y) = (number(x)?, number(y)?);
            *numbers = true;
            x.partial_cmp(&y)?
        }
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Some(match op {
        "=" => ordering == Equal,
        "<>" | "!=" => ordering != Equal,
        "<" => ordering == Less,
        ">" => ordering == Greater,
        "<=" => ordering != Greater,
        ">=" => ordering != Less,
        _ => return None,
    })
}

fn number(v: &Val) -> Option<f64> {
    match v {
        Val::Ival(i) => Some(f64::from(i.ival)),
        Val::Fval(f) => f.fval.replace('_', "").parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn where_of(sql: &str) -> Truth {
        let tree = super::super::pg::parse(
            &format!("delete from t where {sql}"),
            super::super::pg::Mode::Statements,
            true,
        )
        .unwrap();
        let stmt = tree.stmts[0].stmt.as_ref().unwrap().node.as_ref().unwrap();
        let NodeEnum::DeleteStmt(d) = stmt else {
            panic!("{stmt:?}")
        };
        truth(d.where_clause.as_deref().unwrap())
    }

    #[test]
    fn constant_conditions() {
        for (sql, value, numbers) in [
            ("true", Some(true), false),
            ("'t'", Some(true), false),
            ("'YES '", Some(true), false),
            ("'of'", Some(false), false),
            ("not false", Some(true), false),
            ("true and 'on'", Some(true), false),
            ("false or true", Some(true), false),
            ("1 = 1", Some(true), true),
            ("1 = 2", Some(false), true),
            ("2 > 1.5", Some(true), true),
            ("'a' = 'a'", Some(true), false),
            ("1::boolean", Some(true), true),
            ("'true'::bool", Some(true), false),
            ("null is null", Some(true), false),
            ("id = id", Some(true), false),
            ("t.id >= t.id", Some(true), false),
            ("id = 1", None, false),
            ("id > -1", None, false),
            ("id = id2", None, false),
            ("null", Some(false), false),
            ("true and id = 1", None, false),
        ] {
            let t = where_of(sql);
            assert_eq!((t.value, t.used_numbers), (value, numbers), "{sql}");
        }
    }
}
