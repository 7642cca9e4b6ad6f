//! Function lists: the dangerous ones (files, processes, other backends, other servers,
//! settings), the ones that write although called from a SELECT, and the built-in functions
//! known to be free of side effects (the read-only allow-list, `catalog.rs`).

use super::catalog::SIDE_EFFECT_FREE;

/// Functions with effects outside the query (files, processes, other backends, other servers,
/// settings, SQL passed as text): matched by the deny kind `dangerous_functions` and always
/// denied in read-only mode.
pub const DANGEROUS_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_read_file_old",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_ls_logicalmapdir",
    "pg_ls_logicalsnapdir",
    "pg_ls_replslotdir",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_logdir_ls",
    "pg_hba_file_rules",
    "pg_ident_file_mappings",
    "pg_show_all_file_settings",
    "lo_import",
    "lo_export",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_send_query",
    "dblink_open",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_rotate_logfile_old",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_log_backend_memory_contexts",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "pg_replication_origin_advance",
    "pg_replication_origin_session_setup",
    "pg_logical_emit_message",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    "pg_import_system_collations",
    "set_config",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "ts_stat",
    "ts_rewrite",
];

/// Functions that write data although called from a `SELECT`; denied in read-only mode on top
/// of [`DANGEROUS_FUNCTIONS`].
pub const WRITE_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "pg_notify",
    // Assign a transaction ID when the transaction has none (a WAL and commit-log write).
    "txid_current",
    "pg_current_xact_id",
];

/// Is `name` on [`DANGEROUS_FUNCTIONS`]?
pub(super) fn is_dangerous(name: &str) -> bool {
    DANGEROUS_FUNCTIONS.contains(&name)
}

/// Is `name` on [`DANGEROUS_FUNCTIONS`] or [`WRITE_FUNCTIONS`]?
pub fn has_side_effects(name: &str) -> bool {
    is_dangerous(name) || WRITE_FUNCTIONS.contains(&name)
}

/// Is `name` a built-in function PostgreSQL declares free of side effects (immutable or
/// stable), or one of a few volatile ones that only read (`random`, `clock_timestamp`,
/// `pg_relation_size`...)? `schema` must be empty or `pg_catalog`: a function of another schema
/// is a user's, whatever its name.
pub fn is_side_effect_free(schema: Option<&str>, name: &str) -> bool {
    schema.is_none_or(|s| s == "pg_catalog")
        && !has_side_effects(name)
        && SIDE_EFFECT_FREE.binary_search(&name).is_ok()
}

/// Is `name` a spelling of UTF-8 (or SQL_ASCII, which a UTF-8 server validates as UTF-8), the
/// only client encodings in which the gateway reads text as the server does? PostgreSQL
/// compares encoding names ignoring case and everything but letters and digits.
pub fn is_utf8_encoding(name: &str) -> bool {
    let clean: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(clean.as_str(), "utf8" | "unicode" | "sqlascii")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_list_is_sorted_and_free_of_listed_functions() {
        assert!(SIDE_EFFECT_FREE.windows(2).all(|w| w[0] < w[1]));
        assert!(SIDE_EFFECT_FREE.len() > 2000);
        for f in DANGEROUS_FUNCTIONS.iter().chain(WRITE_FUNCTIONS) {
            assert!(!is_side_effect_free(None, f), "{f}");
        }
    }

    #[test]
    fn allow_list_by_name_and_schema() {
        for f in [
            "lower",
            "count",
            "now",
            "random",
            "pg_relation_size",
            "generate_series",
        ] {
            assert!(is_side_effect_free(None, f), "{f}");
            assert!(is_side_effect_free(Some("pg_catalog"), f), "{f}");
        }
        assert!(!is_side_effect_free(Some("public"), "lower"));
        for f in [
            "my_func",
            "pg_read_file",
            "nextval",
            "pg_terminate_backend",
            "query_to_xml",
        ] {
            assert!(!is_side_effect_free(None, f), "{f}");
        }
    }

    #[test]
    fn encodings() {
        for e in ["UTF8", "utf-8", "Unicode", "SQL_ASCII"] {
            assert!(is_utf8_encoding(e), "{e}");
        }
        for e in ["SJIS", "LATIN1", "big5", "GBK", ""] {
            assert!(!is_utf8_encoding(e), "{e}");
        }
    }
}
