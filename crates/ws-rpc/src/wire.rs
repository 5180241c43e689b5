//! The JSON-RPC 2.0 wire format: parsing what arrives and encoding what
//! leaves. Incoming fields are kept as raw JSON (`RawValue`) until someone
//! asks for their type; outgoing messages are written straight into one
//! buffer, with results and parameters copied in as raw JSON.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer};
use serde::Serialize;
use serde_json::value::RawValue;
use ws_net::Utf8Bytes;

use crate::error::RpcError;

/// Method names longer than this are refused as invalid requests (-32600):
/// a peer must not make us hold or echo large names.
pub const MAX_METHOD_LEN: usize = 256;

/// Request ids longer than this (as JSON text) are refused as invalid
/// requests: the id is echoed in the reply.
pub const MAX_ID_LEN: usize = 256;

/// A request id, as JSON: a number, a string, or null (§4). Kept as the
/// JSON text it arrived as, so the reply carries it back unchanged.
///
/// ```
/// let id = ws_rpc::Id::number(7);
/// assert_eq!(id.as_json(), "7");
/// assert_eq!(ws_rpc::Id::string("a\"b").as_json(), r#""a\"b""#);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Id(IdRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum IdRepr {
    Num(u64),
    Json(Box<str>),
}

impl Id {
    /// A numeric id.
    pub fn number(n: u64) -> Self {
        Self(IdRepr::Num(n))
    }

    /// A string id.
    pub fn string(s: &str) -> Self {
        let json = serde_json::to_string(s).unwrap_or_else(|_| "null".into());
        Self(IdRepr::Json(json.into()))
    }

    /// The null id (§5: the id of an answer to a request whose id could not
    /// be read).
    pub fn null() -> Self {
        Self(IdRepr::Json("null".into()))
    }

    /// The id as JSON text.
    pub fn as_json(&self) -> Cow<'_, str> {
        match &self.0 {
            IdRepr::Num(n) => Cow::Owned(n.to_string()),
            IdRepr::Json(s) => Cow::Borrowed(s),
        }
    }

    /// The number, for a numeric id that fits in a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.0 {
            IdRepr::Num(n) => Some(*n),
            IdRepr::Json(_) => None,
        }
    }

    /// An id read from the wire: a string, a number or null, else `None`
    /// (§4: other types are not ids). A number beyond the range of a
    /// double (`1e400`) is not taken either: its reply would carry it back,
    /// and most JSON parsers (serde_json's among them) refuse such a number,
    /// so the client could not read the answer to its call.
    pub(crate) fn from_raw(raw: &RawValue) -> Option<Self> {
        let text = raw.get();
        if text.len() > MAX_ID_LEN {
            return None;
        }
        match text.as_bytes().first()? {
            b'"' | b'n' => Some(Self(IdRepr::Json(text.into()))),
            b'-' | b'0'..=b'9' => {
                // A plain integer is kept as a number: it writes back the same
                // (digits only, no leading zero: `007` and `-0` stay text).
                let plain = text.bytes().all(|b| b.is_ascii_digit())
                    && (text.len() == 1 || !text.starts_with('0'));
                match text.parse::<u64>() {
                    Ok(n) if plain => Some(Self(IdRepr::Num(n))),
                    _ if text.parse::<f64>().is_ok_and(f64::is_finite) => {
                        Some(Self(IdRepr::Json(text.into())))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The length of [`as_json`](Self::as_json).
    pub(crate) fn json_len(&self) -> usize {
        match &self.0 {
            IdRepr::Num(n) => n.checked_ilog10().map_or(1, |digits| digits as usize + 1),
            IdRepr::Json(s) => s.len(),
        }
    }

    pub(crate) fn write(&self, out: &mut String) {
        match &self.0 {
            IdRepr::Num(n) => out.push_str(itoa::Buffer::new().format(*n)),
            IdRepr::Json(s) => out.push_str(s),
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_json())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_json())
    }
}

/// Deserialize a field that is present, null included, as `Some`: serde's
/// `Option` would read a JSON null as `None`, and a request with `"id":
/// null` is not a notification.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The members of a response object or a notification (as a client reads
/// them), unread.
#[derive(serde::Deserialize)]
pub(crate) struct RawObject<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    pub(crate) method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub(crate) params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub(crate) result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pub(crate) error: Option<&'a RawValue>,
}

/// The members of a request object: `jsonrpc` and `method` read as the
/// strings they should be, `params` and `id` kept unread.
#[derive(serde::Deserialize)]
struct RequestObject<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Text<'a>>,
    #[serde(borrow, default)]
    method: Option<Text<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    // Members a request does not have, accepted (and checked to be JSON)
    // as any other unknown member is.
}

/// A member that should be a string: its text when it is one (borrowed
/// unless it had escapes), else `NotText`.
enum Text<'a> {
    Str(Cow<'a, str>),
    NotText,
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text::NotText)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text::NotText)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text::NotText)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text::NotText)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text::NotText)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Text::NotText)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text::NotText)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::NotText)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'a> Text<'a> {
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Text::Str(s) => Some(s),
            Text::NotText => None,
        }
    }
}

