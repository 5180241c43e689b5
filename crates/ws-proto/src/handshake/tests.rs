//! Tests of the opening handshake (§4): the server's parsing and checks of
//! a request, the client's request and checks of the response, and a whole
//! handshake between the two.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Buf;
use http::header::HeaderName;
use http::{HeaderValue, StatusCode, Version};

use super::*;
use crate::{Config, Connection, Event, Message, Role};

/// The key and accept value of §1.3.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The request of §1.2.
const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// A valid request's headers, in order.
fn base_headers() -> Vec<(&'static str, String)> {
    vec![
        ("Host", "server.example.com".into()),
        ("Upgrade", "websocket".into()),
        ("Connection", "Upgrade".into()),
        ("Sec-WebSocket-Key", KEY.into()),
        ("Sec-WebSocket-Version", "13".into()),
    ]
}

/// A request head with `request_line` and `headers`.
fn head(request_line: &str, headers: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The valid request with header `name` removed and `extra` added.
fn request_without(name: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers: Vec<_> = base_headers()
        .into_iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .collect();
    headers.extend(extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
    head("GET /chat HTTP/1.1", &headers)
}

/// Parse a whole request head and validate it as an upgrade.
fn upgrade(raw: &[u8]) -> Result<UpgradeRequest, HandshakeError> {
    let (request, len) = parse_request_head(raw, &Limits::default())?.expect("a whole head");
    assert_eq!(len, raw.len());
    UpgradeRequest::from_http(&request)
}

/// Parse a request head that must be valid and all of `raw`.
fn whole_head(raw: &[u8]) -> http::Request<()> {
    let (request, len) = parse_request_head(raw, &Limits::default())
        .unwrap()
        .expect("a whole head");
    assert_eq!(len, raw.len());
    request
}

/// The refusal for `err`, lowercased, for header checks.
fn refusal(err: &HandshakeError) -> String {
    String::from_utf8(reject_error(err))
        .unwrap()
        .to_ascii_lowercase()
}

fn assert_status(err: &HandshakeError, status: StatusCode) {
    assert_eq!(err.status(), status, "{err:?}");
    let expect = format!("http/1.1 {} ", status.as_u16());
    assert!(refusal(err).starts_with(&expect), "{}", refusal(err));
}

// ---- §1.3 ----

#[test]
fn rfc_1_3_accept_key() {
    assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
}

#[test]
fn generated_keys_are_fresh_16_byte_nonces() {
    let keys: Vec<_> = (0..16).map(|_| generate_key()).collect();
    for key in &keys {
        assert_eq!(BASE64.decode(key).unwrap().len(), 16);
        assert_eq!(key.len(), 24);
    }
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len());
}

// ---- server: parsing ----

#[test]
fn server_parses_one_byte_at_a_time() {
    for end in 0..RFC_REQUEST.len() {
        let partial = parse_request_head(&RFC_REQUEST[..end], &Limits::default()).unwrap();
        assert!(partial.is_none(), "complete after {end} bytes");
    }
    let req = upgrade(RFC_REQUEST).unwrap();
    assert_eq!(req.path(), "/chat");
    assert_eq!(req.query(), None);
    assert_eq!(req.key(), KEY);
    assert_eq!(req.request().version(), Version::HTTP_11);
    let response = req.accept(&Accept::default()).unwrap();
    assert_eq!(response.headers()[SEC_WEBSOCKET_ACCEPT], ACCEPT);
}

#[test]
fn head_too_large_is_431() {
    let limits = Limits {
        max_head_bytes: 100,
        ..Limits::default()
    };
    // Incomplete, and already over the limit.
    let mut raw = b"GET /chat HTTP/1.1\r\nX-Filler: ".to_vec();
    raw.resize(101, b'a');
    let err = parse_request_head(&raw, &limits).unwrap_err();
    assert!(matches!(err, HandshakeError::HeadTooLarge { limit: 100 }));
    assert_status(&err, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Incomplete at exactly the limit: wait for more.
    assert!(parse_request_head(&raw[..100], &limits).unwrap().is_none());
    // Complete in one read, but over the limit.
    let err = parse_request_head(RFC_REQUEST, &limits).unwrap_err();
    assert!(matches!(err, HandshakeError::HeadTooLarge { limit: 100 }));

    // The default limit, with a huge header.
    let mut headers = base_headers();
    headers.push(("Cookie", "a".repeat(20_000)));
    let raw = head("GET / HTTP/1.1", &headers);
    let err = parse_request_head(&raw, &Limits::default()).unwrap_err();
    assert!(matches!(err, HandshakeError::HeadTooLarge { limit: 16384 }));
    assert_status(&err, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[test]
fn too_many_headers_is_431() {
    let mut headers = base_headers();
    for i in 0..60 {
        headers.push(("X-Filler", i.to_string()));
    }
    let raw = head("GET / HTTP/1.1", &headers);
    let err = parse_request_head(&raw, &Limits::default()).unwrap_err();
    assert!(matches!(err, HandshakeError::TooManyHeaders { limit: 64 }));
    assert_status(&err, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // Exactly the limit is fine.
    let mut limits = Limits {
        max_headers: 5,
        ..Limits::default()
    };
    let raw = head("GET / HTTP/1.1", &base_headers());
    assert!(parse_request_head(&raw, &limits).unwrap().is_some());
    limits.max_headers = 4;
    let err = parse_request_head(&raw, &limits).unwrap_err();
    assert!(matches!(err, HandshakeError::TooManyHeaders { limit: 4 }));
}

#[test]
fn malformed_request_is_400() {
    for raw in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET /chat HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /chat HTTP/9.9\r\n\r\n",
    ] {
        let err = parse_request_head(raw, &Limits::default()).unwrap_err();
        assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
        assert_status(&err, StatusCode::BAD_REQUEST);
    }
}

// ---- server: §4.2.1 checks ----

#[test]
fn method_must_be_get() {
    for method in ["POST", "HEAD", "PUT", "get"] {
        let raw = head(&format!("{method} /chat HTTP/1.1"), &base_headers());
        let err = upgrade(&raw).unwrap_err();
        assert!(matches!(&err, HandshakeError::MethodNotGet(m) if m == method));
        assert_status(&err, StatusCode::METHOD_NOT_ALLOWED);
        assert!(refusal(&err).contains("\r\nallow: get\r\n"));
    }
}

#[test]
fn http_1_0_is_refused() {
    let raw = head("GET /chat HTTP/1.0", &base_headers());
    let err = upgrade(&raw).unwrap_err();
    assert!(matches!(err, HandshakeError::HttpVersion));
    assert_status(&err, StatusCode::HTTP_VERSION_NOT_SUPPORTED);
}

#[test]
fn missing_upgrade_is_not_an_upgrade() {
    for extra in [
        &[][..],
        &[("Upgrade", "h2c")],
        &[("Upgrade", "websocketx")],
        &[("Upgrade", "")],
    ] {
        let err = upgrade(&request_without("Upgrade", extra)).unwrap_err();
        assert!(matches!(err, HandshakeError::NotUpgrade), "{err:?}");
        assert_status(&err, StatusCode::BAD_REQUEST);
    }
}

#[test]
fn upgrade_and_connection_tokens_are_case_insensitive_list_items() {
    for (upgrade_value, connection_values) in [
        ("WebSocket", &["keep-alive, Upgrade"][..]),
        ("websocket", &["UPGRADE"]),
        ("h2c, WEBSOCKET", &["keep-alive,upgrade"]),
        ("websocket", &["keep-alive", "Upgrade"]),
        ("websocket", &["  upgrade  , close"]),
    ] {
        let mut headers: Vec<_> = base_headers()
            .into_iter()
            .filter(|(n, _)| *n != "Upgrade" && *n != "Connection")
            .collect();
        headers.push(("Upgrade", upgrade_value.into()));
        for c in connection_values {
            headers.push(("Connection", (*c).into()));
        }
        let raw = head("GET /chat HTTP/1.1", &headers);
        assert!(
            upgrade(&raw).is_ok(),
            "{upgrade_value} / {connection_values:?}"
        );
    }
}

#[test]
fn connection_must_hold_upgrade() {
    for extra in [
        &[][..],
        &[("Connection", "keep-alive")],
        &[("Connection", "Upgrades")],
        &[("Connection", "keep-alive"), ("Connection", "close")],
    ] {
        let err = upgrade(&request_without("Connection", extra)).unwrap_err();
        assert!(
            matches!(err, HandshakeError::InvalidHeader("Connection")),
            "{err:?}"
        );
        assert_status(&err, StatusCode::BAD_REQUEST);
    }
}

#[test]
fn missing_host_is_400() {
    let err = upgrade(&request_without("Host", &[])).unwrap_err();
    assert!(matches!(err, HandshakeError::MissingHeader("Host")));
    assert_status(&err, StatusCode::BAD_REQUEST);
}

#[test]
fn bad_key_is_400() {
    let seventeen = BASE64.encode([7u8; 17]);
    let fifteen = BASE64.encode([7u8; 15]);
    // Longer than the decoding buffer: an error, not a panic.
    let long = BASE64.encode([7u8; 200]);
    for key in [
        "c2hvcnQ=",
        "not base64 at all!!",
        "",
        &seventeen,
        &fifteen,
        &long,
    ] {
        let err = upgrade(&request_without(
            "Sec-WebSocket-Key",
            &[("Sec-WebSocket-Key", key)],
        ))
        .unwrap_err();
        assert!(
            matches!(err, HandshakeError::InvalidKey),
            "{key:?}: {err:?}"
        );
        assert_status(&err, StatusCode::BAD_REQUEST);
    }
    let err = upgrade(&request_without("Sec-WebSocket-Key", &[])).unwrap_err();
    assert!(matches!(err, HandshakeError::MissingHeader(_)), "{err:?}");
    assert_status(&err, StatusCode::BAD_REQUEST);
    let err = upgrade(&request_without(
        "Sec-WebSocket-Key",
        &[("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Key", KEY)],
    ))
    .unwrap_err();
    assert!(matches!(err, HandshakeError::InvalidHeader(_)), "{err:?}");
    assert_status(&err, StatusCode::BAD_REQUEST);
}

#[test]
fn other_versions_get_426_with_the_supported_version() {
    for extra in [
        &[("Sec-WebSocket-Version", "8")][..],
        &[("Sec-WebSocket-Version", "14")],
        &[("Sec-WebSocket-Version", "13, 8")],
        &[
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Version", "8"),
        ],
        &[],
    ] {
        let raw = request_without("Sec-WebSocket-Version", extra);
        let err = upgrade(&raw).unwrap_err();
        assert!(
            matches!(err, HandshakeError::UnsupportedVersion(_)),
            "{err:?}"
        );
        assert_status(&err, StatusCode::UPGRADE_REQUIRED);
        // §4.4: the answer names the versions the server supports.
        assert!(refusal(&err).contains("\r\nsec-websocket-version: 13\r\n"));
    }
    let err = upgrade(&request_without(
        "Sec-WebSocket-Version",
        &[("Sec-WebSocket-Version", "8")],
    ))
    .unwrap_err();
    assert!(matches!(&err, HandshakeError::UnsupportedVersion(v) if v == "8"));
}

// ---- server: the accept decision ----

#[test]
fn subprotocol_selection() {
    let raw = request_without(
        "",
        &[
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("Sec-WebSocket-Protocol", "v3.example"),
        ],
    );
    let req = upgrade(&raw).unwrap();
    assert_eq!(req.protocols(), ["chat", "superchat", "v3.example"]);
    // The client's order of preference wins.
    assert_eq!(req.select_protocol(&["superchat", "chat"]), Some("chat"));
    assert_eq!(req.select_protocol(&["v3.example"]), Some("v3.example"));
    assert_eq!(req.select_protocol(&["mqtt"]), None);
    assert_eq!(req.select_protocol::<&str>(&[]), None);

    let response = req
        .accept(&Accept::default().protocol("superchat"))
        .unwrap();
    assert_eq!(response.headers()[SEC_WEBSOCKET_PROTOCOL], "superchat");
    assert_eq!(
        response
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .count(),
        1
    );

    let err = req.accept(&Accept::default().protocol("mqtt")).unwrap_err();
    assert!(matches!(&err, HandshakeError::ProtocolNotOffered(p) if p == "mqtt"));
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // No choice, no header.
    let response = req.accept(&Accept::default()).unwrap();
    assert!(response.headers().get(SEC_WEBSOCKET_PROTOCOL).is_none());

    // A client that offered nothing cannot be given a protocol.
    let req = upgrade(&request_without("", &[])).unwrap();
    assert!(req.protocols().is_empty());
    assert!(req.accept(&Accept::default().protocol("chat")).is_err());
}

#[test]
fn origin_and_extension_offers_are_exposed() {
    let req = upgrade(RFC_REQUEST).unwrap();
    assert_eq!(req.origin(), Some("http://example.com"));
    assert_eq!(req.extension_offers().count(), 0);

    let raw = request_without(
        "",
        &[
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits",
            ),
            ("Sec-WebSocket-Extensions", "x-custom"),
        ],
    );
    let req = upgrade(&raw).unwrap();
    assert_eq!(req.origin(), None);
    assert_eq!(
        req.extension_offers().collect::<Vec<_>>(),
        ["permessage-deflate; client_max_window_bits", "x-custom"]
    );
}

#[test]
fn accept_response_bytes() {
    let req = upgrade(RFC_REQUEST).unwrap();
    let accept = Accept::default()
        .protocol("chat")
        .header(http::header::SET_COOKIE, HeaderValue::from_static("id=1"));
    let response = req.accept(&accept).unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let text = String::from_utf8(write_response(&response, b"")).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.ends_with("\r\n\r\n"));
    let lower = text.to_ascii_lowercase();
    for line in [
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=",
        "sec-websocket-protocol: chat",
        "set-cookie: id=1",
    ] {
        assert!(
            lower.contains(&format!("\r\n{line}\r\n")),
            "{line} in {text}"
        );
    }
}

#[test]
fn accept_bytes_are_the_serialized_accept() {
    let req = upgrade(RFC_REQUEST).unwrap();
    for accept in [
        Accept::default(),
        Accept::default().protocol("superchat"),
        Accept {
            extensions: Some(HeaderValue::from_static("permessage-deflate")),
            ..Accept::default()
        }
        .protocol("chat")
        .header(http::header::SET_COOKIE, HeaderValue::from_static("id=1"))
        .header(http::header::SET_COOKIE, HeaderValue::from_static("b=2"))
        .header(
            HeaderName::from_static("x-served-by"),
            HeaderValue::from_static("node 7"),
        ),
    ] {
        let response = req.accept(&accept).unwrap();
        assert_eq!(
            String::from_utf8(req.accept_bytes(&accept).unwrap()).unwrap(),
            String::from_utf8(write_response(&response, b"")).unwrap()
        );
    }
    let unoffered = Accept::default().protocol("mqtt");
    assert!(matches!(
        req.accept_bytes(&unoffered),
        Err(HandshakeError::ProtocolNotOffered(p)) if p == "mqtt"
    ));
}

#[test]
fn header_values_survive_parsing_byte_for_byte() {
    // Values are slices of one copy of the head: empty values, obs-text
    // (bytes >= 0x80) and values at the very end of the head included.
    let mut raw = request_without("", &[("X-Empty", ""), ("X-Spaces", "a  b")]);
    raw.truncate(raw.len() - 2);
    raw.extend_from_slice(b"X-Latin: caf\xe9\r\nX-Last: end\r\n\r\n");
    let request = whole_head(&raw);
    let h = request.headers();
    assert_eq!(h["x-empty"], "");
    assert_eq!(h["x-spaces"], "a  b");
    assert_eq!(h["x-latin"].as_bytes(), b"caf\xe9");
    assert_eq!(h["x-last"], "end");
    assert_eq!(h["sec-websocket-key"], KEY);
    // The parsed request no longer refers to the caller's buffer.
    raw.fill(b'#');
    assert_eq!(h["host"], "server.example.com");
}

#[test]
fn connection_token_found_beside_obs_text() {
    let raw = request_without("Connection", &[]);
    let mut raw = raw[..raw.len() - 2].to_vec();
    raw.extend_from_slice(b"Connection: x-\xe9t\xe9, upgrade\r\n\r\n");
    assert!(upgrade(&raw).is_ok());
}

#[test]
fn bytes_after_the_head_are_not_consumed() {
    // A client that sends its first frame right behind the request.
    let mut raw = RFC_REQUEST.to_vec();
    let mut client = Connection::new(Role::Client, Config::default());
    client.send(Message::text("early")).unwrap();
    let out = client.transmit();
    let frame = out.copy_to_bytes(out.remaining());
    raw.extend_from_slice(&frame);

    let (_, len) = parse_request_head(&raw, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(len, RFC_REQUEST.len());
    let mut server = Connection::new(Role::Server, Config::default());
    server.receive_data(&raw[len..]);
    assert_eq!(
        server.poll_event().unwrap(),
        Some(Event::Message(Message::text("early")))
    );
}

#[test]
fn request_from_another_http_stack() {
    let request = http::Request::builder()
        .uri("/feed?since=5")
        .header("host", "example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", KEY)
        .header("sec-websocket-version", "13")
        .body(String::from("ignored"))
        .unwrap();
    let req = UpgradeRequest::from_http(&request).unwrap();
    assert_eq!(req.path(), "/feed");
    assert_eq!(req.query(), Some("since=5"));
}

// ---- client ----

/// The key a client put in its request.
fn sent_key(request: &[u8]) -> String {
    let (req, _) = parse_request_head(request, &Limits::default())
        .unwrap()
        .unwrap();
    req.headers()[SEC_WEBSOCKET_KEY]
        .to_str()
        .unwrap()
        .to_owned()
}

fn response(status_line: &str, headers: &[(&str, String)]) -> Vec<u8> {
    head(status_line, headers)
}

fn validate(handshake: &ClientHandshake, raw: &[u8]) -> Result<UpgradeResponse, HandshakeError> {
    let (response, len) = handshake.parse_response_head(raw)?.expect("a whole head");
    assert_eq!(len, raw.len());
    handshake.validate(response)
}

/// A client offering `protocols`, and the headers of a valid 101 for it.
fn client(protocols: &[&str]) -> (ClientHandshake, Vec<(&'static str, String)>) {
    let mut request = ClientRequest::new("ws://example.com/chat".parse().unwrap()).unwrap();
    for p in protocols {
        request = request.protocol(*p);
    }
    let (bytes, handshake) = request.into_handshake();
    let accept = accept_key(sent_key(&bytes).as_bytes());
    let headers = vec![
        ("Upgrade", "websocket".to_owned()),
        ("Connection", "Upgrade".to_owned()),
        ("Sec-WebSocket-Accept", accept),
    ];
    (handshake, headers)
}

const SWITCHING: &str = "HTTP/1.1 101 Switching Protocols";

#[test]
fn client_request_has_every_required_header() {
    let (bytes, handshake) =
        ClientRequest::new("ws://example.com:8080/chat?room=1".parse().unwrap())
            .unwrap()
            .protocol("chat")
            .protocol("superchat")
            .origin(HeaderValue::from_static("http://example.com"))
            .extensions(HeaderValue::from_static("permessage-deflate"))
            .header(
                HeaderName::from_static("authorization"),
                HeaderValue::from_static("Bearer t"),
            )
            .into_handshake();
    assert!(bytes.starts_with(b"GET /chat?room=1 HTTP/1.1\r\n"));
    let req = whole_head(&bytes);
    let h = req.headers();
    assert_eq!(h["host"], "example.com:8080");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "Upgrade");
    assert_eq!(h["sec-websocket-version"], "13");
    assert_eq!(h["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(h["origin"], "http://example.com");
    assert_eq!(h["sec-websocket-extensions"], "permessage-deflate");
    assert_eq!(h["authorization"], "Bearer t");
    let key = BASE64.decode(h["sec-websocket-key"].as_bytes()).unwrap();
    assert_eq!(key.len(), 16);
    assert_eq!(handshake.offered_protocols(), ["chat", "superchat"]);
    // And a server accepts it.
    let upgrade = UpgradeRequest::from_http(&req).unwrap();
    assert_eq!(upgrade.select_protocol(&["superchat"]), Some("superchat"));
}

#[test]
fn client_request_target_and_host() {
    for (uri, line, host) in [
        ("ws://example.com", "GET / HTTP/1.1\r\n", "example.com"),
        ("wss://example.com/", "GET / HTTP/1.1\r\n", "example.com"),
        (
            "ws://user:pw@example.com:9000/a",
            "GET /a HTTP/1.1\r\n",
            "example.com:9000",
        ),
        ("http://[::1]:80/x?y", "GET /x?y HTTP/1.1\r\n", "[::1]:80"),
    ] {
        let (bytes, _) = ClientRequest::new(uri.parse().unwrap())
            .unwrap()
            .into_handshake();
        assert!(bytes.starts_with(line.as_bytes()), "{uri}");
        let (req, _) = parse_request_head(&bytes, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(req.headers()["host"], host, "{uri}");
    }
    let err = ClientRequest::new("/no/authority".parse().unwrap()).unwrap_err();
    assert!(matches!(err, HandshakeError::InvalidUri));
}

#[test]
fn client_key_is_fresh_each_time() {
    let request = ClientRequest::new("ws://example.com/".parse().unwrap()).unwrap();
    let keys: Vec<_> = (0..8)
        .map(|_| sent_key(&request.clone().into_handshake().0))
        .collect();
    for key in &keys {
        assert_eq!(BASE64.decode(key).unwrap().len(), 16);
    }
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len());
}

#[test]
fn response_parsed_one_byte_at_a_time_leaves_the_frames() {
    let (handshake, headers) = client(&[]);
    let head = response(SWITCHING, &headers);
    let mut raw = head.clone();
    raw.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    for end in 0..head.len() {
        assert!(handshake
            .parse_response_head(&raw[..end])
            .unwrap()
            .is_none());
    }
    let (resp, len) = handshake.parse_response_head(&raw).unwrap().unwrap();
    assert_eq!(len, head.len());
    let accepted = handshake.validate(resp).unwrap();
    assert_eq!(accepted.protocol(), None);
    assert_eq!(accepted.extensions(), None);
    let mut conn = Connection::new(Role::Client, Config::default());
    conn.receive_data(&raw[len..]);
    assert_eq!(
        conn.poll_event().unwrap(),
        Some(Event::Message(Message::text("hi")))
    );
}

#[test]
fn non_101_is_rejected_with_its_status() {
    let (handshake, _) = client(&[]);
    for (line, status) in [
        ("HTTP/1.1 403 Forbidden", StatusCode::FORBIDDEN),
        ("HTTP/1.1 200 OK", StatusCode::OK),
        (
            "HTTP/1.1 426 Upgrade Required",
            StatusCode::UPGRADE_REQUIRED,
        ),
    ] {
        let raw = response(
            line,
            &[
                ("Content-Length", "0".into()),
                ("Sec-WebSocket-Version", "13".into()),
            ],
        );
        match validate(&handshake, &raw) {
            Err(HandshakeError::Refused(r)) => {
                assert_eq!(r.status(), status);
                assert_eq!(r.headers()["sec-websocket-version"], "13");
            }
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn response_upgrade_and_connection_are_checked() {
    let (handshake, headers) = client(&[]);
    let with = |name: &str, value: Option<&str>| {
        let mut h: Vec<_> = headers
            .iter()
            .filter(|(n, _)| *n != name)
            .cloned()
            .collect();
        if let Some(v) = value {
            h.push((
                if name == "Upgrade" {
                    "Upgrade"
                } else {
                    "Connection"
                },
                v.into(),
            ));
        }
        response(SWITCHING, &h)
    };
    for value in [None, Some("h2c"), Some("websockets")] {
        let err = validate(&handshake, &with("Upgrade", value)).unwrap_err();
        assert!(
            matches!(err, HandshakeError::InvalidHeader("Upgrade")),
            "{err:?}"
        );
    }
    for value in [None, Some("keep-alive"), Some("close")] {
        let err = validate(&handshake, &with("Connection", value)).unwrap_err();
        assert!(
            matches!(err, HandshakeError::InvalidHeader("Connection")),
            "{err:?}"
        );
    }
    // Case-insensitive tokens in lists.
    assert!(validate(&handshake, &with("Upgrade", Some("WebSocket"))).is_ok());
    assert!(validate(&handshake, &with("Connection", Some("keep-alive, upgrade"))).is_ok());
}

#[test]
fn wrong_accept_is_a_mismatch() {
    let (handshake, headers) = client(&[]);
    let mut h: Vec<_> = headers[..2].to_vec();
    for wrong in [
        ACCEPT,
        "",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo",
        &accept_key(b"other key"),
    ] {
        h.truncate(2);
        h.push(("Sec-WebSocket-Accept", wrong.to_owned()));
        let err = validate(&handshake, &response(SWITCHING, &h)).unwrap_err();
        assert!(
            matches!(err, HandshakeError::AcceptMismatch),
            "{wrong:?}: {err:?}"
        );
    }
    h.truncate(2);
    let err = validate(&handshake, &response(SWITCHING, &h)).unwrap_err();
    assert!(matches!(err, HandshakeError::MissingHeader(_)), "{err:?}");
    // Twice, even if one is right.
    let mut twice = headers.clone();
    twice.push(("Sec-WebSocket-Accept", ACCEPT.into()));
    assert!(validate(&handshake, &response(SWITCHING, &twice)).is_err());
}

#[test]
fn response_subprotocol_must_be_one_offered() {
    let (handshake, headers) = client(&["chat", "superchat"]);
    let with = |values: &[&str]| {
        let mut h = headers.clone();
        for v in values {
            h.push(("Sec-WebSocket-Protocol", (*v).to_owned()));
        }
        validate(&handshake, &response(SWITCHING, &h))
    };
    assert_eq!(with(&["superchat"]).unwrap().protocol(), Some("superchat"));
    assert_eq!(with(&[]).unwrap().protocol(), None);
    let err = with(&["mqtt"]).unwrap_err();
    assert!(matches!(&err, HandshakeError::UnofferedProtocol(p) if p == "mqtt"));
    // Only one may be chosen.
    for values in [&["chat, superchat"][..], &["chat", "superchat"]] {
        let err = with(values).unwrap_err();
        assert!(
            matches!(err, HandshakeError::InvalidHeader("Sec-WebSocket-Protocol")),
            "{err:?}"
        );
    }

    // None offered, one chosen.
    let (handshake, mut headers) = client(&[]);
    headers.push(("Sec-WebSocket-Protocol", "chat".into()));
    let err = validate(&handshake, &response(SWITCHING, &headers)).unwrap_err();
    assert!(matches!(&err, HandshakeError::UnofferedProtocol(p) if p == "chat"));
}

#[test]
fn response_extension_must_be_offered() {
    let (handshake, mut headers) = client(&[]);
    headers.push(("Sec-WebSocket-Extensions", "permessage-deflate".into()));
    let err = validate(&handshake, &response(SWITCHING, &headers)).unwrap_err();
    assert!(matches!(&err, HandshakeError::UnofferedExtension(e) if e == "permessage-deflate"));

    // Offered: the answer is handed to the caller.
    let (bytes, handshake) = ClientRequest::new("ws://example.com/".parse().unwrap())
        .unwrap()
        .extensions(HeaderValue::from_static("permessage-deflate"))
        .into_handshake();
    let mut headers = vec![
        ("Upgrade", "websocket".to_owned()),
        ("Connection", "Upgrade".to_owned()),
        (
            "Sec-WebSocket-Accept",
            accept_key(sent_key(&bytes).as_bytes()),
        ),
    ];
    headers.push(("Sec-WebSocket-Extensions", "permessage-deflate".into()));
    let accepted = validate(&handshake, &response(SWITCHING, &headers)).unwrap();
    assert_eq!(accepted.extensions().unwrap(), "permessage-deflate");
}

/// `raw` with one more header line, written as bytes (obs-text included).
fn with_raw_header(raw: &[u8], line: &[u8]) -> Vec<u8> {
    let (head, end) = raw.split_at(raw.len() - 2);
    assert_eq!(end, b"\r\n");
    [head, line, b"\r\n", end].concat()
}

#[test]
fn response_extension_or_subprotocol_not_visible_ascii_fails() {
    // A value the client cannot read may name an extension or subprotocol
    // the server selected: skipping it would run a protocol the server
    // thinks is on (§4.1, items 5 and 6). Offered or not, it fails.
    for (offer_protocols, name) in [
        (&[][..], "Sec-WebSocket-Extensions"),
        (&["chat"][..], "Sec-WebSocket-Extensions"),
        (&[][..], "Sec-WebSocket-Protocol"),
        (&["chat"][..], "Sec-WebSocket-Protocol"),
    ] {
        for value in [&b"x-\xe9t\xe9"[..], b"chat, \xff", b"\x80"] {
            let (handshake, headers) = client(offer_protocols);
            let line = [name.as_bytes(), b": ", value].concat();
            let raw = with_raw_header(&response(SWITCHING, &headers), &line);
            let err = validate(&handshake, &raw).unwrap_err();
            assert!(
                matches!(err, HandshakeError::InvalidHeader(n) if n == name),
                "{name}: {value:?}: {err:?}"
            );
        }
    }
    // The same response without the line validates.
    let (handshake, headers) = client(&["chat"]);
    assert!(validate(&handshake, &response(SWITCHING, &headers)).is_ok());
}

#[test]
fn response_head_limits() {
    let limits = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let (bytes, handshake) = ClientRequest::new("ws://example.com/".parse().unwrap())
        .unwrap()
        .limits(limits)
        .into_handshake();
    let accept = accept_key(sent_key(&bytes).as_bytes());
    let raw = response(
        SWITCHING,
        &[
            ("Upgrade", "websocket".into()),
            ("Connection", "Upgrade".into()),
            ("Sec-WebSocket-Accept", accept),
        ],
    );
    let err = handshake.parse_response_head(&raw).unwrap_err();
    assert!(matches!(err, HandshakeError::HeadTooLarge { limit: 64 }));
}

// ---- both ----

#[test]
fn full_handshake_round_trip() {
    // Client: the request.
    let (request_bytes, handshake) =
        ClientRequest::new("ws://example.com/chat?x=1".parse().unwrap())
            .unwrap()
            .protocol("v2.chat")
            .protocol("v1.chat")
            .origin(HeaderValue::from_static("https://example.com"))
            .into_handshake();

    // Server: parse, validate, decide, answer; its first frame follows the
    // 101 in the same write.
    let request = whole_head(&request_bytes);
    let upgrade = UpgradeRequest::from_http(&request).unwrap();
    assert_eq!(upgrade.path(), "/chat");
    assert_eq!(upgrade.query(), Some("x=1"));
    assert_eq!(upgrade.origin(), Some("https://example.com"));
    let chosen = upgrade.select_protocol(&["v1.chat"]).unwrap().to_owned();
    let response = upgrade.accept(&Accept::default().protocol(chosen)).unwrap();
    let mut answer = write_response(&response, b"");
    let mut server = Connection::new(Role::Server, Config::default());
    server.send(Message::text("welcome")).unwrap();
    let out = server.transmit();
    answer.extend_from_slice(&out.copy_to_bytes(out.remaining()));

    // Client: check the answer, then read the frame after it.
    let (response, len) = handshake.parse_response_head(&answer).unwrap().unwrap();
    let accepted = handshake.validate(response).unwrap();
    assert_eq!(accepted.protocol(), Some("v1.chat"));
    assert_eq!(
        accepted.response().status(),
        StatusCode::SWITCHING_PROTOCOLS
    );
    assert_eq!(
        accepted.headers()[SEC_WEBSOCKET_ACCEPT],
        accept_key(upgrade.key().as_bytes())
    );
    let mut client = Connection::new(Role::Client, Config::default());
    client.receive_data(&answer[len..]);
    assert_eq!(
        client.poll_event().unwrap(),
        Some(Event::Message(Message::text("welcome")))
    );

    // And back.
    client.send(Message::binary(vec![1, 2, 3])).unwrap();
    let out = client.transmit();
    server.receive_data(&out.copy_to_bytes(out.remaining()));
    assert_eq!(
        server.poll_event().unwrap(),
        Some(Event::Message(Message::binary(vec![1, 2, 3])))
    );
}
