use super::*;

fn cfg() -> DeflateConfig {
    DeflateConfig::default()
}

fn answer(offers: &[&str]) -> Option<(String, Negotiated)> {
    server_negotiate(offers.iter().copied(), &cfg())
        .map(|(h, n)| (h.to_str().unwrap().to_owned(), n))
}

#[test]
fn parses_offers_across_headers_with_quotes() {
    let offers = parse_extensions([
        "permessage-deflate; client_max_window_bits; server_max_window_bits=\"12\"",
        "x-foo, permessage-deflate",
    ])
    .unwrap();
    assert_eq!(offers.len(), 3);
    assert_eq!(offers[0].name, "permessage-deflate");
    assert_eq!(offers[0].params[0], ("client_max_window_bits".into(), None));
    assert_eq!(
        offers[0].params[1],
        ("server_max_window_bits".into(), Some("12".into()))
    );
    assert_eq!(offers[1].name, "x-foo");
    assert!(parse_extensions(["permessage-deflate; a=\"unterminated"]).is_none());
    assert!(parse_extensions(["permessage-deflate; a=\"not a token\""]).is_none());
}

#[test]
fn plain_offer_is_accepted_plainly() {
    let (h, n) = answer(&["permessage-deflate"]).unwrap();
    assert_eq!(h, "permessage-deflate");
    assert_eq!(n.local_max_window_bits, 15);
    assert!(!n.local_no_context_takeover && !n.remote_no_context_takeover);
}

#[test]
fn unknown_extensions_are_ignored_and_bad_offers_declined() {
    assert!(answer(&["x-webkit-deflate-frame"]).is_none());
    // Unknown parameter, invalid value, duplicate: each declines that offer only.
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ] {
        assert!(answer(&[bad]).is_none(), "{bad}");
        let (h, _) = answer(&[&format!(
            "{bad}, permessage-deflate; client_no_context_takeover"
        )])
        .unwrap();
        assert_eq!(h, "permessage-deflate; client_no_context_takeover", "{bad}");
    }
}

#[test]
fn server_no_context_takeover_is_echoed() {
    let (h, n) = answer(&["permessage-deflate; server_no_context_takeover"]).unwrap();
    assert_eq!(h, "permessage-deflate; server_no_context_takeover");
    assert!(n.local_no_context_takeover);
}

#[test]
fn server_max_window_bits_is_honoured() {
    let (h, n) = answer(&["permessage-deflate; server_max_window_bits=10"]).unwrap();
    assert_eq!(h, "permessage-deflate; server_max_window_bits=10");
    assert_eq!(n.local_max_window_bits, 10);
    // Our own smaller limit wins, and is announced even if not asked.
    let mut c = cfg();
    c.server_max_window_bits = 9;
    let (h, n) = server_negotiate(["permessage-deflate"], &c).unwrap();
    assert_eq!(h, "permessage-deflate; server_max_window_bits=9");
    assert_eq!(n.local_max_window_bits, 9);
}

#[test]
fn client_max_window_bits_only_when_offered() {
    let mut c = cfg();
    c.client_max_window_bits = 10;
    // Not offered: we must not answer it (§7.1.2.2).
    let (h, n) = server_negotiate(["permessage-deflate"], &c).unwrap();
    assert_eq!(h, "permessage-deflate");
    assert_eq!(n.remote_max_window_bits, 15);
    // Offered without a value: we may limit it.
    let (h, n) = server_negotiate(["permessage-deflate; client_max_window_bits"], &c).unwrap();
    assert_eq!(h, "permessage-deflate; client_max_window_bits=10");
    assert_eq!(n.remote_max_window_bits, 10);
    // Offered with a value: at most that value.
    let (h, _) = server_negotiate(["permessage-deflate; client_max_window_bits=9"], &c).unwrap();
    assert_eq!(h, "permessage-deflate; client_max_window_bits=9");
}

