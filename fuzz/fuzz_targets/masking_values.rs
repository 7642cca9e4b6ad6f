//! Arbitrary text as a structured value (array, row, JSON, hstore, unknown, array of rows,
//! number; the first byte picks which), masked with every detector and a column rule on
//! `name`. Masking must never panic, must settle (masking the output again changes nothing),
//! and a value that parses as an array, row or hstore must come out with the same elements
//! (count, and NULLs kept), none of which a detector still finds in arrays and hstores.
#![no_main]

use std::sync::{Arc, LazyLock};

use hoop_server::policy::masking::{
    Detector, MaskCounts, Masked, Masker, MaskingConfig, Shape, parse_array, parse_hstore,
    parse_record,
};
use libfuzzer_sys::fuzz_target;

static MASKER: LazyLock<Masker> = LazyLock::new(|| {
    Masker::compile(&[MaskingConfig {
        name: "fuzz".into(),
        detectors: Detector::ALL.iter().map(|d| d.as_str().to_string()).collect(),
        columns: vec!["name".into()],
        replacement: None,
    }])
    .expect("compiles")
});

fn shape(which: u8) -> Shape {
    let text_array = Shape::Array {
        elem: Arc::new(Shape::Text),
        delim: b',',
    };
    match which % 7 {
        0 => text_array,
        1 => Shape::Record(None),
        2 => Shape::Json,
        3 => Shape::Hstore,
        4 => Shape::Unknown,
        5 => Shape::Array {
            elem: Arc::new(Shape::Record(None)),
            delim: b',',
        },
        _ => Shape::Number,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    let m = &*MASKER;
    let shape = shape(which);
    let mut out = Vec::new();
    let mut counts = MaskCounts::default();
    let result = m.mask_as(&shape, value, &mut out, &mut counts);
    let masked: &[u8] = match result {
        Masked::Same => value,
        Masked::Changed => &out,
        Masked::Null => return,
    };
    // Settled: masking what came out changes nothing.
    let mut again = Vec::new();
    let second = m.mask_as(&shape, masked, &mut again, &mut MaskCounts::default());
    assert!(
        second == Masked::Same || (second == Masked::Changed && again == masked),
        "not settled: {:?} -> {:?} -> {:?}",
        String::from_utf8_lossy(value),
        String::from_utf8_lossy(masked),
        String::from_utf8_lossy(&again)
    );
    // Same structure, nothing detected inside.
    match which % 7 {
        0 => {
            if let Some((before, _)) = parse_array(value, b',') {
                let (after, _) = parse_array(masked, b',').expect("still an array");
                assert_eq!(before.len(), after.len(), "element count");
                for (b, a) in before.iter().zip(&after) {
                    assert_eq!(b.is_none(), a.is_none(), "NULLs kept");
                    if let Some(a) = a {
                        assert!(!m.detects(a), "element still detected");
                    }
                }
            }
        }
        1 => {
            if let Some(before) = parse_record(value) {
                let after = parse_record(masked).expect("still a row");
                assert_eq!(before.len(), after.len(), "field count");
                for (b, a) in before.iter().zip(&after) {
                    // A NULL stays NULL; a field of unknown type that reads as a number
                    // holding a card is withheld (becomes NULL).
                    if b.is_none() {
                        assert!(a.is_none(), "NULLs kept");
                    }
                }
            }
        }
        3 => {
            if let Some(before) = parse_hstore(value) {
                let after = parse_hstore(masked).expect("still an hstore");
                assert_eq!(before.len(), after.len(), "pair count");
                for ((_, b), (k, a)) in before.iter().zip(&after) {
                    assert_eq!(b.is_none(), a.is_none(), "NULLs kept");
                    assert!(!m.detects(k), "key still detected");
                    if let Some(a) = a {
                        assert!(!m.detects(a), "value still detected");
                    }
                }
            }
        }
        _ => {}
    }
});
