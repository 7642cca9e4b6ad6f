//! Tests of masking by shape: arrays, rows, JSON and hstore keep their syntax, each element is
//! masked on its own, and generated values of every shape come back with the same structure and
//! nothing a detector finds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use super::*;
use proptest::prelude::*;

const ALL: &[&str] = &["credit_card", "email", "ssn", "phone", "iban", "secrets"];

fn masker(columns: &[&str]) -> Masker {
    Masker::compile(&[MaskingConfig {
        name: "pii".into(),
        detectors: ALL.iter().map(|s| s.to_string()).collect(),
        columns: columns.iter().map(|s| s.to_string()).collect(),
        replacement: None,
    }])
    .unwrap()
}

fn text_array() -> Shape {
    Shape::Array {
        elem: Arc::new(Shape::Text),
        delim: b',',
    }
}

/// The masked text (the input when nothing changed), or None when withheld.
fn mask(m: &Masker, shape: &Shape, v: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut c = MaskCounts::default();
    match m.mask_as(shape, v.as_bytes(), &mut out, &mut c) {
        Masked::Same => Some(v.to_string()),
        Masked::Changed => Some(String::from_utf8(out).unwrap()),
        Masked::Null => None,
    }
}

fn elems(v: &str, delim: u8) -> Vec<Option<String>> {
    parse_array(v.as_bytes(), delim)
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .0
        .into_iter()
        .map(|e| e.map(|b| String::from_utf8(b).unwrap()))
        .collect()
}

#[test]
fn an_array_of_addresses_keeps_its_braces() {
    let m = masker(&[]);
    let out = mask(&m, &text_array(), "{ada@example.com,bob@example.org}").unwrap();
    assert_eq!(out, r#"{"***@example.com","***@example.org"}"#);
    assert_eq!(
        elems(&out, b','),
        vec![
            Some("***@example.com".into()),
            Some("***@example.org".into())
        ]
    );
}

#[test]
fn array_elements_quoted_null_nested_and_bounded() {
    let m = masker(&[]);
    let v = r#"[0:1][1:2]={{"a \"x\" ada@example.com",NULL},{"NULL",plain}}"#;
    let out = mask(&m, &text_array(), v).unwrap();
    assert_eq!(
        out,
        r#"[0:1][1:2]={{"a \"x\" ***@example.com",NULL},{"NULL",plain}}"#
    );
    assert_eq!(
        elems(&out, b','),
        vec![
            Some(r#"a "x" ***@example.com"#.into()),
            None,
            Some("NULL".into()),
            Some("plain".into())
        ]
    );
    // Nothing to mask: the very same bytes.
    assert_eq!(mask(&m, &text_array(), "{a,b,NULL}").unwrap(), "{a,b,NULL}");
    assert_eq!(mask(&m, &text_array(), "{}").unwrap(), "{}");
    // A custom delimiter (box arrays use `;`).
    let boxes = Shape::Array {
        elem: Arc::new(Shape::Text),
        delim: b';',
    };
    let out = mask(&m, &boxes, "{x@example.com,1;y}").unwrap();
    assert_eq!(elems(&out, b';').len(), 2, "{out}");
}

#[test]
fn numbers_that_hold_a_card_become_null() {
    let m = masker(&[]);
    let ints = Shape::Array {
        elem: Arc::new(Shape::Number),
        delim: b',',
    };
    assert_eq!(
        mask(&m, &ints, "{4111111111111111,42,NULL}").unwrap(),
        "{NULL,42,NULL}"
    );
    assert_eq!(mask(&m, &Shape::Number, "4111111111111111"), None);
    assert_eq!(mask(&m, &Shape::Number, "4.111111111111111e+15"), None);
    assert_eq!(mask(&m, &Shape::Number, "4111111111111111.00"), None);
    assert_eq!(
        mask(&m, &Shape::Number, "4111111111111112").as_deref(),
        Some("4111111111111112")
    );
    assert_eq!(mask(&m, &Shape::Number, "12.5").as_deref(), Some("12.5"));
    assert_eq!(mask(&m, &Shape::Number, "NaN").as_deref(), Some("NaN"));
}

#[test]
fn rows_mask_each_field_and_honour_field_rules() {
    let m = masker(&["customers.name"]);
    let fields: Arc<[Field]> = vec![
        Field::plain(Shape::Number),
        Field {
            shape: Shape::Text,
            rule: Some(Arc::from(&b"****"[..])),
        },
        Field::plain(Shape::Text),
        Field::plain(Shape::Text),
        Field::plain(Shape::Text),
    ]
    .into();
    let row = Shape::Record(Some(fields));
    let out = mask(
        &m,
        &row,
        r#"(1,Ada,ada@example.com,"4111 1111 1111 1111",)"#,
    )
    .unwrap();
    assert_eq!(
        out,
        r#"(1,"****","***@example.com","**** **** **** 1111",)"#
    );
    let f = parse_record(out.as_bytes()).unwrap();
    assert_eq!(f.len(), 5);
    assert_eq!(f[4], None);
    // Too few or too many fields for the type: judged whole.
    assert_eq!(mask(&m, &row, "(1,x@example.com)"), None);
}

#[test]
fn anonymous_rows_read_nested_arrays_and_rows() {
    let m = masker(&[]);
    let out = mask(
        &m,
        &Shape::Record(None),
        r#"(7,"{ada@example.com,x}","(""bob@example.org"",2)",4111111111111111)"#,
    )
    .unwrap();
    let f = parse_record(out.as_bytes()).unwrap();
    assert_eq!(f.len(), 4, "{out}");
    assert_eq!(f[0].as_deref(), Some(&b"7"[..]));
    let inner = String::from_utf8(f[1].clone().unwrap()).unwrap();
    assert_eq!(
        elems(&inner, b','),
        vec![Some("***@example.com".into()), Some("x".into())]
    );
    let row = String::from_utf8(f[2].clone().unwrap()).unwrap();
    assert_eq!(
        parse_record(row.as_bytes()).unwrap()[0].as_deref(),
        Some(&b"***@example.org"[..])
    );
    assert_eq!(f[3], None, "a card number in a number field is withheld");
}

#[test]
fn json_masks_strings_keys_and_numbers_and_keeps_the_rest() {
    let m = masker(&["customers.name"]);
    let v = r#"{"id": 1, "name": "Ada", "email": "ada@example.com",
        "card": 4111111111111111, "tags": ["x", "bob@example.org"], "ada@example.com": true,
        "esc": "\u0061da@example.com", "deep": {"name": {"a": 1}}}"#;
    let out = mask(&m, &Shape::Json, v).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["id"], 1);
    assert_eq!(parsed["name"], "****");
    assert_eq!(parsed["email"], "***@example.com");
    assert_eq!(parsed["card"], serde_json::Value::Null);
    assert_eq!(parsed["tags"][1], "***@example.org");
    assert_eq!(parsed["***@example.com"], true);
    assert_eq!(parsed["esc"], "***@example.com");
    assert_eq!(parsed["deep"]["name"], "****");
    // The layout is kept: only masked tokens changed.
    assert!(
        out.starts_with("{\"id\": 1, \"name\": \"****\", \"email\""),
        "{out}"
    );
    // Not JSON: judged whole.
    assert_eq!(mask(&m, &Shape::Json, "{\"a\": ada@example.com}"), None);
    assert_eq!(mask(&m, &Shape::Json, "[1, 2]").as_deref(), Some("[1, 2]"));
}

