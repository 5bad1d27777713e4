//! The modules a guest loads, in dependency order, from the package itself.
//!
//! An unpacked `linux-image-*` package has no `modules.dep` (depmod makes it at
//! install time), so the modules are found by walking `kernel/` under the modules
//! folder (`-` and `_` in names are the same, as for modprobe) and their
//! dependencies are read from each module's `.modinfo` ELF section (NUL-separated
//! `key=value` strings: `depends=a,b`, `softdep=pre: c`). Names listed in
//! `modules.builtin` are built into the kernel and need no loading.

use super::kernel::GuestKernel;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How a module file is compressed (its name's last extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.ko`
    None,
    /// `.ko.xz` (Debian's 6.x kernels)
    Xz,
    /// `.ko.zst`
    Zstd,
    /// `.ko.gz`
    Gzip,
}

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// The module's name as the kernel knows it (`_`, never `-`): `ip6_udp_tunnel`.
    pub name: String,
    /// The file in the package.
    pub path: PathBuf,
    pub compression: Compression,
}

/// A wanted module that is absent from the kernel: neither built in nor present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingModule {
    /// The wanted (optional) name, normalized: `geneve`.
    pub name: String,
    /// The module actually absent: the name itself, or a dependency of it.
    pub absent: String,
}

/// What [`resolve`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Files to load in this order (dependencies first), each once.
    pub modules: Vec<ModuleFile>,
    /// Wanted names (and dependencies) built into the kernel: nothing to load.
    pub builtin: Vec<String>,
    /// Optional modules (normalized names) that are absent, or one of whose
    /// dependencies is: the guest's facts say the feature is missing. None of
    /// their files is loaded.
    pub missing: Vec<String>,
    /// For each of [`Resolved::missing`], the module actually absent.
    pub missing_details: Vec<MissingModule>,
}

impl Resolved {
    /// Whether the kernel has `name` after loading [`Resolved::modules`] (built in
    /// or loaded).
    pub fn provides(&self, name: &str) -> bool {
        let name = normalize(name);
        self.builtin.contains(&name) || self.modules.iter().any(|module| module.name == name)
    }
}

/// Why the modules cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("kernel {kernel}: module {module}{} is neither built in nor in {}", needed_by.as_ref().map(|by| format!(" (needed by {by})")).unwrap_or_default(), modules_dir.display())]
    MissingRequired {
        module: String,
        needed_by: Option<String>,
        kernel: String,
        modules_dir: PathBuf,
    },
    #[error("{}: {why}", path.display())]
    BadModule { path: PathBuf, why: String },
    #[error("{}: wrong architecture: a module for {found}, the kernel is {expected}", path.display())]
    WrongArch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `-` and `_` are the same in module names.
pub fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// The modules `required` and `optional` need, dependencies first, each once;
/// names built into the kernel (`modules.builtin`) are skipped. A `required` one
/// missing (neither built in nor present, or a dependency of it missing) is an
/// error naming the module and the kernel; an `optional` one missing is listed in
/// [`Resolved::missing`] and none of its files is returned. Soft dependencies
/// (`softdep=pre:`) are loaded first when present.
pub fn resolve(
    kernel: &GuestKernel,
    required: &[&str],
    optional: &[&str],
) -> Result<Resolved, ModuleError> {
    resolve_dir(
        &kernel.modules_dir,
        &kernel.arch,
        &kernel.name,
        required,
        optional,
    )
}

