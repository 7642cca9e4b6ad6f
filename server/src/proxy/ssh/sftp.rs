//! A small sans-IO decoder of relayed SFTP (version 3) packets, for the recording: it reads the
//! packet header and the paths of open, opendir, remove, rename, mkdir, rmdir, setstat and
//! symlink requests, follows handles from the target's HANDLE replies, and sums the bytes read
//! and written per file until the handle is closed. It never changes a byte (the pumps forward
//! the data verbatim) and keeps at most [`HEAD_MAX`] bytes of any packet.

use std::collections::HashMap;

/// Bytes of a packet kept for decoding; the rest (file data) is skipped.
const HEAD_MAX: usize = 8 * 1024;
/// Open handles followed at once (a client that leaks handles stops being followed).
const MAX_HANDLES: usize = 4096;

const SSH_FXP_OPEN: u8 = 3;
const SSH_FXP_CLOSE: u8 = 4;
const SSH_FXP_READ: u8 = 5;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_SETSTAT: u8 = 9;
const SSH_FXP_OPENDIR: u8 = 11;
const SSH_FXP_REMOVE: u8 = 13;
const SSH_FXP_MKDIR: u8 = 14;
const SSH_FXP_RMDIR: u8 = 15;
const SSH_FXP_RENAME: u8 = 18;
const SSH_FXP_SYMLINK: u8 = 20;
const SSH_FXP_EXTENDED: u8 = 200;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_DATA: u8 = 103;

const PFLAG_READ: u32 = 1;
const PFLAG_WRITE: u32 = 2;

/// Frames one direction of the stream.
#[derive(Debug, Default)]
struct Framer {
    /// Length prefix bytes seen so far.
    len_buf: Vec<u8>,
    /// Bytes of the current packet still to come.
    remaining: usize,
    /// Its first bytes.
    head: Vec<u8>,
    /// Its declared length.
    total: usize,
}

impl Framer {
    /// Feeds bytes; calls `f(head, total_len)` for every complete packet.
    fn push(&mut self, mut input: &[u8], mut f: impl FnMut(&[u8], usize)) {
        while !input.is_empty() {
            if self.remaining == 0 {
                let need = 4 - self.len_buf.len();
                let take = need.min(input.len());
                let (a, rest) = input.split_at(take);
                self.len_buf.extend_from_slice(a);
                input = rest;
                if self.len_buf.len() < 4 {
                    return;
                }
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.len_buf);
                self.len_buf.clear();
                self.total = u32::from_be_bytes(len) as usize;
                self.remaining = self.total;
                self.head.clear();
                if self.total == 0 {
                    continue;
                }
            }
            let take = self.remaining.min(input.len());
            let (a, rest) = input.split_at(take);
            let room = HEAD_MAX.saturating_sub(self.head.len());
            self.head
                .extend_from_slice(a.get(..room.min(a.len())).unwrap_or_default());
            self.remaining -= take;
            input = rest;
            if self.remaining == 0 {
                f(&self.head, self.total);
            }
        }
    }
}

/// Reads SSH wire fields from a packet head.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.0.get(..4)?;
        let v = u32::from_be_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]);
        self.0 = self.0.get(4..)?;
        Some(v)
    }
    fn u64(&mut self) -> Option<u64> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Some(hi << 32 | lo)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let v = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(v)
    }
    fn string(&mut self) -> Option<String> {
        self.bytes().map(|b| escape(&String::from_utf8_lossy(b)))
    }
}

/// Paths are chosen by the client: control characters are escaped before they are recorded.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[derive(Debug)]
struct OpenFile {
    path: String,
    mode: &'static str,
    read: u64,
    written: u64,
}

