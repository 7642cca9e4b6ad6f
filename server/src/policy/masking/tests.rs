//! Tests of the public masking API, and property tests over generated text.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use proptest::prelude::*;

fn set(
    name: &str,
    detectors: &[&str],
    columns: &[&str],
    replacement: Option<&str>,
) -> MaskingConfig {
    MaskingConfig {
        name: name.into(),
        detectors: detectors.iter().map(|s| s.to_string()).collect(),
        columns: columns.iter().map(|s| s.to_string()).collect(),
        replacement: replacement.map(String::from),
    }
}

const ALL: &[&str] = &["credit_card", "email", "ssn", "phone", "iban", "secrets"];

fn all() -> Masker {
    Masker::compile(&[set("pii", ALL, &[], None)]).unwrap()
}

fn mask(m: &Masker, s: &str) -> String {
    let mut c = MaskCounts::default();
    match m.mask_value(s.as_bytes(), &mut c) {
        Some(v) => String::from_utf8(v).unwrap(),
        None => s.to_string(),
    }
}

#[test]
fn config_parses_and_rejects_unknown_fields() {
    let c: MaskingConfig = serde_json::from_str(
        r#"{"name":"pii","detectors":["credit_card","email"],"columns":["*.ssn"]}"#,
    )
    .unwrap();
    assert_eq!(c.detectors, vec!["credit_card", "email"]);
    assert_eq!(c.replacement, None);
    let bad = serde_json::from_str::<MaskingConfig>(r#"{"name":"x","detector":["email"]}"#);
    assert!(bad.is_err());
}

#[test]
fn compile_errors_name_the_set_and_entry() {
    let e = Masker::compile(&[set("pii", &["credit_card", "passport"], &[], None)]).unwrap_err();
    assert!(e.contains("\"pii\"") && e.contains("\"passport\""), "{e}");
    let e = Masker::compile(&[set("cols", &[], &["users..ssn"], None)]).unwrap_err();
    assert!(e.contains("\"cols\"") && e.contains("users..ssn"), "{e}");
    let e = Masker::compile(&[set("cols", &[], &["a.b.c.d"], None)]).unwrap_err();
    assert!(e.contains("a.b.c.d"), "{e}");
    let e = Masker::compile(&[set("r", ALL, &[], Some("card 4111"))]).unwrap_err();
    assert!(e.contains("\"r\""), "{e}");
    let e = Masker::compile(&[set("r", ALL, &[], Some("[AKIAIOSFODNN-EXAMPLE]"))]);
    assert!(e.is_ok(), "{e:?}");
    let e = Masker::compile(&[set("r", ALL, &[], Some("xoxb-abcdefghijklmnop"))]).unwrap_err();
    assert!(e.contains("would itself be masked"), "{e}");
    let e = Masker::compile(&[set("a", ALL, &[], None), set("a", &[], &[], None)]).unwrap_err();
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn empty_masker_does_nothing() {
    let m = Masker::compile(&[]).unwrap();
    assert!(m.is_empty());
    let m = Masker::compile(&[set("none", &[], &[], None)]).unwrap();
    assert!(m.is_empty());
    let mut c = MaskCounts::default();
    assert_eq!(m.mask_value(b"4111111111111111", &mut c), None);
    assert!(!m.column_rule(Some("users"), "ssn"));
    let m = Masker::compile(&[set("cols", &[], &["ssn"], None)]).unwrap();
    assert!(!m.is_empty() && !m.has_detectors());
}

#[test]
fn column_globs() {
    let m = Masker::compile(&[
        set(
            "a",
            &[],
            &[
                "users.email",
                "*.ssn",
                "users.*_token",
                "pay?.card",
                "hr.staff.salary",
            ],
            None,
        ),
        set("b", &[], &["secret_notes"], Some("[hidden]")),
    ])
    .unwrap();
    assert!(m.column_rule(Some("users"), "email"));
    assert!(m.column_rule(Some("USERS"), "Email"));
    assert!(m.column_rule(Some("public.users"), "email"));
    assert!(!m.column_rule(Some("orders"), "email"));
    assert!(m.column_rule(Some("anything"), "ssn"));
    assert!(m.column_rule(None, "ssn"));
    assert!(!m.column_rule(None, "ssn_hash"));
    assert!(m.column_rule(Some("users"), "api_token"));
    assert!(m.column_rule(Some("users"), "_token"));
    assert!(!m.column_rule(Some("users"), "token"));
    assert!(!m.column_rule(Some("accounts"), "api_token"));
    assert!(m.column_rule(Some("pay1"), "card"));
    assert!(!m.column_rule(Some("pay12"), "card"));
    assert!(m.column_rule(Some("hr.staff"), "salary"));
    assert!(m.column_rule(Some("staff"), "salary"));
    assert!(!m.column_rule(Some("ops.staff"), "salary"));
    // Unknown table: the column name decides (fail closed).
    assert!(m.column_rule(None, "email"));
    assert!(m.column_rule(Some("t"), "secret_notes"));
    assert_eq!(
        m.column_replacement(Some("t"), "secret_notes"),
        Some(&b"[hidden]"[..])
    );
    assert_eq!(
        m.column_replacement(Some("users"), "email"),
        Some(&b"****"[..])
    );
    assert_eq!(m.column_replacement(Some("users"), "name"), None);
}

#[test]
fn glob_edge_cases() {
    assert!(glob(b"*", b""));
    assert!(glob(b"a*b*c", b"aXXbYYc"));
    assert!(!glob(b"a*b*c", b"aXXbYY"));
    assert!(glob(b"*_token", b"refresh_token"));
    assert!(glob(b"**a", b"a"));
    assert!(!glob(b"a", b""));
    assert!(glob(&[b'*'; 40], &[b'a'; 4000]));
    assert!(!glob(
        &[b"*".repeat(20), b"b".to_vec()].concat(),
        &[b'a'; 4000]
    ));
}

#[test]
fn default_renderings() {
    let m = all();
    assert_eq!(
        mask(&m, "card 4111 1111 1111 1111."),
        "card **** **** **** 1111."
    );
    assert_eq!(mask(&m, "4111-1111-1111-1111"), "****-****-****-1111");
    assert_eq!(mask(&m, "4111111111111111"), "************1111");
    assert_eq!(
        mask(&m, "mail John.Doe@example.com now"),
        "mail ***@example.com now"
    );
    assert_eq!(mask(&m, "ssn 123-45-6789"), "ssn ***-**-6789");
    assert_eq!(mask(&m, "(555) 123-4567"), "(***) ***-4567");
    assert_eq!(mask(&m, "+44 20 7946 0958"), "+** ** **** 0958");
    assert_eq!(
        mask(&m, "DE89 3704 0044 0532 0130 00"),
        "DE** **** **** **** **30 00"
    );
    assert_eq!(
        mask(&m, "key AKIAIOSFODNN7EXAMPLE"),
        "key [REDACTED:aws_access_key]"
    );
    // Followed by more digits: nothing kept, so no digits can join into a new number.
    assert_eq!(
        mask(&m, "4111 1111 1111 1111 123"),
        "**** **** **** **** 123"
    );
    // Nothing to mask: the same bytes, no allocation.
    let mut c = MaskCounts::default();
    assert_eq!(
        m.mask_value(b"Order 12345 shipped 2024-03-15", &mut c),
        None
    );
    assert_eq!(c, MaskCounts::default());
}

#[test]
fn custom_replacement_and_counts() {
    let m = Masker::compile(&[
        set("cards", &["credit_card", "email"], &[], Some("[MASKED]")),
        set("rest", &["email", "ssn"], &[], None),
    ])
    .unwrap();
    let mut c = MaskCounts::default();
    let out = m
        .mask_value(
            b"a 4111111111111111 b x@y.org c 123-45-6789 d 5555555555554444",
            &mut c,
        )
        .unwrap();
    assert_eq!(out, b"a [MASKED] b [MASKED] c ***-**-6789 d [MASKED]");
    assert_eq!(c.credit_card, 2);
    assert_eq!(c.email, 1);
    assert_eq!(c.ssn, 1);
    assert_eq!(c.total(), 4);
    let mut d = MaskCounts::default();
    d.record_column();
    d.record_withheld();
    d.merge(&c);
    assert_eq!(d.total(), 6);
    assert_eq!(d.get(Detector::CreditCard), 2);
    let json = serde_json::to_string(&d).unwrap();
    assert!(
        json.contains("\"credit_card\":2") && json.contains("\"withheld\":1"),
        "{json}"
    );
}

#[test]
fn only_enabled_detectors_run() {
    let m = Masker::compile(&[set("e", &["email"], &[], None)]).unwrap();
    assert_eq!(
        mask(&m, "4111111111111111 a@b.io"),
        "4111111111111111 ***@b.io"
    );
    assert_eq!(m.detectors().collect::<Vec<_>>(), vec![Detector::Email]);
    let m = Masker::compile(&[set("c", &["credit_card"], &[], None)]).unwrap();
    assert_eq!(
        mask(&m, "4111111111111111 a@b.io"),
        "************1111 a@b.io"
    );
}

#[test]
fn mask_into_reuses_the_buffer() {
    let m = all();
    let mut out = Vec::with_capacity(64);
    let mut c = MaskCounts::default();
    assert!(m.mask_into(b"x 4111111111111111", &mut out, &mut c));
    assert_eq!(out, b"x ************1111");
    assert!(!m.mask_into(b"nothing here", &mut out, &mut c));
    assert_eq!(out, b"x ************1111", "left untouched");
    assert!(m.mask_into(b"a@b.io", &mut out, &mut c));
    assert_eq!(out, b"***@b.io");
}

#[test]
fn masking_settles_where_one_match_exposes_another() {
    // The SSN is followed by a card with the same separator, so on the first pass it looks
    // like part of a longer identifier; once the card is masked it stands alone.
    let m = all();
    let once = mask(&m, "123-45-6789-4111-1111-1111-1111");
    assert_eq!(mask(&m, &once), once);
    assert!(!m.detects(once.as_bytes()));
}

#[test]
fn address_wins_over_what_its_local_part_holds() {
    let m = all();
    assert_eq!(mask(&m, "4111111111111111@example.com"), "***@example.com");
    assert_eq!(
        mask(&m, "x 4111111111111111.j@example.com"),
        "x ***@example.com"
    );
    assert_eq!(
        mask(&m, "AKIAIOSFODNN7EXAMPLE@example.com"),
        "***@example.com"
    );
    // A grouped number holds spaces, which no local part does: both are masked.
    assert_eq!(
        mask(&m, "4111 1111 1111 1111john@example.com"),
        "**** **** **** 1111***@example.com"
    );
    // A private key glued to an address is still masked whole.
    assert_eq!(
        mask(
            &m,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----x@example.com"
        ),
        "[REDACTED:private_key]***@example.com"
    );
}

#[test]
fn invalid_utf8_and_binary_junk_are_fine() {
    let m = all();
    let mut c = MaskCounts::default();
    let v = [0xff, 0xfe, b'4', b'1', 0x00, 0x80, b'@', b'@', b'.'];
    assert_eq!(m.mask_value(&v, &mut c), None);
    let mut v = b"\xff4111111111111111\xfe".to_vec();
    let out = m.mask_value(&v, &mut c).unwrap();
    assert_eq!(out, b"\xff************1111\xfe");
    v.clear();
    assert_eq!(m.mask_value(&v, &mut c), None);
}

#[test]
fn masker_is_send_sync_and_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Masker>();
    assert_send_sync::<std::sync::Arc<Masker>>();
}

// ---------- property tests ----------

/// A Luhn-valid card number of a real network's prefix and length.
fn card_digits() -> impl Strategy<Value = String> {
    let networks: Vec<(&str, Vec<usize>)> = vec![
        ("4", vec![13, 16, 19]), // Visa
        ("51", vec![16]),        // Mastercard
        ("55", vec![16]),
        ("2221", vec![16]), // Mastercard 2-series
        ("2720", vec![16]),
        ("34", vec![15]), // American Express
        ("37", vec![15]),
        ("36", vec![14]),             // Diners Club
        ("3528", vec![16, 19]),       // JCB
        ("6011", vec![16, 19]),       // Discover
        ("62", vec![16, 17, 18, 19]), // UnionPay
        ("50", vec![13, 16, 19]),     // Maestro
        ("6759", vec![13, 16, 19]),
    ];
    (
        prop::sample::select(networks),
        any::<prop::sample::Index>(),
        prop::collection::vec(0u8..10, 18),
    )
        .prop_map(|((prefix, lengths), which, body)| {
            let len = *which.get(&lengths);
            let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
            d.extend(body.iter().take(len - 1 - d.len()));
            // The check digit: the one that makes the whole Luhn-valid.
            let check = (0u8..10)
                .find(|c| {
                    let mut t = d.clone();
                    t.push(*c);
                    detectors::luhn(&t)
                })
                .unwrap();
            d.push(check);
            d.iter().map(|x| char::from(b'0' + x)).collect()
        })
}

/// The card written bare, in groups of four (space or dash), or Amex-style 4-6-5.
fn card_text() -> impl Strategy<Value = (String, String)> {
    (card_digits(), 0u8..5).prop_map(|(d, fmt)| {
        let grouped = |sep: &str, sizes: &[usize]| {
            let mut out = String::new();
            let mut rest = d.as_str();
            for (k, s) in sizes.iter().enumerate() {
                if rest.is_empty() {
                    break;
                }
                let take = (*s).min(rest.len());
                if k > 0 {
                    out.push_str(sep);
                }
                out.push_str(&rest[..take]);
                rest = &rest[take..];
            }
            if !rest.is_empty() {
                out.push_str(sep);
                out.push_str(rest);
            }
            out
        };
        let text = match fmt {
            0 => d.clone(),
            1 => grouped(" ", &[4, 4, 4, 4, 4]),
            2 => grouped("-", &[4, 4, 4, 4, 4]),
            3 => grouped(" ", &[4, 6, 5, 4]),
            _ => grouped("-", &[4, 6, 5, 4]),
        };
        (d, text)
    })
}

/// Everyday text: words, numbers, dates, amounts, punctuation.
fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z]{1,10}",
            "[0-9]{1,6}",
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]",
            "[0-9]{1,4}\\.[0-9]{2}",
            "[A-Z]{2,4}-[0-9]{3,5}",
            Just("—".to_string()),
            "[,.;:!?()]",
        ],
        0..8,
    )
    .prop_map(|w| w.join(" "))
}

