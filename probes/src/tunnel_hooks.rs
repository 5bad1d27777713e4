//! The `tunnel` programs (ebpf/programs/src/bin/tunnel.rs) loaded and attached for
//! the tunnel checks: `tunnel_encap` on pod A's host-side veth (ingress) and
//! `tunnel_decap` on the receiving node's tunnel device (ingress), each its own
//! load of the object with its own maps (configuration, counters, events).
//!
//! The map layouts below mirror the eBPF side byte for byte (the tests pin their
//! sizes and offsets). Dropping a program detaches it from inside its namespace,
//! as [`crate::hooks::Hook`] does.

use crate::hooks::AttachMode;
use crate::netns::NetNs;
use crate::objects;
use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// Program names in `tunnel.bpf.o`.
pub const ENCAP_PROGRAM: &str = "tunnel_encap";
pub const DECAP_PROGRAM: &str = "tunnel_decap";
const ENCAP_CONFIG_MAP: &str = "ENCAP_CONFIG";
const DECAP_CONFIG_MAP: &str = "DECAP_CONFIG";
const EVENTS_MAP: &str = "EVENTS";
const COUNTERS_MAP: &str = "COUNTERS";

/// `bpf_skb_set_tunnel_key` flags (include/uapi/linux/bpf.h).
pub const BPF_F_ZERO_CSUM_TX: u64 = 1 << 1;
pub const BPF_F_DONT_FRAGMENT: u64 = 1 << 2;

/// Counter slots, as in the eBPF source.
pub mod slot {
    pub const SEEN: u32 = 0;
    pub const MATCHED: u32 = 1;
    pub const KEY_OK: u32 = 2;
    pub const KEY_FAILED: u32 = 3;
    pub const REDIRECTED: u32 = 4;
    pub const EVENTS_LOST: u32 = 5;
}

/// `tunnel_encap`'s configuration (`ENCAP_CONFIG[0]`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncapConfig {
    pub dport: u16,
    pub ttl: u8,
    pub _pad: u8,
    /// Host order, as `bpf_tunnel_key.remote_ipv4` wants it.
    pub remote_ipv4: u32,
    pub tunnel_id: u32,
    pub tunnel_ifindex: u32,
    pub key_flags: u64,
}

/// `tunnel_decap`'s configuration (`DECAP_CONFIG[0]`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecapConfig {
    pub dport: u16,
    pub _pad: u16,
    pub target_ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub magic: [u8; 4],
}

/// One decapsulated packet as `tunnel_decap` saw it (`EVENTS`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelEvent {
    pub seq: u32,
    pub key_rc: i32,
    /// Outer source address, host order.
    pub remote_ipv4: u32,
    pub tunnel_id: u32,
    pub len: u32,
    pub ifindex: u32,
    pub redirect_rc: i32,
    pub tunnel_ttl: u8,
    pub tunnel_tos: u8,
    pub _pad: [u8; 2],
}

// SAFETY: plain-old-data `repr(C)` structs without padding holes (explicit `_pad`
// fields), valid for any bit pattern.
unsafe impl aya::Pod for EncapConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for DecapConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for TunnelEvent {}

impl TunnelEvent {
    pub fn remote(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.remote_ipv4)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "key_rc": self.key_rc,
            "remote_ipv4": self.remote().to_string(),
            "tunnel_id": self.tunnel_id,
            "tunnel_ttl": self.tunnel_ttl,
            "tunnel_tos": self.tunnel_tos,
            "len": self.len,
            "ifindex": self.ifindex,
            "redirect_rc": self.redirect_rc,
        })
    }
}

/// Summed per-CPU counters of one program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    pub seen: u64,
    pub matched: u64,
    pub key_ok: u64,
    pub key_failed: u64,
    pub redirected: u64,
    pub events_lost: u64,
}

impl TunnelCounters {
    pub fn get(&self, s: u32) -> u64 {
        match s {
            slot::SEEN => self.seen,
            slot::MATCHED => self.matched,
            slot::KEY_OK => self.key_ok,
            slot::KEY_FAILED => self.key_failed,
            slot::REDIRECTED => self.redirected,
            slot::EVENTS_LOST => self.events_lost,
            _ => 0,
        }
    }

    pub fn to_json(self) -> Value {
        json!({ "seen": self.seen, "matched": self.matched, "key_ok": self.key_ok, "key_failed": self.key_failed, "redirected": self.redirected, "events_lost": self.events_lost })
    }
}

/// One loaded and attached `tunnel` program.
pub struct TunnelProgram {
    ns: NetNs,
    ebpf: Option<Ebpf>,
    /// Behind a lock so that draining needs only `&self`: the checks' hop meters
    /// hold shared references to the programs while a leg runs.
    events: std::sync::Mutex<RingBuf<MapData>>,
    /// `<program> on <device> ingress (<mode>) in ns <ns>`, for evidence and errors.
    pub label: String,
}

impl TunnelProgram {
    /// Loads `tunnel_encap`, configures it and attaches it to `device`'s ingress.
    pub fn encap(ns: &NetNs, device: &str, mode: AttachMode, config: EncapConfig) -> Result<Self> {
        let mut p = Self::load(ns, device, mode, ENCAP_PROGRAM)?;
        p.set_encap(config)?;
        p.attach(device, mode, ENCAP_PROGRAM)?;
        Ok(p)
    }