/// Follows one SFTP session.
#[derive(Debug, Default)]
pub struct SftpDecoder {
    requests: Framer,
    responses: Framer,
    /// Request id → path and mode of an OPEN/OPENDIR waiting for its HANDLE.
    pending: HashMap<u32, (String, &'static str)>,
    /// Handle → the file it refers to.
    handles: HashMap<Vec<u8>, OpenFile>,
    /// Request id of a READ → its handle, to count the DATA answering it.
    reads: HashMap<u32, Vec<u8>>,
}

impl SftpDecoder {
    /// A fresh session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds client → target bytes; returns the operations to record.
    pub fn push_request(&mut self, input: &[u8]) -> Vec<String> {
        let mut ops = Vec::new();
        let mut framer = std::mem::take(&mut self.requests);
        framer.push(input, |head, _| {
            if let Some(op) = self.request(head) {
                ops.push(op);
            }
        });
        self.requests = framer;
        ops
    }

    /// Feeds target → client bytes (HANDLE and DATA replies).
    pub fn push_response(&mut self, input: &[u8]) {
        let mut framer = std::mem::take(&mut self.responses);
        framer.push(input, |head, total| self.response(head, total));
        self.responses = framer;
    }

    fn request(&mut self, head: &[u8]) -> Option<String> {
        let mut f = Fields(head);
        let kind = f.u8()?;
        if kind == 1 {
            return None; // INIT carries a version, not an id.
        }
        let id = f.u32()?;
        match kind {
            SSH_FXP_OPEN => {
                let path = f.string()?;
                let flags = f.u32()?;
                let mode = match (flags & PFLAG_READ != 0, flags & PFLAG_WRITE != 0) {
                    (true, true) => "read-write",
                    (false, true) => "write",
                    _ => "read",
                };
                if self.pending.len() < MAX_HANDLES {
                    self.pending.insert(id, (path.clone(), mode));
                }
                Some(format!("sftp open {path} ({mode})"))
            }
            SSH_FXP_OPENDIR => {
                let path = f.string()?;
                Some(format!("sftp list {path}"))
            }
            SSH_FXP_READ => {
                let handle = f.bytes()?.to_vec();
                if self.handles.contains_key(&handle) && self.reads.len() < MAX_HANDLES * 4 {
                    self.reads.insert(id, handle);
                }
                None
            }
            SSH_FXP_WRITE => {
                let handle = f.bytes()?;
                let _offset = f.u64()?;
                let len = f.u32()? as u64;
                if let Some(h) = self.handles.get_mut(handle) {
                    h.written += len;
                }
                None
            }
            SSH_FXP_CLOSE => {
                let handle = f.bytes()?;
                let h = self.handles.remove(handle)?;
                Some(match h.mode {
                    "read" => format!("sftp read {} ({} bytes)", h.path, h.read),
                    "write" => format!("sftp write {} ({} bytes)", h.path, h.written),
                    _ => format!(
                        "sftp close {} (read {} bytes, wrote {} bytes)",
                        h.path, h.read, h.written
                    ),
                })
            }
            SSH_FXP_REMOVE => Some(format!("sftp remove {}", f.string()?)),
            SSH_FXP_MKDIR => Some(format!("sftp mkdir {}", f.string()?)),
            SSH_FXP_RMDIR => Some(format!("sftp rmdir {}", f.string()?)),
            SSH_FXP_SETSTAT => Some(format!("sftp setstat {}", f.string()?)),
            SSH_FXP_RENAME => {
                let from = f.string()?;
                let to = f.string()?;
                Some(format!("sftp rename {from} -> {to}"))
            }
            SSH_FXP_EXTENDED => {
                let name = f.string()?;
                match name.as_str() {
                    // What OpenSSH's sftp sends for `rename`.
                    "posix-rename@openssh.com" => {
                        let from = f.string()?;
                        let to = f.string()?;
                        Some(format!("sftp rename {from} -> {to}"))
                    }
                    "hardlink@openssh.com" => {
                        let from = f.string()?;
                        let to = f.string()?;
                        Some(format!("sftp hardlink {from} {to}"))
                    }
                    _ => None,
                }
            }
            SSH_FXP_SYMLINK => {
                let a = f.string()?;
                let b = f.string()?;
                Some(format!("sftp symlink {a} {b}"))
            }
            _ => None,
        }
    }

