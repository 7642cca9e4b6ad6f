//! Client-to-gateway byte stream: startup-phase packets (SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage), then tagged frames, each handed to the codec's parser for
//! its tag. No input may panic; parsed startup packets must survive a re-encode.
#![no_main]

use bytes::BytesMut;
use hoop_server::proxy::postgres::codec::{
    self, FrameError, Limits, Startup, bind_msg, execute_portal, frame_len, name_after_kind,
    parse_msg, parse_param_types, parse_startup, query_text, startup_frame_len,
};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_message: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;

    // Startup phase: SSL/GSSENC requests are followed by another startup packet, a
    // CancelRequest ends the connection, a StartupMessage moves on to tagged frames.
    loop {
        let n = match startup_frame_len(rest, LIMITS) {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => return,
        };
        assert!(n >= 8 && n <= rest.len() && n <= LIMITS.max_message);
        let (packet, tail) = rest.split_at(n);
        rest = tail;
        match parse_startup(packet) {
            Ok(Startup::Ssl | Startup::GssEnc) => continue,
            Ok(Startup::Cancel { pid, key }) => {
                let mut b = BytesMut::new();
                codec::put_cancel(&mut b, pid, key);
                assert_eq!(parse_startup(&b), Ok(Startup::Cancel { pid, key }));
                return;
            }
            Ok(Startup::Startup(params)) => {
                check_startup_round_trip(&params);
                break;
            }
            Err(_) => return,
        }
    }

    // Tagged frames.
    while let Ok(Some(n)) = frame_len(rest, LIMITS) {
        assert!(n >= 5 && n <= rest.len() && n <= LIMITS.max_message);
        let (msg, tail) = rest.split_at(n);
        rest = tail;
        match msg[0] {
            b'Q' => {
                if let Ok(q) = query_text(msg) {
                    assert!(!q.contains(&0));
                }
            }
            b'P' => {
                if let Ok((name, q)) = parse_msg(msg) {
                    assert!(!name.contains(&0) && !q.contains(&0));
                }
                if let Ok(types) = parse_param_types(msg) {
                    assert!(types.len() * 4 <= msg.len());
                }
            }
            b'B' => {
                if let Ok(b) = bind_msg(msg) {
                    assert!(!b.portal.contains(&0) && !b.statement.contains(&0));
                    assert!(b.result_formats.len() % 2 == 0);
                    let n = b.result_formats.len() / 2;
                    // Column indexes come from a RowDescription: at most i16::MAX of them.
                    for i in [0, 1, 2, 3, n, n + 1, i16::MAX as usize] {
                        let _ = b.result_format(i);
                        let _ = b.param_format(i);
                    }
                    for p in b.params.iter().flatten() {
                        assert!(p.len() <= msg.len());
                    }
                }
            }
            b'D' | b'C' => {
                if let Some(name) = name_after_kind(msg) {
                    assert!(!name.contains(&0));
                }
            }
            b'E' => {
                if let Some(portal) = execute_portal(msg) {
                    assert!(!portal.contains(&0));
                }
            }
            _ => {}
        }
    }
});

/// parse(put(parse(x))) == parse(x): the gateway re-encodes the client's parameters upstream.
fn check_startup_round_trip(params: &[(String, String)]) {
    let borrowed: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut b = BytesMut::new();
    codec::put_startup(&mut b, &borrowed);
    let n = startup_frame_len(&b, Limits { max_message: usize::MAX });
    assert_eq!(n, Ok(Some(b.len())), "re-encoded StartupMessage frames wrongly");
    let again: Result<Startup, FrameError> = parse_startup(&b);
    assert_eq!(again, Ok(Startup::Startup(params.to_vec())));
}