/// A well-formed request or notification, borrowing the message.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Cow<'a, str>,
    pub(crate) params: Option<&'a RawValue>,
    /// `None` for a notification.
    pub(crate) id: Option<Id>,
}

/// What arrived in one message.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// One request object (or something that is not a valid one: `Err`
    /// carries the id to answer with, null if none could be read).
    Single(Result<Call<'a>, Id>),
    /// A batch: its items, each a request or not.
    Batch(Vec<Result<Call<'a>, Id>>),
    /// `[]`: one Invalid Request answer (§6).
    EmptyBatch,
    /// Not JSON: one Parse error answer, id null.
    ParseError,
}

/// Read one message. A first byte of `[` is a batch; anything else is one
/// request. Invalid JSON anywhere is a parse error (§6: a batch that does
/// not parse gets one answer). The text is known to be UTF-8 (a text frame's
/// payload, checked by the WebSocket layer), so the parser checks it no
/// more.
pub(crate) fn parse_incoming(text: &str) -> Incoming<'_> {
    match first_byte(text) {
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) if items.is_empty() => Incoming::EmptyBatch,
            Ok(items) => Incoming::Batch(items.into_iter().map(parse_call).collect()),
            Err(_) => Incoming::ParseError,
        },
        first => match serde_json::from_str::<RequestObject<'_>>(text) {
            Ok(object) if first == Some(b'{') => Incoming::Single(validate(object)),
            // JSON, but not an object (a number, a string...).
            _ if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                Incoming::Single(Err(Id::null()))
            }
            _ => Incoming::ParseError,
        },
    }
}

/// The first byte that is not white space.
fn first_byte(text: &str) -> Option<u8> {
    text.bytes().find(|b| !b.is_ascii_whitespace())
}

/// One batch item.
fn parse_call(raw: &RawValue) -> Result<Call<'_>, Id> {
    if !raw.get().starts_with('{') {
        return Err(Id::null());
    }
    match serde_json::from_str::<RequestObject<'_>>(raw.get()) {
        Ok(object) => validate(object),
        Err(_) => Err(Id::null()),
    }
}

