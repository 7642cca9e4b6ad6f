//! Data masking: named rule sets of column rules (mask a whole value) and content detectors
//! (mask only the matching span inside text), applied to decoded result values before they
//! reach the client, the recording or the logs.
//!
//! IO-free and protocol-neutral: an adapter decides each result column's rule once per result
//! description (by its source column, see [`lineage`] for expressions), then calls
//! [`Masker::mask_into`] per plain text value and [`Masker::mask_as`] per value of a structured
//! type (array, row, JSON, hstore, number: masked keeping its syntax); terminal output that
//! arrives in pieces goes through [`StreamMasker`].
//!
//! # What is detected
//!
//! - `credit_card`: 13–19 digits, bare or grouped with one consistent separator (space or
//!   dash), with a card network's prefix and length (Visa, Mastercard, Amex, Diners, JCB,
//!   Discover, UnionPay, Maestro), Luhn-valid. Renders as `**** **** **** 1234`.
//! - `email`: `local@domain.tld` with an ASCII domain of two or more labels and an alphabetic
//!   top-level label, the local part plain (starting at a letter, digit or `_`) or quoted
//!   (`"john doe"@example.com`). The local part becomes `***`, the domain stays.
//! - `ssn`: US SSN written `123-45-6789` or `123 45 6789`, or nine bare digits right after an
//!   SSN label (`SSN: 536228457`, `ssn=`, `social security number`), that passes the SSA's
//!   area/group/serial rules. Renders as `***-**-6789` (`*****6789`).
//! - `phone`: North American numbers with separators (`(555) 123-4567`, `555.123.4567`,
//!   `1-555-123-4567`) and any number written after a `+` with 8–15 digits (E.164).
//! - `iban`: uppercase IBANs, compact or grouped by four, of a registered country's exact
//!   length, mod-97 valid. Renders as `DE** **** **** **** **30 00`.
//! - `secrets`: AWS access key ids (`AKIA`/`ASIA` + 16), AWS secret access keys (40
//!   characters) and session tokens after their label (`aws_secret_access_key = `,
//!   `AWS_SECRET_ACCESS_KEY=`, `"SecretAccessKey": `), Google API keys (`AIza` + 35),
//!   private-key PEM blocks (through the END line, or to the end of a truncated value), JWTs,
//!   GitHub tokens (`gh[pousr]_`, `github_pat_`), Slack tokens (`xox[baprs]-`), Stripe-style
//!   keys (`sk_live_`, `rk_live_`, `sk_test_`, `rk_test_`). Renders as `[REDACTED:jwt]` etc.
//!
//! Digits are kept (the last four) only when nothing that could join them into a new number
//! follows. A rule set's `replacement` replaces every match of its detectors (the whole
//! address, for e-mail) and its whole-column values; without it, columns read `****`.
//!
//! # Guarantees
//!
//! - Masking is idempotent: `mask(mask(x)) == mask(x)`. Each detector's rendering is built not
//!   to be detected again, and [`Masker::mask_into`] checks its own output and masks again
//!   until nothing is found (a value still changing after a few passes is replaced whole).
//! - No allocation and no copy when nothing matches, which is nearly every value.
//! - Masked text never leaves this module except as the returned value: no logging here, and
//!   [`MaskCounts`] carries only numbers.
//!
//! # Limits (said plainly)
//!
//! - Detectors are heuristics over text. Not matched: nine bare digits as an SSN without a
//!   label, phone numbers outside North America written without `+`, lowercase or oddly
//!   grouped IBANs, card numbers split by other separators or outside the networks above,
//!   addresses with non-ASCII or IP-literal domains, secrets with no recognisable prefix or
//!   label, a number spread over several cells. Some things that are not
//!   personal data are masked: a long order number that happens to have a card prefix and
//!   pass Luhn (one in ten of those that have the prefix), a password in a URL's userinfo
//!   (it reads as an address's local part), a 3-3-4 digit code read as a phone number.
//! - Column rules follow a value's source column and the lineage of expressions (see
//!   [`lineage`] for what that analysis cannot see: functions, `WHERE`-clause oracles, data
//!   copied elsewhere). A user who can run arbitrary SQL can encode a value that only
//!   detectors protect so no detector recognises it (`reverse(email)`, base64): masking keeps
//!   honest people from seeing data by accident, it does not stop a determined one, and
//!   database permissions remain the boundary.
//! - A binary-format value under a column rule, or of a type the adapter cannot read, is
//!   withheld (sent as NULL) and counted with [`MaskCounts::record_withheld`].
//! - Streaming (see [`StreamMasker`]) holds back a trailing token that might still grow, up to
//!   8 KiB; a single token longer than that is masked in pieces, so a match split across that
//!   boundary may pass unmasked.

