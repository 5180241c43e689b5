//! The message on a room's channel: a small JSON envelope around the
//! notification's method and parameters.
//!
//! ```text
//! {"v":1,"node":"<node id>","seq":<n>,"room":"<room>","method":"<method>","params":<JSON>}
//! ```
//!
//! A broadcast writes the body (`room`, `method`, `params`); the publishing
//! task puts the header (`v`, `node`, `seq`) in front, numbering the
//! messages in the order they go to Redis.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The format version this crate writes and reads.
pub(crate) const VERSION: u64 = 1;

/// The longest method name accepted from Redis (as ws-rpc's requests).
const MAX_METHOD: usize = 256;

/// The header's bytes at most: `{"v":1,"node":` + node + `,"seq":` + 20
/// digits + `,`.
pub(crate) fn header_len(node_json: &str) -> usize {
    node_json.len() + 48
}

/// The body of a broadcast: `"room":R,"method":M,"params":P}`.
pub(crate) fn body(room: &str, method: &str, params: &RawValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(room.len() + method.len() + params.get().len() + 32);
    out.extend_from_slice(br#""room":"#);
    write_str(&mut out, room);
    out.extend_from_slice(br#","method":"#);
    write_str(&mut out, method);
    out.extend_from_slice(br#","params":"#);
    out.extend_from_slice(params.get().as_bytes());
    out.push(b'}');
    out
}

/// The whole message: the header for `node_json` (a JSON string) and
/// `seq`, then `body`.
pub(crate) fn message(node_json: &str, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(node_json) + body.len());
    out.extend_from_slice(br#"{"v":1,"node":"#);
    out.extend_from_slice(node_json.as_bytes());
    out.extend_from_slice(br#","seq":"#);
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.push(b',');
    out.extend_from_slice(body);
    out
}

/// `s` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a `str` into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

/// A message read from Redis.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    pub v: u64,
    #[serde(borrow)]
    pub node: Cow<'a, str>,
    pub seq: u64,
    #[serde(borrow)]
    pub room: Cow<'a, str>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow)]
    pub params: &'a RawValue,
}

/// Why a message from Redis was dropped.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Not JSON, or not the envelope's shape.
    Json(serde_json::Error),
    /// An envelope of a version this node does not read.
    Version(u64),
    /// The envelope's shape, with a field out of bounds.
    Invalid(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Json(e) => write!(f, "not a ws-rpc-redis envelope: {e}"),
            DecodeError::Version(v) => {
                write!(f, "unknown format version {v} (this node reads {VERSION})")
            }
            DecodeError::Invalid(what) => write!(f, "invalid envelope: {what}"),
        }
    }
}

/// Read an envelope, checking what the notification will be made of.
pub(crate) fn decode(payload: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let env = match serde_json::from_slice::<Envelope<'_>>(payload) {
        Ok(env) => env,
        Err(e) => {
            // A later version may change the shape: say so rather than
            // "malformed" when it tells its version.
            #[derive(Deserialize)]
            struct Probe {
                v: u64,
            }
            if let Ok(p) = serde_json::from_slice::<Probe>(payload) {
                if p.v != VERSION {
                    return Err(DecodeError::Version(p.v));
                }
            }
            return Err(DecodeError::Json(e));
        }
    };
    if env.v != VERSION {
        return Err(DecodeError::Version(env.v));
    }
    if env.node.is_empty() {
        return Err(DecodeError::Invalid("empty node id"));
    }
    if env.method.is_empty() || env.method.len() > MAX_METHOD {
        return Err(DecodeError::Invalid(
            "method empty or longer than 256 bytes",
        ));
    }
    if !matches!(env.params.get().as_bytes().first(), Some(b'{' | b'[')) {
        return Err(DecodeError::Invalid(
            "params neither an object nor an array",
        ));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn a_message_reads_back() {
        let node = serde_json::to_string("node-1/ab").unwrap();
        let b = body("lobby \"x\"", "chat.message", &raw(r#"{"text":"hé \n"}"#));
        let m = message(&node, 42, &b);
        assert!(m.len() <= header_len(&node) + b.len());
        let env = decode(&m).unwrap();
        assert_eq!(env.v, 1);
        assert_eq!(env.node, "node-1/ab");
        assert_eq!(env.seq, 42);
        assert_eq!(env.room, "lobby \"x\"");
        assert_eq!(env.method, "chat.message");
        assert_eq!(env.params.get(), r#"{"text":"hé \n"}"#);
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["params"]["text"], "hé \n");
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        for bad in [
            &b"garbage"[..],
            b"",
            b"{}",
            b"\xff\xfe",
            br#"{"v":1,"node":"a","seq":1,"room":"r","method":"m"}"#,
            br#"{"v":1,"node":"a","seq":-1,"room":"r","method":"m","params":{}}"#,
            br#"{"v":1,"node":"a","seq":1,"room":"r","method":"m","params":{"#,
            br#"[1,2,3]"#,
        ] {
            assert!(
                matches!(decode(bad), Err(DecodeError::Json(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            decode(br#"{"v":2,"node":"a","seq":1,"room":"r","method":"m","params":{}}"#),
            Err(DecodeError::Version(2))
        ));
        assert!(matches!(
            decode(br#"{"v":7,"something":"else"}"#),
            Err(DecodeError::Version(7))
        ));
        for invalid in [
            &br#"{"v":1,"node":"","seq":1,"room":"r","method":"m","params":{}}"#[..],
            br#"{"v":1,"node":"a","seq":1,"room":"r","method":"","params":{}}"#,
            br#"{"v":1,"node":"a","seq":1,"room":"r","method":"m","params":"text"}"#,
            br#"{"v":1,"node":"a","seq":1,"room":"r","method":"m","params":null}"#,
        ] {
            assert!(matches!(decode(invalid), Err(DecodeError::Invalid(_))));
        }
        let long = format!(
            r#"{{"v":1,"node":"a","seq":1,"room":"r","method":"{}","params":[]}}"#,
            "m".repeat(257)
        );
        assert!(matches!(
            decode(long.as_bytes()),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let env = decode(
            br#"{"v":1,"node":"a","seq":3,"room":"r","method":"m","params":[1],"later":true}"#,
        )
        .unwrap();
        assert_eq!(env.params.get(), "[1]");
    }
}
