//! `env.bpffs.propagation`: the k3d problem, live. Cilium's `mount-bpf-fs` init
//! container mounts a bpffs at `/sys/fs/bpf` through a Bidirectional hostPath, and
//! the agent pins its maps there; the node (and the next agent) see them only if
//! the node's `/sys/fs/bpf` mount is shared. Here an "agent" mount namespace, made
//! from the node's as a container runtime makes one, mounts a bpffs at
//! `/sys/fs/bpf` and pins a map; the node's namespace must then see a bpffs there
//! and open the pin to the same map id.
//!
//! Nothing leaves the probe: the node is a copy of this place's mount namespace,
//! made a slave first so no mount in it propagates back to the place (or the host),
//! with its own tmpfs at `/sys/fs/bpf` whose propagation the variant sets. Both
//! namespaces live only on their threads and die with them, bpffs and pin included.
//! The variants are the two ways a node comes: `rshared` (what `mount
//! --make-rshared /`, i.e. k3d's K3D_FIX_MOUNTS, gives) and `private` (Docker's
//! default for a container's mounts). The control, for both, differs in one step:
//! the agent's copy is made a slave before it mounts (a HostToContainer hostPath,
//! what Cilium's agent container itself gets), so its mount must not reach the node.

use super::{ControlLeg, Ctx, Fault, Leg, Registered, evidence, observe};
use crate::facts::parse;
use crate::pins;
use anyhow::{Context, Result, anyhow, bail};
use conformance_contract::Observation;
use conformance_contract::catalogue::{Failure, NOT_PROPAGATED, PIN_NOT_SEEN};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use serde_json::{Map, Value, json};
use std::sync::mpsc;
use std::time::Instant;

const BPFFS: &str = "/sys/fs/bpf";
const MAP_NAME: &str = "cc_propagation";

/// The propagation the node gives its `/sys/fs/bpf` mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Rshared,
    Private,
}

impl Node {
    fn from_variant(v: &str) -> Option<Self> {
        match v {
            "rshared" => Some(Self::Rshared),
            "private" => Some(Self::Private),
            _ => None,
        }
    }

    fn flag(self) -> MsFlags {
        match self {
            Node::Rshared => MsFlags::MS_SHARED,
            Node::Private => MsFlags::MS_PRIVATE,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Node::Rshared => "shared (as `mount --make-rshared /` leaves it)",
            Node::Private => "private",
        }
    }
}

/// What the agent did in its namespace.
struct Agent {
    fs: String,
    map_id: u32,
    pin: String,
}

/// One trial: the agent's side, then what the node saw.
struct Trial {
    agent: Agent,
    node_fs: String,
    /// The map id the node's open of the pin returned, if the pin was there.
    node_map_id: Option<u32>,
}

impl Trial {
    fn seen(&self) -> bool {
        self.node_map_id == Some(self.agent.map_id)
    }

    /// Each step in order, whether it held, for evidence and reasons.
    fn steps(&self) -> Vec<(String, bool)> {
        vec![
            (
                format!("agent: bpffs mounted at {BPFFS} ({})", self.agent.fs),
                self.agent.fs == "bpffs",
            ),
            (
                format!(
                    "agent: map {} pinned at {}",
                    self.agent.map_id, self.agent.pin
                ),
                true,
            ),
            (
                format!("node: {BPFFS} is {}", self.node_fs),
                self.node_fs == "bpffs",
            ),
            (
                match self.node_map_id {
                    Some(id) => format!("node: the pin opens map {id}"),
                    None => "node: nothing pinned there".to_string(),
                },
                self.seen(),
            ),
        ]
    }

    /// "last seen …; first missing …", or `None` when every step held.
    fn loss(&self) -> Option<String> {
        let steps = self.steps();
        let i = steps.iter().position(|(_, ok)| !ok)?;
        let last = i.checked_sub(1).map(|j| steps[j].0.as_str());
        Some(match last {
            Some(last) => format!("last seen: {last}; first missing: {}", steps[i].0),
            None => format!("first missing: {}", steps[i].0),
        })
    }

