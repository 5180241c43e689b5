//! A call as the server's service sees it ([`Request`]), its parameters
//! ([`Params`]) and its outcome ([`Response`]).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use ws_net::Utf8Bytes;

use super::context::Context;
use crate::error::RpcError;
use crate::wire::{self, Id};

/// The parameters of a call, kept as the JSON they arrived as (no copy of
/// the message) until [`parse`](Self::parse) decodes them into a type.
///
/// A struct decodes from a named object or, by position, from an array
/// (serde's derive accepts both), so one type serves both forms of §4.2.
///
/// ```
/// #[derive(Debug, serde::Deserialize)]
/// struct Subtract { minuend: i64, subtrahend: i64 }
/// let named = ws_rpc::Params::from_json(r#"{"subtrahend": 23, "minuend": 42}"#);
/// let positional = ws_rpc::Params::from_json("[42, 23]");
/// for p in [named, positional] {
///     let s: Subtract = p.parse().unwrap();
///     assert_eq!(s.minuend - s.subtrahend, 19);
/// }
/// let bad = ws_rpc::Params::from_json(r#"["x", 1]"#).parse::<Subtract>().unwrap_err();
/// assert_eq!(bad.code, -32602);
/// assert!(bad.message.contains("invalid type"), "{}", bad.message);
/// ```
#[derive(Clone, Default)]
pub struct Params {
    raw: Option<Utf8Bytes>,
}

impl Params {
    pub(crate) fn new(raw: Option<Utf8Bytes>) -> Self {
        Self { raw }
    }

    /// Parameters from JSON text (for tests and middleware).
    pub fn from_json(json: &str) -> Self {
        Self {
            raw: Some(Utf8Bytes::from(json)),
        }
    }

    /// Decode into `T`. Absent parameters decode as JSON `null` (so `()`
    /// and `Option<_>` accept them). A failure is -32602 with serde's
    /// description of what was wrong (which field, which type, where).
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, RpcError> {
        let text = self.raw.as_ref().map_or("null", Utf8Bytes::as_str);
        serde_json::from_str(text)
            .map_err(|e| RpcError::invalid_params(format!("invalid params: {e}")))
    }

    /// The JSON text, if there were parameters.
    pub fn as_json(&self) -> Option<&str> {
        self.raw.as_ref().map(Utf8Bytes::as_str)
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_none()
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_json() {
            Some(j) if j.len() > 64 => {
                let mut end = 64;
                while !j.is_char_boundary(end) {
                    end -= 1;
                }
                write!(f, "Params({}…)", &j[..end])
            }
            Some(j) => write!(f, "Params({j})"),
            None => f.write_str("Params(none)"),
        }
    }
}

/// One call (a request or a notification), as it goes through the server's
/// [`tower::Service`]: middleware sees, may change, or may answer it before
/// the [`Router`](crate::Router) does.
#[derive(Debug)]
pub struct Request {
    pub(crate) method: ws_net::Utf8Bytes,
    pub(crate) params: Params,
    pub(crate) id: Option<Id>,
    pub(crate) cx: Context,
    pub(crate) extensions: http::Extensions,
}

impl Request {
    /// A request as a test or a middleware would make it.
    pub fn new(
        method: impl Into<ws_net::Utf8Bytes>,
        params: Params,
        id: Option<Id>,
        cx: Context,
    ) -> Self {
        Self {
            method: method.into(),
            params,
            id,
            cx,
            extensions: http::Extensions::new(),
        }
    }

    /// The method name.
    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Replace the parameters.
    pub fn set_params(&mut self, params: Params) {
        self.params = params;
    }

    /// The id; `None` for a notification (which gets no answer, §4.1).
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// Whether this is a notification.
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }

    /// The connection it came on.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// Values middleware attaches for the handlers and layers after it.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }

    /// See [`extensions`](Self::extensions).
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }
}

/// What a call produced: a result or an error object. For a notification
/// it is dropped.
pub struct Response {
    pub(crate) result: Result<Outcome, RpcError>,
    /// Run once the answer is queued on the connection (a subscription
    /// starts sending only after its id went out).
    pub(crate) after: Option<Box<dyn FnOnce() + Send>>,
}

