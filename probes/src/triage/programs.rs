//! BPF programs that can touch the probe's packets, through bpf(2) as `bpftool net`,
//! `bpftool cgroup` and `bpftool link` would list them: TCX programs on a device
//! (queried from inside the device's namespace), programs on the probe's cgroup
//! (effective, so inherited ones count), and netfilter links. Each is named and
//! marked `ours` when the running check attached it itself (by program id, so an
//! injected fault's program, or anyone else's, is not).

use crate::pins::{bpf, owned};
use serde_json::{Value, json};
use std::os::fd::AsRawFd;

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_F_QUERY_EFFECTIVE: u32 = 1;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_LINK_TYPE_NETFILTER: u32 = 10;

/// A program found attached somewhere.
pub struct Attached {
    pub device: String,
    pub ifindex: u32,
    pub attach: String,
    pub prog_id: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The leading fields of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// Program ids attached at `target` (an ifindex or a cgroup fd) for `attach_type`.
fn query(target: u32, attach_type: u32, flags: u32) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target,
        attach_type,
        query_flags: flags,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt.min(64) as usize);
    Ok(ids)
}

/// TCX programs on device `ifindex` of the calling thread's namespace.
pub fn tcx(ifindex: u32, dir: &str) -> Vec<u32> {
    let attach = if dir == "ingress" {
        BPF_TCX_INGRESS
    } else {
        BPF_TCX_EGRESS
    };
    query(ifindex, attach, 0).unwrap_or_default()
}

fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Name, type and tag of program `id`; `None` when it is gone or not readable.
fn prog_info(id: u32) -> Option<(String, u32, String)> {
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    let fd = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).ok()?);
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).ok()?;
    let tag = info.tag.iter().map(|b| format!("{b:02x}")).collect();
    Some((c_name(&info.name), info.prog_type, tag))
}

fn program(prog_id: u32) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("prog_id".into(), json!(prog_id));
    match prog_info(prog_id) {
        Some((name, prog_type, tag)) => {
            m.insert("ours".into(), json!(super::is_ours(prog_id)));
            m.insert("name".into(), json!(name));
            m.insert("prog_type".into(), json!(prog_type));
            m.insert("tag".into(), json!(tag));
        }
        None => {
            m.insert("ours".into(), json!(false));
            m.insert("name".into(), json!("(unreadable)"));
        }
    }
    m
}

/// One attached program as evidence.
pub fn describe(a: Attached) -> Value {
    let mut m = program(a.prog_id);
    m.insert("device".into(), json!(a.device));
    m.insert("ifindex".into(), json!(a.ifindex));
    m.insert("attach".into(), json!(a.attach));
    Value::Object(m)
}

/// The cgroup attach types that see a socket's packets or its connect/send calls.
const CGROUP_TYPES: &[(u32, &str)] = &[
    (0, "cgroup_inet_ingress"),
    (1, "cgroup_inet_egress"),
    (2, "cgroup_inet_sock_create"),
    (3, "cgroup_sock_ops"),
    (8, "cgroup_inet4_bind"),
    (10, "cgroup_inet4_connect"),
    (14, "cgroup_udp4_sendmsg"),
    (19, "cgroup_udp4_recvmsg"),
];

/// Programs effective on the probe's cgroup (v2), whose sockets the checks use.
pub fn cgroup() -> Value {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(rel) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return json!({ "unavailable": "no cgroup v2 line in /proc/self/cgroup" });
    };
    let mounts = crate::facts::parse::parse_mountinfo(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    );
    let Some(root) = crate::facts::parse::cgroup2_mount(&mounts) else {
        return json!({ "unavailable": "no cgroup2 mount" });
    };
    let path = format!("{}{}", root.trim_end_matches('/'), rel);
    let dir = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return json!({ "path": path, "unavailable": format!("open: {e}") }),
    };
    let mut programs = Vec::new();
    let mut errors = Vec::new();
    for (attach, name) in CGROUP_TYPES {
        match query(dir.as_raw_fd() as u32, *attach, BPF_F_QUERY_EFFECTIVE) {
            Ok(ids) => programs.extend(ids.into_iter().map(|id| {
                let mut m = program(id);
                m.insert("attach".into(), json!(name));
                Value::Object(m)
            })),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    let mut v = json!({ "path": path, "programs": programs });
    if !errors.is_empty() {
        v["errors"] = json!(errors);
    }
    v
}

/// Netfilter BPF links anywhere (their namespace is not in the link info, so each
/// may be on the path): protocol family, hook, priority and program.
pub fn netfilter_links() -> Value {
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = IdAttr {
            id,
            ..Default::default()
        };
        if bpf(BPF_LINK_GET_NEXT_ID, &mut attr).is_err() {
            break;
        }
        id = attr.next_id;
        let mut attr = IdAttr {
            id,
            ..Default::default()
        };
        let Ok(fd) = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr) else {
            continue;
        };
        let fd = owned(fd);
        let mut info = [0u32; 16];
        let mut attr = InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of_val(&info) as u32,
            info: info.as_mut_ptr() as u64,
        };
        if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_err() {
            continue;
        }
        // type, id, prog_id, padding to 8, then the union: netfilter {pf, hooknum, priority, flags}.
        if info[0] == BPF_LINK_TYPE_NETFILTER {
            let mut m = program(info[2]);
            m.insert("link_id".into(), json!(info[1]));
            m.insert("pf".into(), json!(info[4]));
            m.insert("hooknum".into(), json!(info[5]));
            m.insert("priority".into(), json!(info[6] as i32));
            out.push(Value::Object(m));
        }
    }
    json!(out)
}