    /// The named failure: the mount never reached the node, or only the pin is gone.
    fn failure(&self) -> &'static Failure {
        if self.node_fs == "bpffs" {
            &PIN_NOT_SEEN
        } else {
            &NOT_PROPAGATED
        }
    }

    fn to_json(&self) -> Value {
        Value::Array(
            self.steps()
                .into_iter()
                .map(|(at, ok)| json!({ "at": at, "held": ok }))
                .collect(),
        )
    }
}

/// Makes the node, lets the agent mount and pin, and looks from the node.
fn trial(node: Node, agent_slave: bool, drop_pin: bool, run_id: &str) -> Result<Trial> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Trial> {
            // Receive from the place, send nothing back: every mount below stays here.
            crate::mountns::enter_slave("the node")?;
            if !std::path::Path::new(BPFFS).is_dir() {
                bail!("{BPFFS} is not a directory here (no sysfs?): nothing to mount on");
            }
            mount(
                Some("cc-node"),
                BPFFS,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=64k,mode=0700"),
            )
            .with_context(|| format!("mount a tmpfs at {BPFFS} for the node"))?;
            mount(None::<&str>, BPFFS, None::<&str>, node.flag(), None::<&str>)
                .with_context(|| format!("set the node's {BPFFS} {}", node.describe()))?;

            let (agent_tx, agent_rx) = mpsc::channel::<Result<Agent>>();
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let pin = format!("{BPFFS}/cc_{run_id}");
            let agent = s.spawn(move || match agent(agent_slave, drop_pin, &pin) {
                Ok((made, map)) => {
                    let _ = agent_tx.send(Ok(made));
                    // The namespace, its bpffs and the map live until the node has looked.
                    let _ = done_rx.recv();
                    drop(map);
                }
                Err(e) => {
                    let _ = agent_tx.send(Err(e));
                }
            });
            let agent_side = agent_rx
                .recv()
                .map_err(|_| anyhow!("the agent's thread ended without a word"))??;
            let node_fs = pins::fs_name(pins::fs_magic(BPFFS)?);
            let node_map_id = match pins::open_pinned(&agent_side.pin)? {
                Some(fd) => Some(pins::map_id(&fd)?),
                None => None,
            };
            let _ = done_tx.send(());
            agent
                .join()
                .map_err(|_| anyhow!("the agent's thread panicked"))?;
            Ok(Trial {
                agent: agent_side,
                node_fs,
                node_map_id,
            })
        })
        .join()
        .map_err(|_| anyhow!("the node's thread panicked"))?
    })
}

/// The agent: a copy of the node's namespace (as a runtime gives a pod), a bpffs
/// mounted at `/sys/fs/bpf` (as Cilium's mount-bpf-fs does), a map pinned in it.
/// The map's descriptor is returned so the map outlives the pin check.
fn agent(slave: bool, drop_pin: bool, pin: &str) -> Result<(Agent, std::os::fd::OwnedFd)> {
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS) for the agent")?;
    if slave {
        mount(
            None::<&str>,
            BPFFS,
            None::<&str>,
            MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .with_context(|| format!("make the agent's {BPFFS} a slave"))?;
    }
    mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .with_context(|| format!("mount -t bpf bpf {BPFFS} in the agent's namespace"))?;
    let fs = pins::fs_name(pins::fs_magic(BPFFS)?);
    let fd = pins::create_map(MAP_NAME)?;
    let map_id = pins::map_id(&fd)?;
    pins::pin(&fd, pin)?;
    if drop_pin {
        std::fs::remove_file(pin).with_context(|| format!("unlink {pin} (fault drop)"))?;
    }
    Ok((
        Agent {
            fs,
            map_id,
            pin: pin.to_string(),
        },
        fd,
    ))
}

/// This place's own `/sys/fs/bpf` as mountinfo says, for reasons and evidence.
fn place() -> (bool, String) {
    let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let (mounted, propagation) = parse::bpffs(&parse::parse_mountinfo(&text));
    (mounted, propagation.unwrap_or_else(|| "unknown".into()))
}

const FIX: &str = "`mount --make-rshared /` in the node (k3d: K3D_FIX_MOUNTS, on by default since 5.6.1), so what Cilium's mount-bpf-fs init container mounts through its Bidirectional hostPath reaches the node";

pub const CHECKS: &[Registered] = &[Registered {
    id: "env.bpffs.propagation",
    run,
}];

