//! The client's side of the opening handshake on arbitrary bytes:
//! `ClientRequest::into_handshake`, then `ClientHandshake::parse_response_head`
//! and `validate` on the server's supposed answer.
//!
//! Input layout: byte 0 flags (bits 0-1 which subprotocols to offer, bit 2
//! offer an extension), byte 1 picks `max_head_bytes` (bit 7: default, else
//! 8 * low bits), byte 2 `max_headers` (bit 7: default, else low 5 bits),
//! byte 3 the largest chunk (0: one chunk), bytes 4-5 the chunking seed,
//! byte 6 the subprotocol our own server accepts (bit 7: none), then the
//! response bytes. Every `{accept}` in them is replaced by the right
//! `Sec-WebSocket-Accept` value for this handshake's random key, so the
//! fuzzer can reach the checks behind it.
//!
//! Checks: no panic; the client's request is one our server parses and
//! accepts, and our server's answer validates with the chosen subprotocol;
//! parsing any prefix of the response gives `None` or exactly the result of
//! parsing everything; a validated response really is a 101 with the
//! headers §4.1 requires, an offered subprotocol and no unoffered extension;
//! `Refused` exactly for statuses other than 101.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::handshake::{
    accept_key, parse_request_head, write_response, Accept, ClientRequest, Limits, UpgradeRequest,
};
use ws_proto::http::{self, HeaderValue, StatusCode};
use ws_proto::HandshakeError;
use ws_proto_fuzz::Chunker;

const HEADER: usize = 7;
const MARKER: &[u8] = b"{accept}";

type Parsed = Result<Option<(http::Response<()>, usize)>, HandshakeError>;

fn summary(r: &Parsed) -> String {
    match r {
        Ok(None) => "incomplete".into(),
        Ok(Some((resp, n))) => format!(
            "{} {:?} {:?} {n}",
            resp.status(),
            resp.version(),
            resp.headers()
        ),
        Err(e) => format!("{e:?}"),
    }
}

