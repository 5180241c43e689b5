//! The frame layer (RFC 6455 §5): header codec, masking and close codes.
//!
//! These are the building blocks of [`Connection`](crate::Connection); most
//! users never touch them directly. They are public for fuzzing, benchmarks
//! and for those who build their own state machine.

mod close;
mod mask;

pub(crate) use close::utf8_cut;
pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use mask::{apply_mask, apply_mask_at, apply_mask_bytewise};

use crate::error::ProtocolError;

/// A frame opcode (RFC 6455 §5.2, §11.8).
///
/// ```
/// use ws_proto::frame::OpCode;
/// assert_eq!(OpCode::from_u8(0x9), Some(OpCode::Ping));
/// assert!(OpCode::Ping.is_control());
/// assert_eq!(OpCode::from_u8(0x3), None); // reserved
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented data message.
    Continuation,
    /// `0x1`: the first frame of a text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: connection close.
    Close,
    /// `0x9`: ping.
    Ping,
    /// `0xA`: pong.
    Pong,
}

impl OpCode {
    /// Decode the 4-bit opcode; `None` for the reserved values 0x3-0x7 and
    /// 0xB-0xF, which a receiver must treat as a protocol error (§5.2).
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames have opcodes with the high bit set (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest encoded frame header: 2 bytes, 8 bytes of extended length, 4 bytes
/// of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// RSV1, the bit permessage-deflate uses (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

/// A decoded frame header (RFC 6455 §5.2).
///
/// ```
/// use ws_proto::frame::{FrameHeader, OpCode};
/// // A single-frame unmasked text message "Hello" (RFC 6455 §5.7).
/// let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// let (header, len) = FrameHeader::decode(&bytes).unwrap().unwrap();
/// assert_eq!(len, 2);
/// assert!(header.fin);
/// assert_eq!(header.opcode, OpCode::Text);
/// assert_eq!(header.payload_len, 5);
/// assert_eq!(header.mask, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// The three reserved bits, RSV1 as `0b100`, RSV2 as `0b010`, RSV3 as `0b001`.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decode a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, and
    /// otherwise the header and its encoded length. Checks the rules that need
    /// no connection state: reserved opcodes, the most significant bit of a
    /// 64-bit length (§5.2), and control frames being final and at most 125
    /// bytes (§5.5).
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let n = u64::from_be_bytes(a);
                    // §5.2: "the most significant bit MUST be 0".
                    if n >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            // §5.5: control frames MUST have a payload of 125 bytes or less and
            // MUST NOT be fragmented.
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlTooLong(payload_len));
            }
        }
        let mask = if masked {
            match buf.get(len..len + 4) {
                Some(k) => {
                    len += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            Self {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            len,
        )))
    }

    /// Length of this header once encoded.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encode into a fixed buffer; returns the buffer and the number of bytes
    /// used. The length uses the minimal encoding, as §5.2 requires.
    ///
    /// ```
    /// use ws_proto::frame::{FrameHeader, OpCode};
    /// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 256 };
    /// let (buf, n) = h.encode();
    /// assert_eq!(&buf[..n], &[0x82, 0x7e, 0x01, 0x00]); // RFC 6455 §5.7
    /// ```
    pub fn encode(&self) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut out = [0u8; MAX_HEADER_LEN];
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        (out, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn round_trip_all_length_forms() {
        for len in [0, 1, 125, 126, 127, 0xffff, 0x10000, u64::MAX >> 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = header(OpCode::Binary, len, mask);
                let (buf, n) = h.encode();
                assert_eq!(n, h.encoded_len());
                assert_eq!(FrameHeader::decode(&buf[..n]).unwrap(), Some((h, n)));
                for short in 0..n {
                    assert_eq!(FrameHeader::decode(&buf[..short]).unwrap(), None);
                }
            }
        }
    }

    #[test]
    fn rfc_5_7_length_encodings() {
        // 256 bytes binary message in a single unmasked frame.
        let (b, n) = header(OpCode::Binary, 256, None).encode();
        assert_eq!(&b[..n], &[0x82, 0x7e, 0x01, 0x00]);
        // 64 KiB binary message in a single unmasked frame.
        let (b, n) = header(OpCode::Binary, 65536, None).encode();
        assert_eq!(&b[..n], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in (3..=7).chain(0xb..=0xf) {
            let err = FrameHeader::decode(&[0x80 | op, 0]).unwrap_err();
            assert_eq!(err, ProtocolError::ReservedOpcode(op));
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn rejects_msb_of_64_bit_length() {
        let buf = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        let err = FrameHeader::decode(&buf).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidLength);
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn fin_rsv_and_opcode_round_trip() {
        let ops = [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ];
        for op in ops {
            assert_eq!(OpCode::from_u8(op.as_u8()), Some(op));
            assert_eq!(op.is_control(), op.as_u8() >= 0x8);
            for rsv in 0..8 {
                for fin in [true, false] {
                    if op.is_control() && !fin {
                        continue;
                    }
                    let h = FrameHeader {
                        fin,
                        rsv,
                        opcode: op,
                        mask: None,
                        payload_len: 3,
                    };
                    let (buf, n) = h.encode();
                    assert_eq!(buf[0], (u8::from(fin) << 7) | (rsv << 4) | op.as_u8());
                    assert_eq!(FrameHeader::decode(&buf[..n]).unwrap(), Some((h, n)));
                }
            }
        }
    }

    #[test]
    fn control_frame_checks_need_no_mask_key() {
        // A masked ping announcing 126 bytes fails before its key arrives.
        let err = FrameHeader::decode(&[0x89, 0xfe, 0x00, 0x7e]).unwrap_err();
        assert_eq!(err, ProtocolError::ControlTooLong(126));
        // So does a masked, fragmented close.
        let err = FrameHeader::decode(&[0x08, 0x82]).unwrap_err();
        assert_eq!(err, ProtocolError::FragmentedControl);
        // A masked ping of 125 bytes waits for its key.
        for short in 2..6 {
            let buf = [0x89, 0xfd, 1, 2, 3, 4];
            assert_eq!(FrameHeader::decode(&buf[..short]).unwrap(), None);
        }
        let (h, n) = FrameHeader::decode(&[0x89, 0xfd, 1, 2, 3, 4])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, h.mask, n), (125, Some([1, 2, 3, 4]), 6));
    }

    #[test]
    fn header_decode_ignores_what_follows() {
        let mut buf = vec![0x82, 0x7e, 0x01, 0x00];
        buf.extend_from_slice(&[0xff; 300]);
        let (h, n) = FrameHeader::decode(&buf).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
        assert_eq!(FrameHeader::decode(&[]).unwrap(), None);
        assert_eq!(FrameHeader::decode(&[0x82]).unwrap(), None);
    }

    #[test]
    fn rejects_bad_control_frames() {
        let err = FrameHeader::decode(&[0x09, 0x00]).unwrap_err();
        assert_eq!(err, ProtocolError::FragmentedControl);
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        let err = FrameHeader::decode(&[0x89, 126, 0, 126]).unwrap_err();
        assert_eq!(err, ProtocolError::ControlTooLong(126));
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}
