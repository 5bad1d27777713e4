//! A `hook` program (ebpf/programs/src/bin/hook.rs) loaded and attached to one
//! device in one namespace, with its own maps: its configuration, the skb metadata
//! it recorded and its counters.
//!
//! Each hook is its own load of the object, so two hooks on one path never share
//! counters. Dropping a hook detaches it from inside its namespace: aya removes a
//! legacy tc filter by ifindex over netlink, and that must not happen in whatever
//! namespace the dropping thread is in.

use crate::netns::NetNs;
use crate::objects;
use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::tc::{NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use conformance_ebpf_common::{HookConfig, SkbMeta, counter, names};
use serde_json::{Value, json};

/// How a TC program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// A TCX link (`BPF_LINK_CREATE`, kernel 6.6+), Cilium's default where present.
    Tcx,
    /// A clsact qdisc and a cls_bpf filter over netlink (`bpf.enableTCX=false`).
    Legacy,
}

impl AttachMode {
    pub fn from_variant(variant: &str) -> Option<Self> {
        match variant {
            "tcx" => Some(Self::Tcx),
            "legacy" => Some(Self::Legacy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Legacy => "legacy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// Summed per-CPU counters of a hook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCounters {
    pub seen: u64,
    pub matched: u64,
    /// Matched packets the redirect helper accepted; what it then did is for the
    /// hops after the hook to show.
    pub redirected: u64,
    /// Redirects the helper refused (invalid flags only; never a bad target).
    pub redirect_failed: u64,
    pub events_lost: u64,
}

impl HookCounters {
    pub fn to_json(self) -> Value {
        json!({ "seen": self.seen, "matched": self.matched, "redirected": self.redirected, "redirect_failed": self.redirect_failed, "events_lost": self.events_lost })
    }
}

pub struct Hook {
    ns: NetNs,
    ebpf: Option<Ebpf>,
    events: RingBuf<MapData>,
    /// `<device> <direction> (<mode>)`, for evidence and errors.
    pub label: String,
    /// A link aya does not manage (netkit): closing it detaches the program.
    link: Option<std::os::fd::OwnedFd>,
}

/// Which of a netkit pair's program lists a hook joins (`BPF_LINK_CREATE` on the
/// primary's ifindex). netkit runs the *transmitting* device's list, after its
/// scrub and before the packet enters the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetkitSide {
    /// `BPF_NETKIT_PRIMARY`: what the host sends into the pod (Cilium's
    /// `cil_to_container` with endpoint routes).
    Primary,
    /// `BPF_NETKIT_PEER`: what the pod sends out (Cilium's `cil_from_container`).
    Peer,
}

impl NetkitSide {
    fn attach_type(self) -> u32 {
        match self {
            Self::Primary => 54, // BPF_NETKIT_PRIMARY
            Self::Peer => 55,    // BPF_NETKIT_PEER
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Primary => "netkit primary",
            Self::Peer => "netkit peer",
        }
    }
}

/// The `BPF_LINK_CREATE` member of `union bpf_attr` for tcx/netkit links: the
/// program, the target ifindex, the attach type, flags, then `relative_fd` and
/// `expected_revision` (zero: append, any revision).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

const BPF_LINK_CREATE: libc::c_long = 28;

/// Loads program `name` (`hook` or `hook_state`) of `ebpf` into the kernel (the
/// verifier runs here) and records it as the running check's own, so triage
/// tells it from programs others put on the path.
fn load_program<'a>(ebpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("hook.bpf.o has no program {name}"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("load program `{name}` (verifier)"))?;
    if let Ok(info) = prog.info() {
        crate::triage::own(info.id());
    }
    Ok(prog)
}

impl Hook {
    /// A fresh `hook.bpf.o` with its EVENTS ring taken and `config` written,
    /// its program not loaded nor attached yet.
    fn configured(ns: &NetNs, label: String, config: HookConfig) -> Result<Self> {
        let mut ebpf = crate::loader::load(objects::HOOK).context("load hook.bpf.o")?;
        let events = RingBuf::try_from(
            ebpf.take_map(names::EVENTS_MAP)
                .ok_or_else(|| anyhow!("hook.bpf.o has no EVENTS map"))?,
        )
        .context("EVENTS is not a ring buffer")?;
        let mut hook = Self {
            ns: ns.try_clone()?,
            ebpf: Some(ebpf),
            events,
            label,
            link: None,
        };
        hook.configure(config)?;
        Ok(hook)
    }