/// [`resolve`] on a modules folder for `arch` (`x86_64`, `aarch64`).
pub fn resolve_dir(
    modules_dir: &Path,
    arch: &str,
    kernel: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<Resolved, ModuleError> {
    let mut tree = Tree::load(modules_dir, arch)?;
    let mut resolved = Resolved::default();
    let mut done = BTreeSet::new();
    for (wanted, is_required) in required
        .iter()
        .map(|name| (*name, true))
        .chain(optional.iter().map(|name| (*name, false)))
    {
        let wanted = normalize(wanted);
        let mut plan = Plan::default();
        match tree.visit(&wanted, &done, &mut plan, &mut Vec::new())? {
            Ok(()) => {
                for name in plan.builtin {
                    if !resolved.builtin.contains(&name) {
                        resolved.builtin.push(name);
                    }
                }
                for module in plan.modules {
                    done.insert(module.name.clone());
                    resolved.modules.push(module);
                }
            }
            Err(absent) if is_required => {
                return Err(ModuleError::MissingRequired {
                    needed_by: (absent != wanted).then(|| wanted.clone()),
                    module: absent,
                    kernel: kernel.to_string(),
                    modules_dir: modules_dir.to_path_buf(),
                });
            }
            Err(absent) => {
                if !resolved.missing.contains(&wanted) {
                    resolved.missing.push(wanted.clone());
                    resolved.missing_details.push(MissingModule {
                        name: wanted,
                        absent,
                    });
                }
            }
        }
    }
    Ok(resolved)
}

#[derive(Default)]
struct Plan {
    modules: Vec<ModuleFile>,
    builtin: Vec<String>,
    seen: BTreeSet<String>,
}

/// A modules folder: its files by name, what is built in, `.modinfo` read lazily.
struct Tree {
    files: BTreeMap<String, (PathBuf, Compression)>,
    builtin: BTreeSet<String>,
    deps: BTreeMap<String, Deps>,
    machine: u16,
    arch: String,
}

#[derive(Clone, Default)]
struct Deps {
    hard: Vec<String>,
    soft_pre: Vec<String>,
}

impl Tree {
    fn load(modules_dir: &Path, arch: &str) -> Result<Self, ModuleError> {
        let kernel_dir = modules_dir.join("kernel");
        if !kernel_dir.is_dir() {
            return Err(ModuleError::Io {
                path: kernel_dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no kernel/ folder of modules",
                ),
            });
        }
        let mut paths = Vec::new();
        walk(&kernel_dir, &mut paths)?;
        paths.sort();
        let mut files = BTreeMap::new();
        for path in paths {
            let file_name = path.file_name().unwrap_or_default().to_string_lossy();
            let (stem, compression) = if let Some(stem) = file_name.strip_suffix(".ko") {
                (stem, Compression::None)
            } else if let Some(stem) = file_name.strip_suffix(".ko.xz") {
                (stem, Compression::Xz)
            } else if let Some(stem) = file_name.strip_suffix(".ko.zst") {
                (stem, Compression::Zstd)
            } else if let Some(stem) = file_name.strip_suffix(".ko.gz") {
                (stem, Compression::Gzip)
            } else {
                continue;
            };
            // The first in path order wins, as depmod's search order would.
            files
                .entry(normalize(stem))
                .or_insert((path.clone(), compression));
        }
        let builtin_path = modules_dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter_map(|line| {
                    let file = line.trim().rsplit('/').next()?;
                    let stem = file.split(".ko").next()?;
                    (!stem.is_empty()).then(|| normalize(stem))
                })
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => {
                return Err(ModuleError::Io {
                    path: builtin_path,
                    source,
                });
            }
        };
        let machine = match arch {
            "x86_64" => EM_X86_64,
            "aarch64" => EM_AARCH64,
            _ => 0,
        };
        Ok(Tree {
            files,
            builtin,
            deps: BTreeMap::new(),
            machine,
            arch: arch.to_string(),
        })
    }

    fn deps(&mut self, name: &str) -> Result<Deps, ModuleError> {
        if let Some(deps) = self.deps.get(name) {
            return Ok(deps.clone());
        }
        let (path, compression) = self.files[name].clone();
        let file = ModuleFile {
            name: name.to_string(),
            path: path.clone(),
            compression,
        };
        let bytes = read_module(&file).map_err(|source| ModuleError::Io {
            path: path.clone(),
            source,
        })?;
        let elf = Elf::parse(&bytes).map_err(|why| ModuleError::BadModule {
            path: path.clone(),
            why,
        })?;
        if self.machine != 0 && elf.machine != self.machine {
            return Err(ModuleError::WrongArch {
                path,
                expected: self.arch.clone(),
                found: machine_name(elf.machine),
            });
        }
        let info = elf.modinfo().map_err(|why| ModuleError::BadModule {
            path: path.clone(),
            why,
        })?;
        let mut deps = Deps::default();
        for (key, value) in info {
            match key.as_str() {
                "depends" => deps.hard.extend(
                    value
                        .split(',')
                        .map(normalize)
                        .filter(|dep| !dep.is_empty()),
                ),
                "softdep" => deps.soft_pre.extend(softdep_pre(&value)),
                _ => {}
            }
        }
        deps.hard.sort();
        deps.hard.dedup();
        self.deps.insert(name.to_string(), deps.clone());
        Ok(deps)
    }

    /// Adds `name` and what it needs to `plan`, dependencies first. `Ok(Err(absent))`
    /// names the module that is missing; `stack` guards against cycles.
    fn visit(
        &mut self,
        name: &str,
        done: &BTreeSet<String>,
        plan: &mut Plan,
        stack: &mut Vec<String>,
    ) -> Result<Result<(), String>, ModuleError> {
        if done.contains(name) || plan.seen.contains(name) || stack.iter().any(|on| on == name) {
            return Ok(Ok(()));
        }
        if self.builtin.contains(name) {
            plan.seen.insert(name.to_string());
            plan.builtin.push(name.to_string());
            return Ok(Ok(()));
        }
        if !self.files.contains_key(name) {
            return Ok(Err(name.to_string()));
        }
        let deps = self.deps(name)?;
        stack.push(name.to_string());
        for soft in &deps.soft_pre {
            if self.files.contains_key(soft) || self.builtin.contains(soft) {
                // Best effort, as modprobe: a soft dependency that is absent is fine.
                let mut trial = Plan {
                    seen: plan.seen.clone(),
                    ..Plan::default()
                };
                if self.visit(soft, done, &mut trial, stack)?.is_ok() {
                    plan.seen = trial.seen;
                    plan.modules.extend(trial.modules);
                    plan.builtin.extend(trial.builtin);
                }
            }
        }
        for dep in &deps.hard {
            if let Err(absent) = self.visit(dep, done, plan, stack)? {
                stack.pop();
                return Ok(Err(absent));
            }
        }
        stack.pop();
        let (path, compression) = self.files[name].clone();
        plan.seen.insert(name.to_string());
        plan.modules.push(ModuleFile {
            name: name.to_string(),
            path,
            compression,
        });
        Ok(Ok(()))
    }
}

