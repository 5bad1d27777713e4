//! Demultiplexed output chunks to lines. Docker frames follow the container's writes,
//! not its lines: one frame may hold half a line or several.

use std::collections::VecDeque;

/// How many stderr lines are kept for error messages.
pub(crate) const STDERR_TAIL: usize = 20;
/// A line longer than this is not a probe line: the stream is called malformed.
pub(crate) const MAX_LINE: usize = 8 << 20;

/// Splits one stream's bytes into lines (`\n`, a trailing `\r` dropped). A line that
/// is not UTF-8 is passed on lossily and a runaway line is dropped; either way the
/// first such [`SplitError`] is kept, so the stream can be reported as malformed.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    lines: usize,
    problem: Option<SplitError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SplitError {
    NotUtf8 { line: usize },
    TooLong { line: usize },
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::NotUtf8 { line } => write!(f, "stdout line {line} is not UTF-8"),
            SplitError::TooLong { line } => {
                write!(f, "stdout line {line} is longer than {MAX_LINE} bytes")
            }
        }
    }
}

impl LineSplitter {
    /// Feeds a chunk; returns the lines it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&rest[..nl]);
            rest = &rest[nl + 1..];
            out.push(self.take_line());
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_LINE {
            self.pending.clear();
            self.note(SplitError::TooLong {
                line: self.lines + 1,
            });
        }
        out
    }

    /// The last line when the stream ended without a newline.
    pub(crate) fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take_line())
    }

    /// The first problem seen, if any.
    pub(crate) fn problem(&self) -> Option<&SplitError> {
        self.problem.as_ref()
    }

    fn take_line(&mut self) -> String {
        self.lines += 1;
        if self.pending.last() == Some(&b'\r') {
            self.pending.pop();
        }
        let bytes = std::mem::take(&mut self.pending);
        String::from_utf8(bytes).unwrap_or_else(|e| {
            self.note(SplitError::NotUtf8 { line: self.lines });
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        })
    }

    fn note(&mut self, problem: SplitError) {
        self.problem.get_or_insert(problem);
    }
}

/// The last [`STDERR_TAIL`] lines.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tail(VecDeque<String>);

impl Tail {
    pub(crate) fn push(&mut self, line: String) {
        if self.0.len() == STDERR_TAIL {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_and_within_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"{\"kind\":\"fa"), Vec::<String>::new());
        assert_eq!(
            s.push(b"cts\"}\r\none\ntwo\nthr"),
            ["{\"kind\":\"facts\"}", "one", "two"]
        );
        assert_eq!(s.push(b""), Vec::<String>::new());
        assert_eq!(s.push(b"ee\n\n"), ["three", ""]);
        assert_eq!(s.finish(), None);
        s.push(b"no newline at the end");
        assert_eq!(s.finish().as_deref(), Some("no newline at the end"));
        assert_eq!(s.problem(), None);
    }

    #[test]
    fn a_multibyte_character_split_between_chunks_survives() {
        let mut s = LineSplitter::default();
        let text = "µs ✓\n".as_bytes();
        assert!(s.push(&text[..1]).is_empty());
        assert_eq!(s.push(&text[1..]), ["µs ✓"]);
        assert_eq!(s.problem(), None);
    }

    #[test]
    fn invalid_utf8_is_passed_on_lossily_and_remembered() {
        let mut s = LineSplitter::default();
        assert_eq!(
            s.push(b"ok\n\xff\xfe\nnext\n"),
            ["ok", "\u{fffd}\u{fffd}", "next"]
        );
        assert_eq!(s.problem(), Some(&SplitError::NotUtf8 { line: 2 }));
        assert_eq!(
            s.problem().unwrap().to_string(),
            "stdout line 2 is not UTF-8"
        );
    }

    #[test]
    fn a_runaway_line_is_dropped_and_remembered() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ok\n"), ["ok"]);
        assert!(s.push(&vec![b'x'; MAX_LINE + 1]).is_empty());
        assert_eq!(s.push(b"after\n"), ["after"]);
        assert_eq!(s.problem(), Some(&SplitError::TooLong { line: 2 }));
    }

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..25 {
            t.push(i.to_string());
        }
        let lines = t.lines();
        assert_eq!(lines.len(), STDERR_TAIL);
        assert_eq!(lines.first().map(String::as_str), Some("5"));
        assert_eq!(lines.last().map(String::as_str), Some("24"));
    }
}
