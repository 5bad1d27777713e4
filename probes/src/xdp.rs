//! The `xdp` program (ebpf/programs/src/bin/xdp.rs) loaded and attached to one
//! device in one namespace, with its own maps: its configuration (`CONFIG`, u32
//! slots) and its per-CPU counters (`COUNTERS`). Each attach is its own load.
//! Dropping it detaches from inside its namespace.

use crate::netns::NetNs;
use crate::objects;
use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::maps::{Array, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use serde_json::{Value, json};

pub const PROGRAM: &str = "xdp_probe";
const CONFIG_MAP: &str = "CONFIG";
const COUNTERS_MAP: &str = "COUNTERS";

/// `CONFIG` slots, as in the program.
const DPORT: u32 = 0;
const ACTION: u32 = 1;

/// What the program does with a matching frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAction {
    Pass = 0,
    Drop = 1,
}

/// `COUNTERS` slots, as in the program.
const SEEN: u32 = 0;
const MATCHED: u32 = 1;

/// Native (driver) or generic (skb) XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `XDP_FLAGS_DRV_MODE`: the driver runs the program (veth: in its NAPI poll).
    Native,
    /// `XDP_FLAGS_SKB_MODE`: the stack runs it on the skb (`do_xdp_generic`).
    Generic,
}

impl Mode {
    pub fn from_variant(variant: &str) -> Option<Self> {
        match variant {
            "native" => Some(Self::Native),
            "generic" => Some(Self::Generic),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }

    fn flags(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

/// Summed per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters {
    pub seen: u64,
    pub matched: u64,
}

pub struct XdpHook {
    ns: NetNs,
    ebpf: Option<Ebpf>,
    /// `<device> xdp (<mode>) in ns <ns>`.
    pub label: String,
}

impl XdpHook {
    /// Loads a fresh program matching UDP to `dport`, sets `action`, attaches it
    /// to `device` in `ns` with `mode`.
    pub fn attach(
        ns: &NetNs,
        device: &str,
        mode: Mode,
        dport: u16,
        action: XdpAction,
    ) -> Result<Self> {
        let label = format!("{device} xdp ({}) in ns {}", mode.name(), ns.name());
        let ebpf = crate::loader::load(objects::XDP).context("load xdp.bpf.o")?;
        let mut hook = Self {
            ns: ns.try_clone()?,
            ebpf: Some(ebpf),
            label,
        };
        hook.set(DPORT, u32::from(dport))?;
        hook.set_action(action)?;
        let label = hook.label.clone();
        let ebpf = hook.ebpf.as_mut().expect("loaded");
        ns.run(|| {
            let prog: &mut Xdp = ebpf
                .program_mut(PROGRAM)
                .ok_or_else(|| anyhow!("xdp.bpf.o has no program {PROGRAM}"))?
                .try_into()?;
            prog.load().context("load program `xdp_probe` (verifier)")?;
            if let Ok(info) = prog.info() {
                crate::triage::own(info.id());
            }
            prog.attach(device, mode.flags())?;
            Ok(())
        })
        .with_context(|| format!("attach {label}"))?;
        Ok(hook)
    }

    fn set(&mut self, slot: u32, value: u32) -> Result<()> {
        let label = self.label.clone();
        let map = self
            .ebpf
            .as_mut()
            .expect("loaded until dropped")
            .map_mut(CONFIG_MAP)
            .ok_or_else(|| anyhow!("xdp.bpf.o has no CONFIG map"))?;
        let mut array: Array<_, u32> = Array::try_from(map)?;
        array
            .set(slot, value, 0)
            .with_context(|| format!("configure {label}"))?;
        Ok(())
    }

    /// The next matching frame gets `action`.
    pub fn set_action(&mut self, action: XdpAction) -> Result<()> {
        self.set(ACTION, action as u32)
    }

    pub fn counters(&self) -> Result<XdpCounters> {
        let map = self
            .ebpf
            .as_ref()
            .expect("loaded until dropped")
            .map(COUNTERS_MAP)
            .ok_or_else(|| anyhow!("xdp.bpf.o has no COUNTERS map"))?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let sum = |slot: u32| -> Result<u64> { Ok(array.get(&slot, 0)?.iter().sum()) };
        Ok(XdpCounters {
            seen: sum(SEEN)?,
            matched: sum(MATCHED)?,
        })
    }

    pub fn to_json(&self) -> Result<Value> {
        let c = self.counters()?;
        Ok(json!({ "at": self.label, "counters": { "seen": c.seen, "matched": c.matched } }))
    }
}

impl Drop for XdpHook {
    fn drop(&mut self) {
        if let Some(ebpf) = self.ebpf.take() {
            // Detach where the device lives (a netlink-attached program is removed by ifindex).
            let _ = self.ns.run(move || {
                drop(ebpf);
                Ok(())
            });
        }
    }
}
