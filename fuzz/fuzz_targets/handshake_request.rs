//! The server's side of the opening handshake on arbitrary bytes:
//! `parse_request_head`, `UpgradeRequest::from_http`, `accept` and
//! `reject_error`.
//!
//! Input layout: byte 0 picks `max_head_bytes` (bit 7: default, else
//! 8 * low bits), byte 1 `max_headers` (bit 7: default, else low 5 bits),
//! byte 2 the largest chunk (0: one chunk), bytes 3-4 the chunking seed,
//! byte 5 which offered subprotocol to accept, then the request bytes.
//!
//! Checks: no panic; parsing any prefix (as a server reading a chunk at a
//! time would) gives `None` or exactly the result of parsing everything;
//! a parsed head respects the limits; an accepted request answers 101 with
//! the right `Sec-WebSocket-Accept` and only an offered subprotocol, and
//! the response parses back; every error's refusal is a well-formed HTTP
//! response with the error's status.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ws_proto::handshake::{
    accept_key, parse_request_head, reject_error, write_response, Accept, ClientHandshake,
    ClientRequest, Limits, UpgradeRequest,
};
use ws_proto::http::{self, StatusCode};
use ws_proto::HandshakeError;
use ws_proto_fuzz::Chunker;

const HEADER: usize = 6;

type Parsed = Result<Option<(http::Request<()>, usize)>, HandshakeError>;

fn summary(r: &Parsed) -> String {
    match r {
        Ok(None) => "incomplete".into(),
        Ok(Some((req, n))) => format!(
            "{} {} {:?} {:?} {n}",
            req.method(),
            req.uri(),
            req.version(),
            req.headers()
        ),
        Err(e) => format!("{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let mut limits = Limits::default();
    if at(0) & 0x80 == 0 {
        limits.max_head_bytes = usize::from(at(0) & 0x7f) * 8;
    }
    if at(1) & 0x80 == 0 {
        limits.max_headers = usize::from(at(1) & 0x1f);
    }
    let chunk_max = at(2);
    let seed = u64::from(u16::from_le_bytes([at(3), at(4)]));
    let choice = usize::from(at(5));
    let input = data.get(HEADER..).unwrap_or(&[]);

    let full = parse_request_head(input, &limits);
    let full_summary = summary(&full);
    let mut end = 0;
    for chunk in Chunker::new(seed, chunk_max).split(input) {
        end += chunk.len();
        let r = parse_request_head(&input[..end], &limits);
        if !matches!(r, Ok(None)) {
            assert_eq!(
                summary(&r),
                full_summary,
                "prefix of {end} of {} bytes",
                input.len()
            );
        }
    }

    match full {
        Ok(None) => assert!(
            input.len() <= limits.max_head_bytes,
            "incomplete past the limit"
        ),
        Ok(Some((req, n))) => {
            assert!(
                n <= input.len() && n <= limits.max_head_bytes,
                "head of {n} bytes"
            );
            assert!(
                req.headers().len() <= limits.max_headers,
                "too many headers accepted"
            );
            match UpgradeRequest::from_http(&req) {
                Ok(up) => accepted(&up, choice),
                Err(e) => refused(&e),
            }
        }
        Err(e) => refused(&e),
    }
});

/// A client's response parser, to read back what the server wrote.
fn client_parser() -> &'static ClientHandshake {
    static PARSER: OnceLock<ClientHandshake> = OnceLock::new();
    PARSER.get_or_init(|| {
        let uri: http::Uri = "ws://example.com/".parse().expect("uri");
        ClientRequest::new(uri).expect("request").into_handshake().1
    })
}

fn accepted(up: &UpgradeRequest, choice: usize) {
    let req = up.request();
    assert_eq!(req.method(), http::Method::GET);
    assert!(req.version() >= http::Version::HTTP_11);
    assert_eq!(
        up.key().len(),
        24,
        "key {:?} is not 16 bytes in base64",
        up.key()
    );
    for p in up.protocols() {
        assert!(
            !p.is_empty() && !p.contains(',') && p.trim() == p,
            "protocol token {p:?}"
        );
    }

    let resp = up
        .accept(&Accept::default())
        .expect("accept without a subprotocol");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        resp.headers()
            .get("sec-websocket-accept")
            .and_then(|v| v.to_str().ok()),
        Some(accept_key(up.key().as_bytes()).as_str())
    );
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    parse_back(&resp);

    if !up.protocols().is_empty() {
        let p = up.protocols()[choice % up.protocols().len()].clone();
        assert_eq!(up.select_protocol(&[p.as_str()]), Some(p.as_str()));
        let resp = up
            .accept(&Accept::default().protocol(p.clone()))
            .expect("accept an offered subprotocol");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(p.as_str())
        );
        parse_back(&resp);
    }
    let unoffered = "x-not-offered";
    if !up.protocols().iter().any(|p| p == unoffered) {
        match up.accept(&Accept::default().protocol(unoffered)) {
            Err(HandshakeError::ProtocolNotOffered(p)) => assert_eq!(p, unoffered),
            other => panic!("accepting an unoffered subprotocol gave {other:?}"),
        }
    }
}

/// The serialized response parses back to the same status and headers.
fn parse_back(resp: &http::Response<()>) {
    let bytes = write_response(resp, b"");
    let (back, n) = client_parser()
        .parse_response_head(&bytes)
        .expect("our response parses")
        .expect("our response is complete");
    assert_eq!(n, bytes.len());
    assert_eq!(back.status(), resp.status());
    assert_eq!(back.headers(), resp.headers());
}

fn refused(e: &HandshakeError) {
    let bytes = reject_error(e);
    let (resp, n) = client_parser()
        .parse_response_head(&bytes)
        .unwrap_or_else(|err| panic!("refusal for {e:?} does not parse: {err:?}"))
        .expect("refusal is complete");
    assert_eq!(resp.status(), e.status(), "status of the refusal for {e:?}");
    assert!(resp.status().is_client_error() || resp.status().is_server_error());
    let body = &bytes[n..];
    assert_eq!(body, format!("{e}\n").as_bytes());
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok());
    assert_eq!(len, Some(body.len().to_string().as_str()));
    match resp.status() {
        StatusCode::UPGRADE_REQUIRED => {
            assert_eq!(
                resp.headers()
                    .get("sec-websocket-version")
                    .map(|v| v.as_bytes()),
                Some(&b"13"[..])
            )
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            assert_eq!(
                resp.headers().get("allow").map(|v| v.as_bytes()),
                Some(&b"GET"[..])
            )
        }
        _ => {}
    }
}
