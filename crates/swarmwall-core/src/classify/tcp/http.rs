//! Plain HTTP/1.x: T4 tracker requests and replies, T5 web seeds, T7 over `ws:`, and `.torrent`
//! files or magnet links handed over HTTP.
//!
//! Request side (spec §1.5, §1.6): the request line alone decides a tracker announce
//! (`info_hash` decoding to exactly 20 bytes plus `peer_id` of 20 bytes or two of
//! `port`/`uploaded`/`downloaded`/`left` with decimal values), a scrape (last path segment
//! starting with `scrape` and only 20-byte `info_hash` values) or a BEP 17 web seed
//! (`info_hash` + decimal `piece`). A torrent index page with an `info_hash` parameter does not
//! pass. BEP 19 web seeds are told only by a BitTorrent User-Agent with a `Range` header: class
//! C, decided only for a corroborated client.
//!
//! Response side: a `3xx` to a `magnet:?xt=urn:btih:` link, `Content-Type:
//! application/x-bittorrent`, or a body that is a bencoded tracker reply (`interval` +
//! `peers`/`peers6`, or `failure reason`) or a metainfo file (`announce` URL or an `info`
//! dictionary) is BitTorrent. Anything else is benign HTTP once the response header (and, for
//! a body that could be bencoded, its start) has been seen.

use memchr::memmem;

use super::{Done, Match, Step, Wait, benign, bittorrent, websocket};
use crate::classify::bencode::{self, BencodeError, Limits, Value};
use crate::classify::{Benign, BtForm, FlowContext, Verdict};

/// User-Agent fragments of BitTorrent clients (corroboration only, spec §1.5).
const BT_USER_AGENTS: [&[u8]; 10] = [
    b"Azureus",
    b"BitTorrent",
    b"BTWebClient",
    b"Shareaza",
    b"uTorrent",
    b"qBittorrent",
    b"Transmission",
    b"libtorrent",
    b"Deluge",
    b"BitComet",
];

/// Request methods that open the HTTP path: RFC 9110, PATCH (RFC 5789), WebDAV (RFC 4918,
/// 3253, 5323) and CalDAV (RFC 4791). A list, not "upper-case letters and a space": random
/// first flights (an MSE Ya) opened with a letter and a space about 1 in 2,500 times, with
/// three letters and a space about 1 in 250,000, and the HTTP path let them through. A request
/// with another method goes the opaque way, where text never passes for MSE either.
const METHODS: [&[u8]; 19] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"MKCALENDAR",
];

/// A known method ([`METHODS`]) followed by a space.
pub(super) fn method_prefix(bytes: &[u8]) -> Match {
    let mut partial = false;
    for method in METHODS {
        match bytes.get(method.len()) {
            Some(&b' ') if bytes.starts_with(method) => return Match::Yes,
            Some(_) => {}
            None => partial |= method.starts_with(bytes),
        }
    }
    if partial { Match::Partial } else { Match::No }
}

