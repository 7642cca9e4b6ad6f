//! Server-to-gateway byte stream: tagged frames, each handed to the codec's parser for its
//! tag (the messages the gateway reads: RowDescription, DataRow, ErrorResponse/NoticeResponse,
//! Authentication, BackendKeyData, CommandComplete, ParameterDescription). No input may panic;
//! what parses must survive the codec's own encoders (the gateway rewrites DataRows and writes
//! these messages).
#![no_main]

use bytes::BytesMut;
use hoop_server::proxy::postgres::codec::{
    self, Limits, auth_request, backend_key, command_tag, data_row_values, error_fields,
    frame_len, param_description, row_description,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_message: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(n)) = frame_len(rest, LIMITS) {
        assert!(n >= 5 && n <= rest.len() && n <= LIMITS.max_message);
        let (msg, tail) = rest.split_at(n);
        rest = tail;
        match msg[0] {
            b'T' => {
                if let Ok(cols) = row_description(msg) {
                    let declared = i16::from_be_bytes([msg[5], msg[6]]).max(0) as usize;
                    assert_eq!(cols.len(), declared);
                }
            }
            b'D' => data_row(msg),
            b't' => {
                if let Ok(types) = param_description(msg) {
                    let declared = i16::from_be_bytes([msg[5], msg[6]]).max(0) as usize;
                    assert_eq!(types.len(), declared);
                }
            }
            tag @ (b'E' | b'N') => {
                let (code, text) = error_fields(msg);
                let mut b = BytesMut::new();
                codec::put_error(&mut b, tag, "ERROR", &code, &text, None);
                assert_eq!(frame_len(&b, unlimited()), Ok(Some(b.len())));
                assert_eq!(error_fields(&b), (code, text));
            }
            b'R' => {
                if let Ok((code, extra)) = auth_request(msg) {
                    let mut b = BytesMut::new();
                    codec::put_auth(&mut b, code, extra);
                    assert_eq!(frame_len(&b, unlimited()), Ok(Some(b.len())));
                    assert_eq!(auth_request(&b), Ok((code, extra)));
                }
            }
            b'K' => {
                if let Ok((pid, key)) = backend_key(msg) {
                    let mut b = BytesMut::new();
                    codec::put_backend_key(&mut b, pid, key);
                    assert_eq!(frame_len(&b, unlimited()), Ok(Some(b.len())));
                    assert_eq!(backend_key(&b), Ok((pid, key)));
                }
            }
            b'C' => {
                let tag = command_tag(msg);
                let mut body = tag.clone().into_bytes();
                body.push(0);
                let mut b = BytesMut::new();
                codec::put_message(&mut b, b'C', &body);
                assert_eq!(frame_len(&b, unlimited()), Ok(Some(b.len())));
                assert_eq!(command_tag(&b), tag);
            }
            _ => {}
        }
    }
});

fn unlimited() -> Limits {
    Limits {
        max_message: usize::MAX,
    }
}

/// Iterates every value; a row that parses whole is rebuilt as the gateway rebuilds masked
/// rows and must read back the same.
fn data_row(msg: &[u8]) {
    let Ok(it) = data_row_values(msg) else { return };
    let declared = i16::from_be_bytes([msg[5], msg[6]]).max(0) as usize;
    let mut values = Vec::new();
    let mut whole = true;
    let mut seen = 0usize;
    for v in it {
        seen += 1;
        match v {
            Ok(v) => values.push(v),
            Err(_) => whole = false,
        }
    }
    assert_eq!(seen, declared, "DataRow iterator yielded a wrong number of items");
    if !whole {
        return;
    }
    let mut b = BytesMut::new();
    let start = codec::begin_row(&mut b, values.len() as i16);
    for v in &values {
        codec::put_value(&mut b, *v);
    }
    codec::end_row(&mut b, start);
    assert_eq!(frame_len(&b, unlimited()), Ok(Some(b.len())));
    let again: Vec<Option<&[u8]>> = data_row_values(&b)
        .expect("rebuilt DataRow has a header")
        .collect::<Result<_, _>>()
        .expect("rebuilt DataRow parses");
    assert_eq!(again, values);
}