fn run(check: &str, variant: &str, ctx: &Ctx, started: Instant) -> Result<Observation> {
    let node = Node::from_variant(variant)
        .ok_or_else(|| anyhow!("unknown variant `{variant}` for {check}"))?;
    let (place_mounted, place_propagation) = place();
    let mut place_text = format!(
        "this place's own {BPFFS}: {}, {place_propagation} (facts bpffs, bpffs.propagation)",
        if place_mounted { "a bpffs" } else { "no bpffs" }
    );
    if place_propagation != "shared" {
        place_text.push_str(", so Cilium here meets the `private` variant's failure");
    }

    let drop_pin = match ctx.fault(check) {
        None => false,
        Some(Fault::Drop) => true,
        Some(other) => bail!("fault {other:?} does not apply to {check} (it takes `drop`)"),
    };
    let positive = trial(node, false, drop_pin, ctx.run_id)?;
    if positive.agent.fs != "bpffs" {
        bail!(
            "the agent's mount at {BPFFS} shows {}, not bpffs: the premise failed",
            positive.agent.fs
        );
    }
    let mut ev = evidence([
        ("node_propagation", json!(variant)),
        ("steps", positive.to_json()),
        ("place_bpffs", json!(place_mounted)),
        ("place_propagation", json!(place_propagation)),
    ]);
    let leg = match positive.loss() {
        None => Leg::passed(
            format!(
                "the agent's bpffs at {BPFFS} and map {} pinned in it are seen from the node, whose {BPFFS} is {}; {place_text}",
                positive.agent.map_id,
                node.describe()
            ),
            ev.clone(),
        ),
        Some(loss) => {
            let failure = positive.failure();
            let why = match (failure.code, node) {
                ("pin-not-seen", _) => format!(
                    "the agent's bpffs reached the node but its pin did not: another bpffs instance at {BPFFS}, or the pin was removed"
                ),
                (_, Node::Private) => format!(
                    "the node's {BPFFS} is private, so the agent's mount stayed in the agent's namespace. Fix: {FIX}"
                ),
                (_, Node::Rshared) => format!(
                    "the node's {BPFFS} is shared, yet the agent's mount did not reach it: mount propagation is broken here"
                ),
            };
            Leg::failed(failure, format!("{loss}: {why}; {place_text}"), ev.clone())
        }
    };

    let control = trial(node, true, false, ctx.run_id)?;
    ev = Map::new();
    ev.insert("steps".into(), control.to_json());
    let witnessed = control.agent.fs == "bpffs";
    let account = format!(
        "the agent's copy made a slave before it mounted (HostToContainer): {}",
        control
            .loss()
            .unwrap_or_else(|| format!("the node still opened map {}", control.agent.map_id))
    );
    let control = ControlLeg {
        description: "the same mount and pin from an agent whose /sys/fs/bpf is a slave of the node's (HostToContainer), so its mount cannot propagate back".into(),
        witnessed,
        test_held: control.seen(),
        account,
        evidence: ev,
    };
    Ok(observe(check, variant, started, leg, control))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(node_fs: &str, node_map_id: Option<u32>) -> Trial {
        Trial {
            agent: Agent {
                fs: "bpffs".into(),
                map_id: 7,
                pin: "/sys/fs/bpf/cc_x".into(),
            },
            node_fs: node_fs.into(),
            node_map_id,
        }
    }

    #[test]
    fn a_private_node_loses_the_agents_mount_after_the_pin() {
        let t = trial("tmpfs", None);
        assert!(!t.seen());
        assert_eq!(
            t.loss().unwrap(),
            "last seen: agent: map 7 pinned at /sys/fs/bpf/cc_x; first missing: node: /sys/fs/bpf is tmpfs"
        );
    }

    #[test]
    fn a_missing_mount_and_a_missing_pin_are_different_failures() {
        assert_eq!(trial("tmpfs", None).failure().code, "not-propagated");
        assert_eq!(trial("bpffs", None).failure().code, "pin-not-seen");
    }

    #[test]
    fn only_the_same_map_id_counts_as_seen() {
        assert!(trial("bpffs", Some(7)).loss().is_none());
        let other = trial("bpffs", Some(8));
        assert!(!other.seen());
        assert!(
            other
                .loss()
                .unwrap()
                .ends_with("first missing: node: the pin opens map 8"),
            "{:?}",
            other.loss()
        );
    }
}