fn before() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", " ", "\n", ":", "=", "(", "[", ",", "card ", "#", "\t", "x", "ID", "a.b",
    ])
}

fn after() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        " ",
        "\n",
        ".",
        ",",
        ")",
        "]",
        ";",
        " exp",
        "!",
        "x",
        "@example.com",
        "john@example.com",
    ])
}

fn email() -> impl Strategy<Value = String> {
    (
        // A local part with a letter, digit or `_` (one of punctuation alone is left alone:
        // it hides nothing and is usually the syntax around an address).
        "[a-zA-Z0-9_][a-zA-Z0-9_%+-]{0,11}(\\.[a-zA-Z0-9_%+-]{1,8}){0,2}",
        prop::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 1..4),
        "[a-zA-Z]{2,6}",
    )
        .prop_map(|(local, labels, tld)| format!("{local}@{}.{tld}", labels.join(".")))
}

fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// No Luhn-valid card number embedded in generated text survives masking.
    #[test]
    fn no_card_survives(
        pre in filler(), b in before(), (digits, text) in card_text(), a in after(), post in filler()
    ) {
        let m = all();
        let value = format!("{pre} {b}{text}{a} {post}");
        let out = mask(&m, &value);
        prop_assert!(!out.contains(&text), "{value:?} -> {out:?}");
        prop_assert!(!digits_only(&out).contains(&digits), "{value:?} -> {out:?}");
        prop_assert!(!m.detects(out.as_bytes()), "{value:?} -> {out:?}");
    }

    /// No generated e-mail address survives masking.
    #[test]
    fn no_email_survives(
        pre in filler(), b in before(), addr in email(), a in after(), post in filler()
    ) {
        let m = all();
        let value = format!("{pre} {b}{addr}{a} {post}");
        let out = mask(&m, &value);
        let local = &addr[..addr.find('@').unwrap()];
        prop_assert!(!out.contains(&addr), "{value:?} -> {out:?}");
        prop_assert!(!out.contains(&format!("{local}@")), "{value:?} -> {out:?}");
        prop_assert!(!m.detects(out.as_bytes()), "{value:?} -> {out:?}");
    }
}