mod detectors;
mod hstore;
mod json;
pub mod lineage;
mod literal;
mod stream;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod value_tests;

use serde::{Deserialize, Serialize};

use detectors::{Hit, Plan, Render, Sink};
pub use hstore::parse_hstore;
pub use literal::{parse_array, parse_record};
pub use stream::StreamMasker;
pub use value::{Field, Masked, Shape};

/// Longest custom replacement accepted.
const MAX_REPLACEMENT: usize = 256;
/// Whole-column replacement when a rule set gives none.
const DEFAULT_COLUMN_REPLACEMENT: &[u8] = b"****";
/// Passes after the first before a value that keeps changing is replaced whole.
const MAX_EXTRA_PASSES: usize = 3;

/// One named masking rule set, as written in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// The rule set's name, used in errors and by connections that refer to it.
    pub name: String,
    /// Content detectors: `credit_card`, `email`, `ssn`, `phone`, `iban`, `secrets`.
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Column rules: `column`, `table.column` or `schema.table.column`, with `*` and `?` globs
    /// (`*.ssn`, `users.*_token`), matched case-insensitively.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Replaces every match of this set's detectors and every value of its columns. Without
    /// it, detectors keep a hint (last four digits, the e-mail domain) and columns read `****`.
    #[serde(default)]
    pub replacement: Option<String>,
}

/// A content detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Payment card numbers (Luhn-valid).
    CreditCard,
    /// E-mail addresses.
    Email,
    /// US Social Security numbers.
    Ssn,
    /// Telephone numbers.
    Phone,
    /// International bank account numbers (mod-97 valid).
    Iban,
    /// Access keys, tokens and private keys.
    Secret,
}

impl Detector {
    /// Every detector, in the order counts are reported.
    pub const ALL: [Detector; 6] = [
        Detector::CreditCard,
        Detector::Email,
        Detector::Ssn,
        Detector::Phone,
        Detector::Iban,
        Detector::Secret,
    ];

    /// The name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::CreditCard => "credit_card",
            Detector::Email => "email",
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Iban => "iban",
            Detector::Secret => "secrets",
        }
    }

    /// Parses a configuration name (`secret` is accepted for `secrets`).
    pub fn from_name(name: &str) -> Option<Detector> {
        match name {
            "credit_card" => Some(Detector::CreditCard),
            "email" => Some(Detector::Email),
            "ssn" => Some(Detector::Ssn),
            "phone" => Some(Detector::Phone),
            "iban" => Some(Detector::Iban),
            "secrets" | "secret" => Some(Detector::Secret),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Detector::CreditCard => 0,
            Detector::Email => 1,
            Detector::Ssn => 2,
            Detector::Phone => 3,
            Detector::Iban => 4,
            Detector::Secret => 5,
        }
    }
}

