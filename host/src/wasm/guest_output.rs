//! A guest's standard output and error, routed to the job's log.
//!
//! A UDF that calls `println!` or `eprintln!` writes to WASI stdout or
//! stderr. Each store gets its own pair of streams ([`GuestOutput`]) that cut
//! what the guest writes into lines and log each line through `tracing`, at
//! info for stdout and warn for stderr, with the operator's uid and the
//! subtask as fields, inside the subtask's span:
//! `INFO subtask{job=j uid=count subtask=1}: <line> operator="count" subtask=1`.
//!
//! What a guest writes cannot grow the host's memory or flood its log:
//!
//! - a line is buffered up to [`MAX_LINE`] bytes; a longer line is logged
//!   cut there (with a note saying so) and the rest of it is skipped;
//! - lines are rate-limited per stream with a token bucket ([`BURST`] lines
//!   at once, then [`LINES_PER_SECOND`]); lines over the rate are dropped and
//!   counted, and the count is logged (at warn) before the next line that
//!   passes, and when the stream closes;
//! - a last line without a newline is logged when the store is dropped.
//!
//! Control characters other than tab are escaped (`\u{1b}`), so a guest
//! cannot forge log lines or drive the terminal.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept, in bytes; longer lines are cut.
pub(crate) const MAX_LINE: usize = 4096;
/// Lines a stream may log at once before the rate limit applies.
pub(crate) const BURST: f64 = 1000.0;
/// Lines a stream may log per second, on average.
pub(crate) const LINES_PER_SECOND: f64 = 100.0;
/// Bytes the guest may write in one `write` (the WASI permit).
const PERMIT: usize = 64 * 1024;

/// Which of the guest's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output: logged at info.
    Stdout,
    /// Standard error: logged at warn.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// What the line splitter hands to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Emitted {
    /// One line, escaped (and cut, with a note, if it was too long).
    Line(String),
    /// This many lines were dropped by the rate limit.
    Dropped(u64),
}

/// Cuts bytes into bounded lines and rate-limits them.
#[derive(Debug)]
pub(crate) struct Lines {
    pending: Vec<u8>,
    /// The current line was too long and was logged cut: skip to its end.
    skipping: bool,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Lines {
    /// An empty splitter with a full bucket at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            pending: Vec::new(),
            skipping: false,
            tokens: BURST,
            refilled: now,
            dropped: 0,
        }
    }

    /// Takes `bytes` written at `now`, handing every finished line to `out`.
    pub(crate) fn write(&mut self, mut bytes: &[u8], now: Instant, out: &mut dyn FnMut(Emitted)) {
        while !bytes.is_empty() {
            let newline = memchr::memchr(b'\n', bytes);
            let (chunk, rest) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (bytes, &[][..]),
            };
            bytes = rest;
            if self.skipping {
                self.skipping = newline.is_none();
                continue;
            }
            let room = MAX_LINE - self.pending.len();
            if chunk.len() > room {
                self.pending.extend_from_slice(&chunk[..room]);
                let line = format!("{} [line cut at {MAX_LINE} bytes]", escape(&self.pending));
                self.pending.clear();
                self.skipping = newline.is_none();
                self.emit(line, now, out);
                continue;
            }
            self.pending.extend_from_slice(chunk);
            if newline.is_some() {
                let line = escape(&self.pending);
                self.pending.clear();
                self.emit(line, now, out);
            }
        }
    }

    /// Hands over the unfinished last line and the count of dropped lines.
    pub(crate) fn finish(&mut self, now: Instant, out: &mut dyn FnMut(Emitted)) {
        if !self.pending.is_empty() {
            let line = escape(&self.pending);
            self.pending.clear();
            self.emit(line, now, out);
        }
        if self.dropped > 0 {
            out(Emitted::Dropped(std::mem::take(&mut self.dropped)));
        }
    }

    fn emit(&mut self, line: String, now: Instant, out: &mut dyn FnMut(Emitted)) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * LINES_PER_SECOND).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return;
        }
        self.tokens -= 1.0;
        if self.dropped > 0 {
            out(Emitted::Dropped(std::mem::take(&mut self.dropped)));
        }
        out(Emitted::Line(line));
    }
}