#[test]
fn hstore_masks_keys_and_values() {
    let m = masker(&["customers.name"]);
    let out = mask(
        &m,
        &Shape::Hstore,
        r#""id"=>"1", "name"=>"Ada", "email"=>"ada@example.com", "x"=>NULL, "bob@example.org"=>"k""#,
    )
    .unwrap();
    let pairs = parse_hstore(out.as_bytes()).unwrap();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k.as_bytes())
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("name"), Some(Some(b"****".to_vec())));
    assert_eq!(get("email"), Some(Some(b"***@example.com".to_vec())));
    assert_eq!(get("x"), Some(None));
    assert_eq!(get("***@example.org"), Some(Some(b"k".to_vec())));
    assert_eq!(pairs.len(), 5);
}

#[test]
fn malformed_values_never_pass_what_a_detector_finds() {
    let m = masker(&[]);
    for (shape, v) in [
        (text_array(), "{ada@example.com"),
        (text_array(), "{\"ada@example.com}"),
        (text_array(), "{a,,ada@example.com}"),
        (Shape::Record(None), "(ada@example.com"),
        (Shape::Json, "{\"a\":\"ada@example.com\""),
        (Shape::Hstore, "a=>ada@example.com,,"),
    ] {
        assert_eq!(mask(&m, &shape, v), None, "{v}");
    }
    // Deep nesting is judged whole, not followed until the stack runs out.
    let deep = format!(
        "{}ada@example.com{}",
        "{".repeat(10_000),
        "}".repeat(10_000)
    );
    assert_eq!(mask(&m, &text_array(), &deep), None);
    let deep = format!(
        "{}\"ada@example.com\"{}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(mask(&m, &Shape::Json, &deep), None);
}

// ---- property tests: generated values of every shape ----

/// Element contents: sensitive values, syntax characters, and plain words.
fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "ada@example.com",
            "{bob@example.org}",
            "4111 1111 1111 1111",
            "4111111111111111",
            "536-22-8457",
            "(555) 123-4567",
            "GB82WEST12345698765432",
            "AKIAIOSFODNN7EXAMPLE",
            "NULL",
            "null",
            "",
            " ",
            "a,b",
            "a;b",
            "\"quoted\"",
            "back\\slash",
            "{",
            "}",
            "(",
            ")",
            "=>",
            "plain",
            "São Paulo",
        ])
        .prop_map(String::from),
        "[a-z@.,;{}()\"\\\\ 0-9=>-]{0,24}",
    ]
}

