//! A bounded, allocation-free bencode reader (BEP 3 §"bencoding").
//!
//! Used to validate DHT KRPC datagrams, tracker responses and BEP 10 extension handshakes
//! structurally. Nesting depth and item count are bounded, nothing recurses, and parsing never
//! panics: every index is checked. `Incomplete` (the input ended inside a value) is distinct
//! from `Invalid` so that a stream parser can wait for more bytes.

/// Why bencoded input was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BencodeError {
    /// The input ended before the value did; more bytes may complete it.
    #[error("input ends inside a bencoded value")]
    Incomplete,
    /// The input is not bencoding (bad token, leading zero, non-string dict key, ...).
    #[error("invalid bencoding at byte {0}")]
    Invalid(usize),
    /// Nesting deeper than [`Limits::max_depth`] or more items than [`Limits::max_items`].
    #[error("bencoded value exceeds the nesting or item limit")]
    TooLarge,
}

/// Bounds applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists/dicts accepted (the top-level container counts as 1).
    pub max_depth: usize,
    /// Most values (of any kind, containers included) accepted.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_items: 1024,
        }
    }
}

/// One bencoded value, borrowing the input. Containers keep their raw bytes (including the
/// leading `d`/`l` and trailing `e`) and are walked lazily with [`Value::dict_entries`] and
/// [`Value::list_items`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A list (raw bytes).
    List(&'a [u8]),
    /// A dictionary (raw bytes).
    Dict(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Self::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Self::Int(value) => Some(value),
            _ => None,
        }
    }

    /// Iterate over a dictionary's (key, value) pairs; empty for other kinds. The container
    /// was validated when it was parsed, so iteration cannot fail.
    pub fn dict_entries(&self) -> DictEntries<'a> {
        match *self {
            Self::Dict(raw) => DictEntries {
                items: Items::new(raw),
            },
            _ => DictEntries {
                items: Items::new(b"de"),
            },
        }
    }

    /// Iterate over a list's items; empty for other kinds.
    pub fn list_items(&self) -> Items<'a> {
        match *self {
            Self::List(raw) => Items::new(raw),
            _ => Items::new(b"le"),
        }
    }

    /// Look a key up in a dictionary (linear scan; dictionaries here are small).
    pub fn get(&self, key: &[u8]) -> Option<Self> {
        self.dict_entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Parse exactly one value at the start of `input`; returns it and the number of bytes it
/// used. Trailing bytes are left to the caller (see [`parse_exact`]).
pub fn parse_prefix(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), BencodeError> {
    let end = skip_value(input, 0, limits)?;
    // `skip_value` validated `input[..end]` as exactly one value.
    let value = read_validated(&input[..end]);
    Ok((value, end))
}

/// Parse `input` as exactly one value with nothing after it.
pub fn parse_exact(input: &[u8], limits: Limits) -> Result<Value<'_>, BencodeError> {
    let (value, used) = parse_prefix(input, limits)?;
    if used == input.len() {
        Ok(value)
    } else {
        Err(BencodeError::Invalid(used))
    }
}

/// Iterator over the values of a validated list or dictionary.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    raw: &'a [u8],
    position: usize,
}

impl<'a> Items<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Self { raw, position: 1 }
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.raw.get(self.position).is_none_or(|&b| b == b'e') {
            return None;
        }
        let end = skip_value(self.raw, self.position, Limits::UNBOUNDED).ok()?;
        let value = read_validated(self.raw.get(self.position..end)?);
        self.position = end;
        Some(value)
    }
}

/// Iterator over the (key, value) pairs of a validated dictionary.
#[derive(Debug, Clone)]
pub struct DictEntries<'a> {
    items: Items<'a>,
}

impl<'a> Iterator for DictEntries<'a> {
    type Item = (&'a [u8], Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.items.next()?.as_bytes()?;
        let value = self.items.next()?;
        Some((key, value))
    }
}

impl Limits {
    /// Used when re-walking input that was already validated under tighter limits.
    const UNBOUNDED: Self = Self {
        max_depth: usize::MAX,
        max_items: usize::MAX,
    };
}

/// Container kinds on the explicit parse stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    List,
    /// A dictionary; `expect_key` is true when the next value must be a byte-string key.
    Dict {
        expect_key: bool,
    },
}

/// Deepest stack kept inline; deeper input is rejected as `TooLarge` regardless of limits.
const MAX_STACK: usize = 32;

/// Validate one value starting at `start`; returns the index just past it. Iterative.
fn skip_value(input: &[u8], start: usize, limits: Limits) -> Result<usize, BencodeError> {
    let mut stack = [Frame::List; MAX_STACK];
    let mut depth = 0usize;
    let mut items = 0usize;
    let mut pos = start;
    loop {
        let byte = *input.get(pos).ok_or(BencodeError::Incomplete)?;
        // Closing a container.
        if byte == b'e' {
            if depth == 0 {
                return Err(BencodeError::Invalid(pos));
            }
            if let Frame::Dict { expect_key: false } = stack[depth - 1] {
                // A key without a value.
                return Err(BencodeError::Invalid(pos));
            }
            depth -= 1;
            pos += 1;
        } else {
            if let Some(Frame::Dict { expect_key: true }) = depth.checked_sub(1).map(|i| stack[i])
                && !byte.is_ascii_digit()
            {
                return Err(BencodeError::Invalid(pos));
            }
            items += 1;
            if items > limits.max_items {
                return Err(BencodeError::TooLarge);
            }
            match byte {
                b'd' | b'l' => {
                    if depth >= limits.max_depth || depth >= MAX_STACK {
                        return Err(BencodeError::TooLarge);
                    }
                    flip_key_expectation(&mut stack, depth);
                    stack[depth] = if byte == b'd' {
                        Frame::Dict { expect_key: true }
                    } else {
                        Frame::List
                    };
                    depth += 1;
                    pos += 1;
                    continue;
                }
                b'i' => pos = skip_int(input, pos)?.1,
                b'0'..=b'9' => pos = skip_string(input, pos)?.1,
                _ => return Err(BencodeError::Invalid(pos)),
            }
            flip_key_expectation(&mut stack, depth);
        }
        if depth == 0 {
            return Ok(pos);
        }
    }
}