/// `softdep=pre: a b post: c` → `[a, b]`.
fn softdep_pre(value: &str) -> Vec<String> {
    let mut pre = Vec::new();
    let mut in_pre = false;
    for word in value.split_whitespace() {
        match word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            module if in_pre => pre.push(normalize(module)),
            _ => {}
        }
    }
    pre
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ModuleError> {
    let io = |source| ModuleError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// A module's ELF bytes, decompressed.
pub fn read_module(file: &ModuleFile) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(&file.path)?;
    let invalid = |what: &str, err: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} does not decompress: {err}"),
        )
    };
    match file.compression {
        Compression::None => Ok(raw),
        Compression::Xz => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out)
                .map_err(|err| invalid("xz", &err))?;
            Ok(out)
        }
        Compression::Zstd => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
                .map_err(|err| invalid("zstd", &err))?;
            decoder
                .read_to_end(&mut out)
                .map_err(|err| invalid("zstd", &err))?;
            Ok(out)
        }
        Compression::Gzip => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(|err| invalid("gzip", &err))?;
            Ok(out)
        }
    }
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn machine_name(machine: u16) -> String {
    match machine {
        EM_X86_64 => "x86_64".into(),
        EM_AARCH64 => "aarch64".into(),
        other => format!("ELF machine {other}"),
    }
}

/// The little of a 64-bit little-endian ELF file a module's `.modinfo` needs.
struct Elf<'a> {
    bytes: &'a [u8],
    machine: u16,
    sections: Vec<(u32, u64, u64)>, // (name offset, file offset, size)
    shstrndx: usize,
}

impl<'a> Elf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        if !bytes.starts_with(b"\x7fELF") {
            return Err("not an ELF file".into());
        }
        if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
            return Err("not a 64-bit little-endian ELF file".into());
        }
        let u16_at = |at: usize| {
            bytes
                .get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        };
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        let short = || "ELF header cut short".to_string();
        let machine = u16_at(0x12).ok_or_else(short)?;
        let shoff = u64_at(0x28).ok_or_else(short)? as usize;
        let shentsize = u16_at(0x3a).ok_or_else(short)? as usize;
        let shnum = u16_at(0x3c).ok_or_else(short)? as usize;
        let shstrndx = u16_at(0x3e).ok_or_else(short)? as usize;
        if shentsize < 0x40 {
            return Err(format!("section header size {shentsize}"));
        }
        let mut sections = Vec::with_capacity(shnum);
        for index in 0..shnum {
            let at = shoff + index * shentsize;
            let cut = || format!("section header {index} beyond the file");
            sections.push((
                u32_at(at).ok_or_else(cut)?,
                u64_at(at + 0x18).ok_or_else(cut)?,
                u64_at(at + 0x20).ok_or_else(cut)?,
            ));
        }
        if shstrndx >= sections.len() {
            return Err("no section name table".into());
        }
        Ok(Elf {
            bytes,
            machine,
            sections,
            shstrndx,
        })
    }

    fn section(&self, index: usize) -> Result<&'a [u8], String> {
        let (_, offset, size) = self.sections[index];
        self.bytes
            .get(offset as usize..(offset as usize).saturating_add(size as usize))
            .ok_or_else(|| format!("section {index} beyond the file"))
    }

    /// The `key=value` strings of `.modinfo`.
    fn modinfo(&self) -> Result<Vec<(String, String)>, String> {
        let names = self.section(self.shstrndx)?;
        for index in 0..self.sections.len() {
            let name_at = self.sections[index].0 as usize;
            let name = names.get(name_at..).unwrap_or_default();
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name == b".modinfo" {
                return Ok(parse_modinfo(self.section(index)?));
            }
        }
        Err("no .modinfo section: not a kernel module".into())
    }
}