fn replace_all(input: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let offered: &[&str] = match at(0) & 3 {
        0 => &[],
        1 => &["chat"],
        2 => &["chat", "superchat"],
        _ => &["v2.bin", "chat", "superchat"],
    };
    let extensions = at(0) & 4 != 0;
    let mut limits = Limits::default();
    if at(1) & 0x80 == 0 {
        limits.max_head_bytes = usize::from(at(1) & 0x7f) * 8;
    }
    if at(2) & 0x80 == 0 {
        limits.max_headers = usize::from(at(2) & 0x1f);
    }
    let chunk_max = at(3);
    let seed = u64::from(u16::from_le_bytes([at(4), at(5)]));
    let server_choice = at(6);
    let input = data.get(HEADER..).unwrap_or(&[]);

    let uri: http::Uri = "ws://example.com/chat?x=1".parse().expect("uri");
    let mut request = ClientRequest::new(uri).expect("request").limits(limits);
    for p in offered {
        request = request.protocol(*p);
    }
    if extensions {
        request = request.extensions(HeaderValue::from_static("permessage-deflate"));
    }
    let (request_bytes, hs) = request.into_handshake();
    assert_eq!(hs.offered_protocols(), offered);

    // Our own server must accept our own client's request.
    let (req, n) = parse_request_head(&request_bytes, &Limits::default())
        .expect("our request parses")
        .expect("our request is complete");
    assert_eq!(n, request_bytes.len());
    let up = UpgradeRequest::from_http(&req).expect("our server accepts our request");
    assert_eq!(up.protocols(), offered);
    assert_eq!(up.path(), "/chat");
    assert_eq!(up.query(), Some("x=1"));
    let accept = accept_key(up.key().as_bytes());

    // And our client must accept our server's answer (when the answer fits
    // the client's limits).
    let chosen = (server_choice & 0x80 == 0 && !offered.is_empty())
        .then(|| offered[usize::from(server_choice) % offered.len()]);
    let mut decision = Accept::default();
    if let Some(p) = chosen {
        decision = decision.protocol(p);
    }
    let answer = write_response(&up.accept(&decision).expect("accept"), b"");
    match hs.parse_response_head(&answer) {
        Ok(Some((resp, n))) => {
            assert_eq!(n, answer.len());
            let done = hs
                .validate(resp)
                .expect("our client accepts our server's answer");
            assert_eq!(done.protocol(), chosen);
            assert!(done.extensions().is_none());
        }
        Ok(None) => panic!("our answer is incomplete"),
        Err(HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. }) => {
            assert!(answer.len() > limits.max_head_bytes || limits.max_headers < 4);
        }
        Err(e) => panic!("our answer does not parse: {e:?}"),
    }

    // Now the fuzzer's answer.
    let buf = replace_all(input, MARKER, accept.as_bytes());
    let full = hs.parse_response_head(&buf);
    let full_summary = summary(&full);
    let mut end = 0;
    for chunk in Chunker::new(seed, chunk_max).split(&buf) {
        end += chunk.len();
        let r = hs.parse_response_head(&buf[..end]);
        if !matches!(r, Ok(None)) {
            assert_eq!(
                summary(&r),
                full_summary,
                "prefix of {end} of {} bytes",
                buf.len()
            );
        }
    }
    let (resp, n) = match full {
        Ok(Some(x)) => x,
        Ok(None) => {
            assert!(
                buf.len() <= limits.max_head_bytes,
                "incomplete past the limit"
            );
            return;
        }
        Err(_) => return,
    };
    assert!(
        n <= buf.len() && n <= limits.max_head_bytes,
        "head of {n} bytes"
    );
    assert!(
        resp.headers().len() <= limits.max_headers,
        "too many headers accepted"
    );
    let status = resp.status();
    let headers = resp.headers().clone();
    match hs.validate(resp) {
        Ok(done) => {
            assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
            // On bytes, as the validator reads them: a list element with
            // obs-text (bytes 0x80-0xff) beside the token does not hide it.
            let has = |name: &str, token: &str| {
                headers.get_all(name).iter().any(|v| {
                    v.as_bytes()
                        .split(|&b| b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
                })
            };
            assert!(
                has("upgrade", "websocket"),
                "validated without Upgrade: websocket"
            );
            assert!(
                has("connection", "upgrade"),
                "validated without Connection: upgrade"
            );
            let accepts: Vec<_> = headers.get_all("sec-websocket-accept").iter().collect();
            assert_eq!(
                accepts.len(),
                1,
                "validated with {} accept headers",
                accepts.len()
            );
            assert_eq!(
                accepts[0].to_str().ok().map(str::trim),
                Some(accept.as_str())
            );
            // A value the client cannot read could hide a selected
            // subprotocol or extension: such a response must fail.
            let readable = |name: &str| headers.get_all(name).iter().all(|v| v.to_str().is_ok());
            assert!(
                readable("sec-websocket-protocol"),
                "validated an unreadable subprotocol"
            );
            assert!(
                readable("sec-websocket-extensions"),
                "validated an unreadable extension"
            );
            let named = |name: &str| {
                headers.get_all(name).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|s| s.split(',').any(|t| !t.trim().is_empty()))
                })
            };
            match done.protocol() {
                Some(p) => assert!(
                    offered.contains(&p),
                    "validated unoffered subprotocol {p:?}"
                ),
                None => assert!(
                    !named("sec-websocket-protocol"),
                    "a selected subprotocol was dropped"
                ),
            }
            if !extensions {
                assert!(
                    !named("sec-websocket-extensions"),
                    "validated an extension that was not offered"
                );
            }
        }
        Err(HandshakeError::Refused(r)) => {
            assert_ne!(
                status,
                StatusCode::SWITCHING_PROTOCOLS,
                "a 101 was rejected as a refusal"
            );
            assert_eq!(r.status(), status);
        }
        Err(_) => assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS),
    }
});
