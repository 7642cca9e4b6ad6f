//! What one statement node is on its own: kind, class, command tag, deny kinds. Nested
//! statements, functions and bodies are the walk's business (`collect.rs`).
//!
//! The command tags are PostgreSQL's (`CreateCommandTag` in src/backend/tcop/utility.c), so the
//! differential tests can hold the gateway's reading against the tags the server reports.

use std::borrow::Cow;

use pg_query::NodeRef;
use pg_query::protobuf::{
    DiscardMode, ObjectType, TransactionStmtKind, VariableSetKind, VariableSetStmt,
};

use super::{CopyDirection, CopyEndpoint, StatementClass as C, StatementKind as K};

/// What one statement node is, on its own.
pub(super) struct Classified {
    pub(super) kind: K,
    pub(super) class: C,
    /// Human label for reasons (`DROP TABLE`, `COPY ... TO PROGRAM`).
    pub(super) label: Cow<'static, str>,
    /// PostgreSQL's command tag.
    pub(super) tag: Cow<'static, str>,
    /// Deny kinds it matches.
    pub(super) kinds: &'static [&'static str],
}

const CREATE: &[&str] = &["create", "ddl"];
const ALTER: &[&str] = &["alter", "ddl"];
const DROP: &[&str] = &["drop", "ddl"];
const SET_ROLE: &[&str] = &["set_role", "set", "admin"];

fn cl(
    kind: K,
    class: C,
    tag: impl Into<Cow<'static, str>>,
    kinds: &'static [&'static str],
) -> Classified {
    let tag = tag.into();
    Classified {
        kind,
        class,
        label: tag.clone(),
        tag,
        kinds,
    }
}

/// A schema change named after its tag (`CREATE TABLE` is kind `create_table`).
fn ddl(class: C, tag: impl Into<Cow<'static, str>>, kinds: &'static [&'static str]) -> Classified {
    let tag = tag.into();
    let name = tag.to_ascii_lowercase().replace(' ', "_");
    cl(K::Ddl(name), class, tag, kinds)
}

fn labelled(mut c: Classified, label: impl Into<Cow<'static, str>>) -> Classified {
    c.label = label.into();
    c
}

/// The object word PostgreSQL's tags use for an object type (`TABLE`, `MATERIALIZED VIEW`).
fn object_word(t: i32) -> Option<&'static str> {
    use ObjectType as O;
    Some(match O::try_from(t).ok()? {
        O::ObjectAccessMethod => "ACCESS METHOD",
        O::ObjectAggregate => "AGGREGATE",
        O::ObjectAttribute | O::ObjectType => "TYPE",
        O::ObjectCast => "CAST",
        O::ObjectColumn | O::ObjectTable | O::ObjectTabconstraint => "TABLE",
        O::ObjectCollation => "COLLATION",
        O::ObjectConversion => "CONVERSION",
        O::ObjectDatabase => "DATABASE",
        O::ObjectDomain | O::ObjectDomconstraint => "DOMAIN",
        O::ObjectEventTrigger => "EVENT TRIGGER",
        O::ObjectExtension => "EXTENSION",
        O::ObjectFdw => "FOREIGN DATA WRAPPER",
        O::ObjectForeignServer => "SERVER",
        O::ObjectForeignTable => "FOREIGN TABLE",
        O::ObjectFunction => "FUNCTION",
        O::ObjectIndex => "INDEX",
        O::ObjectLanguage => "LANGUAGE",
        O::ObjectLargeobject => "LARGE OBJECT",
        O::ObjectMatview => "MATERIALIZED VIEW",
        O::ObjectOpclass => "OPERATOR CLASS",
        O::ObjectOperator => "OPERATOR",
        O::ObjectOpfamily => "OPERATOR FAMILY",
        O::ObjectPolicy => "POLICY",
        O::ObjectProcedure => "PROCEDURE",
        O::ObjectPublication => "PUBLICATION",
        O::ObjectRole => "ROLE",
        O::ObjectRoutine => "ROUTINE",
        O::ObjectRule => "RULE",
        O::ObjectSchema => "SCHEMA",
        O::ObjectSequence => "SEQUENCE",
        O::ObjectSubscription => "SUBSCRIPTION",
        O::ObjectStatisticExt => "STATISTICS",
        O::ObjectTablespace => "TABLESPACE",
        O::ObjectTransform => "TRANSFORM",
        O::ObjectTrigger => "TRIGGER",
        O::ObjectTsconfiguration => "TEXT SEARCH CONFIGURATION",
        O::ObjectTsdictionary => "TEXT SEARCH DICTIONARY",
        O::ObjectTsparser => "TEXT SEARCH PARSER",
        O::ObjectTstemplate => "TEXT SEARCH TEMPLATE",
        O::ObjectView => "VIEW",
        O::ObjectUserMapping => "USER MAPPING",
        O::Undefined
        | O::ObjectAmop
        | O::ObjectAmproc
        | O::ObjectDefault
        | O::ObjectDefacl
        | O::ObjectParameterAcl
        | O::ObjectPublicationNamespace
        | O::ObjectPublicationRel => return None,
    })
}

