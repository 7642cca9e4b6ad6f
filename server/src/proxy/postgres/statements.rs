//! The session's prepared statements and portals as the gateway knows them, IO-free.
//!
//! The gateway cannot see which of a client's definitions took effect on the target: a Parse
//! that fails, or that PostgreSQL skips because an earlier message of its batch failed, leaves
//! the old statement under that name. A view that trusted every Parse could then be told
//! "s1 is a SELECT" while the target still holds an INSERT under s1. So a statement that needs
//! review never lives on the target under a name the client chose: its Parse is forwarded under
//! a hidden name of the gateway's (`__hoop_<session salt>_<n>`), and Binds, Describes and Closes
//! naming the client's name are rewritten to it. Whatever the view gets wrong about the
//! client's own names, those names can only hold statements that need no review, and a
//! statement that needs review can only be bound through the gateway, which files a review for
//! every such Bind. Clients may not use the hidden prefix themselves.
//!
//! SQL `PREPARE` cannot be renamed (it is SQL text). A name SQL gave a statement that needs
//! review is remembered for the rest of the session ("exposed"), since `DEALLOCATE` is not
//! followed: every later Bind or `EXECUTE` of that name is reviewed.
//!
//! Changes made while a batch is held are logged, and undone when the batch is refused (none
//! of it reached the target); they are kept once it is forwarded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Names of the gateway's own statements on the target start with this.
pub(super) const HIDDEN_PREFIX: &[u8] = b"__hoop_";
/// Statements needing review one session may prepare: each stays prepared on the target (under
/// its hidden name) until the client closes it.
pub(super) const MAX_HIDDEN: usize = 4096;
/// Bytes of text SQL `PREPARE` may give names when the statement needs review, per session
/// (kept for the session, since `DEALLOCATE` is not followed).
pub(super) const MAX_EXPOSED_BYTES: usize = 1 << 20;

/// A statement the client prepared.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Its text as the client sent it.
    pub text: Arc<str>,
    /// Parameter types the Parse named (0 or none: the target chose).
    pub types: Vec<u32>,
    /// This Parse's number in the session (keys the types the target described).
    pub id: u64,
    /// The client described it, so the target's ParameterDescription is known under `id`.
    pub described: AtomicBool,
    /// Set when running it needs review.
    pub review: Option<NeedsReview>,
}

impl Prepared {
    /// A statement with no parameter types and no review (SQL `PREPARE`, tests).
    pub fn new(text: &str, id: u64, review: Option<NeedsReview>) -> Self {
        Prepared {
            text: text.into(),
            types: Vec::new(),
            id,
            described: AtomicBool::new(false),
            review,
        }
    }

    /// Whether the client described it.
    pub fn is_described(&self) -> bool {
        self.described.load(Ordering::Relaxed)
    }
}

/// Why a statement needs review, and where it lives on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NeedsReview {
    /// The class or rule set that asked for review.
    pub rule: String,
    /// Why, in a few words.
    pub reason: String,
    /// Prepared statements its text runs (`EXECUTE p`): name and text, for the reviewer.
    pub runs: Vec<(String, String)>,
    /// The gateway's name for it on the target (None: SQL `PREPARE` gave it the client's name).
    pub hidden: Option<Vec<u8>>,
}

/// What a Bind's statement name refers to.
#[derive(Debug)]
pub(super) enum Bound {
    /// A statement that needs no review (or a name the gateway never saw prepared: None).
    Plain(Option<Arc<Prepared>>),
    /// A statement that needs review, on the target under its hidden name.
    Hidden(Arc<Prepared>),
    /// A name SQL `PREPARE` once gave statements that need review: any of these may be what
    /// the target holds under it (the newest first), besides `current`.
    Exposed {
        /// What the view says the name holds now.
        current: Option<Arc<Prepared>>,
        /// Statements needing review SQL gave this name.
        candidates: Vec<Arc<Prepared>>,
    },
}

/// What a bound portal runs (for the recording).
#[derive(Debug, Clone)]
pub(super) struct Portal {
    /// The statement text.
    pub text: Arc<str>,
    /// Its parameters as recorded, moved into the portal's first Execute (a later Execute
    /// continues the same run).
    pub params: Vec<Option<String>>,
}

enum Undo {
    Name(Vec<u8>, Option<Arc<Prepared>>),
    Hidden(Vec<u8>),
    Unhidden(Vec<u8>, Arc<Prepared>),
    Exposed(Vec<u8>),
    Portal(Vec<u8>, Option<Portal>),
}

