//! A guest's initramfs, written by hand as an uncompressed `newc` cpio archive:
//! `cpio` is not on every machine, no root is needed to add device nodes this way,
//! and every kernel unpacks `newc` without a decompressor.
//!
//! What goes in: `/dev/console` (so init has stdio before devtmpfs is mounted), the
//! mount points, the probe as `/init`, `/conformance/guest.json` and the modules.

/// File type bits of `c_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// An initramfs being assembled in memory (a probe and a few modules: a few MB).
#[derive(Default)]
pub struct Initramfs {
    buf: Vec<u8>,
    ino: u32,
}

impl Initramfs {
    pub fn new() -> Initramfs {
        Initramfs::default()
    }

    /// A directory (its parents must have been added first).
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, (0, 0), &[]);
    }

    /// A regular file with permission bits `mode`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), (0, 0), data);
    }

    /// A character device node.
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | 0o600, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // Kernels accept any length, but 512-byte blocks are what cpio writes.
        let padded = self.buf.len().div_ceil(512) * 512;
        self.buf.resize(padded, 0);
        self.buf
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let name = path.trim_start_matches('/');
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & S_IFDIR != 0 { 2 } else { 1 },
            0, // mtime: fixed, so the same inputs give the same bytes
            u32::try_from(data.len()).expect("initramfs members are far below 4 GiB"),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short name"),
            0, // check
        ];
        self.buf.extend_from_slice(b"070701");
        for field in fields {
            self.buf
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad4();
        self.buf.extend_from_slice(data);
        self.pad4();
    }

    fn pad4(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, rdev major, minor, data).
    fn parse(mut b: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let start = b.len();
        loop {
            assert_eq!(&b[..6], b"070701", "magic at {}", start - b.len());
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, major, minor, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let header = 110;
            let name = std::str::from_utf8(&b[header..header + namesize as usize - 1])
                .unwrap()
                .to_string();
            let data_at = (header + namesize as usize).div_ceil(4) * 4;
            let data = b[data_at..data_at + size as usize].to_vec();
            let next = (data_at + size as usize).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                assert!(
                    b[next..].iter().all(|&x| x == 0),
                    "only padding after the trailer"
                );
                return out;
            }
            out.push((name, mode, major, minor, data));
            b = &b[next..];
        }
    }

    #[test]
    fn members_read_back_as_written() {
        let mut fs = Initramfs::new();
        fs.dir("/dev");
        fs.char_device("/dev/console", 5, 1);
        fs.file("/init", 0o755, b"\x7fELF...");
        fs.file("/conformance/guest.json", 0o644, b"{}");
        let bytes = fs.finish();
        assert_eq!(bytes.len() % 512, 0);
        let members = parse(&bytes);
        assert_eq!(
            members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
            ["dev", "dev/console", "init", "conformance/guest.json"]
        );
        assert_eq!(members[0].1, S_IFDIR | 0o755);
        assert_eq!(
            (members[1].1, members[1].2, members[1].3),
            (S_IFCHR | 0o600, 5, 1)
        );
        assert_eq!(members[2].1, S_IFREG | 0o755);
        assert_eq!(members[2].4, b"\x7fELF...");
        assert_eq!(members[3].4, b"{}");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let build = || {
            let mut fs = Initramfs::new();
            fs.file("/a", 0o644, b"x");
            fs.finish()
        };
        assert_eq!(build(), build());
    }
}