/// Check a request object (§4): `"jsonrpc": "2.0"`, a string method, a
/// structured `params` if any, an id that is a string, number or null if
/// any. A bad request is answered with its id when that could be read.
fn validate(object: RequestObject<'_>) -> Result<Call<'_>, Id> {
    let id = match object.id {
        None => None,
        Some(raw) => Some(Id::from_raw(raw).ok_or_else(Id::null)?),
    };
    let answer_id = || id.clone().unwrap_or_else(Id::null);
    if object.jsonrpc.and_then(Text::into_str).as_deref() != Some("2.0") {
        return Err(answer_id());
    }
    let Some(method) = object.method.and_then(Text::into_str) else {
        return Err(answer_id());
    };
    if method.len() > MAX_METHOD_LEN {
        return Err(answer_id());
    }
    let params = match object.params {
        Some(p) if p.get() == "null" => None,
        Some(p) if p.get().starts_with(['[', '{']) => Some(p),
        Some(_) => return Err(answer_id()),
        None => None,
    };
    Ok(Call { method, params, id })
}

/// A JSON string's value, borrowed when it has no escapes.
pub(crate) fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    if let Ok(s) = serde_json::from_str::<&str>(raw.get()) {
        return Some(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw.get())
        .ok()
        .map(Cow::Owned)
}

/// The part of `whole` that `part` (a slice of it) covers, sharing its
/// allocation (a copy if it is not a slice of it).
pub(crate) fn subslice(whole: &Utf8Bytes, part: &str) -> Utf8Bytes {
    whole
        .slice_ref(part)
        .unwrap_or_else(|| Utf8Bytes::from(part))
}

// ---- encoding ----

const VERSION: &str = r#"{"jsonrpc":"2.0","#;

/// Write a JSON string: as it is when nothing in it needs escaping (a
/// method name, usually), else escaped by serde_json.
pub(crate) fn write_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(escaped) = serde_json::to_string(s) {
        out.push_str(&escaped);
    }
}

/// The answer to the request `id` with `result`, allocated at its size (so
/// the bytes it becomes share its allocation).
pub(crate) fn result_text(id: &Id, result: &RawValue) -> String {
    let mut out = String::with_capacity(result_len(id, result.get()));
    write_result(&mut out, id, result.get());
    out
}

/// The answer to the request `id` with an error.
pub(crate) fn error_text(id: &Id, error: &RpcError) -> String {
    let mut out = String::with_capacity(64);
    write_error(&mut out, id, error);
    out
}

/// The answer to the request `id` with `value` for result, serialized
/// straight into it: the answer and where in it the result is. The value
/// is serialized first into a buffer the thread keeps, so that the answer
/// is allocated once, at its size.
pub(crate) fn render_result<T: Serialize + ?Sized>(
    id: &Id,
    value: &T,
) -> Result<(String, std::ops::Range<usize>), serde_json::Error> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// A larger buffer is not kept: a thread holds no large result.
    const KEEP: usize = 16 * 1024;
    let render = |buf: &mut Vec<u8>| {
        serde_json::to_writer(&mut *buf, value)?;
        // serde_json writes UTF-8 only.
        let json = std::str::from_utf8(buf).map_err(serde::ser::Error::custom)?;
        let mut out = String::with_capacity(result_len(id, json));
        let at = write_result(&mut out, id, json);
        Ok((out, at))
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let out = render(&mut buf);
            if buf.capacity() > KEEP {
                *buf = Vec::new();
            }
            out
        }
        // A value whose serialization makes a result in turn.
        Err(_) => render(&mut Vec::new()),
    })
}

/// The length of [`write_result`]'s output.
fn result_len(id: &Id, result: &str) -> usize {
    VERSION.len() + r#""result":,"id":}"#.len() + result.len() + id.json_len()
}