    /// Loads `tunnel_decap`, configures it and attaches it to `device`'s ingress.
    pub fn decap(ns: &NetNs, device: &str, mode: AttachMode, config: DecapConfig) -> Result<Self> {
        let mut p = Self::load(ns, device, mode, DECAP_PROGRAM)?;
        p.set_config(DECAP_CONFIG_MAP, config)?;
        p.attach(device, mode, DECAP_PROGRAM)?;
        Ok(p)
    }

    fn load(ns: &NetNs, device: &str, mode: AttachMode, program: &str) -> Result<Self> {
        let label = format!(
            "{program} on {device} ingress ({}) in ns {}",
            mode.name(),
            ns.name()
        );
        let mut ebpf = crate::loader::load(objects::TUNNEL).context("load tunnel.bpf.o")?;
        let events = RingBuf::try_from(
            ebpf.take_map(EVENTS_MAP)
                .ok_or_else(|| anyhow!("tunnel.bpf.o has no {EVENTS_MAP} map"))?,
        )
        .context("EVENTS is not a ring buffer")?;
        Ok(Self {
            ns: ns.try_clone()?,
            ebpf: Some(ebpf),
            events: std::sync::Mutex::new(events),
            label,
        })
    }

    fn attach(&mut self, device: &str, mode: AttachMode, program: &str) -> Result<()> {
        let label = self.label.clone();
        let ebpf = self.ebpf.as_mut().expect("loaded");
        self.ns
            .run(|| {
                let prog: &mut SchedClassifier = ebpf
                    .program_mut(program)
                    .ok_or_else(|| anyhow!("tunnel.bpf.o has no program {program}"))?
                    .try_into()?;
                prog.load()
                    .with_context(|| format!("load program `{program}` (verifier)"))?;
                if let Ok(info) = prog.info() {
                    crate::triage::own(info.id());
                }
                let options = match mode {
                    AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                    AttachMode::Legacy => {
                        if let Err(e) = aya::programs::tc::qdisc_add_clsact(device) {
                            let text = e.to_string();
                            if !text.contains("exists") && !text.contains("Exclusivity") {
                                return Err(anyhow!(e)).context("add clsact qdisc");
                            }
                        }
                        TcAttachOptions::Netlink(NlOptions::default())
                    }
                };
                prog.attach_with_options(device, TcAttachType::Ingress, options)?;
                Ok(())
            })
            .with_context(|| format!("attach {label}"))
    }

    fn set_config<T: aya::Pod>(&mut self, map: &str, config: T) -> Result<()> {
        let label = self.label.clone();
        let map = self
            .ebpf
            .as_mut()
            .expect("loaded until dropped")
            .map_mut(map)
            .ok_or_else(|| anyhow!("tunnel.bpf.o has no {map} map"))?;
        let mut array: Array<_, T> = Array::try_from(map)?;
        array
            .set(0, config, 0)
            .with_context(|| format!("configure {label}"))?;
        Ok(())
    }

    /// Replaces `tunnel_encap`'s configuration; the next packet sees the new one.
    pub fn set_encap(&mut self, config: EncapConfig) -> Result<()> {
        self.set_config(ENCAP_CONFIG_MAP, config)
    }

    pub fn counters(&self) -> Result<TunnelCounters> {
        let map = self
            .ebpf
            .as_ref()
            .expect("loaded until dropped")
            .map(COUNTERS_MAP)
            .ok_or_else(|| anyhow!("tunnel.bpf.o has no {COUNTERS_MAP} map"))?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let sum = |s: u32| -> Result<u64> { Ok(array.get(&s, 0)?.iter().sum()) };
        Ok(TunnelCounters {
            seen: sum(slot::SEEN)?,
            matched: sum(slot::MATCHED)?,
            key_ok: sum(slot::KEY_OK)?,
            key_failed: sum(slot::KEY_FAILED)?,
            redirected: sum(slot::REDIRECTED)?,
            events_lost: sum(slot::EVENTS_LOST)?,
        })
    }

    /// Takes every event written so far (only `tunnel_decap` writes any).
    pub fn drain_events(&self) -> Vec<TunnelEvent> {
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::hooks::drain_ring(&mut events)
    }
}

impl Drop for TunnelProgram {
    fn drop(&mut self) {
        if let Some(ebpf) = self.ebpf.take() {
            // Detach where the device lives; if the namespace is gone, so is the filter.
            let _ = self.ns.run(move || {
                drop(ebpf);
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The eBPF side's `repr(C)` layouts, field by field.
    #[test]
    fn layouts_match_the_ebpf_source() {
        assert_eq!(size_of::<EncapConfig>(), 24);
        assert_eq!(offset_of!(EncapConfig, remote_ipv4), 4);
        assert_eq!(offset_of!(EncapConfig, tunnel_ifindex), 12);
        assert_eq!(offset_of!(EncapConfig, key_flags), 16);
        assert_eq!(size_of::<DecapConfig>(), 24);
        assert_eq!(offset_of!(DecapConfig, dst_mac), 8);
        assert_eq!(offset_of!(DecapConfig, magic), 20);
        assert_eq!(size_of::<TunnelEvent>(), 32);
        assert_eq!(offset_of!(TunnelEvent, redirect_rc), 24);
        assert_eq!(offset_of!(TunnelEvent, tunnel_ttl), 28);
    }

    #[test]
    fn remote_is_host_order() {
        let e = TunnelEvent {
            remote_ipv4: u32::from(Ipv4Addr::new(192, 0, 2, 1)),
            ..Default::default()
        };
        assert_eq!(e.remote(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(e.to_json()["remote_ipv4"], "192.0.2.1");
    }
}