/// Classify an HTTP exchange whose request starts `c2s`.
pub(super) fn classify(context: &FlowContext, c2s: &[u8], s2c: &[u8], done: Done) -> Step {
    let request = match request_line(c2s) {
        Parse::Incomplete if done.c2s => return Step::Final(Verdict::GaveUp),
        Parse::Incomplete => return Step::Wait(Wait::C2S),
        Parse::Invalid => return Step::Final(Verdict::GaveUp),
        Parse::Done(request) => request,
    };
    if let Some(form) = classify_target(request.target) {
        return bittorrent(form);
    }
    let Some(header_end) = find_header_end(c2s, request.line_end) else {
        return if done.c2s {
            benign(Benign::Http)
        } else {
            Step::Wait(Wait::C2S)
        };
    };
    let is_get = request.method == b"GET";
    // The User-Agent only matters for a corroborated client (BEP 19 is class C).
    let headers = RequestHeaders::parse(
        c2s.get(request.line_end..header_end).unwrap_or_default(),
        is_get && context.corroborated,
    );
    if headers.websocket && headers.webtorrent_host {
        return bittorrent(BtForm::WebTorrent);
    }
    if is_get && headers.bt_user_agent && headers.range && context.corroborated {
        // BEP 19 (GetRight-style) web seed: class C, only with corroboration.
        return bittorrent(BtForm::WebSeed);
    }
    let response = match response_head(s2c) {
        Parse::Incomplete if done.s2c => return benign(Benign::Http),
        Parse::Incomplete => return Step::Wait(Wait::S2C),
        Parse::Invalid => return benign(Benign::Http),
        Parse::Done(response) => response,
    };
    if headers.websocket && response.status == 101 {
        let frames = c2s.get(header_end..).unwrap_or_default();
        return match websocket::first_frame_announce(frames).resolve(done.c2s) {
            Match::Yes => bittorrent(BtForm::WebTorrent),
            Match::Partial => Step::Wait(Wait::C2S),
            Match::No => benign(Benign::Http),
        };
    }
    if (300..400).contains(&response.status) && response.magnet_location {
        return bittorrent(BtForm::TorrentFile);
    }
    if response.bittorrent_type {
        return bittorrent(BtForm::TorrentFile);
    }
    let no_body = request.method == b"HEAD"
        || response.status < 200
        || response.status == 204
        || response.status == 304;
    if no_body || response.encoded || response.markup_type {
        return benign(Benign::Http);
    }
    let mut body = s2c.get(response.header_end..).unwrap_or_default();
    if response.chunked {
        body = match skip_chunk_size(body) {
            Parse::Done(rest) => rest,
            Parse::Incomplete if done.s2c => return benign(Benign::Http),
            Parse::Incomplete => return Step::Wait(Wait::S2C),
            Parse::Invalid => return benign(Benign::Http),
        };
    }
    match bencoded_body(body) {
        Parse::Done(Some(form)) => bittorrent(form),
        Parse::Done(None) | Parse::Invalid => benign(Benign::Http),
        Parse::Incomplete if done.s2c => benign(Benign::Http),
        Parse::Incomplete => Step::Wait(Wait::S2C),
    }
}

/// Incremental parse result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse<T> {
    Done(T),
    Incomplete,
    Invalid,
}

/// A parsed request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    /// Index just past the line's CRLF.
    line_end: usize,
}

/// `METHOD SP target SP HTTP/1.x CRLF`.
fn request_line(bytes: &[u8]) -> Parse<RequestLine<'_>> {
    let Some(eol) = memchr::memchr(b'\n', bytes) else {
        // A request line longer than the budget is not one we care about.
        return Parse::Incomplete;
    };
    let line = bytes.get(..eol).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Parse::Invalid;
    };
    if target.is_empty() || !(version == b"HTTP/1.1" || version == b"HTTP/1.0") {
        return Parse::Invalid;
    }
    Parse::Done(RequestLine {
        method,
        target,
        line_end: eol + 1,
    })
}

/// Index just past the blank line ending the header block that starts at `from`.
fn find_header_end(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    if rest.starts_with(b"\r\n") {
        return Some(from + 2);
    }
    memmem::find(rest, b"\r\n\r\n").map(|i| from + i + 4)
}

/// Iterate `name: value` header lines of a header block.
fn header_lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line)?;
        let name = line.get(..colon)?;
        let value = line.get(colon + 1..)?.trim_ascii();
        Some((name, value))
    })
}

/// The request headers that matter here.
#[derive(Debug, Default)]
struct RequestHeaders {
    websocket: bool,
    webtorrent_host: bool,
    bt_user_agent: bool,
    range: bool,
}

impl RequestHeaders {
    fn parse(block: &[u8], want_user_agent: bool) -> Self {
        let mut out = Self::default();
        for (name, value) in header_lines(block) {
            if name.eq_ignore_ascii_case(b"upgrade") {
                out.websocket = value.eq_ignore_ascii_case(b"websocket");
            } else if name.eq_ignore_ascii_case(b"host") {
                let host = host_without_port(value);
                out.webtorrent_host = crate::classify::destination::WEBTORRENT_TRACKERS
                    .iter()
                    .any(|t| t.as_bytes().eq_ignore_ascii_case(host));
            } else if want_user_agent && name.eq_ignore_ascii_case(b"user-agent") {
                out.bt_user_agent = BT_USER_AGENTS
                    .iter()
                    .any(|ua| memmem::find(value, ua).is_some());
            } else if name.eq_ignore_ascii_case(b"range") {
                out.range = true;
            }
        }
        out
    }
}

