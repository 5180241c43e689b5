//! A call as the server's service sees it ([`Request`]), its parameters
//! ([`Params`]) and its outcome ([`Response`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::context::Context;
use crate::error::RpcError;
use crate::wire::Id;

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
    raw: Option<Bytes>,
}

impl Params {
    pub(crate) fn new(raw: Option<Bytes>) -> Self {
        Self { raw }
    }

    /// Parameters from JSON text (for tests and middleware).
    pub fn from_json(json: &str) -> Self {
        Self {
            raw: Some(Bytes::copy_from_slice(json.as_bytes())),
        }
    }

    /// Decode into `T`. Absent parameters decode as JSON `null` (so `()`
    /// and `Option<_>` accept them). A failure is -32602 with serde's
    /// description of what was wrong (which field, which type, where).
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, RpcError> {
        let text: &[u8] = self.raw.as_deref().unwrap_or(b"null");
        serde_json::from_slice(text)
            .map_err(|e| RpcError::invalid_params(format!("invalid params: {e}")))
    }

    /// The JSON text, if there were parameters.
    pub fn as_json(&self) -> Option<&str> {
        // Bytes of a JSON text the parser read as UTF-8.
        self.raw
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
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
    pub(crate) result: Result<Box<RawValue>, RpcError>,
    /// Run once the answer is queued on the connection (a subscription
    /// starts sending only after its id went out).
    pub(crate) after: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("result", &self.result)
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
            result: Ok(result),
            after: None,
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
        self.result.as_deref()
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