    fn response(&mut self, head: &[u8], _total: usize) {
        let mut f = Fields(head);
        let (Some(kind), Some(id)) = (f.u8(), f.u32()) else {
            return;
        };
        match kind {
            SSH_FXP_HANDLE => {
                if let (Some((path, mode)), Some(handle)) = (self.pending.remove(&id), f.bytes())
                    && self.handles.len() < MAX_HANDLES
                {
                    self.handles.insert(
                        handle.to_vec(),
                        OpenFile {
                            path,
                            mode,
                            read: 0,
                            written: 0,
                        },
                    );
                }
            }
            SSH_FXP_DATA => {
                if let Some(handle) = self.reads.remove(&id)
                    && let Some(n) = f.u32()
                    && let Some(h) = self.handles.get_mut(&handle)
                {
                    h.read += n as u64;
                }
            }
            _ => {
                self.pending.remove(&id);
                self.reads.remove(&id);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn packet(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
        let mut p = vec![kind];
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(body);
        let mut out = (p.len() as u32).to_be_bytes().to_vec();
        out.extend(p);
        out
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    #[test]
    fn follows_an_upload_split_into_single_bytes() {
        let mut d = SftpDecoder::new();
        let mut open = string(b"/tmp/up.bin");
        open.extend_from_slice(&(PFLAG_WRITE | 8).to_be_bytes());
        open.extend_from_slice(&0u32.to_be_bytes());
        let mut stream = packet(SSH_FXP_OPEN, 7, &open);
        let mut ops = Vec::new();
        for b in stream.drain(..) {
            ops.extend(d.push_request(&[b]));
        }
        assert_eq!(ops, ["sftp open /tmp/up.bin (write)"]);
        d.push_response(&packet(SSH_FXP_HANDLE, 7, &string(b"h1")));
        let data = vec![0u8; 20_000];
        let mut write = string(b"h1");
        write.extend_from_slice(&0u64.to_be_bytes());
        write.extend(string(&data));
        let w = packet(SSH_FXP_WRITE, 8, &write);
        for chunk in w.chunks(3000) {
            assert!(d.push_request(chunk).is_empty());
        }
        let ops = d.push_request(&packet(SSH_FXP_CLOSE, 9, &string(b"h1")));
        assert_eq!(ops, ["sftp write /tmp/up.bin (20000 bytes)"]);
    }

    #[test]
    fn download_rename_remove_and_escaping() {
        let mut d = SftpDecoder::new();
        let mut open = string(b"/etc/hosts");
        open.extend_from_slice(&PFLAG_READ.to_be_bytes());
        open.extend_from_slice(&0u32.to_be_bytes());
        d.push_request(&packet(SSH_FXP_OPEN, 1, &open));
        d.push_response(&packet(SSH_FXP_HANDLE, 1, &string(b"h")));
        let mut read = string(b"h");
        read.extend_from_slice(&0u64.to_be_bytes());
        read.extend_from_slice(&4096u32.to_be_bytes());
        d.push_request(&packet(SSH_FXP_READ, 2, &read));
        d.push_response(&packet(SSH_FXP_DATA, 2, &string(b"127.0.0.1 localhost\n")));
        assert_eq!(
            d.push_request(&packet(SSH_FXP_CLOSE, 3, &string(b"h"))),
            ["sftp read /etc/hosts (20 bytes)"]
        );
        let mut rename = string(b"/a");
        rename.extend(string(b"/b\x1b[2J"));
        assert_eq!(
            d.push_request(&packet(SSH_FXP_RENAME, 4, &rename)),
            ["sftp rename /a -> /b\\u{1b}[2J"]
        );
        let mut ext = string(b"posix-rename@openssh.com");
        ext.extend(string(b"/x"));
        ext.extend(string(b"/y"));
        assert_eq!(
            d.push_request(&packet(SSH_FXP_EXTENDED, 6, &ext)),
            ["sftp rename /x -> /y"]
        );
        assert_eq!(
            d.push_request(&packet(SSH_FXP_REMOVE, 5, &string(b"/b"))),
            ["sftp remove /b"]
        );
        // Garbage does not panic.
        d.push_request(&[0, 0, 0, 1, 200]);
        d.push_request(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    }
}