/// A successful response; returns where in `out` the result went.
fn write_result(out: &mut String, id: &Id, result: &str) -> std::ops::Range<usize> {
    out.push_str(VERSION);
    out.push_str(r#""result":"#);
    let start = out.len();
    out.push_str(result);
    let at = start..out.len();
    out.push_str(r#","id":"#);
    id.write(out);
    out.push('}');
    at
}

/// An error response.
pub(crate) fn write_error(out: &mut String, id: &Id, error: &RpcError) {
    out.push_str(VERSION);
    out.push_str(r#""error":"#);
    write_error_object(out, error);
    out.push_str(r#","id":"#);
    id.write(out);
    out.push('}');
}

fn write_error_object(out: &mut String, error: &RpcError) {
    out.push_str(r#"{"code":"#);
    out.push_str(itoa::Buffer::new().format(error.code));
    out.push_str(r#","message":"#);
    write_str(out, &error.message);
    if let Some(data) = &error.data {
        out.push_str(r#","data":"#);
        out.push_str(data.get());
    }
    out.push('}');
}

/// A notification with raw parameters (none when `params` is `None`).
pub(crate) fn write_notification(out: &mut String, method: &str, params: Option<&RawValue>) {
    out.push_str(VERSION);
    out.push_str(r#""method":"#);
    write_str(out, method);
    if let Some(p) = params {
        out.push_str(r#","params":"#);
        out.push_str(p.get());
    }
    out.push('}');
}

/// A subscription's notification (jsonrpsee's and Ethereum's shape):
/// `{"jsonrpc":"2.0","method":M,"params":{"subscription":ID,"result":R}}`,
/// or with `"error"` instead of `"result"` when the subscription ends with
/// one, and with `"dropped":N` (items the lag policy dropped before this
/// one).
pub(crate) fn write_subscription_item(
    out: &mut String,
    method: &str,
    subscription: u64,
    item: SubscriptionPayload<'_>,
) {
    out.push_str(VERSION);
    out.push_str(r#""method":"#);
    write_str(out, method);
    out.push_str(r#","params":{"subscription":"#);
    out.push_str(itoa::Buffer::new().format(subscription));
    match item {
        SubscriptionPayload::Result(r) => {
            out.push_str(r#","result":"#);
            out.push_str(r.get());
        }
        SubscriptionPayload::Error(e) => {
            out.push_str(r#","error":"#);
            write_error_object(out, e);
        }
        SubscriptionPayload::Dropped(n) => {
            out.push_str(r#","dropped":"#);
            out.push_str(itoa::Buffer::new().format(n));
        }
    }
    out.push_str("}}");
}

/// What a subscription notification carries.
pub(crate) enum SubscriptionPayload<'a> {
    Result(&'a RawValue),
    Error(&'a RpcError),
    Dropped(u64),
}

/// A request with a numeric id.
pub(crate) fn write_request(out: &mut String, id: u64, method: &str, params: Option<&RawValue>) {
    out.push_str(VERSION);
    out.push_str(r#""id":"#);
    out.push_str(itoa::Buffer::new().format(id));
    out.push_str(r#","method":"#);
    write_str(out, method);
    if let Some(p) = params {
        out.push_str(r#","params":"#);
        out.push_str(p.get());
    }
    out.push('}');
}

/// `value` as raw JSON.
pub(crate) fn to_raw<T: Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, serde_json::Error> {
    serde_json::value::to_raw_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(text: &str) -> Result<(String, Option<String>, Option<String>), String> {
        match parse_incoming(text) {
            Incoming::Single(Ok(c)) => Ok((
                c.method.into_owned(),
                c.params.map(|p| p.get().to_owned()),
                c.id.map(|i| i.as_json().into_owned()),
            )),
            Incoming::Single(Err(id)) => Err(id.as_json().into_owned()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_notifications_and_ids() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}"#),
            Ok(("subtract".into(), Some("[42,23]".into()), Some("1".into())))
        );
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"update","params":[1,2]}"#),
            Ok(("update".into(), Some("[1,2]".into()), None))
        );
        // A null id is a request, not a notification.
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"m","id":null}"#),
            Ok(("m".into(), None, Some("null".into())))
        );
        for id in [r#""abc""#, "-5", "1.5", "18446744073709551616", "0"] {
            let text = format!(r#"{{"jsonrpc":"2.0","method":"m","id":{id}}}"#);
            assert_eq!(single(&text).unwrap().2.as_deref(), Some(id), "{id}");
        }
        // Escaped method names are read.
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"a\u0062c","id":1}"#)
                .unwrap()
                .0,
            "abc"
        );
    }

    #[test]
    fn invalid_requests_keep_their_id_when_it_can_be_read() {
        for (text, id) in [
            (r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#, "null"),
            (r#"{"jsonrpc":"2.0","method":1,"id":7}"#, "7"),
            (r#"{"jsonrpc":"1.0","method":"m","id":"x"}"#, r#""x""#),
            (r#"{"method":"m","id":2}"#, "2"),
            (r#"{"jsonrpc":"2.0","method":"m","params":5,"id":3}"#, "3"),
            (r#"{"jsonrpc":"2.0","method":"m","id":{"a":1}}"#, "null"),
            (r#"{"jsonrpc":"2.0","method":"m","id":[1]}"#, "null"),
            (r#"{"jsonrpc":"2.0","method":"m","id":true}"#, "null"),
            (r#"{"foo":"boo"}"#, "null"),
            ("1", "null"),
            (r#""a string""#, "null"),
        ] {
            assert_eq!(single(text), Err(id.to_owned()), "{text}");
        }
        let long = format!(
            r#"{{"jsonrpc":"2.0","method":"{}","id":1}}"#,
            "m".repeat(MAX_METHOD_LEN + 1)
        );
        assert_eq!(single(&long), Err("1".to_owned()));
    }

    #[test]
    fn batches_and_parse_errors() {
        assert!(matches!(parse_incoming("[]"), Incoming::EmptyBatch));
        assert!(matches!(parse_incoming(" [ ] "), Incoming::EmptyBatch));
        assert!(matches!(
            parse_incoming(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#),
            Incoming::ParseError
        ));
        assert!(matches!(
            parse_incoming(r#"[{"jsonrpc": "2.0", "method": "sum"},{"jsonrpc": "2.0", "method"]"#),
            Incoming::ParseError
        ));
        match parse_incoming(r#"[1, {"jsonrpc":"2.0","method":"m","id":"5"}, {"foo":1}]"#) {
            Incoming::Batch(items) => {
                assert_eq!(items.len(), 3);
                assert!(items[0].is_err());
                assert_eq!(items[1].as_ref().unwrap().method, "m");
                assert!(items[2].is_err());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_a_parse_error_not_a_crash() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":{}{},"id":1}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // Kept raw: the request is read; decoding the params fails later.
        let parsed = parse_incoming(&deep);
        assert!(matches!(
            parsed,
            Incoming::Single(Ok(_)) | Incoming::ParseError
        ));
        let batch = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        let _ = parse_incoming(&batch);
    }

    #[test]
    fn encodes_responses_and_notifications() {
        let text = result_text(&Id::number(1), &to_raw(&19).unwrap());
        assert_eq!(text, r#"{"jsonrpc":"2.0","result":19,"id":1}"#);
        assert_eq!(text.len(), text.capacity());
        for id in [
            Id::number(0),
            Id::number(9),
            Id::number(10),
            Id::number(u64::MAX),
            Id::string("a\"b"),
            Id::null(),
        ] {
            let (text, at) = render_result(&id, &[1, 2]).unwrap();
            let expected = format!(r#"{{"jsonrpc":"2.0","result":[1,2],"id":{id}}}"#);
            assert_eq!(text, expected);
            assert_eq!(text.len(), text.capacity());
            assert_eq!(&text[at], "[1,2]");
        }
        let mut out = String::new();
        write_error(&mut out, &Id::null(), &RpcError::parse_error());
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#
        );
        out.clear();
        write_subscription_item(
            &mut out,
            "ticks",
            42,
            SubscriptionPayload::Result(&to_raw(&serde_json::json!({"n": 1})).unwrap()),
        );
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","method":"ticks","params":{"subscription":42,"result":{"n":1}}}"#
        );
        out.clear();
        write_request(&mut out, 3, "a\"b", None);
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":3,"method":"a\"b"}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["method"], "a\"b");
    }
}