#[test]
fn client_offer_and_accept() {
    let c = cfg();
    assert_eq!(
        client_offer(&c),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(client_accept([], &c).unwrap(), None);
    let n = client_accept(["permessage-deflate"], &c).unwrap().unwrap();
    assert_eq!(n.local_max_window_bits, 15);
    let n = client_accept(
        ["permessage-deflate; server_no_context_takeover; client_max_window_bits=9"],
        &c,
    )
    .unwrap()
    .unwrap();
    assert!(n.remote_no_context_takeover);
    assert_eq!(n.local_max_window_bits, 9);
    let mut small = cfg();
    small.client_max_window_bits = 10;
    small.server_max_window_bits = 11;
    small.server_no_context_takeover = true;
    assert_eq!(
        client_offer(&small),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10"
    );
}

#[test]
fn client_fails_on_answers_it_did_not_allow() {
    let c = cfg();
    for bad in [
        "x-other",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; foo",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ] {
        assert!(client_accept([bad], &c).is_err(), "{bad}");
    }
    let mut small = cfg();
    small.server_max_window_bits = 10;
    small.client_max_window_bits = 10;
    assert!(client_accept(["permessage-deflate; server_max_window_bits=12"], &small).is_err());
    assert!(client_accept(["permessage-deflate; client_max_window_bits=12"], &small).is_err());
    small.server_no_context_takeover = true;
    assert!(client_accept(["permessage-deflate"], &small).is_err());
}

fn negotiated(local_nct: bool, remote_nct: bool) -> Negotiated {
    Negotiated {
        local_no_context_takeover: local_nct,
        remote_no_context_takeover: remote_nct,
        local_max_window_bits: 15,
        remote_max_window_bits: 15,
        level: 6,
        threshold: 0,
    }
}

fn round_trip(sender: &mut Codec, receiver: &mut Codec, msg: &[u8]) -> usize {
    let wire = sender.compress(msg).unwrap();
    let mut out = Vec::new();
    receiver.decompress(&wire, true, &mut out, 1 << 20).unwrap();
    assert_eq!(out, msg);
    wire.len()
}

#[test]
fn rfc_7692_example_hello() {
    // §7.2.3.1: "Hello" compressed in one block.
    let mut d = Codec::new(negotiated(false, false));
    let mut out = Vec::new();
    d.decompress(
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        true,
        &mut out,
        100,
    )
    .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.2: the second "Hello" refers to the first (context takeover).
    let mut out = Vec::new();
    d.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut out, 100)
        .unwrap();
    assert_eq!(out, b"Hello");
    // §7.2.3.3: a stored block.
    let mut d = Codec::new(negotiated(false, false));
    let mut out = Vec::new();
    d.decompress(
        &[
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ],
        true,
        &mut out,
        100,
    )
    .unwrap();
    assert_eq!(out, b"Hello");
}

#[test]
fn context_takeover_shrinks_repeats_and_no_takeover_does_not() {
    let msg = br#"{"type":"trade","symbol":"BTC-USD","price":"43125.50","size":"0.0125"}"#;
    let mut a = Codec::new(negotiated(false, false));
    let mut b = Codec::new(negotiated(false, false));
    let first = round_trip(&mut a, &mut b, msg);
    let second = round_trip(&mut a, &mut b, msg);
    assert!(second < first / 3, "with takeover: {first} then {second}");
    let mut a = Codec::new(negotiated(true, false));
    let mut b = Codec::new(negotiated(false, true));
    let first = round_trip(&mut a, &mut b, msg);
    let second = round_trip(&mut a, &mut b, msg);
    assert_eq!(first, second, "without takeover each message stands alone");
    assert!(
        a.compressor.is_none() && b.decompressor.is_none(),
        "contexts released"
    );
}

#[test]
fn window_8_and_threshold_send_uncompressed() {
    let mut n = negotiated(false, false);
    n.local_max_window_bits = 8;
    assert_eq!(Codec::new(n).compress(&[b'a'; 1000]), None);
    let mut n = negotiated(false, false);
    n.threshold = 100;
    let mut c = Codec::new(n);
    assert_eq!(c.compress(&[b'a'; 99]), None);
    assert!(c.compress(&[b'a'; 100]).is_some());
}

#[test]
fn bomb_stops_at_the_cap() {
    let mut big = Codec::new(negotiated(false, false));
    let wire = big.compress(&vec![0u8; 10 << 20]).unwrap();
    assert!(
        wire.len() < 20_000,
        "10 MiB of zeros compress to {} bytes",
        wire.len()
    );
    let mut d = Codec::new(negotiated(false, false));
    let mut out = Vec::new();
    assert_eq!(
        d.decompress(&wire, true, &mut out, 1 << 20),
        Err(InflateError::TooBig)
    );
    assert!(
        out.capacity() <= (1 << 20) + 1,
        "allocated {}",
        out.capacity()
    );
}

#[test]
fn corrupt_data_is_an_error() {
    let mut d = Codec::new(negotiated(false, false));
    let mut out = Vec::new();
    assert!(matches!(
        d.decompress(&[0xff, 0xff, 0xff, 0xff], true, &mut out, 100),
        Err(InflateError::Corrupt(_))
    ));
}

#[test]
fn empty_message_round_trips() {
    let mut a = Codec::new(negotiated(false, false));
    let mut b = Codec::new(negotiated(false, false));
    round_trip(&mut a, &mut b, b"");
}

/// Found by the `deflate` fuzz target: with context takeover, zlib emits
/// nothing for an empty message right after a sync flush; the payload must
/// then be 0x00 (RFC 7692 §7.2.3.6), or the receiver's stream desyncs and a
/// later empty message inflates to garbage.
#[test]
fn empty_messages_after_data_keep_the_stream_in_step() {
    for level in [1, 5, 9] {
        let mut n = negotiated(false, false);
        n.level = level;
        let mut a = Codec::new(n);
        let mut b = Codec::new(n);
        for m in [&b"\0\x1d"[..], b"", b"", b"abc", b"", b"abcabcabc"] {
            round_trip(&mut a, &mut b, m);
        }
    }
    let mut a = Codec::new(negotiated(false, false));
    a.compress(b"x").unwrap();
    assert_eq!(&a.compress(b"").unwrap()[..], &[0x00]);
}
