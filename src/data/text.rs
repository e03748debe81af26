//! The byte stream under the CSV reader: every line end made a line feed (CR LF, and a lone CR as old Mac
//! files have, so that the csv crate's line numbers count them all), a line end added after a last line
//! that has none, and caps on the length of a line and of the whole text, so that an endless stream or one
//! without line ends (`/dev/zero`) stops with an error instead of filling memory.

use std::fmt;
use std::io::{self, Read};

use crate::data::limits::{Limits, human};

/// Why the text was cut short; travels through the csv crate inside an `io::Error`.
#[derive(Debug)]
pub(crate) enum TooLong {
    /// A line (quoted line ends do not end one) longer than the limit, starting at `line`.
    Line { line: u64, limit: u64 },
    /// More text than the limit in all.
    Text { limit: u64 },
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TooLong::Line { line, limit } => write!(
                f,
                "line {line} is longer than {}, the most a CSV line may have (is this a CSV file, or is a quote left open?)",
                human(limit)
            ),
            TooLong::Text { limit } => {
                write!(
                    f,
                    "holds more than {} of text, the most a CSV input may have (an endless stream?)",
                    human(limit)
                )
            }
        }
    }
}

impl std::error::Error for TooLong {}

/// Where the csv crate's parser would be in a record (its default dialect: `,`, `"`, doubled quotes), to
/// tell a line end inside a quoted field, which does not end the line, from one that does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Start,
    Plain,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first of a doubled quote.
    QuoteInQuoted,
}

/// Wraps the text of a CSV input; see the module documentation.
pub(crate) struct LineEnds<R> {
    inner: R,
    after_cr: bool,
    /// The last byte given out was a line feed (or none was given out).
    ended: bool,
    done: bool,
    /// Bytes still to hand out after the end of the input.
    tail: &'static [u8],
    field: Field,
    total: u64,
    line: u64,
    line_start: u64,
    line_len: u64,
    text_limit: u64,
    line_limit: u64,
}

impl<R: Read> LineEnds<R> {
    pub(crate) fn new(inner: R, limits: &Limits) -> Self {
        LineEnds {
            inner,
            after_cr: false,
            ended: true,
            done: false,
            tail: b"",
            field: Field::Start,
            total: 0,
            line: 1,
            line_start: 1,
            line_len: 0,
            text_limit: limits.text_bytes,
            line_limit: limits.line_bytes,
        }
    }

    /// Hands out what is left of the tail added at the end.
    fn drain_tail(&mut self, buf: &mut [u8]) -> usize {
        let n = self.tail.len().min(buf.len());
        buf[..n].copy_from_slice(&self.tail[..n]);
        self.tail = &self.tail[n..];
        n
    }

    /// Follows one byte (line ends already made `\n`); an error once a line is too long.
    fn track(&mut self, b: u8) -> io::Result<()> {
        let line_end = b == b'\n' && self.field != Field::Quoted;
        self.field = match (self.field, b) {
            (Field::Quoted, b'"') => Field::QuoteInQuoted,
            (Field::Quoted, _) => Field::Quoted,
            (Field::Start, b'"') | (Field::QuoteInQuoted, b'"') => Field::Quoted,
            (_, b',' | b'\n') => Field::Start,
            _ => Field::Plain,
        };
        if b == b'\n' {
            self.line += 1;
        }
        if line_end {
            self.line_start = self.line;
            self.line_len = 0;
            return Ok(());
        }
        self.line_len += 1;
        if self.line_len > self.line_limit {
            return Err(io::Error::other(TooLong::Line { line: self.line_start, limit: self.line_limit }));
        }
        Ok(())
    }
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.done {
            return Ok(self.drain_tail(buf));
        }
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                // The last line's end, after a closing quote if one is open (the csv crate reads the field the
                // same either way), so that every record ends in a line feed, as the line numbers assume.
                self.done = true;
                self.tail = match (self.ended, self.field) {
                    (true, _) => b"",
                    (false, Field::Quoted) => b"\"\n",
                    (false, _) => b"\n",
                };
                return Ok(self.drain_tail(buf));
            }
            self.total += n as u64;
            if self.total > self.text_limit {
                return Err(io::Error::other(TooLong::Text { limit: self.text_limit }));
            }
            let mut w = 0;
            for r in 0..n {
                let b = match buf[r] {
                    b'\n' if self.after_cr => {
                        self.after_cr = false;
                        continue;
                    }
                    b'\r' => {
                        self.after_cr = true;
                        b'\n'
                    }
                    b => {
                        self.after_cr = false;
                        b
                    }
                };
                self.track(b)?;
                buf[w] = b;
                w += 1;
            }
            if w > 0 {
                self.ended = buf[w - 1] == b'\n';
                return Ok(w);
            }
        }
    }
}