/// The view of one session's statements and portals.
pub(super) struct Statements {
    by_name: HashMap<Vec<u8>, Arc<Prepared>>,
    hidden: HashMap<Vec<u8>, Arc<Prepared>>,
    exposed: HashMap<Vec<u8>, Vec<Arc<Prepared>>>,
    exposed_bytes: usize,
    portals: HashMap<Vec<u8>, Portal>,
    parses: u64,
    hidden_seq: u64,
    /// Random per session, so no statement can be prepared under a hidden name in advance.
    salt: String,
    undo: Vec<Undo>,
}

/// Why a definition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// The client used the gateway's hidden prefix.
    Reserved(String),
    /// Too many statements needing review in this session.
    TooMany(&'static str),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Reserved(name) => write!(
                f,
                "statement name {name:?} starts with {:?}, which the gateway keeps for its own \
                 statements; use another name",
                String::from_utf8_lossy(HIDDEN_PREFIX)
            ),
            Refused::TooMany(what) => f.write_str(what),
        }
    }
}

/// True when `name` is in the gateway's own namespace.
pub(super) fn is_reserved(name: &[u8]) -> bool {
    name.len() >= HIDDEN_PREFIX.len()
        && name
            .get(..HIDDEN_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(HIDDEN_PREFIX))
}

impl Statements {
    /// An empty view; `salt` makes this session's hidden names unguessable.
    pub fn new(salt: String) -> Self {
        Statements {
            by_name: HashMap::new(),
            hidden: HashMap::new(),
            exposed: HashMap::new(),
            exposed_bytes: 0,
            portals: HashMap::new(),
            parses: 0,
            hidden_seq: 0,
            salt,
            undo: Vec::new(),
        }
    }

