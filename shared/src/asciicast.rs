//! asciicast v2 (the format `asciinema play` reads): a JSON header line, then one JSON array
//! per event, `[seconds, code, data]`, with codes `o` (output), `i` (input) and `r` (resize,
//! data `"COLSxROWS"`). Writing and reading are IO-free so the gateway records and the CLI
//! replays with the same few lines.

use serde::{Deserialize, Serialize};

/// The first line of a cast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always 2.
    pub version: u32,
    /// Terminal columns.
    pub width: u32,
    /// Terminal rows.
    pub height: u32,
    /// Unix seconds when recording started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Title shown by players.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Header {
    /// The header line, with its newline.
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Event kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Terminal output.
    Output,
    /// Keyboard input.
    Input,
    /// The terminal was resized.
    Resize,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Output => "o",
            Code::Input => "i",
            Code::Resize => "r",
        }
    }
}

/// One event line (with its newline). Invalid UTF-8 is replaced, as asciinema does.
pub fn event_line(seconds: f64, code: Code, data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut s =
        serde_json::to_string(&(round6(seconds), code.as_str(), text.as_ref())).unwrap_or_default();
    s.push('\n');
    s
}

fn round6(x: f64) -> f64 {
    (x * 1_000_000.0).round() / 1_000_000.0
}

/// A decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the start.
    pub time: f64,
    /// `o`, `i`, `r` or another code (kept as text).
    pub code: String,
    /// The data.
    pub data: String,
}

/// Errors reading a cast.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    /// The first line is not an asciicast v2 header.
    #[error("not an asciicast v2 recording: {0}")]
    Header(String),
    /// An event line is malformed.
    #[error("line {line}: {message}")]
    Event {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Parses a whole cast.
pub fn parse(text: &str) -> Result<(Header, Vec<Event>), CastError> {
    let mut lines = text.lines();
    let first = lines
        .next()
        .ok_or_else(|| CastError::Header("empty".into()))?;
    let header: Header =
        serde_json::from_str(first).map_err(|e| CastError::Header(e.to_string()))?;
    if header.version != 2 {
        return Err(CastError::Header(format!("version {}", header.version)));
    }
    let mut events = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (time, code, data): (f64, String, String) =
            serde_json::from_str(line).map_err(|e| CastError::Event {
                line: i + 2,
                message: e.to_string(),
            })?;
        events.push(Event { time, code, data });
    }
    Ok((header, events))
}

/// How long to wait before each event when replaying at `speed`, with pauses capped at
/// `idle_limit` seconds (after the speed-up).
pub fn delays(events: &[Event], speed: f64, idle_limit: Option<f64>) -> Vec<f64> {
    let speed = if speed > 0.0 { speed } else { 1.0 };
    let mut prev = 0.0;
    events
        .iter()
        .map(|e| {
            let gap = ((e.time - prev).max(0.0)) / speed;
            prev = e.time;
            match idle_limit {
                Some(limit) if gap > limit => limit,
                _ => gap,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_escaping() {
        let h = Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: Some(1),
            title: None,
        };
        let mut cast = h.line();
        cast.push_str(&event_line(0.5, Code::Output, b"hi \x1b[1m\"x\"\r\n"));
        cast.push_str(&event_line(1.25, Code::Resize, b"132x50"));
        cast.push_str(&event_line(2.0, Code::Output, &[0xff, b'a']));
        let (h2, ev) = parse(&cast).unwrap();
        assert_eq!(h2, h);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].data, "hi \x1b[1m\"x\"\r\n");
        assert_eq!(ev[1].code, "r");
        assert_eq!(ev[2].data, "\u{fffd}a");
        assert!(parse("{\"version\":1,\"width\":1,\"height\":1}\n").is_err());
        assert!(matches!(
            parse(&format!("{}[1, \"o\"]\n", h.line())),
            Err(CastError::Event { line: 2, .. })
        ));
    }

    #[test]
    fn delays_follow_speed_and_idle_limit() {
        let ev: Vec<Event> = [1.0, 1.5, 11.5]
            .iter()
            .map(|t| Event {
                time: *t,
                code: "o".into(),
                data: String::new(),
            })
            .collect();
        assert_eq!(delays(&ev, 2.0, None), [0.5, 0.25, 5.0]);
        assert_eq!(delays(&ev, 1.0, Some(1.0)), [1.0, 0.5, 1.0]);
    }
}
