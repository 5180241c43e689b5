//! UTF-8 for text messages and close reasons (RFC 6455 §8.1).
//!
//! [`Utf8Validator`] checks a byte stream piece by piece, so an invalid
//! sequence is caught in the piece where it occurs, even when a code point is
//! split across frames or across reads (fail fast, as Autobahn's 6.4.x cases
//! require). [`Utf8Bytes`] is a [`Bytes`] known to hold UTF-8.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// The payload was not valid UTF-8.
///
/// ```
/// let mut v = ws_proto::utf8::Utf8Validator::default();
/// assert_eq!(v.feed(&[0xff]), Err(ws_proto::utf8::InvalidUtf8));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

/// Incremental UTF-8 validator.
///
/// ```
/// use ws_proto::utf8::Utf8Validator;
/// let euro = "€".as_bytes(); // three bytes
/// let mut v = Utf8Validator::default();
/// v.feed(&euro[..1]).unwrap(); // incomplete, not invalid
/// v.feed(&euro[1..]).unwrap();
/// v.finish().unwrap();
///
/// let mut v = Utf8Validator::default();
/// assert!(v.feed(&[0xf4, 0x90]).is_err()); // beyond U+10FFFF: fails at once
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The start of a code point that the last piece ended inside.
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Validator {
    /// Validate the next piece. Fails as soon as the bytes seen so far cannot
    /// be the start of valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = usize::from(self.partial_len);
            let width = char_width(self.partial[0]);
            let take = (width - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let now = have + take;
            data = &data[take..];
            match std::str::from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix; `data` is exhausted.
                    self.partial_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message ended: fails if it ended inside a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forget any partial code point.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

fn char_width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// A [`Bytes`] that holds valid UTF-8: the payload of a text message.
///
/// Cloning is cheap (a reference count), like `Bytes`.
///
/// ```
/// use ws_proto::Utf8Bytes;
/// let text = Utf8Bytes::from("hello");
/// assert_eq!(text.as_str(), "hello");
/// assert_eq!(&*text, "hello");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(&[0xff])).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// From a static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// The text, without looking at it again: the bytes were checked when
    /// this value was built, so this costs nothing, whatever the length.
    ///
    /// The one `unsafe` function of this crate (see the crate's
    /// documentation for why).
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: `from_utf8_unchecked` needs `self.0` to be valid UTF-8.
        // The field is private and `Bytes` is immutable, so it holds what
        // one of this type's constructors put there, each of which gives
        // valid UTF-8: `from_static`, `From<String>`, `From<&str>` and
        // `From<&String>` take a `str`; `TryFrom<Bytes>` and
        // `TryFrom<Vec<u8>>` check with `std::str::from_utf8`; `Default` is
        // empty; `slice_ref` keeps the part that a `&str` covers, and a
        // `str` inside valid UTF-8 starts and ends on character boundaries,
        // so that part is valid UTF-8 too; `from_validated` (crate-private)
        // is called only by the connection for a text message whose every
        // byte went through `Utf8Validator`, which accepted the whole
        // (`finish`), and the fuzz targets check each such message against
        // `std::str::from_utf8`.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The part of this text that `subset` (a slice of [`as_str`](Self::as_str))
    /// covers, sharing its memory. `None` when `subset` does not lie
    /// within it.
    ///
    /// ```
    /// use ws_proto::Utf8Bytes;
    /// let text = Utf8Bytes::from("é, then more");
    /// let word = text.slice_ref(&text.as_str()[4..8]).unwrap();
    /// assert_eq!(word, "then");
    /// assert!(text.slice_ref("then").is_none());
    /// ```
    pub fn slice_ref(&self, subset: &str) -> Option<Self> {
        let start = (subset.as_ptr() as usize).checked_sub(self.0.as_ptr() as usize)?;
        let end = start.checked_add(subset.len())?;
        // A `&str` starts and ends on character boundaries, so the part of
        // valid text it covers is valid text.
        (end <= self.0.len()).then(|| Self(self.0.slice(start..end)))
    }

    /// Wrap bytes that the caller has already validated as a whole.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        std::str::from_utf8(&bytes).map_err(|_| InvalidUtf8)?;
        Ok(Self(bytes))
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(v: Vec<u8>) -> Result<Self, InvalidUtf8> {
        Self::try_from(Bytes::from(v))
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(bytes: &[u8]) -> bool {
        let whole = std::str::from_utf8(bytes).is_ok();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut v = Utf8Validator::default();
                let ok = v.feed(&bytes[..i]).is_ok()
                    && v.feed(&bytes[i..j]).is_ok()
                    && v.feed(&bytes[j..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, whole, "{bytes:x?} split at {i},{j}");
            }
        }
        whole
    }

    #[test]
    fn agrees_with_std_on_every_split() {
        assert!(check_all_splits("κόσμε €𝄞 a".as_bytes()));
        assert!(!check_all_splits(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xed, 0xa0, 0x80
        ]));
        assert!(!check_all_splits(&[0xf4, 0x90, 0x80, 0x80]));
        assert!(!check_all_splits(&[0xc0, 0xaf]));
        assert!(!check_all_splits(&[0xe0, 0x80, 0xaf]));
        assert!(!check_all_splits(&[0x61, 0xe2, 0x82]));
        assert!(!check_all_splits(&[0xff]));
    }

    #[test]
    fn fails_fast_on_invalid_prefix() {
        // Autobahn 6.4.1: the second piece makes the sequence invalid, and
        // must fail before the third arrives.
        let mut v = Utf8Validator::default();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xf4, 0x90, 0x80, 0x80]), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        v.feed(&[0xf4]).unwrap();
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    /// The first index `i` at which `bytes[..=i]` can no longer be the start
    /// of valid UTF-8: where a validator that fails fast must fail.
    fn first_hopeless_byte(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find(
            |&i| matches!(std::str::from_utf8(&bytes[..=i]), Err(e) if e.error_len().is_some()),
        )
    }

    #[test]
    fn fails_on_the_byte_that_makes_it_invalid() {
        for (bytes, at) in [
            (&[0x80][..], 0),   // a lone continuation byte
            (&[0xc0, 0x80], 0), // C0 and C1 only start overlong forms
            (&[0xc1, 0xbf], 0),
            (&[0xf5, 0x80], 0), // F5-FF are never valid
            (&[0xff], 0),
            (&[0xe0, 0x80, 0x80], 1),       // overlong three-byte form
            (&[0xf0, 0x80, 0x80, 0x80], 1), // overlong four-byte form
            (&[0xed, 0xa0, 0x80], 1),       // a UTF-16 surrogate
            (&[0xf4, 0x90, 0x80, 0x80], 1), // beyond U+10FFFF
            (&[b'a', 0xe2, 0x82, b'b'], 3), // a sequence cut short
            (&[0xce, 0xba, 0xc2], 3),       // (at the end: only `finish` fails)
        ] {
            let expect = (at < bytes.len()).then_some(at);
            assert_eq!(first_hopeless_byte(bytes), expect, "{bytes:x?}");
            let mut v = Utf8Validator::default();
            let failed = (0..bytes.len()).find(|&i| v.feed(&bytes[i..=i]).is_err());
            assert_eq!(failed, expect, "{bytes:x?} byte by byte");
            if expect.is_none() {
                assert_eq!(v.finish(), Err(InvalidUtf8));
            }
        }
    }

    #[test]
    fn empty_pieces_change_nothing() {
        let euro = "€".as_bytes();
        let mut v = Utf8Validator::default();
        v.feed(&[]).unwrap();
        v.feed(&euro[..1]).unwrap();
        v.feed(&[]).unwrap();
        v.feed(&euro[1..2]).unwrap();
        v.feed(&[]).unwrap();
        assert_eq!(
            v.clone().finish(),
            Err(InvalidUtf8),
            "still inside the euro sign"
        );
        v.feed(&euro[2..]).unwrap();
        v.finish().unwrap();
        let mut v = Utf8Validator::default();
        v.feed(&[]).unwrap();
        v.finish().unwrap();
    }

    #[test]
    fn finish_and_reset_start_a_new_message() {
        // After a message that ended inside a code point, the next one
        // starts clean.
        let mut v = Utf8Validator::default();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        v.feed(b"ok").unwrap();
        v.finish().unwrap();
        // `reset` forgets a partial code point: its continuation is now a
        // stray byte.
        v.feed(&[0xf0, 0x9f, 0x98]).unwrap();
        v.reset();
        assert_eq!(v.feed(&[0x80]), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        v.feed(&[0xf0, 0x9f]).unwrap();
        v.reset();
        v.feed(b"a").unwrap();
        v.finish().unwrap();
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Cut into any pieces, mostly-valid text fails in exactly the piece
        /// that holds the first hopeless byte, and otherwise agrees with std.
        #[test]
        fn fails_in_the_piece_with_the_first_bad_byte(
            data in proptest::prop_oneof![
                proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..40),
                (".{0,20}", proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..4), ".{0,20}")
                    .prop_map(|(a, b, c): (String, Vec<u8>, String)| {
                        [a.as_bytes(), &b, c.as_bytes()].concat()
                    }),
            ],
            cuts in proptest::collection::vec(0usize..100, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            let mut v = Utf8Validator::default();
            let failed = cuts
                .windows(2)
                .map(|w| (w[0], w[1]))
                .find(|&(start, end)| v.feed(&data[start..end]).is_err());
            match first_hopeless_byte(&data) {
                Some(i) => {
                    let (start, end) = failed.expect("fails");
                    proptest::prop_assert!(start <= i && i < end, "{:x?}: byte {} not in {}..{}", data, i, start, end);
                }
                None => {
                    proptest::prop_assert_eq!(failed, None);
                    proptest::prop_assert_eq!(v.finish().is_ok(), std::str::from_utf8(&data).is_ok());
                }
            }
        }

        #[test]
        fn matches_std(data: Vec<u8>, cut in 0usize..64) {
            let cut = cut.min(data.len());
            let mut v = Utf8Validator::default();
            let ok = v.feed(&data[..cut]).is_ok() && v.feed(&data[cut..]).is_ok() && v.finish().is_ok();
            proptest::prop_assert_eq!(ok, std::str::from_utf8(&data).is_ok());
        }
    }
}
