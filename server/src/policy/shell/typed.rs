//! The lines typed into an interactive shell, for the recording. An audit aid, not a
//! boundary: see [`TypedLines`].

/// Assembles the lines typed into an interactive shell from the raw keystrokes the client
/// sends, for the recording. An audit aid, not a boundary: it sees keystrokes, not what the
/// shell made of them. Known gaps (each tested): tab completion and history recall (arrow keys)
/// insert text the gateway never sees, so such lines are marked `[edited]`; cursor movement
/// within a line is not replayed; bracketed paste wraps pasted text in escape sequences, so a
/// pasted line is marked `[edited]` too; programs that read input without echo (editors,
/// `read -s`) are recorded like a shell line.
#[derive(Debug, Default)]
pub struct TypedLines {
    line: String,
    edited: bool,
    /// Inside an escape sequence (ESC, then CSI parameters up to a final byte).
    escape: u8,
}

/// Longest line kept; the rest of a longer line is dropped (and the line marked).
const MAX_TYPED_LINE: usize = 4096;

impl TypedLines {
    /// Nothing typed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds keystrokes; returns the lines completed by Enter.
    pub fn push(&mut self, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(input);
        for c in text.chars() {
            match self.escape {
                1 => {
                    // ESC [ or ESC O start a sequence; anything else is a two-byte one.
                    self.escape = if c == '[' || c == 'O' { 2 } else { 0 };
                    self.edited = true;
                    continue;
                }
                2 => {
                    if ('\x40'..='\x7e').contains(&c) {
                        self.escape = 0;
                    }
                    continue;
                }
                _ => {}
            }
            match c {
                '\r' | '\n' => {
                    let line = std::mem::take(&mut self.line);
                    let edited = std::mem::take(&mut self.edited);
                    if !line.trim().is_empty() {
                        out.push(if edited {
                            format!("{line} [edited]")
                        } else {
                            line
                        });
                    }
                }
                '\x7f' | '\x08' => {
                    self.line.pop();
                }
                // Ctrl-C, Ctrl-U: the line is abandoned.
                '\x03' | '\x15' => {
                    self.line.clear();
                    self.edited = false;
                }
                '\t' => self.edited = true,
                '\x1b' => self.escape = 1,
                c if c.is_control() => {}
                c => {
                    if self.line.len() < MAX_TYPED_LINE {
                        self.line.push(c);
                    } else {
                        self.edited = true;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_follow_keystrokes() {
        let mut t = TypedLines::new();
        assert!(t.push(b"ls -l").is_empty());
        assert_eq!(t.push(b"a\r"), ["ls -la"]);
        // Backspace, split across reads.
        t.push(b"cat foo");
        assert_eq!(t.push(b"\x7f\x7fx\r"), ["cat fx"]);
        // Ctrl-C abandons; blank lines are skipped.
        assert!(t.push(b"rm -rf /tmp/x\x03\r\r").is_empty());
        // Known gaps: history recall and tab completion mark the line as edited.
        assert_eq!(t.push(b"\x1b[A\r"), [] as [&str; 0]);
        assert_eq!(t.push(b"echo hi\x1b[D!\r"), ["echo hi! [edited]"]);
        assert_eq!(t.push(b"cat /etc/pas\t\r"), ["cat /etc/pas [edited]"]);
    }
}