    /// Loads a fresh `hook` program, configures it and attaches it.
    pub fn attach(
        ns: &NetNs,
        device: &str,
        direction: Direction,
        mode: AttachMode,
        config: HookConfig,
    ) -> Result<Self> {
        Self::attach_program(ns, device, direction, mode, config, names::HOOK_PROGRAM)
    }

    /// As [`Hook::attach`], with program `program` of `hook.bpf.o`
    /// (`names::HOOK_STATE_PROGRAM` reads the kernel's own skb fields too).
    pub fn attach_program(
        ns: &NetNs,
        device: &str,
        direction: Direction,
        mode: AttachMode,
        config: HookConfig,
        program: &str,
    ) -> Result<Self> {
        let dir = match direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        };
        let label = format!("{device} {dir} ({}) in ns {}", mode.name(), ns.name());
        let mut hook = Self::configured(ns, label, config)?;
        let label = hook.label.clone();
        let ebpf = hook.ebpf.as_mut().expect("loaded");
        ns.run(|| {
            let prog = load_program(ebpf, program)?;
            let attach_type = match direction {
                Direction::Ingress => TcAttachType::Ingress,
                Direction::Egress => TcAttachType::Egress,
            };
            let options = match mode {
                AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                AttachMode::Legacy => {
                    // A second clsact on the same device reports "exists": that is fine.
                    if let Err(e) = aya::programs::tc::qdisc_add_clsact(device) {
                        let text = e.to_string();
                        if !text.contains("exists") && !text.contains("Exclusivity") {
                            return Err(anyhow!(e)).context("add clsact qdisc");
                        }
                    }
                    TcAttachOptions::Netlink(NlOptions::default())
                }
            };
            prog.attach_with_options(device, attach_type, options)?;
            Ok(())
        })
        .with_context(|| format!("attach hook on {label}"))?;
        Ok(hook)
    }

    /// Loads a fresh `hook` program (a SchedCLS program: `TC_ACT_OK` is
    /// `NETKIT_PASS`, `TC_ACT_SHOT` is `NETKIT_DROP`), configures it and links it
    /// to the `side` list of the netkit pair whose primary is `primary` in `ns`.
    pub fn attach_netkit(
        ns: &NetNs,
        primary: &str,
        side: NetkitSide,
        config: HookConfig,
    ) -> Result<Self> {
        use std::os::fd::{AsFd, AsRawFd};
        let label = format!("{primary} {} in ns {}", side.name(), ns.name());
        let mut hook = Self::configured(ns, label, config)?;
        let label = hook.label.clone();
        let ebpf = hook.ebpf.as_mut().expect("loaded");
        let link = ns
            .run(|| {
                let prog = load_program(ebpf, names::HOOK_PROGRAM)?;
                let name = std::ffi::CString::new(primary)?;
                // SAFETY: a valid NUL-terminated name; the call only reads it.
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                if ifindex == 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("no device {primary}"));
                }
                let fd = prog.fd()?;
                let mut attr = LinkCreateAttr {
                    prog_fd: fd.as_fd().as_raw_fd() as u32,
                    target_ifindex: ifindex,
                    attach_type: side.attach_type(),
                    ..Default::default()
                };
                let link = crate::pins::bpf(BPF_LINK_CREATE, &mut attr)
                    .context("bpf(BPF_LINK_CREATE, netkit)")?;
                Ok(crate::pins::owned(link))
            })
            .with_context(|| format!("attach hook on {label}"))?;
        hook.link = Some(link);
        Ok(hook)
    }

    fn ebpf(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("hook is loaded until dropped")
    }

    /// Replaces the configuration; the next packet sees the new one.
    pub fn configure(&mut self, config: HookConfig) -> Result<()> {
        let label = self.label.clone();
        let map = self
            .ebpf()
            .map_mut(names::CONFIG_MAP)
            .ok_or_else(|| anyhow!("hook.bpf.o has no CONFIG map"))?;
        let mut array: Array<_, HookConfig> = Array::try_from(map)?;
        array
            .set(0, config, 0)
            .with_context(|| format!("configure hook on {label}"))?;
        Ok(())
    }

    pub fn counters(&self) -> Result<HookCounters> {
        let map = self
            .ebpf
            .as_ref()
            .expect("hook is loaded until dropped")
            .map(names::COUNTERS_MAP)
            .ok_or_else(|| anyhow!("hook.bpf.o has no COUNTERS map"))?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let sum = |slot: u32| -> Result<u64> { Ok(array.get(&slot, 0)?.iter().sum()) };
        Ok(HookCounters {
            seen: sum(counter::SEEN)?,
            matched: sum(counter::MATCHED)?,
            redirected: sum(counter::REDIRECTED)?,
            redirect_failed: sum(counter::REDIRECT_FAILED)?,
            events_lost: sum(counter::EVENTS_LOST)?,
        })
    }

    /// Takes every skb metadata record the hook has written so far.
    pub fn drain_events(&mut self) -> Vec<SkbMeta> {
        drain_ring(&mut self.events)
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(ebpf) = self.ebpf.take() {
            // Detach where the device lives; if the namespace is already gone, so is the filter.
            let _ = self.ns.run(move || {
                drop(ebpf);
                Ok(())
            });
        }
    }
}