    /// A protocol Parse of `name`. Returns the name to send to the target: the client's, or
    /// for a statement that needs review a fresh hidden one.
    pub fn parse(
        &mut self,
        name: &[u8],
        text: Arc<str>,
        types: Vec<u32>,
        review: Option<NeedsReview>,
    ) -> Result<Option<Vec<u8>>, Refused> {
        if is_reserved(name) {
            return Err(Refused::Reserved(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        let mut review = review;
        let mut target = None;
        if let Some(r) = review.as_mut() {
            if self.hidden.len() >= MAX_HIDDEN {
                return Err(Refused::TooMany(
                    "this session prepared more than 4096 statements that need review; close \
                     some (Close, or DEALLOCATE) or open a new session",
                ));
            }
            self.hidden_seq += 1;
            let hidden = format!(
                "{}{}_{}",
                String::from_utf8_lossy(HIDDEN_PREFIX),
                self.salt,
                self.hidden_seq
            )
            .into_bytes();
            r.hidden = Some(hidden.clone());
            target = Some(hidden);
        }
        self.parses += 1;
        let p = Arc::new(Prepared {
            text,
            types,
            id: self.parses,
            described: AtomicBool::new(false),
            review,
        });
        if let Some(hidden) = &target {
            self.hidden.insert(hidden.clone(), Arc::clone(&p));
            self.undo.push(Undo::Hidden(hidden.clone()));
        }
        self.set_name(name, Some(p));
        Ok(target)
    }

    /// A statement `PREPARE name AS ...` defined through SQL (`review`: it needs review).
    pub fn prepare_sql(
        &mut self,
        name: &str,
        text: &str,
        review: Option<NeedsReview>,
    ) -> Result<(), Refused> {
        let key = name.as_bytes();
        if is_reserved(key) {
            return Err(Refused::Reserved(name.to_string()));
        }
        self.parses += 1;
        let risky = review.is_some();
        let p = Arc::new(Prepared::new(text, self.parses, review));
        if risky {
            if self.exposed_bytes + text.len() > MAX_EXPOSED_BYTES {
                return Err(Refused::TooMany(
                    "this session gave more than 1 MiB of statements that need review names \
                     with SQL PREPARE; prepare them through the protocol (your driver) or open \
                     a new session",
                ));
            }
            self.exposed_bytes += text.len();
            self.exposed
                .entry(key.to_vec())
                .or_default()
                .insert(0, Arc::clone(&p));
            self.undo.push(Undo::Exposed(key.to_vec()));
        }
        self.set_name(key, Some(p));
        Ok(())
    }

    fn set_name(&mut self, name: &[u8], p: Option<Arc<Prepared>>) {
        let old = match p {
            Some(p) => self.by_name.insert(name.to_vec(), p),
            None => self.by_name.remove(name),
        };
        self.undo.push(Undo::Name(name.to_vec(), old));
    }

    /// The statement a Bind, Describe or Close names, if the gateway knows it.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Prepared>> {
        self.by_name.get(name)
    }

    /// The name to send the target for the client's statement `name`: its hidden name when it
    /// needs review, else None (send the client's).
    pub fn target_name(&self, name: &[u8]) -> Option<&[u8]> {
        self.by_name
            .get(name)
            .and_then(|p| p.review.as_ref())
            .and_then(|r| r.hidden.as_deref())
    }

    /// What a Bind of statement `name` binds.
    pub fn bound(&self, name: &[u8]) -> Bound {
        let current = self.by_name.get(name).cloned();
        if let Some(candidates) = (!self.exposed.is_empty())
            .then(|| self.exposed.get(name))
            .flatten()
        {
            return Bound::Exposed {
                current,
                candidates: candidates.clone(),
            };
        }
        match current {
            Some(p) if p.review.as_ref().is_some_and(|r| r.hidden.is_some()) => Bound::Hidden(p),
            other => Bound::Plain(other),
        }
    }

    /// A Close of statement `name` (sent to the target under [`Statements::target_name`]).
    pub fn close(&mut self, name: &[u8]) {
        let hidden = self
            .target_name(name)
            .map(<[u8]>::to_vec)
            .and_then(|h| self.hidden.remove_entry(&h));
        if let Some((h, p)) = hidden {
            self.undo.push(Undo::Unhidden(h, p));
        }
        if self.by_name.contains_key(name) {
            self.set_name(name, None);
        }
    }

    /// The text `EXECUTE name` runs, for the guardrails and review classes: a statement that
    /// needs review when any may be under that name, so the strictest verdict applies.
    pub fn sql_text(&self, name: &str) -> Option<String> {
        let key = name.as_bytes();
        if let Some(p) = self.exposed.get(key).and_then(|c| c.first()) {
            return Some(p.text.to_string());
        }
        self.by_name
            .get(key)
            .or_else(|| self.hidden.get(key))
            .map(|p| p.text.to_string())
    }

    /// A Bind to portal `name`.
    pub fn bind_portal(&mut self, name: &[u8], portal: Portal) {
        let old = self.portals.insert(name.to_vec(), portal);
        self.undo.push(Undo::Portal(name.to_vec(), old));
    }

    /// A Close of portal `name`.
    pub fn close_portal(&mut self, name: &[u8]) {
        if let Some(old) = self.portals.remove(name) {
            self.undo.push(Undo::Portal(name.to_vec(), Some(old)));
        }
    }

    /// What an Execute of portal `name` runs: its text, and its parameters the first time.
    pub fn execute_portal(&mut self, name: &[u8]) -> (Arc<str>, Vec<Option<String>>) {
        match self.portals.get_mut(name) {
            Some(p) => (Arc::clone(&p.text), std::mem::take(&mut p.params)),
            None => (Arc::from(""), Vec::new()),
        }
    }

    /// The held batch reached the target: its changes stand.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The held batch was refused (nothing reached the target): undo its changes.
    pub fn rollback(&mut self) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Name(name, Some(p)) => {
                    self.by_name.insert(name, p);
                }
                Undo::Name(name, None) => {
                    self.by_name.remove(&name);
                }
                Undo::Hidden(name) => {
                    self.hidden.remove(&name);
                }
                Undo::Unhidden(name, p) => {
                    self.hidden.insert(name, p);
                }
                Undo::Exposed(name) => {
                    let empty = match self.exposed.get_mut(&name) {
                        Some(c) => {
                            if !c.is_empty() {
                                let p = c.remove(0);
                                self.exposed_bytes =
                                    self.exposed_bytes.saturating_sub(p.text.len());
                            }
                            c.is_empty()
                        }
                        None => false,
                    };
                    if empty {
                        self.exposed.remove(&name);
                    }
                }
                Undo::Portal(name, Some(p)) => {
                    self.portals.insert(name, p);
                }
                Undo::Portal(name, None) => {
                    self.portals.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    fn review() -> Option<NeedsReview> {
        Some(NeedsReview {
            rule: "write".into(),
            reason: "write statements need approval".into(),
            runs: Vec::new(),
            hidden: None,
        })
    }

    fn view() -> Statements {
        Statements::new("salt".into())
    }

    #[test]
    fn a_statement_needing_review_is_prepared_under_a_hidden_name() {
        let mut v = view();
        let target = v.parse(b"s1", "INSERT".into(), vec![], review()).unwrap();
        let hidden = target.expect("renamed");
        assert!(hidden.starts_with(b"__hoop_salt_"));
        assert_eq!(v.target_name(b"s1"), Some(hidden.as_slice()));
        assert!(matches!(v.bound(b"s1"), Bound::Hidden(_)));
        // A plain statement keeps the client's name.
        assert_eq!(
            v.parse(b"s2", "SELECT 1".into(), vec![], None).unwrap(),
            None
        );
        assert!(matches!(v.bound(b"s2"), Bound::Plain(Some(_))));
        assert!(matches!(v.bound(b"nope"), Bound::Plain(None)));
        // EXECUTE of the hidden name (learned from pg_prepared_statements) is the risky text.
        assert_eq!(
            v.sql_text(std::str::from_utf8(&hidden).unwrap()).as_deref(),
            Some("INSERT")
        );
    }

    #[test]
    fn clients_may_not_use_the_hidden_prefix() {
        let mut v = view();
        for name in [&b"__hoop_salt_1"[..], b"__HOOP_x", b"__hoop_"] {
            assert!(matches!(
                v.parse(name, "SELECT 1".into(), vec![], None),
                Err(Refused::Reserved(_))
            ));
        }
        assert!(v.prepare_sql("__hoop_1", "SELECT 1", None).is_err());
        assert!(v.parse(b"_hoop_1", "SELECT 1".into(), vec![], None).is_ok());
    }

    #[test]
    fn redefining_a_reviewed_name_leaves_the_client_name_plain() {
        let mut v = view();
        v.parse(b"", "DELETE FROM t".into(), vec![], review())
            .unwrap();
        v.commit();
        // The client re-Parses its unnamed statement: whether or not the target accepts it,
        // the target's unnamed statement was never the DELETE.
        v.parse(b"", "SELECT 1".into(), vec![], None).unwrap();
        assert!(matches!(v.bound(b""), Bound::Plain(Some(_))));
    }

    #[test]
    fn a_refused_batch_leaves_the_view_as_it_was() {
        let mut v = view();
        v.parse(b"s1", "UPDATE t SET a = 1".into(), vec![], review())
            .unwrap();
        v.bind_portal(
            b"p",
            Portal {
                text: "UPDATE t SET a = 1".into(),
                params: vec![],
            },
        );
        v.commit();
        v.close(b"s1");
        v.parse(b"s1", "SELECT 1".into(), vec![], None).unwrap();
        v.close_portal(b"p");
        v.prepare_sql("q", "DELETE FROM t", review()).unwrap();
        v.rollback();
        assert!(matches!(v.bound(b"s1"), Bound::Hidden(_)));
        assert!(matches!(v.bound(b"q"), Bound::Plain(None)));
        assert_eq!(&*v.execute_portal(b"p").0, "UPDATE t SET a = 1");
        assert_eq!(v.exposed_bytes, 0);
    }

    #[test]
    fn a_name_sql_gave_a_reviewed_statement_stays_reviewed() {
        let mut v = view();
        v.prepare_sql("p", "INSERT INTO t VALUES ($1)", review())
            .unwrap();
        v.commit();
        // DEALLOCATE p is not followed; the protocol may define p again (or fail to).
        v.parse(b"p", "SELECT 1".into(), vec![], None).unwrap();
        v.commit();
        match v.bound(b"p") {
            Bound::Exposed { candidates, .. } => {
                assert_eq!(&*candidates[0].text, "INSERT INTO t VALUES ($1)")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            v.sql_text("p").as_deref(),
            Some("INSERT INTO t VALUES ($1)")
        );
    }

    #[test]
    fn exposed_text_is_bounded() {
        let mut v = view();
        let big = "x".repeat(MAX_EXPOSED_BYTES / 2 + 1);
        v.prepare_sql("a", &big, review()).unwrap();
        assert!(matches!(
            v.prepare_sql("b", &big, review()),
            Err(Refused::TooMany(_))
        ));
        // Plain statements are not counted.
        v.prepare_sql("c", &big, None).unwrap();
    }
}