/// A result, as JSON.
pub(crate) enum Outcome {
    /// The result alone.
    Raw(Box<RawValue>),
    /// The whole answer to the request `id`, written when the result was
    /// made: the result, serialized straight into it, is `text[at]`.
    Answer {
        text: String,
        id: Id,
        at: std::ops::Range<usize>,
    },
}

impl Outcome {
    /// The result. `None` only if an answer's result were not JSON, which
    /// cannot be (serde_json wrote it).
    fn result(&self) -> Option<&RawValue> {
        match self {
            Outcome::Raw(raw) => Some(raw),
            Outcome::Answer { text, at, .. } => serde_json::from_str(text.get(at.clone())?).ok(),
        }
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("result", &self.result())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// A result (serialized to JSON; -32603 if it cannot be).
    pub fn ok<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Self::raw(raw),
            Err(e) => {
                tracing::warn!(error = %e, "result cannot be serialized");
                Self::error(RpcError::internal_error())
            }
        }
    }

    /// A result already in JSON.
    pub fn raw(result: Box<RawValue>) -> Self {
        Self {
            result: Ok(Outcome::Raw(result)),
            after: None,
        }
    }

    /// A result for the request `id`, serialized straight into the answer
    /// (one allocation of the answer's size; [`ok`](Self::ok) makes the
    /// result and the answer one after the other).
    pub(crate) fn answer<T: Serialize + ?Sized>(value: &T, id: Option<Id>) -> Self {
        let Some(id) = id else {
            return Self::ok(value);
        };
        match wire::render_result(&id, value) {
            Ok((text, at)) => Self {
                result: Ok(Outcome::Answer { text, id, at }),
                after: None,
            },
            Err(e) => {
                tracing::warn!(error = %e, "result cannot be serialized");
                Self::error(RpcError::internal_error())
            }
        }
    }

    /// The answer to the request `id`.
    pub(crate) fn into_text(self, id: &Id) -> String {
        match self.result {
            Ok(Outcome::Answer {
                text, id: made_for, ..
            }) if made_for == *id => text,
            Ok(outcome) => match outcome.result() {
                Some(r) => wire::result_text(id, r),
                None => wire::error_text(id, &RpcError::internal_error()),
            },
            Err(e) => wire::error_text(id, &e),
        }
    }

    /// An error object.
    pub fn error(error: RpcError) -> Self {
        Self {
            result: Err(error),
            after: None,
        }
    }

    /// The outcome.
    pub fn result(&self) -> Result<&RawValue, &RpcError> {
        static UNREADABLE: std::sync::LazyLock<RpcError> =
            std::sync::LazyLock::new(RpcError::internal_error);
        match &self.result {
            Ok(outcome) => outcome.result().ok_or(&*UNREADABLE),
            Err(e) => Err(e),
        }
    }

    /// Whether it is an error.
    pub fn is_error(&self) -> bool {
        self.result.is_err()
    }

    pub(crate) fn then(mut self, after: impl FnOnce() + Send + 'static) -> Self {
        self.after = Some(Box::new(after));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result made straight into its answer reads back as the result,
    /// and answers another id too.
    #[test]
    fn an_answer_made_ahead_reads_as_its_result() {
        let made = || Response::answer(&serde_json::json!({"a": [1, "x"]}), Some(Id::number(7)));
        assert_eq!(made().result().unwrap().get(), r#"{"a":[1,"x"]}"#);
        assert!(!made().is_error());
        assert_eq!(
            made().into_text(&Id::number(7)),
            r#"{"jsonrpc":"2.0","result":{"a":[1,"x"]},"id":7}"#
        );
        assert_eq!(
            made().into_text(&Id::string("b")),
            r#"{"jsonrpc":"2.0","result":{"a":[1,"x"]},"id":"b"}"#
        );
        // A notification's result is made the plain way.
        assert_eq!(Response::answer(&3, None).result().unwrap().get(), "3");
        assert_eq!(
            Response::error(RpcError::internal_error()).into_text(&Id::null()),
            r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error"},"id":null}"#
        );
    }
}
