//! Kernel version numbers as matrices compare them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `major.minor.patch` of a kernel release. Distribution suffixes
/// (`6.1.0-56-cloud-amd64`, `6.18.44-fc-v669`) are dropped; `-rcN` is not a
/// release, so `6.15-rc6` compares below `6.15.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// `Some(n)` for a release candidate `-rcN`; `None` sorts after every rc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<u32>,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
            rc: None,
        }
    }

    /// Parses the leading version of a `uname -r` string.
    pub fn parse_release(release: &str) -> Option<Self> {
        let mut nums = [0u32; 3];
        let mut count = 0;
        let mut rest = release;
        while count < 3 {
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                break;
            }
            nums[count] = rest[..digits].parse().ok()?;
            count += 1;
            rest = &rest[digits..];
            match rest.strip_prefix('.') {
                Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
                _ => break,
            }
        }
        if count < 2 {
            return None;
        }
        let rc = rest
            .strip_prefix("-rc")
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok());
        Some(Self {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            rc,
        })
    }
}

impl KernelVersion {
    /// Sort key that places `-rcN` before the final release.
    fn key(&self) -> (u32, u32, u32, u32) {
        (
            self.major,
            self.minor,
            self.patch,
            self.rc.unwrap_or(u32::MAX),
        )
    }
}

impl Ord for KernelVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for KernelVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for KernelVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_release(s)
            .ok_or_else(|| format!("`{s}` is not a kernel version (want e.g. 6.6 or 6.12.29)"))
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(rc) = self.rc {
            write!(f, "-rc{rc}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn parses_distribution_releases() {
        assert_eq!(
            KernelVersion::parse_release("6.18.44-fc-v669"),
            Some(KernelVersion::new(6, 18, 44))
        );
        assert_eq!(
            KernelVersion::parse_release("6.1.0-56-cloud-amd64"),
            Some(KernelVersion::new(6, 1, 0))
        );
        assert_eq!(
            KernelVersion::parse_release("6.6"),
            Some(KernelVersion::new(6, 6, 0))
        );
        assert_eq!(
            KernelVersion::parse_release("6.15.0-rc6"),
            Some(KernelVersion {
                major: 6,
                minor: 15,
                patch: 0,
                rc: Some(6)
            })
        );
        assert_eq!(KernelVersion::parse_release("6"), None);
        assert_eq!(KernelVersion::parse_release("x6.1"), None);
    }

    #[test]
    fn release_candidates_sort_before_release() {
        let rc: KernelVersion = "6.15-rc6".parse().unwrap();
        let rel: KernelVersion = "6.15".parse().unwrap();
        assert_eq!(rc.cmp(&rel), Ordering::Less);
        assert_eq!(
            KernelVersion::new(6, 12, 29).cmp(&KernelVersion::new(6, 12, 3)),
            Ordering::Greater
        );
    }
}