/// Takes every record written to `ring` so far, as `T`s; a shorter record is skipped.
pub(crate) fn drain_ring<T: aya::Pod>(ring: &mut RingBuf<MapData>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<T>() {
            // SAFETY: `T: Pod` is plain old data, valid for any bit pattern of its
            // size; read_unaligned copes with any alignment.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const T) });
        }
    }
    out
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A recorded packet's source or destination address, in its own family.
fn meta_addr(m: &SkbMeta, v4: u32, v6: [u8; 16]) -> String {
    if m.ip_version == 6 {
        std::net::Ipv6Addr::from(v6).to_string()
    } else {
        std::net::Ipv4Addr::from(u32::from_be(v4)).to_string()
    }
}

/// The metadata fields a report shows, named as in `struct __sk_buff`, then the
/// frame's Ethernet addresses and, where the hook looked the route up, its answer.
pub fn meta_json(m: &SkbMeta) -> Value {
    let mut v = json!({
        "seq": m.seq,
        "ifindex": m.ifindex,
        "ingress_ifindex": m.ingress_ifindex,
        "mark": format!("{:#x}", m.mark),
        "hash": format!("{:#x}", m.hash),
        "protocol": format!("{:#06x}", u16::from_be(m.protocol as u16)),
        "pkt_type": m.pkt_type,
        "len": m.len,
        "saddr": meta_addr(m, m.saddr, m.saddr6),
        "daddr": meta_addr(m, m.daddr, m.daddr6),
        "tstamp": m.tstamp,
        "result": m.result,
        "eth_dst": mac_text(&m.eth_dst),
        "eth_src": mac_text(&m.eth_src),
    });
    if m.fib_called != 0 {
        v["fib"] = json!({
            "rc": m.fib_rc,
            "answer": conformance_ebpf_common::fib_rc::name(m.fib_rc),
            "ifindex": m.fib_ifindex,
            "smac": mac_text(&m.fib_smac),
            "dmac": mac_text(&m.fib_dmac),
        });
    }
    if m.kern_read != 0 {
        use conformance_ebpf_common::kern;
        let read = |bit: u32, value: Value| (m.kern_read & bit != 0).then_some(value);
        v["sk_buff"] = json!({
            "_nfct": read(kern::NFCT, json!(format!("{:#x}", m.kern_nfct))),
            "_skb_refdst": read(kern::REFDST, json!(format!("{:#x}", m.kern_refdst))),
            "active_extensions": read(kern::EXT, json!(format!("{:#04x}", m.kern_ext))),
        });
    }
    v
}
