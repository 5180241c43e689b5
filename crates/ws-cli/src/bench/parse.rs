//! Parsers of `ws bench`'s size and duration arguments.

use std::time::Duration;

/// Largest message size accepted (the client's default message limit).
const MAX_SIZE: usize = 64 << 20;

/// `16`, `1k`, `1KiB`, `64k`, `1m`, `1MB`: k and m are 1024 and 1024².
pub(super) fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes like 16, 1k, 64KiB, 1m"))?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit (use k or m)")),
    };
    let size = n
        .checked_mul(mult)
        .filter(|&v| v <= MAX_SIZE)
        .ok_or_else(|| format!("{s:?}: at most {} MiB", MAX_SIZE >> 20))?;
    Ok(size)
}

/// Seconds, fractions allowed, with an optional `s` (or `ms`) suffix.
pub(super) fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected seconds, like 10 or 0.5"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
        assert!(parse_size("1x").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("65m").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
    }
}