fn is_role_object(t: i32) -> bool {
    t == ObjectType::ObjectRole as i32
}

/// `ALTER <object>` as PostgreSQL tags it.
fn alter_of(t: i32) -> Classified {
    let Some(word) = object_word(t) else {
        return unknown();
    };
    let class = if is_role_object(t) { C::Admin } else { C::Ddl };
    let kinds: &'static [&'static str] = match ObjectType::try_from(t).ok() {
        Some(ObjectType::ObjectRole) => &["alter", "ddl", "admin"],
        Some(ObjectType::ObjectExtension) => &["alter", "ddl", "extension"],
        _ => ALTER,
    };
    ddl(class, format!("ALTER {word}"), kinds)
}

fn unknown() -> Classified {
    cl(K::Other("other".into()), C::Other, "???", &[])
}

/// Is `name` the setting `setting`? PostgreSQL looks setting names up ignoring case, while the
/// parse tree keeps a quoted name's case (`SET "CLIENT_ENCODING"`), so every comparison of a
/// setting name goes through here.
pub(super) fn is_setting(name: &str, setting: &str) -> bool {
    name.eq_ignore_ascii_case(setting)
}

/// Is this `SET`/`RESET` of a setting that changes who the session is?
pub(super) fn is_role_setting(name: &str) -> bool {
    is_setting(name, "role") || is_setting(name, "session_authorization")
}

fn classify_set(s: &VariableSetStmt) -> Classified {
    let kind = VariableSetKind::try_from(s.kind).unwrap_or(VariableSetKind::Undefined);
    let reset = matches!(
        kind,
        VariableSetKind::VarReset | VariableSetKind::VarResetAll
    );
    let tag = if reset { "RESET" } else { "SET" };
    if is_role_setting(&s.name) {
        let label = match (reset, is_setting(&s.name, "role")) {
            (true, true) => "RESET ROLE",
            (true, false) => "RESET SESSION AUTHORIZATION",
            (false, true) => "SET ROLE",
            (false, false) => "SET SESSION AUTHORIZATION",
        };
        return labelled(cl(K::SetRole, C::Admin, tag, SET_ROLE), label);
    }
    if kind == VariableSetKind::VarSetMulti {
        // SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ...
        return labelled(cl(K::Transaction, C::Session, tag, &[]), "SET TRANSACTION");
    }
    cl(K::Set, C::Session, tag, &["set"])
}

fn copy_direction_endpoint(
    is_from: bool,
    is_program: bool,
    file: bool,
) -> (CopyDirection, CopyEndpoint) {
    let direction = if is_from {
        CopyDirection::From
    } else {
        CopyDirection::To
    };
    let endpoint = if is_program {
        CopyEndpoint::Program
    } else if file {
        CopyEndpoint::File
    } else {
        CopyEndpoint::Client
    };
    (direction, endpoint)
}

