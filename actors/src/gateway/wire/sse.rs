//! Server-sent events (`text/event-stream`) framing, as the WHATWG HTML standard defines it:
//! an incremental parser that takes the body in chunks split anywhere (inside a line, a
//! `\r\n`, a UTF-8 character) and hands back whole events. Its buffer is bounded: an event
//! larger than the limit is an error, not unbounded growth.

use std::fmt;

/// The default bound on one event: its pending line, data, name and id together (4 MiB).
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The last event id seen (`id:`), which persists across events.
    pub id: Option<String>,
}

/// A frame (SSE event or NDJSON line) outgrew its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The bound, in bytes.
    pub limit: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream frame larger than {} bytes", self.limit)
    }
}

impl std::error::Error for FrameTooLarge {}

/// An incremental SSE parser.
#[derive(Clone, Debug)]
pub struct SseParser {
    limit: usize,
    /// The current, unterminated line.
    line: Vec<u8>,
    /// The data of the event being built, each line followed by `\n`.
    data: String,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// No line has been completed yet (a byte-order mark may start the stream).
    first_line: bool,
    failed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser bounded by [`MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }

    /// A parser holding at most `limit` bytes of one event.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            line: Vec::new(),
            data: String::new(),
            event: None,
            id: None,
            retry: None,
            after_cr: false,
            first_line: true,
            failed: false,
        }
    }

    /// Bytes currently held (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.line.len()
            + self.data.len()
            + self.event.as_ref().map_or(0, String::len)
            + self.id.as_ref().map_or(0, String::len)
    }

    /// The last `retry:` value (reconnection time, milliseconds), if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Feeds the next bytes; returns the events they complete. After an error the parser is
    /// spent and keeps failing.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, FrameTooLarge> {
        let mut out = Vec::new();
        if self.failed {
            return Err(self.fail());
        }
        let mut rest = bytes;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = rest.split_at_checked(at).unwrap_or((rest, &[]));
            self.push_line_bytes(head)?;
            let cr = tail.first() == Some(&b'\r');
            rest = tail.get(1..).unwrap_or(&[]);
            if cr {
                if let Some(after) = rest.strip_prefix(b"\n") {
                    rest = after;
                } else if rest.is_empty() {
                    self.after_cr = true;
                }
            }
            self.end_line(&mut out)?;
        }
        self.push_line_bytes(rest)?;
        Ok(out)
    }

    /// The body ended. Per the standard an unterminated event is dropped; this parser is
    /// lenient and returns it (its last line taken as ended), so a caller can tell a whole
    /// last event from a cut one.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, FrameTooLarge> {
        if self.failed {
            return Err(self.fail());
        }
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out)?;
        }
        self.dispatch(&mut out);
        Ok(out.pop())
    }

    fn fail(&mut self) -> FrameTooLarge {
        self.failed = true;
        self.line = Vec::new();
        self.data = String::new();
        FrameTooLarge { limit: self.limit }
    }

    fn check(&mut self, more: usize) -> Result<(), FrameTooLarge> {
        if self.buffered().saturating_add(more) > self.limit {
            return Err(self.fail());
        }
        Ok(())
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), FrameTooLarge> {
        self.check(bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), FrameTooLarge> {
        let raw = std::mem::take(&mut self.line);
        let mut line: &[u8] = &raw;
        if std::mem::replace(&mut self.first_line, false) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(()); // a comment
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*text, ""),
        };
        match field {
            "event" => {
                self.event = None;
                self.check(value.len())?;
                self.event = Some(value.to_owned());
            }
            "data" => {
                self.check(value.len().saturating_add(1))?;
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => {
                self.id = None;
                self.check(value.len())?;
                self.id = Some(value.to_owned());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {} // unknown fields are ignored
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take().filter(|e| !e.is_empty());
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            event,
            data,
            id: self.id.clone(),
        });
    }
}

impl super::common::Framing for SseParser {
    type Item = SseEvent;

    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, FrameTooLarge> {
        SseParser::feed(self, bytes)
    }

    fn finish(&mut self) -> Result<Option<SseEvent>, FrameTooLarge> {
        SseParser::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<SseEvent>) {
        let mut p = SseParser::new();
        let mut events = Vec::new();
        for c in chunks {
            events.extend(p.feed(c).unwrap());
        }
        (events, p.finish().unwrap())
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    #[test]
    fn events_with_names_and_lf() {
        let (events, last) = parse_all(&[b"event: a\ndata: one\n\ndata: two\n\n"]);
        assert_eq!(events, vec![ev(Some("a"), "one"), ev(None, "two")]);
        assert_eq!(last, None);
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let body = b"event: x\r\ndata: 1\r\n\r\ndata: 2\r\rdata: 3\n\r\n";
        let (events, _) = parse_all(&[body]);
        assert_eq!(
            events,
            vec![ev(Some("x"), "1"), ev(None, "2"), ev(None, "3")]
        );
        // A \r\n split between chunks is one line end, not two.
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(parse_all(&[a, b]).0, events, "split at {at}");
        }
    }

    #[test]
    fn multi_line_data_and_empty_data() {
        let (events, _) = parse_all(&[b"data: a\ndata:b\ndata\ndata:  c\n\ndata:\n\n"]);
        assert_eq!(events, vec![ev(None, "a\nb\n\n c"), ev(None, "")]);
    }

    #[test]
    fn comments_ids_retry_and_unknown_fields() {
        let mut p = SseParser::new();
        let events = p
            .feed(b": keep-alive\nid: 7\nretry: 1500\nfoo: bar\ndata: x\n\n: ping\n\n")
            .unwrap();
        assert_eq!(
            events,
            vec![SseEvent {
                event: None,
                data: "x".into(),
                id: Some("7".into())
            }]
        );
        assert_eq!(p.retry(), Some(1500));
        // An event with no data is not dispatched, and its name does not leak into the next.
        let events = p.feed(b"event: lonely\n\ndata: y\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None);
        assert_eq!(events[0].id.as_deref(), Some("7"));
    }

    #[test]
    fn split_inside_utf8_and_bom() {
        let body = "\u{feff}data: héllo 👋 wörld\n\n".as_bytes();
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            let (events, _) = parse_all(&[a, b]);
            assert_eq!(events, vec![ev(None, "héllo 👋 wörld")], "split at {at}");
        }
    }

    #[test]
    fn finish_returns_an_unterminated_event() {
        assert_eq!(parse_all(&[b"data: [DONE]"]).1, Some(ev(None, "[DONE]")));
        assert_eq!(parse_all(&[b"data: a\n"]).1, Some(ev(None, "a")));
        assert_eq!(parse_all(&[b"data: a\n\n"]).1, None);
        assert_eq!(parse_all(&[b": only a comment"]).1, None);
    }

    #[test]
    fn oversized_events_fail_and_stay_failed() {
        let mut p = SseParser::with_limit(16);
        assert!(p.feed(b"data: 0123456789").is_ok());
        assert_eq!(p.feed(b"abcdef"), Err(FrameTooLarge { limit: 16 }));
        assert!(p.feed(b"\n\n").is_err());
        assert!(p.finish().is_err());
        // Many data lines add up, too.
        let mut p = SseParser::with_limit(16);
        assert!(p.feed(b"data: 0123456\ndata: 0123456\n").is_err());
        // Within the bound, fine, and the buffer empties after dispatch.
        let mut p = SseParser::with_limit(16);
        for _ in 0..100 {
            assert_eq!(p.feed(b"data: 01234\n\n").unwrap().len(), 1);
        }
        assert_eq!(p.buffered(), 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_overgrow(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            limit in 1usize..256,
        ) {
            let mut p = SseParser::with_limit(limit);
            let mut rest: &[u8] = &bytes;
            for cut in cuts {
                let at = cut % (rest.len() + 1);
                let (a, b) = rest.split_at(at);
                let _ = p.feed(a);
                prop_assert!(p.buffered() <= limit);
                rest = b;
            }
            let _ = p.feed(rest);
            prop_assert!(p.buffered() <= limit);
            let _ = p.finish();
        }

        #[test]
        fn chunking_never_changes_the_events(
            lines in proptest::collection::vec("(data|event|id|:)?:? ?[a-zé\u{1F600} ]{0,6}(\r\n|\n|\r)?", 0..20),
            cut in any::<usize>(),
        ) {
            let body = lines.concat().into_bytes();
            let at = cut % (body.len() + 1);
            let (a, b) = body.split_at(at);
            prop_assert_eq!(parse_all(&[a, b]), parse_all(&[&body]));
            let bytes: Vec<&[u8]> = body.chunks(1).collect();
            prop_assert_eq!(parse_all(&bytes), parse_all(&[&body]));
        }
    }
}