/// Text mixing every kind of match with near-misses and separators.
fn mixed() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            filler(),
            card_text().prop_map(|(_, t)| t),
            email(),
            "[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}",
            "\\+?1?[-. ]?\\(?[0-9]{3}\\)?[-. ]?[0-9]{3}[-. ][0-9]{4}",
            Just("DE89 3704 0044 0532 0130 00".to_string()),
            Just("GB82WEST12345698765432".to_string()),
            "AKIA[A-Z0-9]{16}",
            "gh[pousr]_[a-zA-Z0-9]{30,40}",
            "xox[baprs]-[a-zA-Z0-9-]{10,20}",
            "(sk|rk)_(live|test)_[a-zA-Z0-9]{10,20}",
            "eyJ[a-zA-Z0-9_-]{8,20}\\.[a-zA-Z0-9_-]{2,20}\\.[a-zA-Z0-9_-]{0,20}",
            Just(
                "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"
                    .to_string()
            ),
            "[0-9 .()+@*-]{1,24}",
            "[a-zA-Z0-9@._+*-]{1,24}",
            Just("***".to_string()),
            "\"[a-z .\\\\\"]{1,12}\"@[a-z]{1,8}\\.(com|org)",
            "(SSN|ssn|Social Security No\\.)[:= #]{0,3}[0-9]{9}",
            "(aws_secret_access_key|AWS_SECRET_ACCESS_KEY|SecretAccessKey)[ \"=:]{1,4}[A-Za-z0-9/+]{38,42}",
        ],
        0..10,
    )
    .prop_flat_map(|parts| {
        let n = parts.len();
        (
            Just(parts),
            prop::collection::vec(
                prop::sample::select(vec!["", " ", "-", "\n", "@", ".", "*", "(", "+"]),
                n,
            ),
        )
    })
    .prop_map(|(parts, seps)| {
        parts
            .iter()
            .zip(seps)
            .map(|(p, s)| format!("{p}{s}"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// mask(mask(x)) == mask(x), and masked output holds nothing detectable.
    #[test]
    fn masking_is_idempotent(value in mixed()) {
        let m = all();
        let once = mask(&m, &value);
        let twice = mask(&m, &once);
        prop_assert_eq!(&twice, &once, "input {:?}", value);
        prop_assert!(!m.detects(once.as_bytes()));
    }

    /// The same with custom replacements (whole-address e-mail masking).
    #[test]
    fn masking_is_idempotent_with_replacements(value in mixed()) {
        let m = Masker::compile(&[
            set("a", &["email", "credit_card", "secrets"], &[], Some("[x]")),
            set("b", &["ssn", "phone", "iban"], &[], Some("MASKED")),
        ]).unwrap();
        let once = mask(&m, &value);
        prop_assert_eq!(mask(&m, &once), once.clone(), "input {:?}", value);
    }

    /// Arbitrary bytes: no panic, and idempotent.
    #[test]
    fn arbitrary_bytes(value in prop::collection::vec(any::<u8>(), 0..200)) {
        let m = all();
        let mut c = MaskCounts::default();
        let once = m.mask_value(&value, &mut c).unwrap_or_else(|| value.clone());
        let twice = m.mask_value(&once, &mut c).unwrap_or_else(|| once.clone());
        prop_assert_eq!(twice, once);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Streaming in arbitrary pieces gives the same output as masking the whole text.
    #[test]
    fn streaming_matches_whole(value in mixed(), cuts in prop::collection::vec(0usize..400, 0..6)) {
        let m = all();
        let bytes = value.as_bytes();
        let mut c = MaskCounts::default();
        let whole = m.mask_value(bytes, &mut c).unwrap_or_else(|| bytes.to_vec());
        let mut cuts: Vec<usize> = cuts.into_iter().map(|x| x.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut s = StreamMasker::new();
        let mut out = Vec::new();
        let mut prev = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            s.push(&m, &bytes[prev..cut], &mut out, &mut c);
            prev = cut;
        }
        s.finish(&m, &mut out, &mut c);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&whole), "input {:?}", value);
    }
}

#[test]
fn quoted_local_parts_labelled_ssns_and_aws_secret_keys() {
    let m = all();
    for (input, want) in [
        ("\"john doe\"@example.com", "***@example.com"),
        ("to: \"j.\\\"x\\\" d\"@example.org;", "to: ***@example.org;"),
        ("SSN: 536228457", "SSN: *****8457"),
        ("ssn=536228457,", "ssn=*****8457,"),
        ("{\"ssn\": \"536228457\"}", "{\"ssn\": \"*****8457\"}"),
        (
            "social security number 536-22-8457",
            "social security number ***-**-8457",
        ),
        (
            "Social Security No. 536228457",
            "Social Security No. *****8457",
        ),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [REDACTED:aws_secret_key]",
        ),
        (
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_key]\n",
        ),
        (
            "\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"",
            "\"SecretAccessKey\": \"[REDACTED:aws_secret_key]\"",
        ),
    ] {
        assert_eq!(mask(&m, input), want, "{input}");
        assert!(!m.detects(want.as_bytes()), "{want}");
    }
    // Near misses stay.
    for input in [
        "order 536228457",
        "ssn: 000228457",
        "ssn 9362284570",
        "\"\"@example.com",
        "aws_secret_access_key = short",
        "my_secret_access_keys = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ] {
        assert_eq!(mask(&m, input), input, "{input}");
    }
}

#[test]
fn labelled_values_and_quoted_addresses_split_across_stream_reads() {
    let m = all();
    for text in [
        "id 7 SSN: 536228457 done\n",
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "mail \"john doe\"@example.com now\n",
    ] {
        let v = text.as_bytes();
        let mut c = MaskCounts::default();
        let whole = m.mask_value(v, &mut c).unwrap();
        for cut in 0..=v.len() {
            let mut s = StreamMasker::new();
            let mut out = Vec::new();
            s.push(&m, &v[..cut], &mut out, &mut c);
            s.push(&m, &v[cut..], &mut out, &mut c);
            s.finish(&m, &mut out, &mut c);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "{text:?} cut at {cut}"
            );
        }
    }
}
