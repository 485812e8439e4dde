//! Incremental Server-Sent Events parser (the `text/event-stream` format of the WHATWG HTML
//! spec, section "Server-sent events").
//!
//! Bytes are fed with [`SseParser::push`] in chunks split anywhere (mid-line, mid-CRLF,
//! mid-UTF-8 code point); complete events are pulled with [`SseParser::next_event`].
//! Every byte is scanned once: the parser remembers how far it already looked for a line
//! terminator, and consumed bytes are compacted away in amortised O(1) per byte.
//!
//! Memory is bounded per event: the fields buffered for the event being assembled plus the
//! current unterminated line may not exceed `max_event_bytes`. (Bytes pushed but not yet
//! pulled are the caller's to bound: pull events after every push.)

// Numbers here come from providers and config: no unchecked arithmetic (issue 10).
#![deny(clippy::arithmetic_side_effects)]

/// One dispatched event. `event` is `None` when the stream gave no (or an empty) `event:`
/// field, which the spec calls type "message". Multi-line data is joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("server-sent event exceeds the configured size limit")]
    EventTooLarge,
    #[error("server-sent event stream is not valid UTF-8")]
    InvalidUtf8,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Fields of the event being assembled.
#[derive(Debug, Default)]
struct Pending {
    event_type: String,
    data: String,
    has_data: bool,
}

impl Pending {
    fn size(&self) -> usize {
        self.event_type.len().saturating_add(self.data.len())
    }

    /// The blank-line step of the spec: an event without any `data` line is not dispatched.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event_type = std::mem::take(&mut self.event_type);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: (!event_type.is_empty()).then_some(event_type),
            data: std::mem::take(&mut self.data),
        })
    }
}

