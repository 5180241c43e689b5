//! Errors: the JSON-RPC error object ([`RpcError`]) with its codes, and the
//! client's error ([`ClientError`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The error codes ws-rpc uses; see the table in the crate docs.
pub mod code {
    /// Invalid JSON was received (§5.1).
    pub const PARSE_ERROR: i32 = -32700;
    /// The JSON sent is not a valid Request object (§5.1).
    pub const INVALID_REQUEST: i32 = -32600;
    /// The method does not exist or is not available (§5.1).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Invalid method parameters (§5.1).
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal JSON-RPC error (§5.1).
    pub const INTERNAL_ERROR: i32 = -32603;
    /// A middleware's deadline passed before the method answered.
    pub const TIMED_OUT: i32 = -32000;
    /// The connection must log in first (the first-message login).
    pub const LOGIN_REQUIRED: i32 = -32001;
    /// A middleware refused the call (an authorization check, a rate limit).
    pub const REFUSED: i32 = -32002;
    /// A subscription fell behind and was ended (its final notification).
    pub const SUBSCRIPTION_LAGGED: i32 = -32003;
    /// The connection has as many subscriptions as it may have.
    pub const TOO_MANY_SUBSCRIPTIONS: i32 = -32004;
    /// A batch with more requests than allowed.
    pub const BATCH_TOO_LARGE: i32 = -32005;
    /// The server is shutting down.
    pub const SHUTTING_DOWN: i32 = -32006;
}

/// A JSON-RPC 2.0 error object (§5.1): a code, a short message, and
/// optional data. Handlers return it; clients receive it.
///
/// ```
/// use ws_rpc::RpcError;
/// let e = RpcError::invalid_params("expected two numbers");
/// assert_eq!(e.code, -32602);
/// let custom = RpcError::new(4001, "insufficient funds").with_data(&serde_json::json!({"balance": 3}));
/// assert_eq!(serde_json::to_string(&custom).unwrap(),
///            r#"{"code":4001,"message":"insufficient funds","data":{"balance":3}}"#);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcError {
    /// The error code: the spec's -32768..-32000 range is reserved; ws-rpc's
    /// own codes are in -32000..-32099 ([`code`]).
    pub code: i32,
    /// A short description.
    pub message: Cow<'static, str>,
    /// More about the error, as the server defines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
}

impl PartialEq for RpcError {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.message == other.message
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
    }
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Attach `data` (serialized to JSON; left out if it cannot be).
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = serde_json::value::to_raw_value(data).ok();
        self
    }

    /// -32700: the message is not JSON.
    pub fn parse_error() -> Self {
        Self::new(code::PARSE_ERROR, "Parse error")
    }

    /// -32600: not a valid Request object.
    pub fn invalid_request() -> Self {
        Self::new(code::INVALID_REQUEST, "Invalid Request")
    }

    /// -32601: no such method.
    pub fn method_not_found() -> Self {
        Self::new(code::METHOD_NOT_FOUND, "Method not found")
    }

    /// -32602 with a message saying what was wrong with the parameters.
    pub fn invalid_params(why: impl Into<Cow<'static, str>>) -> Self {
        Self::new(code::INVALID_PARAMS, why)
    }

    /// -32603: the server failed.
    pub fn internal_error() -> Self {
        Self::new(code::INTERNAL_ERROR, "Internal error")
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error object.
    #[error("server error: {0}")]
    Rpc(RpcError),
    /// The connection dropped after the request was sent and before its
    /// answer came: the call may or may not have run on the server. It is
    /// not sent again.
    #[error("disconnected before the answer came; the call may or may not have run")]
    Disconnected,
    /// No answer within the request's timeout.
    #[error("request timed out")]
    Timeout,
    /// The queue of calls waiting for a connection is full (its count or
    /// byte bound): the call was not queued.
    #[error("offline queue full: the call was not queued")]
    QueueFull,
    /// The client was closed (by [`Client::close`](crate::Client::close),
    /// or it gave up reconnecting).
    #[error("client closed")]
    Closed,
    /// The parameters could not be serialized.
    #[error("parameters could not be serialized: {0}")]
    Params(Arc<serde_json::Error>),
    /// The result could not be decoded into the type asked for.
    #[error("result could not be decoded: {0}")]
    Decode(Arc<serde_json::Error>),
    /// A client middleware failed the call with an error of its own.
    #[error("client middleware: {0}")]
    Middleware(Arc<dyn std::error::Error + Send + Sync>),
}

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        Self::Rpc(e)
    }
}
