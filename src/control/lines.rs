//! Request lines out of a byte stream, with a length cap (no I/O).
//!
//! The connection reads whatever bytes arrive and pushes them here; complete
//! lines come out one at a time. A line longer than the cap is reported once,
//! as soon as the cap is passed, and the rest of it is thrown away up to its
//! newline, so a client cannot make the server hold an endless line and the
//! next line is read normally.

/// The longest request line, without its newline.
pub const MAX_LINE: usize = 64 * 1024;

/// One item out of the splitter.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Complete(Vec<u8>),
    /// A line passed the cap; what follows of it up to `\n` is discarded.
    TooLong,
}

/// Splits pushed bytes into lines of at most `limit` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    limit: usize,
    /// Inside an over-long line: drop bytes up to the next `\n`.
    discarding: bool,
    /// Bytes of `buf` already searched for `\n`.
    scanned: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter::new(MAX_LINE)
    }
}

impl LineSplitter {
    pub fn new(limit: usize) -> LineSplitter {
        LineSplitter {
            buf: Vec::new(),
            limit,
            discarding: false,
            scanned: 0,
        }
    }

    /// Add bytes as they were read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next line, if one is complete or the cap was passed.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            let newline = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|at| at + self.scanned);
            match newline {
                Some(end) if self.discarding => {
                    self.buf.drain(..=end);
                    self.scanned = 0;
                    self.discarding = false;
                }
                Some(end) => {
                    let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                    self.scanned = 0;
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.len() > self.limit {
                        return Some(Line::TooLong);
                    }
                    return Some(Line::Complete(line));
                }
                None if self.discarding => {
                    self.buf.clear();
                    self.scanned = 0;
                    return None;
                }
                None if self.buf.len() > self.limit => {
                    self.buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Some(Line::TooLong);
                }
                None => {
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &mut LineSplitter) -> Vec<Line> {
        std::iter::from_fn(|| s.next_line()).collect()
    }

    #[test]
    fn lines_split_across_reads_and_crlf() {
        let mut s = LineSplitter::new(16);
        s.push(b"ab");
        assert_eq!(all(&mut s), vec![]);
        s.push(b"c\r\nde\nf");
        assert_eq!(
            all(&mut s),
            vec![
                Line::Complete(b"abc".to_vec()),
                Line::Complete(b"de".to_vec())
            ]
        );
        s.push(b"\n");
        assert_eq!(all(&mut s), vec![Line::Complete(b"f".to_vec())]);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_the_next_line_survives() {
        let mut s = LineSplitter::new(4);
        s.push(b"0123");
        assert_eq!(all(&mut s), vec![]);
        s.push(b"45");
        assert_eq!(all(&mut s), vec![Line::TooLong]);
        s.push(b"6789");
        assert_eq!(all(&mut s), vec![]);
        s.push(b"xx\nok\n");
        assert_eq!(all(&mut s), vec![Line::Complete(b"ok".to_vec())]);
    }

    #[test]
    fn an_over_long_line_arriving_whole_is_too_long() {
        let mut s = LineSplitter::new(4);
        s.push(b"0123456\nab\n");
        assert_eq!(
            all(&mut s),
            vec![Line::TooLong, Line::Complete(b"ab".to_vec())]
        );
        let mut s = LineSplitter::new(4);
        s.push(b"0123\n");
        assert_eq!(all(&mut s), vec![Line::Complete(b"0123".to_vec())]);
    }
}