/// What `node` is, when it is a statement; `None` for expressions and other parts.
pub(super) fn classify(node: NodeRef<'_>) -> Option<Classified> {
    use NodeRef as N;
    Some(match node {
        N::SelectStmt(s) if s.into_clause.is_some() => cl(
            K::SelectInto,
            C::Ddl,
            "SELECT INTO",
            &["create", "ddl", "write"],
        ),
        N::SelectStmt(_) => cl(K::Select, C::Read, "SELECT", &[]),
        N::PlassignStmt(_) => cl(K::Select, C::Read, "SELECT", &[]),
        N::InsertStmt(_) => cl(K::Insert, C::Write, "INSERT", &["insert", "write"]),
        N::UpdateStmt(_) => cl(K::Update, C::Write, "UPDATE", &["update", "write"]),
        N::DeleteStmt(_) => cl(K::Delete, C::Write, "DELETE", &["delete", "write"]),
        N::MergeStmt(_) => cl(K::Merge, C::Write, "MERGE", &["merge", "write"]),
        N::TruncateStmt(_) => labelled(
            cl(
                K::Truncate,
                C::Write,
                "TRUNCATE TABLE",
                &["truncate", "write"],
            ),
            "TRUNCATE",
        ),
        N::CopyStmt(c) => {
            let (direction, endpoint) =
                copy_direction_endpoint(c.is_from, c.is_program, !c.filename.is_empty());
            let (class, label, kinds): (C, &'static str, &'static [&'static str]) =
                match (endpoint, direction) {
                    (CopyEndpoint::Program, CopyDirection::To) => (
                        C::Admin,
                        "COPY ... TO PROGRAM",
                        &["copy", "copy_program", "admin"],
                    ),
                    (CopyEndpoint::Program, CopyDirection::From) => (
                        C::Admin,
                        "COPY ... FROM PROGRAM",
                        &["copy", "copy_program", "admin", "write"],
                    ),
                    (CopyEndpoint::File, CopyDirection::To) => (
                        C::Admin,
                        "COPY ... TO file",
                        &["copy", "copy_file", "admin"],
                    ),
                    (CopyEndpoint::File, CopyDirection::From) => (
                        C::Admin,
                        "COPY ... FROM file",
                        &["copy", "copy_file", "admin", "write"],
                    ),
                    (CopyEndpoint::Client, CopyDirection::To) => {
                        (C::Read, "COPY ... TO STDOUT", &["copy"])
                    }
                    (CopyEndpoint::Client, CopyDirection::From) => {
                        (C::Write, "COPY ... FROM STDIN", &["copy", "write"])
                    }
                };
            labelled(
                cl(
                    K::Copy {
                        direction,
                        endpoint,
                    },
                    class,
                    "COPY",
                    kinds,
                ),
                label,
            )
        }
        N::CallStmt(_) => cl(K::Call, C::Write, "CALL", &["call", "write"]),
        N::DoStmt(_) => labelled(
            cl(
                K::Other("do".into()),
                C::Admin,
                "DO",
                &["do", "write", "ddl", "admin"],
            ),
            "DO block",
        ),
        N::ExplainStmt(_) => cl(K::Explain, C::Read, "EXPLAIN", &[]),
        N::PrepareStmt(_) => cl(K::Other("prepare".into()), C::Session, "PREPARE", &[]),
        N::ExecuteStmt(e) => cl(
            K::Execute {
                name: e.name.clone(),
            },
            C::Read,
            "EXECUTE",
            &[],
        ),
        N::DeallocateStmt(d) => {
            let tag = if d.isall || d.name.is_empty() {
                "DEALLOCATE ALL"
            } else {
                "DEALLOCATE"
            };
            cl(K::Other("deallocate".into()), C::Session, tag, &[])
        }
        N::TransactionStmt(t) => {
            use TransactionStmtKind as T;
            let kind = T::try_from(t.kind).unwrap_or(T::Undefined);
            let tag = match kind {
                T::TransStmtBegin => "BEGIN",
                T::TransStmtStart => "START TRANSACTION",
                T::TransStmtCommit => "COMMIT",
                T::TransStmtRollback | T::TransStmtRollbackTo => "ROLLBACK",
                T::TransStmtSavepoint => "SAVEPOINT",
                T::TransStmtRelease => "RELEASE",
                // Two-phase commit outlives the session and can finish another session's work.
                T::TransStmtPrepare => {
                    return Some(cl(
                        K::Transaction,
                        C::Admin,
                        "PREPARE TRANSACTION",
                        &["admin"],
                    ));
                }
                T::TransStmtCommitPrepared => {
                    return Some(cl(K::Transaction, C::Admin, "COMMIT PREPARED", &["admin"]));
                }
                T::TransStmtRollbackPrepared => {
                    return Some(cl(
                        K::Transaction,
                        C::Admin,
                        "ROLLBACK PREPARED",
                        &["admin"],
                    ));
                }
                T::Undefined => return Some(unknown()),
            };
            labelled(cl(K::Transaction, C::Session, tag, &[]), tag)
        }
        N::VariableSetStmt(s) => classify_set(s),
        N::VariableShowStmt(_) => cl(K::Show, C::Read, "SHOW", &[]),
        N::DiscardStmt(d) => {
            let tag = match DiscardMode::try_from(d.target).unwrap_or(DiscardMode::Undefined) {
                DiscardMode::DiscardAll => "DISCARD ALL",
                DiscardMode::DiscardPlans => "DISCARD PLANS",
                DiscardMode::DiscardSequences => "DISCARD SEQUENCES",
                DiscardMode::DiscardTemp => "DISCARD TEMP",
                DiscardMode::Undefined => return Some(unknown()),
            };
            cl(K::Other("discard".into()), C::Session, tag, &[])
        }
        N::ListenStmt(_) => cl(K::Other("listen".into()), C::Session, "LISTEN", &[]),
        N::UnlistenStmt(_) => cl(K::Other("unlisten".into()), C::Session, "UNLISTEN", &[]),
        N::NotifyStmt(_) => cl(
            K::Other("notify".into()),
            C::Write,
            "NOTIFY",
            &["notify", "write"],
        ),
        N::DeclareCursorStmt(_) => cl(K::Other("declare".into()), C::Read, "DECLARE CURSOR", &[]),
        N::ClosePortalStmt(c) => {
            let tag = if c.portalname.is_empty() {
                "CLOSE CURSOR ALL"
            } else {
                "CLOSE CURSOR"
            };
            cl(K::Other("close".into()), C::Session, tag, &[])
        }
        N::FetchStmt(f) => cl(
            K::Show,
            C::Read,
            if f.ismove { "MOVE" } else { "FETCH" },
            &[],
        ),
        N::ConstraintsSetStmt(_) => cl(
            K::Other("set_constraints".into()),
            C::Session,
            "SET CONSTRAINTS",
            &[],
        ),
        N::LockStmt(_) => cl(K::Lock, C::Admin, "LOCK TABLE", &["lock", "admin"]),
        N::VacuumStmt(v) => {
            if v.is_vacuumcmd {
                cl(
                    K::Maintenance("vacuum".into()),
                    C::Admin,
                    "VACUUM",
                    &["vacuum", "maintenance", "admin"],
                )
            } else {
                cl(
                    K::Maintenance("analyze".into()),
                    C::Admin,
                    "ANALYZE",
                    &["maintenance", "admin"],
                )
            }
        }
        N::ClusterStmt(_) => cl(
            K::Maintenance("cluster".into()),
            C::Admin,
            "CLUSTER",
            &["maintenance", "admin"],
        ),
        N::ReindexStmt(_) => cl(
            K::Maintenance("reindex".into()),
            C::Admin,
            "REINDEX",
            &["maintenance", "admin"],
        ),
        N::CheckPointStmt(_) => cl(
            K::Maintenance("checkpoint".into()),
            C::Admin,
            "CHECKPOINT",
            &["maintenance", "admin"],
        ),
        N::RefreshMatViewStmt(_) => cl(
            K::Maintenance("refresh".into()),
            C::Admin,
            "REFRESH MATERIALIZED VIEW",
            &["maintenance", "admin", "write"],
        ),
        N::LoadStmt(_) => cl(
            K::Other("load".into()),
            C::Admin,
            "LOAD",
            &["load", "extension", "admin"],
        ),
        N::AlterSystemStmt(_) => cl(
            K::Other("alter_system".into()),
            C::Admin,
            "ALTER SYSTEM",
            &["alter", "alter_system", "ddl", "admin"],
        ),
        N::GrantStmt(g) if g.is_grant => cl(K::Grant, C::Admin, "GRANT", &["grant", "admin"]),
        N::GrantStmt(_) => cl(K::Revoke, C::Admin, "REVOKE", &["revoke", "admin"]),
        N::GrantRoleStmt(g) if g.is_grant => {
            cl(K::Grant, C::Admin, "GRANT ROLE", &["grant", "admin"])
        }
        N::GrantRoleStmt(_) => cl(K::Revoke, C::Admin, "REVOKE ROLE", &["revoke", "admin"]),
        N::AlterDefaultPrivilegesStmt(_) => ddl(
            C::Admin,
            "ALTER DEFAULT PRIVILEGES",
            &["alter", "ddl", "grant", "admin"],
        ),
        N::CreateRoleStmt(_) => ddl(C::Admin, "CREATE ROLE", &["create", "ddl", "admin"]),
        N::AlterRoleStmt(_) | N::AlterRoleSetStmt(_) => {
            ddl(C::Admin, "ALTER ROLE", &["alter", "ddl", "admin"])
        }
        N::DropRoleStmt(_) => ddl(C::Admin, "DROP ROLE", &["drop", "ddl", "admin"]),
        N::DropOwnedStmt(_) => ddl(C::Admin, "DROP OWNED", &["drop", "ddl", "admin"]),
        N::ReassignOwnedStmt(_) => ddl(C::Admin, "REASSIGN OWNED", &["ddl", "admin"]),
        N::CreateStmt(_) => ddl(C::Ddl, "CREATE TABLE", CREATE),
        N::CreateTableAsStmt(c) => {
            if c.objtype == ObjectType::ObjectMatview as i32 {
                ddl(
                    C::Ddl,
                    "CREATE MATERIALIZED VIEW",
                    &["create", "ddl", "write"],
                )
            } else if c.is_select_into {
                cl(
                    K::SelectInto,
                    C::Ddl,
                    "SELECT INTO",
                    &["create", "ddl", "write"],
                )
            } else {
                ddl(C::Ddl, "CREATE TABLE AS", &["create", "ddl", "write"])
            }
        }
        N::CreateForeignTableStmt(_) => ddl(C::Ddl, "CREATE FOREIGN TABLE", CREATE),
        N::ImportForeignSchemaStmt(_) => ddl(C::Ddl, "IMPORT FOREIGN SCHEMA", CREATE),
        N::CreateSchemaStmt(_) => ddl(C::Ddl, "CREATE SCHEMA", CREATE),
        N::CreatedbStmt(_) => ddl(C::Ddl, "CREATE DATABASE", CREATE),
        N::CreateTableSpaceStmt(_) => {
            ddl(C::Admin, "CREATE TABLESPACE", &["create", "ddl", "admin"])
        }
        N::CreateExtensionStmt(_) => {
            ddl(C::Ddl, "CREATE EXTENSION", &["create", "ddl", "extension"])
        }
        N::CreateFdwStmt(_) => ddl(C::Ddl, "CREATE FOREIGN DATA WRAPPER", CREATE),
        N::CreateForeignServerStmt(_) => ddl(C::Ddl, "CREATE SERVER", CREATE),
        N::CreateUserMappingStmt(_) => ddl(C::Ddl, "CREATE USER MAPPING", CREATE),
        N::ViewStmt(_) => ddl(C::Ddl, "CREATE VIEW", CREATE),
        N::IndexStmt(_) => ddl(C::Ddl, "CREATE INDEX", CREATE),
        N::RuleStmt(_) => ddl(C::Ddl, "CREATE RULE", CREATE),
        N::CreateTrigStmt(_) => ddl(C::Ddl, "CREATE TRIGGER", CREATE),
        N::CreateEventTrigStmt(_) => ddl(C::Ddl, "CREATE EVENT TRIGGER", CREATE),
        N::CreatePolicyStmt(_) => ddl(C::Ddl, "CREATE POLICY", CREATE),
        N::CreateSeqStmt(_) => ddl(C::Ddl, "CREATE SEQUENCE", CREATE),
        N::CreateDomainStmt(_) => ddl(C::Ddl, "CREATE DOMAIN", CREATE),
        N::CreateFunctionStmt(f) if f.is_procedure => ddl(C::Ddl, "CREATE PROCEDURE", CREATE),
        N::CreateFunctionStmt(_) => ddl(C::Ddl, "CREATE FUNCTION", CREATE),
        N::CreatePlangStmt(_) => ddl(C::Admin, "CREATE LANGUAGE", &["create", "ddl", "admin"]),
        N::CreateCastStmt(_) => ddl(C::Ddl, "CREATE CAST", CREATE),
        N::CreateConversionStmt(_) => ddl(C::Ddl, "CREATE CONVERSION", CREATE),
        N::CreateTransformStmt(_) => ddl(C::Ddl, "CREATE TRANSFORM", CREATE),
        N::CreateOpClassStmt(_) => ddl(C::Ddl, "CREATE OPERATOR CLASS", CREATE),
        N::CreateOpFamilyStmt(_) => ddl(C::Ddl, "CREATE OPERATOR FAMILY", CREATE),
        N::CreateAmStmt(_) => ddl(C::Ddl, "CREATE ACCESS METHOD", CREATE),
        N::CreateStatsStmt(_) => ddl(C::Ddl, "CREATE STATISTICS", CREATE),
        N::CreatePublicationStmt(_) => ddl(C::Ddl, "CREATE PUBLICATION", CREATE),
        N::CreateSubscriptionStmt(_) => ddl(C::Ddl, "CREATE SUBSCRIPTION", CREATE),
        N::CompositeTypeStmt(_) | N::CreateEnumStmt(_) | N::CreateRangeStmt(_) => {
            ddl(C::Ddl, "CREATE TYPE", CREATE)
        }
        N::DefineStmt(d) => match object_word(d.kind) {
            Some(word) => ddl(C::Ddl, format!("CREATE {word}"), CREATE),
            None => unknown(),
        },
        N::DropStmt(d) => {
            let Some(word) = object_word(d.remove_type) else {
                return Some(unknown());
            };
            let kinds: &'static [&'static str] =
                if d.remove_type == ObjectType::ObjectExtension as i32 {
                    &["drop", "ddl", "extension"]
                } else {
                    DROP
                };
            ddl(C::Ddl, format!("DROP {word}"), kinds)
        }
        N::DropdbStmt(_) => ddl(C::Ddl, "DROP DATABASE", DROP),
        N::DropTableSpaceStmt(_) => ddl(C::Admin, "DROP TABLESPACE", &["drop", "ddl", "admin"]),
        N::DropUserMappingStmt(_) => ddl(C::Ddl, "DROP USER MAPPING", DROP),
        N::DropSubscriptionStmt(_) => ddl(C::Ddl, "DROP SUBSCRIPTION", DROP),
        N::AlterTableStmt(a) => alter_of(a.objtype),
        N::AlterTableMoveAllStmt(a) => alter_of(a.objtype),
        N::RenameStmt(r) => {
            if r.rename_type == ObjectType::ObjectColumn as i32 {
                alter_of(r.relation_type)
            } else {
                alter_of(r.rename_type)
            }
        }
        N::AlterObjectDependsStmt(a) => alter_of(a.object_type),
        N::AlterObjectSchemaStmt(a) => alter_of(a.object_type),
        N::AlterOwnerStmt(a) => alter_of(a.object_type),
        N::AlterFunctionStmt(a) => alter_of(a.objtype),
        N::AlterDomainStmt(_) => ddl(C::Ddl, "ALTER DOMAIN", ALTER),
        N::AlterEnumStmt(_) | N::AlterTypeStmt(_) => ddl(C::Ddl, "ALTER TYPE", ALTER),
        N::AlterSeqStmt(_) => ddl(C::Ddl, "ALTER SEQUENCE", ALTER),
        N::AlterExtensionStmt(_) | N::AlterExtensionContentsStmt(_) => {
            ddl(C::Ddl, "ALTER EXTENSION", &["alter", "ddl", "extension"])
        }
        N::AlterFdwStmt(_) => ddl(C::Ddl, "ALTER FOREIGN DATA WRAPPER", ALTER),
        N::AlterForeignServerStmt(_) => ddl(C::Ddl, "ALTER SERVER", ALTER),
        N::AlterUserMappingStmt(_) => ddl(C::Ddl, "ALTER USER MAPPING", ALTER),
        N::AlterTableSpaceOptionsStmt(_) => {
            ddl(C::Admin, "ALTER TABLESPACE", &["alter", "ddl", "admin"])
        }
        N::AlterDatabaseStmt(_)
        | N::AlterDatabaseRefreshCollStmt(_)
        | N::AlterDatabaseSetStmt(_) => ddl(C::Ddl, "ALTER DATABASE", ALTER),
        N::AlterEventTrigStmt(_) => ddl(C::Ddl, "ALTER EVENT TRIGGER", ALTER),
        N::AlterTsdictionaryStmt(_) => ddl(C::Ddl, "ALTER TEXT SEARCH DICTIONARY", ALTER),
        N::AlterTsconfigurationStmt(_) => ddl(C::Ddl, "ALTER TEXT SEARCH CONFIGURATION", ALTER),
        N::AlterOpFamilyStmt(_) => ddl(C::Ddl, "ALTER OPERATOR FAMILY", ALTER),
        N::AlterOperatorStmt(_) => ddl(C::Ddl, "ALTER OPERATOR", ALTER),
        N::AlterCollationStmt(_) => ddl(C::Ddl, "ALTER COLLATION", ALTER),
        N::AlterPolicyStmt(_) => ddl(C::Ddl, "ALTER POLICY", ALTER),
        N::AlterPublicationStmt(_) => ddl(C::Ddl, "ALTER PUBLICATION", ALTER),
        N::AlterSubscriptionStmt(_) => ddl(C::Ddl, "ALTER SUBSCRIPTION", ALTER),
        N::AlterStatsStmt(_) => ddl(C::Ddl, "ALTER STATISTICS", ALTER),
        N::CommentStmt(_) => ddl(C::Ddl, "COMMENT", &["comment", "ddl"]),
        N::SecLabelStmt(_) => ddl(C::Ddl, "SECURITY LABEL", &["ddl"]),
        _ => return None,
    })
}