/// After a value inside a dict, alternate between key and value position.
fn flip_key_expectation(stack: &mut [Frame; MAX_STACK], depth: usize) {
    if let Some(Frame::Dict { expect_key }) = depth.checked_sub(1).map(|i| &mut stack[i]) {
        *expect_key = !*expect_key;
    }
}

/// `i<-?digits>e` without leading zeros or `-0`; returns (value, index past `e`).
fn skip_int(input: &[u8], start: usize) -> Result<(i64, usize), BencodeError> {
    let mut pos = start + 1;
    let negative = input.get(pos) == Some(&b'-');
    if negative {
        pos += 1;
    }
    let digits_start = pos;
    let mut value: i64 = 0;
    loop {
        let byte = *input.get(pos).ok_or(BencodeError::Incomplete)?;
        match byte {
            b'0'..=b'9' => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(i64::from(byte - b'0')))
                    .ok_or(BencodeError::Invalid(pos))?;
                pos += 1;
            }
            b'e' => break,
            _ => return Err(BencodeError::Invalid(pos)),
        }
    }
    let digits = pos - digits_start;
    let leading_zero = digits > 1 && input.get(digits_start) == Some(&b'0');
    if digits == 0 || leading_zero || (negative && value == 0) {
        return Err(BencodeError::Invalid(digits_start));
    }
    Ok((if negative { -value } else { value }, pos + 1))
}

/// `<len>:<bytes>`; returns (range start of the bytes, index past them).
fn skip_string(input: &[u8], start: usize) -> Result<(usize, usize), BencodeError> {
    let mut pos = start;
    let mut length: usize = 0;
    loop {
        let byte = *input.get(pos).ok_or(BencodeError::Incomplete)?;
        match byte {
            b'0'..=b'9' => {
                if pos > start && input.get(start) == Some(&b'0') {
                    return Err(BencodeError::Invalid(pos));
                }
                length = length
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(usize::from(byte - b'0')))
                    .ok_or(BencodeError::Invalid(pos))?;
                pos += 1;
            }
            b':' if pos > start => break,
            _ => return Err(BencodeError::Invalid(pos)),
        }
    }
    let data_start = pos + 1;
    let end = data_start
        .checked_add(length)
        .ok_or(BencodeError::Invalid(pos))?;
    if end > input.len() {
        return Err(BencodeError::Incomplete);
    }
    Ok((data_start, end))
}

/// Read the top-level token of input already validated as exactly one value.
fn read_validated(raw: &[u8]) -> Value<'_> {
    match raw.first() {
        Some(b'd') => Value::Dict(raw),
        Some(b'l') => Value::List(raw),
        Some(b'i') => Value::Int(skip_int(raw, 0).map_or(0, |(v, _)| v)),
        _ => match skip_string(raw, 0) {
            Ok((data_start, end)) => Value::Bytes(raw.get(data_start..end).unwrap_or_default()),
            Err(_) => Value::Bytes(&[]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dht_ping() {
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let value = parse_exact(ping, Limits::default()).unwrap();
        assert_eq!(value.get(b"y").and_then(|v| v.as_bytes()), Some(&b"q"[..]));
        assert_eq!(
            value.get(b"q").and_then(|v| v.as_bytes()),
            Some(&b"ping"[..])
        );
        let args = value.get(b"a").unwrap();
        assert_eq!(
            args.get(b"id").and_then(|v| v.as_bytes()).map(<[u8]>::len),
            Some(20)
        );
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"d1:ae",
            b"di1ei2ee",
            b"01:a",
            b"x",
            b"e",
        ] {
            assert!(
                matches!(
                    parse_exact(bad, Limits::default()),
                    Err(BencodeError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        for short in [&b"d1:a"[..], b"i12", b"5:abc", b"l"] {
            assert_eq!(
                parse_exact(short, Limits::default()),
                Err(BencodeError::Incomplete),
                "{short:?}"
            );
        }
        assert_eq!(
            parse_exact(b"lllllllllle", Limits::default()),
            Err(BencodeError::TooLarge)
        );
        assert!(parse_exact(b"i1ex", Limits::default()).is_err());
    }

    #[test]
    fn walks_lists_and_ints() {
        let value = parse_exact(b"li-3e3:abcl1:xee", Limits::default()).unwrap();
        let items: Vec<_> = value.list_items().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], Value::Int(-3));
        assert_eq!(items[1], Value::Bytes(b"abc"));
        assert_eq!(items[2].list_items().count(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(value) = parse_exact(&bytes, Limits::default()) {
                let _ = value.dict_entries().count();
                let _ = value.list_items().count();
            }
        }
    }
}
