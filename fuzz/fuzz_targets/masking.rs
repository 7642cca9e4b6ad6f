//! Arbitrary bytes through the content detectors, with every detector enabled, once with the
//! default renderings and once with a custom replacement. Masking must settle: the output is
//! not detected again, and masking it again changes nothing.
#![no_main]

use std::sync::LazyLock;

use hoop_server::policy::masking::{Detector, MaskCounts, Masker, MaskingConfig};
use libfuzzer_sys::fuzz_target;

fn masker(replacement: Option<&str>) -> Masker {
    let set = MaskingConfig {
        name: "fuzz".into(),
        detectors: Detector::ALL.iter().map(|d| d.as_str().to_string()).collect(),
        columns: Vec::new(),
        replacement: replacement.map(String::from),
    };
    Masker::compile(&[set]).expect("all detectors compile")
}

static DEFAULT: LazyLock<Masker> = LazyLock::new(|| masker(None));
static CUSTOM: LazyLock<Masker> = LazyLock::new(|| masker(Some("[hidden]")));

fn check(m: &Masker, data: &[u8]) {
    let mut counts = MaskCounts::default();
    let mut out = Vec::new();
    if !m.mask_into(data, &mut out, &mut counts) {
        // Nothing matched: the value goes out as it is, so nothing may be detected in it.
        assert!(out.is_empty(), "mask_into wrote output but reported no match");
        assert_eq!(counts.total(), 0);
        assert!(!m.detects(data), "detects() finds what mask_into() did not");
        return;
    }
    assert!(counts.total() > 0, "a match was masked but not counted");
    assert!(!m.detects(&out), "masked output is still detected");
    let mut again = Vec::new();
    let mut counts2 = MaskCounts::default();
    let changed = m.mask_into(&out, &mut again, &mut counts2);
    assert!(
        !changed || again == out,
        "masking is not idempotent: second pass changed the output"
    );
}

fuzz_target!(|data: &[u8]| {
    check(&DEFAULT, data);
    check(&CUSTOM, data);
});
