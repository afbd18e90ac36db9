//! Newline-delimited JSON framing (Ollama's streams): an incremental splitter that takes the
//! body in chunks split anywhere (inside a line, a `\r\n`, a UTF-8 character) and hands back
//! whole, non-blank lines. Its buffer is bounded: a line longer than the limit is an error.

use super::common::Framing;
use super::sse::FrameTooLarge;

/// The default bound on one line (4 MiB).
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// An incremental NDJSON line splitter.
#[derive(Clone, Debug)]
pub struct NdjsonSplitter {
    limit: usize,
    line: Vec<u8>,
    failed: bool,
}

impl Default for NdjsonSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl NdjsonSplitter {
    /// A splitter bounded by [`MAX_LINE_BYTES`].
    pub fn new() -> Self {
        Self::with_limit(MAX_LINE_BYTES)
    }

    /// A splitter holding at most `limit` bytes of one line.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            line: Vec::new(),
            failed: false,
        }
    }

    /// Bytes currently held (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// Feeds the next bytes; returns the non-blank lines they complete (without their `\n` or
    /// `\r\n`; invalid UTF-8 replaced). After an error the splitter is spent and keeps failing.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, FrameTooLarge> {
        if self.failed {
            return Err(self.fail());
        }
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at_checked(at).unwrap_or((rest, &[]));
            self.push(head)?;
            rest = tail.get(1..).unwrap_or(&[]);
            self.end_line(&mut out);
        }
        self.push(rest)?;
        Ok(out)
    }

    /// The body ended: the last line, if it was left unterminated and is not blank.
    pub fn finish(&mut self) -> Result<Option<String>, FrameTooLarge> {
        if self.failed {
            return Err(self.fail());
        }
        let mut out = Vec::new();
        self.end_line(&mut out);
        Ok(out.pop())
    }

    fn fail(&mut self) -> FrameTooLarge {
        self.failed = true;
        self.line = Vec::new();
        FrameTooLarge { limit: self.limit }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), FrameTooLarge> {
        if self.line.len().saturating_add(bytes.len()) > self.limit {
            return Err(self.fail());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<String>) {
        let raw = std::mem::take(&mut self.line);
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim();
        if !line.is_empty() {
            out.push(line.to_owned());
        }
    }
}

impl Framing for NdjsonSplitter {
    type Item = String;

    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, FrameTooLarge> {
        NdjsonSplitter::feed(self, bytes)
    }

    fn finish(&mut self) -> Result<Option<String>, FrameTooLarge> {
        NdjsonSplitter::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split_all(chunks: &[&[u8]]) -> (Vec<String>, Option<String>) {
        let mut s = NdjsonSplitter::new();
        let mut lines = Vec::new();
        for c in chunks {
            lines.extend(s.feed(c).unwrap());
        }
        (lines, s.finish().unwrap())
    }

    #[test]
    fn lines_crlf_blank_lines_and_utf8_splits() {
        let body = "{\"a\":\"é👋\"}\r\n\n  \n{\"b\":2}\n{\"c\":3}".as_bytes();
        let expected = (
            vec!["{\"a\":\"é👋\"}".to_owned(), "{\"b\":2}".to_owned()],
            Some("{\"c\":3}".to_owned()),
        );
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(split_all(&[a, b]), expected, "split at {at}");
        }
        assert_eq!(split_all(&[b"x\n"]).1, None);
    }

    #[test]
    fn long_lines_fail_and_stay_failed() {
        let mut s = NdjsonSplitter::with_limit(8);
        assert_eq!(s.feed(b"12345678\n").unwrap(), vec!["12345678".to_owned()]);
        assert!(s.feed(b"12345").is_ok());
        assert_eq!(s.feed(b"6789"), Err(FrameTooLarge { limit: 8 }));
        assert!(s.feed(b"\n").is_err());
        assert!(s.finish().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_overgrow(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            limit in 1usize..128,
        ) {
            let mut s = NdjsonSplitter::with_limit(limit);
            let mut rest: &[u8] = &bytes;
            for cut in cuts {
                let at = cut % (rest.len() + 1);
                let (a, b) = rest.split_at(at);
                let _ = s.feed(a);
                prop_assert!(s.buffered() <= limit);
                rest = b;
            }
            let _ = s.feed(rest);
            prop_assert!(s.buffered() <= limit);
            let _ = s.finish();
        }

        #[test]
        fn chunking_never_changes_the_lines(
            bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(0xC3), Just(0xA9), any::<u8>()], 0..256),
            cut in any::<usize>(),
        ) {
            let at = cut % (bytes.len() + 1);
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(split_all(&[a, b]), split_all(&[&bytes]));
        }
    }
}