fn host_without_port(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        return host;
    }
    match memchr::memrchr(b':', host) {
        Some(colon) => host.get(..colon).unwrap_or(host),
        None => host,
    }
}

/// T4/T5 from the request target alone.
fn classify_target(target: &[u8]) -> Option<BtForm> {
    // Absolute form (a request to a proxy): drop `scheme://authority`.
    let target = if target.starts_with(b"/") {
        target
    } else {
        let i = memmem::find(target, b"://")?;
        let rest = target.get(i + 3..)?;
        rest.get(memchr::memchr(b'/', rest)?..)?
    };
    let target = target
        .get(..memchr::memchr(b'#', target).unwrap_or(target.len()))
        .unwrap_or(target);
    let question = memchr::memchr(b'?', target)?;
    let path = target.get(..question)?;
    let query = target.get(question + 1..)?;

    let mut info_hashes = 0u32;
    let mut peer_id = false;
    let mut numeric = 0u8; // bit per key: port, uploaded, downloaded, left
    let mut piece = false;
    for param in query.split(|&b| b == b'&') {
        let (key, value) = match memchr::memchr(b'=', param) {
            Some(i) => (param.get(..i)?, param.get(i + 1..)?),
            None => (param, &b""[..]),
        };
        match key {
            b"info_hash" => {
                if decoded_len(value) != Some(20) {
                    return None;
                }
                info_hashes += 1;
            }
            b"peer_id" => peer_id = decoded_len(value) == Some(20),
            b"port" | b"uploaded" | b"downloaded" | b"left" if is_decimal(value) => {
                numeric |= match key {
                    b"port" => 1,
                    b"uploaded" => 2,
                    b"downloaded" => 4,
                    _ => 8,
                };
            }
            b"piece" => piece = is_decimal(value),
            _ => {}
        }
    }
    if info_hashes == 0 {
        return None;
    }
    if info_hashes == 1 && piece {
        return Some(BtForm::WebSeed);
    }
    if info_hashes == 1 && (peer_id || numeric.count_ones() >= 2) {
        return Some(BtForm::HttpTracker);
    }
    let last_segment = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
    last_segment
        .starts_with(b"scrape")
        .then_some(BtForm::HttpTracker)
}

/// Length of a percent-encoded query value once decoded; `None` if malformed.
fn decoded_len(value: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    let mut i = 0usize;
    while let Some(&byte) = value.get(i) {
        if byte == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
        len += 1;
    }
    Some(len)
}

fn is_decimal(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 20 && value.iter().all(u8::is_ascii_digit)
}

/// The response head facts that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Response {
    status: u16,
    header_end: usize,
    magnet_location: bool,
    bittorrent_type: bool,
    /// A content type that is never bencoded (HTML, images, media, JSON, scripts).
    markup_type: bool,
    chunked: bool,
    /// Content-Encoding other than identity: the body cannot be read.
    encoded: bool,
}

