//! Reading a guest's console after qemu exited: the init's exit line when the run
//! finished, else the one line that says why the guest died first.

use conformance_contract::guest::{GUEST_ERROR_MARKER, GUEST_EXIT_MARKER};

/// How a guest ended, as its console tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEnd {
    /// The probe's run returned with this exit code and the init powered off.
    Exited(i32),
    /// The guest died before that, for this reason (one line).
    Died(String),
}

/// The console's last exit marker, else the most telling line: a kernel panic,
/// the init's own error, an oops, or the last thing printed.
pub fn read(console: &str) -> GuestEnd {
    let lines: Vec<&str> = console
        .lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(code) = lines.iter().rev().find_map(|l| {
        l.find(GUEST_EXIT_MARKER)
            .and_then(|at| l[at + GUEST_EXIT_MARKER.len()..].trim().parse::<i32>().ok())
    }) {
        return GuestEnd::Exited(code);
    }
    let untimed = |l: &str| strip_timestamp(l).to_string();
    // The init's last word names the module or mount that failed.
    if let Some(l) = lines.iter().rev().find(|l| l.contains(GUEST_ERROR_MARKER)) {
        let at = l.find(GUEST_ERROR_MARKER).expect("found") + GUEST_ERROR_MARKER.len();
        return GuestEnd::Died(format!("the guest's init stopped: {}", &l[at..]));
    }
    for needle in ["Kernel panic", "BUG: ", "Oops", "general protection fault"] {
        if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
            return GuestEnd::Died(untimed(l));
        }
    }
    match lines.last() {
        Some(l) => GuestEnd::Died(format!(
            "the guest stopped without the probe's exit line; its console's last line: {}",
            untimed(l)
        )),
        None => GuestEnd::Died("the guest printed nothing on its console".into()),
    }
}

/// `[    1.234567] text` → `text`.
fn strip_timestamp(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((stamp, rest)) if stamp.trim().parse::<f64>().is_ok() => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_line_wins() {
        let console = "[    0.000000] Linux version 6.1.0\r\nconformance-guest: not in this kernel: netkit\r\nconformance-guest: exit 0\r\n[    9.1] reboot: Power down\r\n";
        assert_eq!(read(console), GuestEnd::Exited(0));
        assert_eq!(read("conformance-guest: exit 3\n"), GuestEnd::Exited(3));
    }

    #[test]
    fn a_panic_is_named() {
        let console = "[    1.0] Run /init as init process\n[    1.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n[    1.4] CPU: 0 PID: 1\n";
        assert_eq!(
            read(console),
            GuestEnd::Died(
                "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b".into()
            )
        );
    }

    #[test]
    fn the_init_says_which_module_failed() {
        let console = "conformance-guest: not in this kernel: netkit\nconformance-guest: error: load module veth (/conformance/modules/veth.ko): Exec format error (os error 8)\n[ 2.0] Kernel panic - not syncing: Attempted to kill init!\n";
        assert_eq!(
            read(console),
            GuestEnd::Died(
                "the guest's init stopped: load module veth (/conformance/modules/veth.ko): Exec format error (os error 8)".into()
            )
        );
    }

    #[test]
    fn silence_and_hangs_say_what_was_last() {
        assert_eq!(
            read(""),
            GuestEnd::Died("the guest printed nothing on its console".into())
        );
        assert_eq!(
            read("conformance-guest: not in this kernel: netkit\n[    0.5] Freeing unused kernel image memory: 2000K\n"),
            GuestEnd::Died("the guest stopped without the probe's exit line; its console's last line: Freeing unused kernel image memory: 2000K".into())
        );
    }
}