#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    buf: Vec<u8>,
    /// First byte of `buf` not consumed yet (start of the current line).
    start: usize,
    /// `buf[start..scan]` is known to hold no line terminator.
    scan: usize,
    /// The last line ended with `\r`: a `\n` right after it belongs to the same terminator.
    skip_lf: bool,
    bom_checked: bool,
    pending: Pending,
    last_event_id: Option<String>,
    failed: Option<SseError>,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            buf: Vec::new(),
            start: 0,
            scan: 0,
            skip_lf: false,
            bom_checked: false,
            pending: Pending::default(),
            last_event_id: None,
            failed: None,
        }
    }

    /// Appends bytes received from the stream. Ignored once the parser has failed.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.failed.is_some() || chunk.is_empty() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            // Amortised: the bytes moved are at most the bytes consumed since the last move.
            self.buf.drain(..self.start);
            self.scan = self.scan.saturating_sub(self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Next complete event, or `Ok(None)` if more bytes are needed. After an error the parser
    /// is poisoned: it drops its buffer and returns the same error again.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        self.advance(false)
    }

    /// Call when the stream has ended: treats the unterminated tail as terminated and
    /// returns the final event if it has data (the spec would discard it; upstreams that
    /// omit the last blank line are common enough to be lenient). Returns `None` when
    /// nothing is left or on error. Call repeatedly to drain if events were not pulled.
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.advance(true).ok().flatten()
    }

    /// The last `id:` field seen (the spec's "last event ID"), if any.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    fn fail(&mut self, err: SseError) -> SseError {
        self.failed = Some(err);
        self.buf = Vec::new();
        self.start = 0;
        self.scan = 0;
        self.pending = Pending::default();
        err
    }

    fn advance(&mut self, eof: bool) -> Result<Option<SseEvent>, SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        match self.advance_inner(eof) {
            Ok(ev) => Ok(ev),
            Err(err) => Err(self.fail(err)),
        }
    }

    fn advance_inner(&mut self, eof: bool) -> Result<Option<SseEvent>, SseError> {
        loop {
            if self.skip_lf && self.start < self.buf.len() {
                self.skip_lf = false;
                if self.buf[self.start] == b'\n' {
                    self.start = self.start.saturating_add(1);
                }
                self.scan = self.scan.max(self.start);
            }
            if !self.bom_checked {
                let avail = &self.buf[self.start..];
                if avail.len() >= BOM.len() || !BOM.starts_with(avail) || eof {
                    self.bom_checked = true;
                    if avail.starts_with(BOM) {
                        self.start = self.start.saturating_add(BOM.len());
                        self.scan = self.scan.max(self.start);
                    }
                } else {
                    return Ok(None);
                }
            }
            // memchr: a vectorised search; this scan is most of the relay's per-byte work.
            let found = memchr::memchr2(b'\n', b'\r', &self.buf[self.scan..]);
            let (line_end, next) = match found {
                Some(off) => {
                    let end = self.scan.saturating_add(off);
                    self.skip_lf = self.buf[end] == b'\r';
                    (end, end.saturating_add(1))
                }
                None => {
                    self.scan = self.buf.len();
                    let partial = self.buf.len().saturating_sub(self.start);
                    if self.pending.size().saturating_add(partial) > self.max_event_bytes {
                        return Err(SseError::EventTooLarge);
                    }
                    if !eof {
                        return Ok(None);
                    }
                    if partial == 0 {
                        // End of stream acts as the final blank line.
                        return Ok(self.pending.dispatch());
                    }
                    (self.buf.len(), self.buf.len())
                }
            };
            let line = &self.buf[self.start..line_end];
            let dispatched = process_line(line, &mut self.pending, &mut self.last_event_id)?;
            self.start = next;
            self.scan = next;
            if self.pending.size() > self.max_event_bytes {
                return Err(SseError::EventTooLarge);
            }
            if dispatched.is_some() {
                return Ok(dispatched);
            }
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, SseError> {
    std::str::from_utf8(bytes).map_err(|_| SseError::InvalidUtf8)
}

/// Interprets one line (without its terminator). Returns an event on a blank line.
fn process_line(
    line: &[u8],
    pending: &mut Pending,
    last_event_id: &mut Option<String>,
) -> Result<Option<SseEvent>, SseError> {
    if line.is_empty() {
        return Ok(pending.dispatch());
    }
    if line[0] == b':' {
        return Ok(None); // comment
    }
    let (name, value) = match memchr::memchr(b':', line) {
        Some(i) => {
            let value = &line[i.saturating_add(1)..];
            (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &b""[..]),
    };
    match name {
        b"event" => {
            pending.event_type.clear();
            pending.event_type.push_str(utf8(value)?);
        }
        b"data" => {
            if pending.has_data {
                pending.data.push('\n');
            }
            pending.data.push_str(utf8(value)?);
            pending.has_data = true;
        }
        b"id" if !value.contains(&0) => *last_event_id = Some(utf8(value)?.to_owned()),
        _ => {} // `retry` and unknown fields: ignored
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn collect(parser: &mut SseParser, chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk);
            while let Some(e) = parser.next_event().unwrap() {
                out.push(e);
            }
        }
        while let Some(e) = parser.finish() {
            out.push(e);
        }
        out
    }

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        collect(&mut SseParser::new(1 << 20), &[input])
    }

    const SAMPLE: &str = "\u{feff}: keep-alive comment\n\
        event: message_start\n\
        data: {\"type\":\"message_start\"}\n\
        \n\
        event:ping\r\n\
        data:{\"type\": \"ping\"}\r\n\
        \r\n\
        data: first line\r\
        data:  two spaces\r\
        data\r\
        id: 7\r\
        \r\
        event: only-type-no-data\n\
        \n\
        data: caf\u{e9} \u{1f600} \u{65e5}\u{672c}\n\
        retry: 100\n\
        unknown: field\n\
        \n\
        data: [DONE]\n\n";

    fn sample_expected() -> Vec<SseEvent> {
        vec![
            ev(Some("message_start"), "{\"type\":\"message_start\"}"),
            ev(Some("ping"), "{\"type\": \"ping\"}"),
            ev(None, "first line\n two spaces\n"),
            ev(None, "caf\u{e9} \u{1f600} \u{65e5}\u{672c}"),
            ev(None, "[DONE]"),
        ]
    }

    #[test]
    fn parses_sample_in_one_chunk() {
        assert_eq!(parse_all(SAMPLE.as_bytes()), sample_expected());
    }

    #[test]
    fn every_split_point_gives_identical_events() {
        let bytes = SAMPLE.as_bytes();
        for i in 0..=bytes.len() {
            let mut p = SseParser::new(1 << 20);
            let got = collect(&mut p, &[&bytes[..i], &bytes[i..]]);
            assert_eq!(got, sample_expected(), "split at {i}");
            assert_eq!(p.last_event_id(), Some("7"));
        }
        // Three-way splits, and byte-at-a-time.
        for i in (0..bytes.len()).step_by(7) {
            for j in i..=bytes.len() {
                let got = collect(
                    &mut SseParser::new(1 << 20),
                    &[&bytes[..i], &bytes[i..j], &bytes[j..]],
                );
                assert_eq!(got, sample_expected(), "split at {i},{j}");
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            collect(&mut SseParser::new(1 << 20), &singles),
            sample_expected()
        );
    }

    #[test]
    fn crlf_line_endings() {
        let input = b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n";
        assert_eq!(parse_all(input), vec![ev(Some("a"), "1\n2"), ev(None, "3")]);
        // A CR at the end of a chunk followed by LF in the next is one terminator.
        let got = collect(
            &mut SseParser::new(64),
            &[b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"],
        );
        assert_eq!(got, vec![ev(None, "x"), ev(None, "y")]);
    }

    #[test]
    fn comments_and_events_without_data_are_skipped() {
        let input = b": hello\n:\n\nevent: lonely\n\n: x\ndata: kept\n\n";
        assert_eq!(parse_all(input), vec![ev(None, "kept")]);
        // The event type of a skipped event does not leak into the next one.
        assert_eq!(parse_all(b"event: a\n\ndata: b\n\n"), vec![ev(None, "b")]);
    }

    #[test]
    fn multi_line_and_empty_data() {
        assert_eq!(
            parse_all(b"data: a\ndata:\ndata: c\n\n"),
            vec![ev(None, "a\n\nc")]
        );
        assert_eq!(parse_all(b"data\n\n"), vec![ev(None, "")]);
        assert_eq!(
            parse_all(b"data:no-space\ndata:  two\n\n"),
            vec![ev(None, "no-space\n two")]
        );
    }

    #[test]
    fn openai_done_sentinel() {
        let input = b"data: {\"id\":\"c1\",\"choices\":[]}\n\ndata: [DONE]\n\n";
        let events = parse_all(input);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1], ev(None, "[DONE]"));
    }

    #[test]
    fn finish_flushes_unterminated_event() {
        let mut p = SseParser::new(1024);
        p.push(b"data: one\n\ndata: two");
        assert_eq!(p.next_event().unwrap(), Some(ev(None, "one")));
        assert_eq!(p.next_event().unwrap(), None);
        assert_eq!(p.finish(), Some(ev(None, "two")));
        assert_eq!(p.finish(), None);

        let mut p = SseParser::new(1024);
        p.push(b"event: x\ndata: y\n");
        assert_eq!(p.next_event().unwrap(), None);
        assert_eq!(p.finish(), Some(ev(Some("x"), "y")));
        assert_eq!(SseParser::new(8).finish(), None);
    }

    #[test]
    fn too_large_event_is_an_error() {
        // Many short data lines.
        let mut p = SseParser::new(25);
        p.push(b"data: 0123456789\ndata: 0123456789\ndata: 0123456789\n");
        assert_eq!(p.next_event(), Err(SseError::EventTooLarge));
        // Poisoned afterwards, and further input is not buffered.
        p.push(b"\n\ndata: ok\n\n");
        assert_eq!(p.next_event(), Err(SseError::EventTooLarge));
        assert!(p.buf.is_empty());

        // One endless line without a terminator, fed in small chunks.
        let mut p = SseParser::new(32);
        let mut result = Ok(None);
        for _ in 0..10 {
            p.push(b"data: aaaaaaa");
            result = p.next_event();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLarge));

        // Exactly at the limit is fine.
        let mut p = SseParser::new(4);
        p.push(b"data: abcd\n\n");
        assert_eq!(p.next_event().unwrap(), Some(ev(None, "abcd")));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::new(1024);
        p.push(b"data: \xff\xfe\n\n");
        assert_eq!(p.next_event(), Err(SseError::InvalidUtf8));
        // A code point split across chunks is fine.
        let got = collect(&mut SseParser::new(1024), &[b"data: \xe2\x82", b"\xac\n\n"]);
        assert_eq!(got, vec![ev(None, "\u{20ac}")]);
    }

    #[test]
    fn buffer_is_compacted() {
        let mut p = SseParser::new(1024);
        for _ in 0..10_000 {
            p.push(b"event: e\ndata: 0123456789\n\n");
            assert!(p.next_event().unwrap().is_some());
        }
        assert!(p.buf.len() < 256, "buffer grew to {}", p.buf.len());
    }
}
