//! The compiled eBPF objects embedded in the probe, chosen by `build.rs`: rebuilt
//! from `ebpf/programs` when a BPF toolchain was found, else the committed
//! `ebpf/dist` objects (only if their stamp matches the sources).
//! Program and map names are in `conformance_ebpf_common::names`.

/// `hook.bpf.o`: the TC program `hook` with its `CONFIG`, `EVENTS` and `COUNTERS` maps.
pub static HOOK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hook.bpf.o"));

/// `helper_probe.bpf.o`: one TC program `probe_<helper>` per helper in
/// `conformance_contract::facts::HELPERS`; loading one tells whether the verifier knows it.
pub static HELPER_PROBE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/helper_probe.bpf.o"));

/// Where the embedded objects came from: `rebuilt` or `shipped`.
pub const SOURCE: &str = env!("CONFORMANCE_EBPF_SOURCE");

/// `sha256:<hex>` of the eBPF sources the objects were built from (see `ebpf/builder.rs`).
pub const STAMP: &str = env!("CONFORMANCE_EBPF_STAMP");

#[cfg(test)]
mod tests {
    //! Loads the embedded objects into the kernel: the hook in a fresh network
    //! namespace (TCX on `lo`, real UDP traffic) and every helper probe program.
    //! Needs root; without it each test prints one skip line and returns.
    use super::*;
    use crate::netns::NetNs;
    use anyhow::{Context, Result, anyhow, ensure};
    use aya::Ebpf;
    use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
    use aya::programs::tc::TcAttachOptions;
    use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
    use conformance_contract::HELPERS;
    use conformance_ebpf_common::{
        HookConfig, PAYLOAD_MAGIC, PROBE_PORT, SkbMeta, action, counter, names,
    };
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    fn root_or_skip(test: &str) -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            println!("skipped {test}: needs root to load BPF programs");
        }
        root
    }

    #[test]
    fn embedded_objects_are_bpf_elf() {
        for (name, object) in [("hook", HOOK), ("helper_probe", HELPER_PROBE)] {
            assert!(object.starts_with(b"\x7fELF"), "{name} is not ELF");
            // e_machine (offset 18, little-endian) 247 = EM_BPF.
            assert_eq!(
                u16::from_le_bytes([object[18], object[19]]),
                247,
                "{name} is not a BPF object"
            );
        }
        assert!(matches!(SOURCE, "rebuilt" | "shipped"), "{SOURCE}");
        assert!(
            STAMP.starts_with("sha256:") && STAMP.len() == 7 + 64,
            "{STAMP}"
        );
    }

    #[test]
    fn every_helper_probe_passes_the_verifier() {
        if !root_or_skip("every_helper_probe_passes_the_verifier") {
            return;
        }
        let mut ebpf = Ebpf::load(HELPER_PROBE).expect("load helper_probe.bpf.o");
        let in_object: Vec<String> = ebpf
            .programs()
            .map(|(name, _)| name.to_string())
            .filter(|name| name.starts_with(names::HELPER_PROGRAM_PREFIX))
            .collect();
        let mut rejected = Vec::new();
        for helper in HELPERS {
            let name = format!("{}{helper}", names::HELPER_PROGRAM_PREFIX);
            let prog: &mut SchedClassifier = ebpf
                .program_mut(&name)
                .unwrap_or_else(|| panic!("helper_probe.bpf.o has no program {name}"))
                .try_into()
                .expect("a classifier");
            match prog.load() {
                Ok(()) => println!("helper {helper}: accepted by the verifier"),
                Err(err) => {
                    println!("helper {helper}: REJECTED: {err:?}");
                    rejected.push(*helper);
                }
            }
        }
        assert_eq!(
            in_object.len(),
            HELPERS.len(),
            "programs in the object: {in_object:?}"
        );
        assert!(rejected.is_empty(), "rejected on this kernel: {rejected:?}");
    }

    #[test]
    fn hook_counts_records_and_acts_on_lo() {
        if !root_or_skip("hook_counts_records_and_acts_on_lo") {
            return;
        }
        let ns = NetNs::new("objects-test").expect("create netns");
        ns.run(exercise_hook_on_lo).expect("hook on lo");
    }

    struct Loaded {
        ebpf: Ebpf,
        events: RingBuf<MapData>,
    }

    impl Loaded {
        fn configure(&mut self, config: HookConfig) -> Result<()> {
            let map = self
                .ebpf
                .map_mut(names::CONFIG_MAP)
                .ok_or_else(|| anyhow!("no CONFIG map"))?;
            let mut array: Array<_, HookConfig> = Array::try_from(map)?;
            array.set(0, config, 0)?;
            Ok(())
        }

        fn counter(&self, slot: u32) -> Result<u64> {
            let map = self
                .ebpf
                .map(names::COUNTERS_MAP)
                .ok_or_else(|| anyhow!("no COUNTERS map"))?;
            let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
            Ok(array.get(&slot, 0)?.iter().sum())
        }

        fn events(&mut self) -> Vec<SkbMeta> {
            let mut out = Vec::new();
            while let Some(item) = self.events.next() {
                assert_eq!(item.len(), size_of::<SkbMeta>());
                // SAFETY: SkbMeta is repr(C) plain integers; read_unaligned copes with any alignment.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SkbMeta>()) });
            }
            out
        }
    }

    fn payload(seq: u32) -> [u8; 8] {
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&PAYLOAD_MAGIC);
        p[4..].copy_from_slice(&seq.to_be_bytes());
        p
    }

    /// Runs inside the test namespace.
    fn exercise_hook_on_lo() -> Result<()> {
        let status = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .context("run ip")?;
        ensure!(status.success(), "ip link set lo up: {status}");

        let mut ebpf = Ebpf::load(HOOK).context("load hook.bpf.o")?;
        let events = RingBuf::try_from(
            ebpf.take_map(names::EVENTS_MAP)
                .ok_or_else(|| anyhow!("no EVENTS map"))?,
        )?;
        let mut hook = Loaded { ebpf, events };
        let base = HookConfig {
            dport: PROBE_PORT,
            action: action::PASS,
            set_mark: 0x77,
            ..Default::default()
        };
        hook.configure(base)?;
        let prog: &mut SchedClassifier = hook
            .ebpf
            .program_mut(names::HOOK_PROGRAM)
            .ok_or_else(|| anyhow!("no hook program"))?
            .try_into()?;
        prog.load().context("verifier")?;
        prog.attach_with_options(
            "lo",
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .context("TCX attach to lo ingress")?;

        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, PROBE_PORT))?;
        rx.set_read_timeout(Some(Duration::from_millis(300)))?;
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let mut buf = [0u8; 64];
        let loopback = u32::from_ne_bytes([127, 0, 0, 1]);

        // PASS: delivered, counted, recorded with the metadata before the mark write.
        tx.send_to(&payload(1), (Ipv4Addr::LOCALHOST, PROBE_PORT))?;
        let n = rx.recv(&mut buf).context("PASS datagram not delivered")?;
        ensure!(buf[..n] == payload(1), "payload changed");
        ensure!(
            hook.counter(counter::MATCHED)? == 1,
            "MATCHED after one datagram"
        );
        ensure!(hook.counter(counter::SEEN)? >= 1, "SEEN");
        let events = hook.events();
        ensure!(events.len() == 1, "events: {events:?}");
        let m = events[0];
        println!("PASS event: {m:?}");
        ensure!(
            m.seq == 1 && m.daddr == loopback && m.saddr == loopback,
            "{m:?}"
        );
        ensure!(m.mark == 0 && m.pkt_type == 0 && m.result == 0, "{m:?}");
        ensure!(m.protocol == u32::from(0x0800u16.to_be()), "{m:?}");
        ensure!(m.ifindex == 1 && m.len as usize == 14 + 20 + 8 + 8, "{m:?}");

        // Traffic to another port is seen but does not match.
        let seen = hook.counter(counter::SEEN)?;
        let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        tx.send_to(&payload(9), other.local_addr()?)?;
        other.set_read_timeout(Some(Duration::from_millis(300)))?;
        other
            .recv(&mut buf)
            .context("non-matching datagram not delivered")?;
        ensure!(hook.counter(counter::SEEN)? > seen, "SEEN did not grow");
        ensure!(
            hook.counter(counter::MATCHED)? == 1,
            "non-matching datagram matched"
        );

        // DROP: not delivered, recorded with TC_ACT_SHOT.
        hook.configure(HookConfig {
            action: action::DROP,
            ..base
        })?;
        tx.send_to(&payload(2), (Ipv4Addr::LOCALHOST, PROBE_PORT))?;
        ensure!(rx.recv(&mut buf).is_err(), "dropped datagram was delivered");
        let events = hook.events();
        ensure!(
            events.len() == 1 && events[0].seq == 2 && events[0].result == 2,
            "{events:?}"
        );

        // REDIRECT with flags the helper refuses: TC_ACT_SHOT, counted as a failed redirect.
        hook.configure(HookConfig {
            action: action::REDIRECT,
            target_ifindex: 1,
            redirect_flags: 1 << 40,
            ..base
        })?;
        tx.send_to(&payload(3), (Ipv4Addr::LOCALHOST, PROBE_PORT))?;
        ensure!(rx.recv(&mut buf).is_err(), "failed redirect was delivered");
        ensure!(
            hook.counter(counter::REDIRECT_FAILED)? == 1,
            "REDIRECT_FAILED"
        );
        let events = hook.events();
        ensure!(
            events.len() == 1 && events[0].seq == 3 && events[0].result == 2,
            "{events:?}"
        );

        ensure!(hook.counter(counter::MATCHED)? == 3, "MATCHED");
        ensure!(hook.counter(counter::EVENTS_LOST)? == 0, "EVENTS_LOST");
        Ok(())
    }
}