impl std::fmt::Display for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of secret was found; names the default replacement (`[REDACTED:<label>]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// AWS access key id (`AKIA…`, `ASIA…`).
    AwsAccessKey,
    /// AWS secret access key or session token, after its label
    /// (`aws_secret_access_key = …`, `AWS_SECRET_ACCESS_KEY=…`, `"SecretAccessKey": "…"`).
    AwsSecretKey,
    /// Google API key (`AIza…`).
    GoogleApiKey,
    /// A PEM private-key block.
    PrivateKey,
    /// A JSON Web Token.
    Jwt,
    /// A GitHub token.
    GithubToken,
    /// A Slack token.
    SlackToken,
    /// A Stripe-style secret or restricted key.
    StripeKey,
}

impl SecretKind {
    /// The label used in `[REDACTED:<label>]`.
    pub fn label(self) -> &'static str {
        match self {
            SecretKind::AwsAccessKey => "aws_access_key",
            SecretKind::AwsSecretKey => "aws_secret_key",
            SecretKind::GoogleApiKey => "google_api_key",
            SecretKind::PrivateKey => "private_key",
            SecretKind::Jwt => "jwt",
            SecretKind::GithubToken => "github_token",
            SecretKind::SlackToken => "slack_token",
            SecretKind::StripeKey => "stripe_key",
        }
    }
}

/// How many values were masked in a session, by cause. Only numbers: safe to log and audit.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskCounts {
    /// Card numbers masked.
    pub credit_card: u64,
    /// E-mail addresses masked.
    pub email: u64,
    /// SSNs masked.
    pub ssn: u64,
    /// Phone numbers masked.
    pub phone: u64,
    /// IBANs masked.
    pub iban: u64,
    /// Secrets masked.
    pub secrets: u64,
    /// Whole values replaced by a column rule.
    pub columns: u64,
    /// Values withheld (sent as NULL) because they could not be inspected (binary format).
    pub withheld: u64,
}

impl MaskCounts {
    fn slot(&mut self, d: Detector) -> &mut u64 {
        match d {
            Detector::CreditCard => &mut self.credit_card,
            Detector::Email => &mut self.email,
            Detector::Ssn => &mut self.ssn,
            Detector::Phone => &mut self.phone,
            Detector::Iban => &mut self.iban,
            Detector::Secret => &mut self.secrets,
        }
    }

    /// Counts one detector match.
    pub fn record(&mut self, d: Detector) {
        let slot = self.slot(d);
        *slot = slot.saturating_add(1);
    }

    /// Counts one value replaced whole by a column rule.
    pub fn record_column(&mut self) {
        self.columns = self.columns.saturating_add(1);
    }

    /// Counts one value withheld because it could not be inspected.
    pub fn record_withheld(&mut self) {
        self.withheld = self.withheld.saturating_add(1);
    }

    /// Matches of one detector.
    pub fn get(&self, d: Detector) -> u64 {
        match d {
            Detector::CreditCard => self.credit_card,
            Detector::Email => self.email,
            Detector::Ssn => self.ssn,
            Detector::Phone => self.phone,
            Detector::Iban => self.iban,
            Detector::Secret => self.secrets,
        }
    }

    /// Adds another set of counts (a statement's into its session's).
    pub fn merge(&mut self, other: &MaskCounts) {
        for d in Detector::ALL {
            let slot = self.slot(d);
            *slot = slot.saturating_add(other.get(d));
        }
        self.columns = self.columns.saturating_add(other.columns);
        self.withheld = self.withheld.saturating_add(other.withheld);
    }

    /// Everything masked or withheld.
    pub fn total(&self) -> u64 {
        Detector::ALL
            .iter()
            .fold(0u64, |acc, d| acc.saturating_add(self.get(*d)))
            .saturating_add(self.columns)
            .saturating_add(self.withheld)
    }
}

/// One compiled column rule.
#[derive(Clone, Debug)]
struct ColumnRule {
    /// `None` for a bare column pattern (any table); may hold `schema.table`.
    table: Option<Box<[u8]>>,
    column: Box<[u8]>,
    replacement: Box<[u8]>,
}

/// Masking rules compiled from one or more rule sets. Immutable and `Send + Sync`: compile
/// once, share behind an `Arc` across sessions.
#[derive(Clone, Debug)]
pub struct Masker {
    plan: Plan,
    /// A rule set's custom replacement, per detector (indexed by `Detector::index`).
    custom: [Option<Box<[u8]>>; 6],
    columns: Vec<ColumnRule>,
}

impl Masker {
    /// Compiles rule sets. A detector enabled by several sets takes the replacement of the
    /// first; column rules are tried in order. Errors name the rule set and the bad entry.
    pub fn compile(sets: &[MaskingConfig]) -> Result<Self, String> {
        let mut enabled: Vec<Detector> = Vec::new();
        let mut custom: [Option<Box<[u8]>>; 6] = Default::default();
        let mut columns = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for set in sets {
            let name = set.name.as_str();
            if name.trim().is_empty() {
                return Err("masking rule set with an empty name".to_string());
            }
            if names.contains(&name) {
                return Err(format!("masking rule set \"{name}\" is defined twice"));
            }
            names.push(name);
            let replacement = match &set.replacement {
                Some(r) => Some(check_replacement(name, r)?),
                None => None,
            };
            for d in &set.detectors {
                let Some(det) = Detector::from_name(d.trim()) else {
                    return Err(format!(
                        "masking rule set \"{name}\": unknown detector \"{d}\" (known: {})",
                        Detector::ALL.map(Detector::as_str).join(", ")
                    ));
                };
                if !enabled.contains(&det) {
                    enabled.push(det);
                    if let Some(slot) = custom.get_mut(det.index()) {
                        *slot = replacement.clone();
                    }
                }
            }
            for c in &set.columns {
                let (table, column) = parse_column_pattern(c).map_err(|why| {
                    format!("masking rule set \"{name}\": column rule \"{c}\": {why}")
                })?;
                columns.push(ColumnRule {
                    table,
                    column,
                    replacement: replacement
                        .clone()
                        .unwrap_or_else(|| DEFAULT_COLUMN_REPLACEMENT.into()),
                });
            }
        }
        let email_whole = custom
            .get(Detector::Email.index())
            .is_some_and(Option::is_some);
        let masker = Masker {
            plan: Plan::new(&enabled, email_whole),
            custom,
            columns,
        };
        // A replacement that is itself detected would never settle.
        for set in sets {
            if let Some(r) = &set.replacement
                && masker.detects(r.as_bytes())
            {
                return Err(format!(
                    "masking rule set \"{}\": replacement \"{r}\" would itself be masked",
                    set.name
                ));
            }
        }
        Ok(masker)
    }

    /// True when some column rule names a table: the adapter then needs table names for the
    /// columns it sees (PostgreSQL gives table OIDs).
    pub fn has_table_rules(&self) -> bool {
        self.columns.iter().any(|c| c.table.is_some())
    }

    /// True when any column rule exists (JSON and hstore keys, and row types, are then matched
    /// against the rules too).
    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// What a column rule replaces a value with when the gateway cannot tell which rule
    /// applies (a column of a relation it does not know): the first rule's replacement.
    pub fn default_column_replacement(&self) -> Option<&[u8]> {
        self.columns.first().map(|c| &*c.replacement)
    }

    /// True when no rule set asks for anything: the adapter can skip masking entirely.
    pub fn is_empty(&self) -> bool {
        !self.plan.any() && self.columns.is_empty()
    }

    /// True when any content detector is enabled (every text value must go through
    /// [`Masker::mask_into`]).
    pub fn has_detectors(&self) -> bool {
        self.plan.any()
    }

    /// The detectors enabled, in report order.
    pub fn detectors(&self) -> impl Iterator<Item = Detector> + '_ {
        Detector::ALL.into_iter().filter(|d| match d {
            Detector::CreditCard => self.plan.card,
            Detector::Email => self.plan.email,
            Detector::Ssn => self.plan.ssn,
            Detector::Phone => self.plan.phone,
            Detector::Iban => self.plan.iban,
            Detector::Secret => self.plan.secrets,
        })
    }

    /// Whether values of this column are masked whole. `table` is the table's name
    /// (`users` or `public.users`) when the adapter could resolve it; when it could not, the
    /// column name alone decides (failing closed: `users.ssn` then masks any `ssn` column).
    /// Decide once per result description, not per row.
    pub fn column_rule(&self, table: Option<&str>, column: &str) -> bool {
        self.column_match(table, column).is_some()
    }

    /// What a column-ruled value is replaced with (the rule set's replacement or `****`), or
    /// None when no column rule applies.
    pub fn column_replacement(&self, table: Option<&str>, column: &str) -> Option<&[u8]> {
        self.column_match(table, column).map(|r| &*r.replacement)
    }

    fn column_match(&self, table: Option<&str>, column: &str) -> Option<&ColumnRule> {
        self.columns.iter().find(|r| {
            glob(&r.column, column.as_bytes()) && table_matches(r.table.as_deref(), table)
        })
    }

    /// Masks detector matches inside `value`. Returns None when nothing matched: the common
    /// case, which neither allocates nor copies.
    pub fn mask_value(&self, value: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.mask_into(value, &mut out, counts).then_some(out)
    }

    /// Masks detector matches inside `value` into `out` (cleared first; reuse it across rows
    /// to avoid allocating). Returns false, leaving `out` untouched, when nothing matched: then
    /// pass `value` on as it is.
    pub fn mask_into(&self, value: &[u8], out: &mut Vec<u8>, counts: &mut MaskCounts) -> bool {
        if !self.plan.any() || !self.pass(value, out, counts) {
            return false;
        }
        // Settle: a value masked once is checked again, so the result is a fixed point and
        // masking is idempotent even where masking one match exposes another (e.g. digits
        // that only became a candidate once a neighbouring match was masked).
        for _ in 0..MAX_EXTRA_PASSES {
            if !self.detects(out) {
                return true;
            }
            let mut next = Vec::with_capacity(out.len());
            self.pass(out, &mut next, counts);
            *out = next;
        }
        if self.detects(out) {
            out.clear();
            out.extend_from_slice(DEFAULT_COLUMN_REPLACEMENT);
        }
        true
    }

    /// True when `value` holds anything a detector would mask. Never allocates.
    pub fn detects(&self, value: &[u8]) -> bool {
        struct Any(bool);
        impl Sink for Any {
            fn hit(&mut self, _: Hit) -> bool {
                self.0 = true;
                false
            }
        }
        if !self.plan.any() {
            return false;
        }
        let mut any = Any(false);
        detectors::scan(&self.plan, value, &mut any);
        any.0
    }

    /// One scan; writes the whole masked value into `out` when there was a hit.
    fn pass(&self, value: &[u8], out: &mut Vec<u8>, counts: &mut MaskCounts) -> bool {
        let mut w = Writer {
            masker: self,
            v: value,
            out,
            emitted: 0,
            started: false,
            counts,
        };
        detectors::scan(&self.plan, value, &mut w);
        if w.started {
            w.out
                .extend_from_slice(value.get(w.emitted..).unwrap_or(&[]));
        }
        w.started
    }

    /// Where a streaming caller must stop emitting: `buf[..n]` can be masked and sent, and
    /// `buf[n..]` must wait for more input because a match might continue into it.
    pub(crate) fn hold_from(&self, buf: &[u8]) -> usize {
        /// Finds the hit that spans `cut`, if any.
        struct Spanning {
            cut: usize,
            start: Option<usize>,
        }
        impl Sink for Spanning {
            fn hit(&mut self, hit: Hit) -> bool {
                if hit.start >= self.cut {
                    return false;
                }
                if hit.end > self.cut {
                    self.start = Some(hit.start);
                    return false;
                }
                true
            }
        }
        if !self.plan.any() {
            return buf.len();
        }
        let mut cut = stream::trailing_token_start(buf);
        if self.plan.secrets
            && let Some(b) = stream::open_private_key(buf)
        {
            // Cut before the token the block is glued to, if any.
            cut = cut.min(stream::trailing_token_start(buf.get(..b).unwrap_or(&[])));
        }
        loop {
            // A match that holds non-token bytes (a private-key block, a grouped number) may
            // still cross the cut: then the cut moves back to its start, and on to the start
            // of the token that start is glued to, so what precedes is judged as it is in the
            // whole.
            while cut < buf.len() {
                let mut s = Spanning { cut, start: None };
                detectors::scan(&self.plan, buf, &mut s);
                match s.start {
                    Some(start) => {
                        cut = stream::trailing_token_start(buf.get(..start).unwrap_or(&[]))
                    }
                    None => break,
                }
            }
            // A label or an opening quote just before the cut belongs with what is held.
            let held = self.hold_labels_and_quotes(buf, cut);
            if held == cut {
                return cut;
            }
            cut = held;
        }
    }

    /// Moves a streaming cut back over what a match still to come would need: the label of a
    /// labelled SSN or AWS secret whose value is being held, and a quoted string that may turn
    /// out to be an address's local part (`"john doe"@...`).
    fn hold_labels_and_quotes(&self, buf: &[u8], cut: usize) -> usize {
        let mut held = cut;
        if self.plan.ssn
            && let Some(l) = detectors::ssn_label_start(buf, held, 0)
                .or_else(|| detectors::ssn_label_prefix_start(buf, held, 0))
        {
            held = l;
        }
        if self.plan.secrets
            && let Some(l) = detectors::aws_label_start(buf, held, 0)
        {
            held = l;
        }
        if self.plan.email {
            let from = held.saturating_sub(detectors::QUOTED_LOCAL_MAX + 2);
            let line_start = buf
                .get(from..held)
                .and_then(|w| memchr::memrchr(b'\n', w))
                .map_or(from, |n| from + n + 1);
            if let Some(q) = buf
                .get(line_start..held)
                .and_then(|w| memchr::memchr(b'"', w))
            {
                held = line_start + q;
            }
        }
        if held == cut {
            return cut;
        }
        // What precedes the new cut must be judged as it is in the whole: cut before the
        // token the label or quote is glued to.
        stream::trailing_token_start(buf.get(..held).unwrap_or(&[]))
    }

    pub(crate) fn secret_replacement(&self) -> Option<&[u8]> {
        self.custom
            .get(Detector::Secret.index())
            .and_then(|c| c.as_deref())
    }

    pub(crate) fn detects_secrets(&self) -> bool {
        self.plan.secrets
    }
}

/// Copies unmatched bytes and renders each hit into `out`.
struct Writer<'a> {
    masker: &'a Masker,
    v: &'a [u8],
    out: &'a mut Vec<u8>,
    emitted: usize,
    started: bool,
    counts: &'a mut MaskCounts,
}

impl Sink for Writer<'_> {
    fn hit(&mut self, hit: Hit) -> bool {
        if !self.started {
            self.started = true;
            self.out.clear();
            self.out.reserve(self.v.len() + 16);
        }
        self.out
            .extend_from_slice(self.v.get(self.emitted..hit.start).unwrap_or(&[]));
        let span = self.v.get(hit.start..hit.end).unwrap_or(&[]);
        match self
            .masker
            .custom
            .get(hit.detector.index())
            .and_then(|c| c.as_deref())
        {
            Some(r) => self.out.extend_from_slice(r),
            None => render(hit.render, span, self.out),
        }
        self.emitted = hit.end;
        self.counts.record(hit.detector);
        true
    }
}

/// The default rendering of one match.
fn render(how: Render, span: &[u8], out: &mut Vec<u8>) {
    match how {
        Render::Digits { keep_tail } => {
            let digits = span.iter().filter(|b| b.is_ascii_digit()).count();
            let keep_from = if keep_tail {
                digits.saturating_sub(4)
            } else {
                digits
            };
            let mut seen = 0;
            for &b in span {
                if b.is_ascii_digit() {
                    out.push(if seen >= keep_from { b } else { b'*' });
                    seen += 1;
                } else {
                    out.push(b);
                }
            }
        }
        Render::Iban { keep_tail } => {
            let alnum = span.iter().filter(|b| b.is_ascii_alphanumeric()).count();
            let keep_from = if keep_tail {
                alnum.saturating_sub(4)
            } else {
                alnum
            };
            let mut seen = 0;
            for &b in span {
                if b.is_ascii_alphanumeric() {
                    // The country code stays: it says what the value was, and reveals little.
                    out.push(if seen < 2 || seen >= keep_from {
                        b
                    } else {
                        b'*'
                    });
                    seen += 1;
                } else {
                    out.push(b);
                }
            }
        }
        Render::EmailLocal => out.extend_from_slice(b"***"),
        Render::Secret(kind) => {
            out.extend_from_slice(b"[REDACTED:");
            out.extend_from_slice(kind.label().as_bytes());
            out.push(b']');
        }
    }
}

/// Custom replacements may not carry digits or `@`, so they cannot become (part of) a card
/// number, phone number or address next to the text around them.
fn check_replacement(name: &str, r: &str) -> Result<Box<[u8]>, String> {
    if r.len() > MAX_REPLACEMENT {
        return Err(format!(
            "masking rule set \"{name}\": replacement is longer than {MAX_REPLACEMENT} bytes"
        ));
    }
    if r.bytes()
        .any(|b| b.is_ascii_digit() || b == b'@' || b.is_ascii_control())
    {
        return Err(format!(
            "masking rule set \"{name}\": replacement \"{r}\" may not contain digits, '@' or control characters"
        ));
    }
    Ok(r.as_bytes().into())
}

/// A column pattern's table part (None: any table) and column part.
type ColumnPattern = (Option<Box<[u8]>>, Box<[u8]>);

/// Splits `[schema.]table.column` on its last dot and checks the parts.
fn parse_column_pattern(p: &str) -> Result<ColumnPattern, &'static str> {
    let p = p.trim();
    if p.is_empty() {
        return Err("empty pattern");
    }
    if p.bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'"')
    {
        return Err("spaces, quotes and control characters are not allowed");
    }
    let parts: Vec<&str> = p.split('.').collect();
    if parts.iter().any(|s| s.is_empty()) {
        return Err("empty name between dots");
    }
    match parts.as_slice() {
        [column] => Ok((None, column.as_bytes().into())),
        [table, column] => Ok((Some(table.as_bytes().into()), column.as_bytes().into())),
        [schema, table, column] => Ok((
            Some(format!("{schema}.{table}").into_bytes().into()),
            column.as_bytes().into(),
        )),
        _ => Err("expected column, table.column or schema.table.column"),
    }
}

fn after_last_dot(s: &[u8]) -> &[u8] {
    match memchr::memrchr(b'.', s) {
        Some(d) => s.get(d + 1..).unwrap_or(&[]),
        None => s,
    }
}

/// Table part of a column rule against the adapter's table name. An unknown table, or a
/// schema that only one side names, matches on what is known (fail closed).
fn table_matches(pattern: Option<&[u8]>, table: Option<&str>) -> bool {
    let (Some(pat), Some(t)) = (pattern, table) else {
        return true;
    };
    let t = t.as_bytes();
    if glob(pat, t) {
        return true;
    }
    match (pat.contains(&b'.'), t.contains(&b'.')) {
        (false, true) => glob(pat, after_last_dot(t)),
        (true, false) => glob(after_last_dot(pat), t),
        _ => false,
    }
}

/// `*` (any run) and `?` (one byte) glob, ASCII case-insensitive. Iterative with one
/// backtrack point, so it is linear-ish and cannot blow up on many stars.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < s.len() {
        let c = s.get(t).copied().unwrap_or(0);
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&x) if x == b'?' || x.eq_ignore_ascii_case(&c) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    while pat.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pat.len()
}