fn needs_array_quotes(s: &str, delim: char) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.chars()
            .any(|c| matches!(c, '"' | '\\' | '{' | '}') || c == delim || c.is_ascii_whitespace())
}

/// An array literal as `array_out` writes it.
fn array_text(items: &[Option<String>], delim: char) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|e| match e {
            None => "NULL".into(),
            Some(s) if needs_array_quotes(s, delim) => {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
            }
            Some(s) => s.clone(),
        })
        .collect();
    format!("{{{}}}", parts.join(&delim.to_string()))
}

/// A row literal as `record_out` writes it.
fn record_text(fields: &[Option<String>]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| match f {
            None => String::new(),
            Some(s)
                if s.is_empty()
                    || s.chars().any(|c| {
                        matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_ascii_whitespace()
                    }) =>
            {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\"\""))
            }
            Some(s) => s.clone(),
        })
        .collect();
    format!("({})", parts.join(","))
}

fn hstore_text(pairs: &[(String, Option<String>)]) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    pairs
        .iter()
        .map(|(k, v)| match v {
            None => format!("{}=>NULL", q(k)),
            Some(v) => format!("{}=>{}", q(k), q(v)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        content().prop_map(serde_json::Value::from),
        proptest::sample::select(vec![
            4111111111111111i64,
            42,
            -7,
            5500000000000004,
            1234567890123
        ])
        .prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::Value::Bool(true)),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            proptest::collection::vec(("k[0-9]{1,3}", inner), 0..5)
                .prop_map(|kv| { serde_json::Value::Object(kv.into_iter().collect()) }),
        ]
    })
}

