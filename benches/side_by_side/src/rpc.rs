//! What the two JSON-RPC servers share: the ticker's period and the item
//! it sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The ticker's period: `RPC_TICK_US` microseconds (default 10,000: 100
/// items a second, each to every subscriber).
pub fn tick_period() -> Duration {
    let us = std::env::var("RPC_TICK_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000u64);
    Duration::from_micros(us.max(1))
}

/// Microseconds since the Unix epoch: the item's time stamp, from which
/// `ws bench --subscribe` measures delivery latency.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The n-th item: `{"n": n, "t": now}`.
pub fn item(n: u64) -> serde_json::Value {
    serde_json::json!({ "n": n, "t": now_us() })
}