/// The bytes as text: invalid UTF-8 replaced, a trailing `\r` removed,
/// control characters other than tab escaped.
fn escape(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// One stream of one store: who writes, and the lines so far.
struct Sink {
    operator: Arc<str>,
    subtask: Option<u32>,
    stream: Stream,
    lines: Lines,
}

impl Sink {
    fn log(operator: &str, subtask: Option<u32>, stream: Stream, emitted: Emitted) {
        match (emitted, stream) {
            (Emitted::Line(line), Stream::Stdout) => tracing::info!(operator, subtask, "{line}"),
            (Emitted::Line(line), Stream::Stderr) => tracing::warn!(operator, subtask, "{line}"),
            (Emitted::Dropped(n), stream) => tracing::warn!(
                operator,
                subtask,
                "{n} lines of the UDF's {} were dropped: it wrote more than {LINES_PER_SECOND} lines a second",
                stream.name()
            ),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let (operator, subtask, stream) = (&*self.operator, self.subtask, self.stream);
        self.lines
            .write(bytes, Instant::now(), &mut |e| Self::log(operator, subtask, stream, e));
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let (operator, subtask, stream) = (&*self.operator, self.subtask, self.stream);
        self.lines
            .finish(Instant::now(), &mut |e| Self::log(operator, subtask, stream, e));
    }
}

/// The stdout or stderr of one store, for `WasiCtxBuilder::stdout`/`stderr`.
/// Every stream the guest opens on it shares one line buffer.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    sink: Arc<Mutex<Sink>>,
}

impl GuestOutput {
    /// The `stream` of the store of `operator`'s subtask `subtask` (`None`:
    /// a store that runs no subtask, such as `describe`'s).
    pub(crate) fn new(operator: &str, subtask: Option<u32>, stream: Stream) -> Self {
        Self {
            sink: Arc::new(Mutex::new(Sink {
                operator: operator.into(),
                subtask,
                stream,
                lines: Lines::new(Instant::now()),
            })),
        }
    }

    fn take(&self, bytes: &[u8]) {
        self.sink.lock().unwrap_or_else(PoisonError::into_inner).write(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(writes: &[(&[u8], u64)]) -> Vec<Emitted> {
        let start = Instant::now();
        let mut lines = Lines::new(start);
        let mut out = Vec::new();
        for (bytes, at_ms) in writes {
            lines.write(bytes, start + Duration::from_millis(*at_ms), &mut |e| out.push(e));
        }
        lines.finish(start, &mut |e| out.push(e));
        out
    }

    fn line(text: &str) -> Emitted {
        Emitted::Line(text.to_string())
    }

    #[test]
    fn writes_are_cut_into_lines_whatever_their_boundaries() {
        let out = run(&[(b"hel", 0), (b"lo\nwor", 0), (b"ld\r\n\nlast", 0)]);
        assert_eq!(out, [line("hello"), line("world"), line(""), line("last")]);
    }

    #[test]
    fn control_characters_are_escaped() {
        let out = run(&[(b"a\x1b[31mred\tb\xff\n", 0)]);
        assert_eq!(out, [line("a\\u{1b}[31mred\tb\u{fffd}")]);
    }

    #[test]
    fn a_long_line_is_cut_once_and_its_rest_skipped() {
        let long = vec![b'x'; MAX_LINE + 10];
        let cut = format!("{} [line cut at {MAX_LINE} bytes]", "x".repeat(MAX_LINE));
        // In one write, in pieces, and exactly MAX_LINE bytes with no newline yet.
        assert_eq!(run(&[(&long, 0), (b"\nnext\n", 0)]), [line(&cut), line("next")]);
        let pieces: Vec<(&[u8], u64)> = long.chunks(100).map(|c| (c, 0)).collect();
        let mut writes = pieces.clone();
        writes.push((b"tail\nnext\n", 0));
        assert_eq!(run(&writes), [line(&cut), line("next")]);
        let exact = vec![b'x'; MAX_LINE];
        assert_eq!(run(&[(&exact, 0), (b"more\nnext\n", 0)]), [line(&cut), line("next")]);
        // A line of exactly MAX_LINE bytes with its newline is whole.
        let mut whole = exact.clone();
        whole.push(b'\n');
        assert_eq!(run(&[(&whole, 0)]), [line(&"x".repeat(MAX_LINE))]);
    }

    #[test]
    fn a_flood_is_rate_limited_and_the_dropped_lines_counted() {
        let burst = BURST as usize;
        let flood = "l\n".repeat(burst + 50);
        // One second later the bucket has LINES_PER_SECOND new tokens.
        let out = run(&[(flood.as_bytes(), 0), (b"after\n", 1000)]);
        assert_eq!(out.len(), burst + 2);
        assert!(out[..burst].iter().all(|e| *e == line("l")));
        assert_eq!(out[burst..], [Emitted::Dropped(50), line("after")]);
        // Dropped lines not followed by another line are counted at the end.
        let out = run(&[(flood.as_bytes(), 0)]);
        assert_eq!(out.last(), Some(&Emitted::Dropped(50)));
    }
}