fn response_head(bytes: &[u8]) -> Parse<Response> {
    // Status line: HTTP/1.x SP 3DIGIT.
    let prefix = b"HTTP/1.";
    let n = bytes.len().min(prefix.len());
    if bytes.get(..n) != prefix.get(..n) {
        return Parse::Invalid;
    }
    let Some(status) = bytes.get(9..12) else {
        return Parse::Incomplete;
    };
    if bytes.get(8) != Some(&b' ') || !status.iter().all(u8::is_ascii_digit) {
        return Parse::Invalid;
    }
    let status = status
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    let Some(line_end) = memchr::memchr(b'\n', bytes).map(|i| i + 1) else {
        return Parse::Incomplete;
    };
    let Some(header_end) = find_header_end(bytes, line_end) else {
        return Parse::Incomplete;
    };
    let mut response = Response {
        status,
        header_end,
        magnet_location: false,
        bittorrent_type: false,
        markup_type: false,
        chunked: false,
        encoded: false,
    };
    for (name, value) in header_lines(bytes.get(line_end..header_end).unwrap_or_default()) {
        if name.eq_ignore_ascii_case(b"location") {
            response.magnet_location = is_magnet(value);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            let media = value
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            response.bittorrent_type = media.eq_ignore_ascii_case(b"application/x-bittorrent");
            response.markup_type = [
                &b"text/html"[..],
                b"text/css",
                b"text/javascript",
                b"application/javascript",
                b"application/json",
                b"image/",
                b"video/",
                b"audio/",
                b"font/",
            ]
            .iter()
            .any(|m| starts_with_ignore_case(media, m));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            response.chunked = contains_ignore_case(value, b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            response.encoded = !value.eq_ignore_ascii_case(b"identity");
        }
    }
    Parse::Done(response)
}

/// Case-insensitive substring test (header values are short).
fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// Case-insensitive prefix test.
fn starts_with_ignore_case(value: &[u8], prefix: &[u8]) -> bool {
    value
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// `magnet:?...xt=urn:btih:` (or the v2 `urn:btmh:`).
fn is_magnet(value: &[u8]) -> bool {
    let scheme = b"magnet:?";
    starts_with_ignore_case(value, scheme)
        && (memmem::find(value, b"xt=urn:btih:").is_some()
            || memmem::find(value, b"xt=urn:btmh:").is_some())
}

/// Skip the first chunk-size line of a chunked body.
fn skip_chunk_size(body: &[u8]) -> Parse<&[u8]> {
    let Some(eol) = memchr::memchr(b'\n', body) else {
        return if body.len() > 32 {
            Parse::Invalid
        } else {
            Parse::Incomplete
        };
    };
    let line = body.get(..eol).unwrap_or_default();
    let size = line
        .split(|&b| b == b';' || b == b'\r')
        .next()
        .unwrap_or_default();
    if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
        return Parse::Invalid;
    }
    Parse::Done(body.get(eol + 1..).unwrap_or_default())
}

/// Bounds for walking a response body's top-level dictionary one value at a time.
const BODY_LIMITS: Limits = Limits {
    max_depth: 6,
    max_items: 1024,
};

/// Evidence gathered while walking a bencoded body.
#[derive(Debug, Default)]
struct BodyEvidence {
    interval: bool,
    peers: bool,
    failure: bool,
    announce_url: bool,
    info: bool,
}

impl BodyEvidence {
    fn form(&self) -> Option<BtForm> {
        if self.failure || (self.interval && self.peers) {
            Some(BtForm::HttpTracker)
        } else if self.announce_url || self.info {
            Some(BtForm::TorrentFile)
        } else {
            None
        }
    }
}

/// Walk a body that may be a bencoded tracker reply or metainfo file. `Done(None)` when it is
/// not; `Incomplete` while the evidence is still open.
fn bencoded_body(body: &[u8]) -> Parse<Option<BtForm>> {
    let Some(&first) = body.first() else {
        return Parse::Incomplete;
    };
    if first != b'd' {
        return Parse::Done(None);
    }
    let mut evidence = BodyEvidence::default();
    let mut pos = 1usize;
    loop {
        let rest = body.get(pos..).unwrap_or_default();
        match rest.first() {
            None => return Parse::Incomplete,
            Some(b'e') => return Parse::Done(evidence.form()),
            Some(_) => {}
        }
        let key = match bencode::parse_prefix(rest, BODY_LIMITS) {
            Ok((Value::Bytes(key), used)) => {
                pos += used;
                key
            }
            Ok(_) | Err(BencodeError::Invalid(_) | BencodeError::TooLarge) => {
                return Parse::Done(None);
            }
            Err(BencodeError::Incomplete) => return Parse::Incomplete,
        };
        let rest = body.get(pos..).unwrap_or_default();
        if key == b"info" {
            // The info dictionary can be megabytes: judge it by its first key.
            return match info_start(rest) {
                Parse::Done(true) => Parse::Done(Some(BtForm::TorrentFile)),
                Parse::Done(false) | Parse::Invalid => Parse::Done(None),
                Parse::Incomplete => Parse::Incomplete,
            };
        }
        let value = match bencode::parse_prefix(rest, BODY_LIMITS) {
            Ok((value, used)) => {
                pos += used;
                value
            }
            Err(BencodeError::Incomplete) => {
                // A long `peers` list: the key and the opening of its value are enough.
                if matches!(key, b"peers" | b"peers6")
                    && evidence.interval
                    && rest
                        .first()
                        .is_some_and(|&b| b == b'l' || b.is_ascii_digit())
                {
                    return Parse::Done(Some(BtForm::HttpTracker));
                }
                return Parse::Incomplete;
            }
            Err(_) => return Parse::Done(None),
        };
        if !record_key(&mut evidence, key, value) {
            return Parse::Done(None);
        }
        if let Some(form) = evidence.form() {
            return Parse::Done(Some(form));
        }
    }
}

/// Note what a top-level key shows; false when a known key has the wrong type.
fn record_key(evidence: &mut BodyEvidence, key: &[u8], value: Value<'_>) -> bool {
    match (key, value) {
        (b"interval", Value::Int(_)) => evidence.interval = true,
        (b"peers", Value::Bytes(peers)) => evidence.peers = peers.len() % 6 == 0,
        (b"peers", Value::List(_)) => evidence.peers = true,
        (b"peers6", Value::Bytes(peers)) => evidence.peers = peers.len() % 18 == 0,
        (b"failure reason", Value::Bytes(_)) => evidence.failure = true,
        (b"announce", Value::Bytes(url)) => {
            evidence.announce_url = [&b"http://"[..], b"https://", b"udp://", b"ws://", b"wss://"]
                .iter()
                .any(|scheme| url.starts_with(scheme));
        }
        (b"interval" | b"peers" | b"peers6" | b"failure reason" | b"announce", _) => return false,
        _ => {}
    }
    true
}

/// Does an `info` value start like a metainfo info dictionary (BEP 3, BEP 52)?
fn info_start(value: &[u8]) -> Parse<bool> {
    match value.first() {
        None => return Parse::Incomplete,
        Some(b'd') => {}
        Some(_) => return Parse::Done(false),
    }
    match bencode::parse_prefix(value.get(1..).unwrap_or_default(), BODY_LIMITS) {
        Ok((Value::Bytes(key), _)) => Parse::Done(matches!(
            key,
            b"file tree"
                | b"files"
                | b"length"
                | b"meta version"
                | b"name"
                | b"piece length"
                | b"pieces"
                | b"private"
        )),
        Ok(_) => Parse::Done(false),
        Err(BencodeError::Incomplete) => Parse::Incomplete,
        Err(_) => Parse::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_tokens() {
        assert_eq!(method_prefix(b"GET /"), Match::Yes);
        assert_eq!(method_prefix(b"OPTIONS *"), Match::Yes);
        assert_eq!(method_prefix(b"GE"), Match::Partial);
        assert_eq!(method_prefix(b"Get "), Match::No);
        assert_eq!(method_prefix(b" GET"), Match::No);
        assert_eq!(method_prefix(b"ABCDEFGHIJKLMNOPQ"), Match::No);
        assert_eq!(method_prefix(b"MKCALENDAR /cal"), Match::Yes);
        assert_eq!(method_prefix(b"MKCAL"), Match::Partial);
        // Random first flights that open like a method token.
        assert_eq!(method_prefix(b"B \x8f\x01"), Match::No);
        assert_eq!(method_prefix(b"DYP \x8f"), Match::No);
        assert_eq!(method_prefix(b"GETS /"), Match::No);
    }

    const HASH: &str = "%12%34%56%78%9a%bc%de%f1%23%45%67%89%ab%cd%ef%124Vx%9a";

    #[test]
    fn tracker_announce_and_scrape() {
        let announce = format!(
            "/announce?info_hash={HASH}&peer_id=-qB4650-abcdefghijkl&port=6881&uploaded=0\
             &downloaded=0&left=100&compact=1"
        );
        assert_eq!(
            classify_target(announce.as_bytes()),
            Some(BtForm::HttpTracker)
        );
        // Without peer_id, two numeric keys suffice.
        let bare = format!("/a/b/announce.php?info_hash={HASH}&port=1&left=0");
        assert_eq!(classify_target(bare.as_bytes()), Some(BtForm::HttpTracker));
        let scrape = format!("/pk/scrape.php?info_hash={HASH}&info_hash={HASH}");
        assert_eq!(
            classify_target(scrape.as_bytes()),
            Some(BtForm::HttpTracker)
        );
        let absolute = format!(
            "http://tracker.example:6969/announce?info_hash={HASH}&peer_id=01234567890123456789"
        );
        assert_eq!(
            classify_target(absolute.as_bytes()),
            Some(BtForm::HttpTracker)
        );
    }

    #[test]
    fn index_pages_do_not_match() {
        // 40 hex characters decode to 40 bytes, not 20.
        assert_eq!(
            classify_target(b"/torrent?info_hash=0123456789abcdef0123456789abcdef01234567"),
            None
        );
        // A 20-byte value without any other tracker parameter.
        let page = format!("/details.php?info_hash={HASH}&page=2");
        assert_eq!(classify_target(page.as_bytes()), None);
        let one_numeric = format!("/details.php?info_hash={HASH}&left=2");
        assert_eq!(classify_target(one_numeric.as_bytes()), None);
        assert_eq!(classify_target(b"/search?q=info_hash"), None);
        assert_eq!(classify_target(b"/"), None);
    }

    #[test]
    fn web_seed_bep17() {
        let seed = format!("/seed.php?info_hash={HASH}&piece=12&ranges=0-16383");
        assert_eq!(classify_target(seed.as_bytes()), Some(BtForm::WebSeed));
    }

    #[test]
    fn bencoded_bodies() {
        let reply = b"d8:completei3e10:incompletei1e8:intervali1800e5:peers12:abcdefghijkle";
        assert_eq!(bencoded_body(reply), Parse::Done(Some(BtForm::HttpTracker)));
        for cut in 1..40 {
            assert_eq!(bencoded_body(&reply[..cut]), Parse::Incomplete, "cut {cut}");
        }
        assert_eq!(
            bencoded_body(b"d14:failure reason7:unknowne"),
            Parse::Done(Some(BtForm::HttpTracker))
        );
        assert_eq!(
            bencoded_body(b"d8:announce35:http://tracker.example/announce7:comment"),
            Parse::Done(Some(BtForm::TorrentFile))
        );
        assert_eq!(
            bencoded_body(b"d4:infod6:lengthi100e4:name"),
            Parse::Done(Some(BtForm::TorrentFile))
        );
        assert_eq!(bencoded_body(b"d3:foo3:bare"), Parse::Done(None));
        assert_eq!(bencoded_body(b"<html>"), Parse::Done(None));
        assert_eq!(bencoded_body(b"d8:intervalxe"), Parse::Done(None));
        // peers of the wrong length is no compact peer list.
        assert_eq!(
            bencoded_body(b"d8:intervali5e5:peers5:abcdee"),
            Parse::Done(None)
        );
    }

    #[test]
    fn response_heads() {
        let head = b"HTTP/1.1 302 Found\r\nLocation: magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=x\r\n\r\n";
        let Parse::Done(response) = response_head(head) else {
            panic!()
        };
        assert!(response.magnet_location);
        assert_eq!(response.status, 302);
        assert_eq!(response_head(&head[..30]), Parse::Incomplete);
        assert_eq!(response_head(b"SSH-2.0"), Parse::Invalid);
        let Parse::Done(response) = response_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-bittorrent\r\nTransfer-Encoding: chunked\r\n\r\n",
        ) else {
            panic!()
        };
        assert!(response.bittorrent_type && response.chunked);
    }
}