/// The same structure: arrays of the same lengths, objects with the same keys, scalars where
/// scalars were; and nothing a detector finds in any string or number.
fn same_structure(m: &Masker, a: &serde_json::Value, b: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value as V;
    match (a, b) {
        (V::Array(x), V::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .try_for_each(|(x, y)| same_structure(m, x, y)),
        (V::Object(x), V::Object(y)) if x.len() == y.len() => {
            x.iter().zip(y).try_for_each(|((kx, x), (ky, y))| {
                if kx != ky {
                    return Err(format!("key {kx} became {ky}"));
                }
                same_structure(m, x, y)
            })
        }
        (V::Number(_), V::Null) => Ok(()),
        (V::Number(_), V::Number(n)) if !m.number_detected(n.to_string().as_bytes()) => Ok(()),
        (V::String(_), V::String(s)) if !m.detects(s.as_bytes()) => Ok(()),
        (V::Null, V::Null) | (V::Bool(_), V::Bool(_)) => Ok(()),
        _ => Err(format!("{a} became {b}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn masked_arrays_parse_to_the_same_elements(
        items in proptest::collection::vec(proptest::option::weighted(0.85, content()), 0..8),
        semicolon in proptest::bool::ANY,
    ) {
        let m = masker(&[]);
        let delim = if semicolon { ';' } else { ',' };
        let shape = Shape::Array { elem: Arc::new(Shape::Text), delim: delim as u8 };
        let text = array_text(&items, delim);
        let out = mask(&m, &shape, &text).expect("a well-formed array is never withheld");
        let got = elems(&out, delim as u8);
        prop_assert_eq!(got.len(), items.len(), "{} -> {}", text, out);
        for (g, want) in got.iter().zip(&items) {
            prop_assert_eq!(g.is_none(), want.is_none(), "{} -> {}", text, out);
            if let Some(g) = g {
                prop_assert!(!m.detects(g.as_bytes()), "{} -> {}", text, out);
            }
        }
        prop_assert_eq!(mask(&m, &shape, &out), Some(out.clone()), "idempotent");
    }

    #[test]
    fn masked_rows_parse_to_the_same_fields(
        fields in proptest::collection::vec(proptest::option::weighted(0.85, content()), 1..8),
    ) {
        let m = masker(&[]);
        let text = record_text(&fields);
        let shape = Shape::Record(Some(fields.iter().map(|_| Field::plain(Shape::Text)).collect()));
        let out = mask(&m, &shape, &text).expect("a well-formed row is never withheld");
        let got = parse_record(out.as_bytes()).expect("still a row");
        prop_assert_eq!(got.len(), fields.len(), "{} -> {}", text, out);
        for (g, want) in got.iter().zip(&fields) {
            // An empty string and NULL differ only by quotes, which are kept.
            prop_assert_eq!(g.is_none(), want.is_none(), "{} -> {}", text, out);
            if let Some(g) = g {
                prop_assert!(!m.detects(g), "{} -> {}", text, out);
            }
        }
    }

    #[test]
    fn masked_arrays_of_rows_keep_both_levels(
        rows in proptest::collection::vec(
            proptest::collection::vec(proptest::option::weighted(0.85, content()), 2..4), 0..4),
    ) {
        let m = masker(&[]);
        let width = 4;
        let rows: Vec<Vec<Option<String>>> = rows
            .into_iter()
            .map(|mut r| { r.resize(width, None); r })
            .collect();
        let items: Vec<Option<String>> = rows.iter().map(|r| Some(record_text(r))).collect();
        let text = array_text(&items, ',');
        let fields: Arc<[Field]> = (0..width).map(|_| Field::plain(Shape::Text)).collect();
        let shape = Shape::Array { elem: Arc::new(Shape::Record(Some(fields))), delim: b',' };
        let out = mask(&m, &shape, &text).expect("not withheld");
        let got = elems(&out, b',');
        prop_assert_eq!(got.len(), rows.len());
        for (g, want) in got.iter().zip(&rows) {
            let g = g.as_ref().expect("rows are not null");
            let f = parse_record(g.as_bytes()).expect("a row");
            prop_assert_eq!(f.len(), want.len());
            for (x, y) in f.iter().zip(want) {
                prop_assert_eq!(x.is_none(), y.is_none());
                if let Some(x) = x {
                    prop_assert!(!m.detects(x));
                }
            }
        }
    }

    #[test]
    fn masked_json_keeps_its_structure(v in json_value()) {
        let m = masker(&[]);
        for text in [v.to_string(), serde_json::to_string_pretty(&v).unwrap()] {
            let out = mask(&m, &Shape::Json, &text).expect("valid JSON is never withheld");
            let back: serde_json::Value = serde_json::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            same_structure(&m, &v, &back).map_err(TestCaseError::fail)?;
            prop_assert_eq!(mask(&m, &Shape::Json, &out), Some(out.clone()), "idempotent");
        }
    }

    #[test]
    fn masked_hstore_keeps_its_pairs(
        pairs in proptest::collection::vec(
            (content(), proptest::option::weighted(0.85, content())), 0..6),
    ) {
        let m = masker(&[]);
        let text = hstore_text(&pairs);
        let out = mask(&m, &Shape::Hstore, &text).expect("never withheld");
        let got = parse_hstore(out.as_bytes()).expect("still an hstore");
        prop_assert_eq!(got.len(), pairs.len(), "{} -> {}", text, out);
        for ((k, v), (_, want)) in got.iter().zip(&pairs) {
            prop_assert!(!m.detects(k));
            prop_assert_eq!(v.is_none(), want.is_none());
            if let Some(v) = v {
                prop_assert!(!m.detects(v));
            }
        }
    }

    /// Arbitrary bytes as any shape: never a panic, and what comes out (unless withheld) holds
    /// nothing a detector finds when read as text.
    #[test]
    fn arbitrary_text_never_leaks_through_any_shape(
        v in "[{}()\\[\\]:=>,;\" \\\\a-z0-9@.NUL-]{0,40}",
        which in 0usize..6,
    ) {
        let m = masker(&["name"]);
        let shape = match which {
            0 => text_array(),
            1 => Shape::Record(None),
            2 => Shape::Json,
            3 => Shape::Hstore,
            4 => Shape::Unknown,
            _ => Shape::Array { elem: Arc::new(Shape::Record(None)), delim: b',' },
        };
        let _ = mask(&m, &shape, &v);
    }
}