/// `.modinfo`: NUL-separated (and NUL-padded) `key=value` strings.
fn parse_modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (key, value) = text.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// The `.modinfo` of a module's ELF bytes, as `(key, value)` pairs in order.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>, String> {
    Elf::parse(elf)?.modinfo()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 relocatable with a `.modinfo` section (and `.shstrtab`).
    fn module_elf(machine: u16, modinfo: &[&str]) -> Vec<u8> {
        let mut info = Vec::new();
        for entry in modinfo {
            info.extend_from_slice(entry.as_bytes());
            info.push(0);
        }
        let shstrtab = b"\0.modinfo\0.shstrtab\0".to_vec();
        let mut bytes = vec![0u8; 0x40];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2; // 64-bit
        bytes[5] = 1; // little-endian
        bytes[6] = 1;
        bytes[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        bytes[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        let info_at = bytes.len() as u64;
        bytes.extend_from_slice(&info);
        let names_at = bytes.len() as u64;
        bytes.extend_from_slice(&shstrtab);
        while !bytes.len().is_multiple_of(8) {
            bytes.push(0);
        }
        let shoff = bytes.len() as u64;
        let header = |name: u32, kind: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            h
        };
        bytes.extend(header(0, 0, 0, 0));
        bytes.extend(header(1, 1, info_at, info.len() as u64));
        bytes.extend(header(10, 3, names_at, shstrtab.len() as u64));
        bytes[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        bytes[0x34..0x36].copy_from_slice(&0x40u16.to_le_bytes());
        bytes[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        bytes[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        bytes[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        bytes
    }

    struct FakeTree {
        _dir: tempfile::TempDir,
        modules: PathBuf,
    }

    impl FakeTree {
        fn new(builtin: &[&str]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let modules = dir.path().join("lib/modules/6.12.0-test");
            std::fs::create_dir_all(modules.join("kernel")).unwrap();
            let lines: String = builtin.iter().map(|path| format!("{path}\n")).collect();
            std::fs::write(modules.join("modules.builtin"), lines).unwrap();
            FakeTree { _dir: dir, modules }
        }

        /// `rel` like `kernel/net/veth.ko.xz`: compressed as its name says.
        fn add(&self, rel: &str, machine: u16, modinfo: &[&str]) -> &Self {
            let elf = module_elf(machine, modinfo);
            let bytes = if rel.ends_with(".xz") {
                let mut out = Vec::new();
                lzma_rs::xz_compress(&mut elf.as_slice(), &mut out).unwrap();
                out
            } else if rel.ends_with(".zst") {
                ruzstd::encoding::compress_to_vec(
                    elf.as_slice(),
                    ruzstd::encoding::CompressionLevel::Fastest,
                )
            } else {
                elf
            };
            let path = self.modules.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
            self
        }

        fn resolve(&self, required: &[&str], optional: &[&str]) -> Result<Resolved, ModuleError> {
            resolve_dir(&self.modules, "x86_64", "test-kernel", required, optional)
        }
    }

    fn names(resolved: &Resolved) -> Vec<&str> {
        resolved
            .modules
            .iter()
            .map(|module| module.name.as_str())
            .collect()
    }

    /// The lab-style set on a 6.12-like tree: clsact built in, vxlan pulling its
    /// tunnels, geneve missing a dependency, netkit absent.
    fn lab_tree() -> FakeTree {
        let tree = FakeTree::new(&[
            "kernel/net/sched/sch_ingress.ko",
            "kernel/net/core/netkit.ko",
        ]);
        tree.add(
            "kernel/drivers/net/veth.ko.xz",
            EM_X86_64,
            &["license=GPL", "depends=", "name=veth"],
        )
        .add("kernel/net/sched/cls_bpf.ko.zst", EM_X86_64, &["depends="])
        .add("kernel/net/sched/act_bpf.ko", EM_X86_64, &["depends="])
        .add(
            "kernel/drivers/net/vxlan/vxlan.ko.xz",
            EM_X86_64,
            &["depends=udp_tunnel,ip6_udp_tunnel", "intree=Y"],
        )
        .add("kernel/net/ipv4/udp_tunnel.ko.xz", EM_X86_64, &["depends="])
        .add(
            "kernel/net/ipv6/ip6_udp_tunnel.ko.xz",
            EM_X86_64,
            &["depends=udp_tunnel"],
        )
        .add(
            "kernel/drivers/net/geneve.ko.xz",
            EM_X86_64,
            &["depends=udp_tunnel,udp_tunnel_offload"],
        );
        tree
    }

    #[test]
    fn dependencies_first_each_once_builtin_skipped() {
        let tree = lab_tree();
        let resolved = tree
            .resolve(
                &["veth", "sch_ingress", "cls_bpf", "act_bpf"],
                &["vxlan", "geneve", "netkit", "udp-tunnel"],
            )
            .unwrap();
        assert_eq!(
            names(&resolved),
            [
                "veth",
                "cls_bpf",
                "act_bpf",
                "udp_tunnel",
                "ip6_udp_tunnel",
                "vxlan"
            ],
            "udp_tunnel once, before both users"
        );
        assert_eq!(resolved.builtin, ["sch_ingress", "netkit"]);
        assert_eq!(resolved.missing, ["geneve"]);
        assert_eq!(
            resolved.missing_details,
            [MissingModule {
                name: "geneve".into(),
                absent: "udp_tunnel_offload".into()
            }]
        );
        assert!(
            resolved.provides("ip6-udp-tunnel")
                && resolved.provides("netkit")
                && !resolved.provides("geneve")
        );
        let vxlan = resolved.modules.iter().find(|m| m.name == "vxlan").unwrap();
        assert_eq!(vxlan.compression, Compression::Xz);
        assert!(vxlan.path.ends_with("kernel/drivers/net/vxlan/vxlan.ko.xz"));
        // Deterministic: the same answer again.
        assert_eq!(
            tree.resolve(
                &["veth", "sch_ingress", "cls_bpf", "act_bpf"],
                &["vxlan", "geneve", "netkit", "udp-tunnel"]
            )
            .unwrap(),
            resolved
        );
    }

    #[test]
    fn a_failed_optional_leaves_nothing_behind() {
        let tree = lab_tree();
        // geneve first: its udp_tunnel must not be loaded on its behalf.
        let resolved = tree.resolve(&[], &["geneve"]).unwrap();
        assert!(resolved.modules.is_empty(), "{:?}", names(&resolved));
        assert_eq!(resolved.missing, ["geneve"]);
    }

    #[test]
    fn missing_required_names_module_and_kernel() {
        let tree = lab_tree();
        let err = tree
            .resolve(&["veth", "wireguard"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kernel test-kernel") && err.contains("module wireguard"),
            "{err}"
        );
        let err = tree.resolve(&["geneve"], &[]).unwrap_err().to_string();
        assert!(
            err.contains("module udp_tunnel_offload (needed by geneve)"),
            "{err}"
        );
        let resolved = tree.resolve(&[], &["wireguard"]).unwrap();
        assert_eq!(resolved.missing, ["wireguard"]);
        assert_eq!(resolved.missing_details[0].absent, "wireguard");
    }

    #[test]
    fn cycles_and_soft_dependencies() {
        let tree = FakeTree::new(&["kernel/lib/crc32c.ko"]);
        tree.add("kernel/a.ko", EM_X86_64, &["depends=b"])
            .add("kernel/b.ko", EM_X86_64, &["depends=a"])
            .add(
                "kernel/c.ko",
                EM_X86_64,
                &["depends=", "softdep=pre: d crc32c nowhere post: e"],
            )
            .add("kernel/d.ko", EM_X86_64, &["depends="])
            .add("kernel/e.ko", EM_X86_64, &["depends="]);
        let resolved = tree.resolve(&["a", "c"], &[]).unwrap();
        assert_eq!(names(&resolved), ["b", "a", "d", "c"]);
        assert_eq!(resolved.builtin, ["crc32c"]);
    }

    #[test]
    fn modules_of_another_architecture_are_refused() {
        let tree = FakeTree::new(&[]);
        tree.add("kernel/drivers/net/veth.ko", EM_AARCH64, &["depends="]);
        let err = tree.resolve(&["veth"], &[]).unwrap_err().to_string();
        assert!(
            err.contains("wrong architecture") && err.contains("aarch64") && err.contains("x86_64"),
            "{err}"
        );
        std::fs::write(tree.modules.join("kernel/drivers/net/veth.ko"), b"not elf").unwrap();
        let err = tree.resolve(&["veth"], &[]).unwrap_err().to_string();
        assert!(err.contains("not an ELF file"), "{err}");
    }

    #[test]
    fn decompressed_bytes_and_modinfo() {
        let tree = lab_tree();
        let resolved = tree.resolve(&["veth", "cls_bpf", "act_bpf"], &[]).unwrap();
        for module in &resolved.modules {
            let bytes = read_module(module).unwrap();
            assert!(bytes.starts_with(b"\x7fELF"), "{}", module.name);
        }
        let veth = read_module(&resolved.modules[0]).unwrap();
        let info = modinfo(&veth).unwrap();
        assert_eq!(info[0], ("license".to_string(), "GPL".to_string()));
        assert!(info.contains(&("name".to_string(), "veth".to_string())));
        let broken = ModuleFile {
            compression: Compression::Xz,
            ..resolved.modules[2].clone()
        };
        assert_eq!(
            read_module(&broken).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn no_kernel_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_dir(dir.path(), "x86_64", "k", &["veth"], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no kernel/ folder"), "{err}");
    }

    /// On whatever `cargo xtask kernels --fetch` left in the cache: the lab-style
    /// modules resolve on every tracked kernel fetched there.
    #[test]
    fn cached_kernels_have_the_lab_modules() {
        let cache = super::super::kernel::cache_dir();
        let mut checked = 0;
        for tracked in super::super::kernel::tracked().unwrap() {
            let dir = cache.join(&tracked.name);
            if super::super::kernel::KernelRecord::read(&dir)
                .unwrap()
                .is_none()
            {
                continue;
            }
            let kernel = super::super::kernel::resolve_in(&tracked.name, &cache).unwrap();
            assert_eq!(kernel.arch, tracked.uname_arch(), "{}", tracked.name);
            let resolved = resolve(
                &kernel,
                &["veth", "sch_ingress", "cls_bpf", "act_bpf"],
                &["vxlan", "geneve", "netkit"],
            )
            .unwrap_or_else(|err| panic!("{}: {err}", tracked.name));
            for name in ["veth", "sch_ingress", "cls_bpf", "act_bpf"] {
                assert!(resolved.provides(name), "{}: {name}", tracked.name);
            }
            for module in &resolved.modules {
                let bytes = read_module(module)
                    .unwrap_or_else(|err| panic!("{}: {err}", module.path.display()));
                assert!(modinfo(&bytes).is_ok(), "{}", module.path.display());
            }
            println!(
                "{} ({}, {} pages): load {:?}; built in {:?}; missing {:?}",
                tracked.name,
                kernel.release,
                kernel.page_size,
                names(&resolved),
                resolved.builtin,
                resolved.missing_details
            );
            checked += 1;
        }
        if checked == 0 {
            println!(
                "skipped: no cached kernels in {} (cargo xtask kernels --fetch all)",
                cache.display()
            );
        }
    }

    /// `CONFORMANCE_TEST_KERNEL_DEB=/path/linux-image-...deb`: the `.deb` SPEC form on
    /// a real package (e.g. a trixie one, merged /usr), the lab modules resolved.
    #[test]
    fn a_real_deb_when_given() {
        let Some(deb) = std::env::var_os("CONFORMANCE_TEST_KERNEL_DEB") else {
            println!("skipped: CONFORMANCE_TEST_KERNEL_DEB not set");
            return;
        };
        let kernel = super::super::kernel::resolve(&deb.to_string_lossy()).unwrap();
        let resolved = resolve(
            &kernel,
            &["veth", "sch_ingress", "cls_bpf", "act_bpf"],
            &["vxlan", "geneve", "netkit"],
        )
        .unwrap();
        println!(
            "{} {} {} ({} pages, {}): load {:?}; built in {:?}; missing {:?}",
            kernel.name,
            kernel.arch,
            kernel.release,
            kernel.page_size,
            kernel.modules_dir.display(),
            names(&resolved),
            resolved.builtin,
            resolved.missing
        );
    }
}
