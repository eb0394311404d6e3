//! The CPUID feature bits a guest sees, by the names QEMU gives their CPU properties
//! (`query-cpu-model-expansion`): each name is one bit of one leaf's register.

use kvm_bindings::kvm_cpuid_entry2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// A feature property: the bit `bit` of `reg` in leaf `leaf`, sub-leaf `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bit {
    pub name: &'static str,
    pub leaf: u32,
    pub index: u32,
    pub reg: Reg,
    pub bit: u8,
}

/// The bits of one register, from bit 0 up (`""`: a bit QEMU gives no property).
type Word = (u32, u32, Reg, &'static [&'static str]);

#[rustfmt::skip]
const WORDS: &[Word] = &[
    (0x1, 0, Reg::Edx, &[
        "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "", "sep", "mtrr", "pge", "mca", "cmov",
        "pat", "pse36", "pn", "clflush", "", "ds", "acpi", "mmx", "fxsr", "sse", "sse2", "ss", "ht", "tm", "ia64",
        "pbe",
    ]),
    (0x1, 0, Reg::Ecx, &[
        "pni", "pclmulqdq", "dtes64", "monitor", "ds-cpl", "vmx", "smx", "est", "tm2", "ssse3", "cid", "", "fma",
        "cx16", "xtpr", "pdcm", "", "pcid", "dca", "sse4.1", "sse4.2", "x2apic", "movbe", "popcnt", "tsc-deadline",
        "aes", "xsave", "", "avx", "f16c", "rdrand", "hypervisor",
    ]),
    (0x6, 0, Reg::Eax, &[
        "", "", "arat",
    ]),
    (0x7, 0, Reg::Ebx, &[
        "fsgsbase", "tsc-adjust", "sgx", "bmi1", "hle", "avx2", "", "smep", "bmi2", "erms", "invpcid", "rtm", "", "",
        "mpx", "", "avx512f", "avx512dq", "rdseed", "adx", "smap", "avx512ifma", "pcommit", "clflushopt", "clwb",
        "intel-pt", "avx512pf", "avx512er", "avx512cd", "sha-ni", "avx512bw", "avx512vl",
    ]),
    (0x7, 0, Reg::Ecx, &[
        "", "avx512vbmi", "umip", "pku", "", "waitpkg", "avx512vbmi2", "", "gfni", "vaes", "vpclmulqdq", "avx512vnni",
        "avx512bitalg", "", "avx512-vpopcntdq", "", "la57", "", "", "", "", "", "rdpid", "", "bus-lock-detect",
        "cldemote", "", "movdiri", "movdir64b", "", "sgxlc", "pks",
    ]),
    (0x7, 0, Reg::Edx, &[
        "", "", "avx512-4vnniw", "avx512-4fmaps", "fsrm", "", "", "", "avx512-vp2intersect", "", "md-clear", "", "",
        "", "serialize", "", "tsx-ldtrk", "", "", "arch-lbr", "", "", "amx-bf16", "avx512-fp16", "amx-tile",
        "amx-int8", "spec-ctrl", "stibp", "", "arch-capabilities", "core-capability", "ssbd",
    ]),
    (0x7, 1, Reg::Eax, &[
        "", "", "", "", "avx-vnni", "avx512-bf16",
    ]),
    (0xd, 1, Reg::Eax, &[
        "xsaveopt", "xsavec", "xgetbv1", "xsaves", "xfd",
    ]),
    (0x4000_0001, 0, Reg::Eax, &[
        "kvmclock", "kvm-nopiodelay", "kvm-mmu", "kvmclock", "kvm-asyncpf", "kvm-steal-time", "kvm-pv-eoi",
        "kvm-pv-unhalt", "", "kvm-pv-tlb-flush", "", "kvm-pv-ipi", "kvm-poll-control", "kvm-pv-sched-yield",
        "kvm-asyncpf-int", "kvm-msi-ext-dest-id", "", "", "", "", "", "", "", "", "kvmclock-stable-bit",
    ]),
    (0x4000_0001, 0, Reg::Edx, &[
        "kvm-hint-dedicated",
    ]),
    (0xc000_0001, 0, Reg::Edx, &[
        "", "", "xstore", "xstore-en", "", "", "xcrypt", "xcrypt-en", "ace2", "ace2-en", "phe", "phe-en", "pmm", "pmm-en",
    ]),
    (0x8000_0001, 0, Reg::Edx, &[
        "", "", "", "", "", "", "", "", "", "", "", "syscall", "", "", "", "", "", "", "", "", "nx", "", "mmxext", "",
        "", "fxsr-opt", "pdpe1gb", "rdtscp", "", "lm", "3dnowext", "3dnow",
    ]),
    (0x8000_0001, 0, Reg::Ecx, &[
        "lahf-lm", "cmp-legacy", "svm", "extapic", "cr8legacy", "abm", "sse4a", "misalignsse", "3dnowprefetch",
        "osvw", "ibs", "xop", "skinit", "wdt", "", "lwp", "fma4", "tce", "", "nodeid-msr", "", "tbm", "topoext",
        "perfctr-core", "perfctr-nb",
    ]),
    (0x8000_0007, 0, Reg::Edx, &[
        "", "", "", "", "", "", "", "", "invtsc",
    ]),
    (0x8000_0008, 0, Reg::Ebx, &[
        "clzero", "", "xsaveerptr", "", "", "", "", "", "", "wbnoinvd", "", "", "ibpb", "", "ibrs", "amd-stibp", "",
        "", "", "", "", "", "", "", "amd-ssbd", "virt-ssbd", "amd-no-ssb",
    ]),
    (0x8000_000a, 0, Reg::Edx, &[
        "npt", "lbrv", "svm-lock", "nrip-save", "tsc-scale", "vmcb-clean", "flushbyasid", "decodeassists", "", "",
        "pause-filter", "", "pfthreshold", "avic", "", "v-vmsave-vmload", "vgif", "", "", "", "", "", "", "", "", "",
        "", "", "svme-addr-chk",
    ]),
];

/// Every feature bit godwit names, in leaf order.
pub fn bits() -> impl Iterator<Item = Bit> {
    WORDS.iter().flat_map(|&(leaf, index, reg, names)| {
        names
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .map(move |(bit, &name)| Bit {
                name,
                leaf,
                index,
                reg,
                bit: bit as u8,
            })
    })
}

/// Whether `table` sets `b` (a leaf it lacks sets nothing).
fn is_set(table: &[kvm_cpuid_entry2], b: &Bit) -> bool {
    let Some(e) = table.iter().find(|e| e.function == b.leaf && e.index == b.index) else {
        return false;
    };
    let word = match b.reg {
        Reg::Eax => e.eax,
        Reg::Ebx => e.ebx,
        Reg::Ecx => e.ecx,
        Reg::Edx => e.edx,
    };
    word & (1 << b.bit) != 0
}

/// Each feature name and whether `table` gives it; a name on two bits (`kvmclock`) is
/// set only when both are, as QEMU's property reads.
pub fn of(table: &[kvm_cpuid_entry2]) -> Vec<(&'static str, bool)> {
    let mut out: Vec<(&'static str, bool)> = Vec::new();
    for b in bits() {
        let set = is_set(table, &b);
        match out.iter_mut().find(|(n, _)| *n == b.name) {
            Some(f) => f.1 &= set,
            None => out.push((b.name, set)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn get(f: &[(&str, bool)], name: &str) -> Option<bool> {
        f.iter().find(|(n, _)| *n == name).map(|f| f.1)
    }

    #[test]
    fn names_are_on_the_bits_qemu_gives_them() {
        let table = [
            entry(0x1, 0, 0, 0, (1 << 20) | (1 << 31), 1),
            entry(0x7, 0, 0, 1 << 5, 0, 0),
            entry(0x8000_0001, 0, 0, 0, 0, 1 << 29),
        ];
        let f = of(&table);
        for on in ["fpu", "sse4.2", "hypervisor", "avx2", "lm"] {
            assert_eq!(get(&f, on), Some(true), "{on}");
        }
        for off in ["vme", "sse4.1", "avx", "bmi1", "nx", "xsaveopt"] {
            assert_eq!(get(&f, off), Some(false), "{off}");
        }
        assert_eq!(get(&f, "osxsave"), None, "a bit QEMU names no property for");
    }

    #[test]
    fn sub_leaves_are_told_apart() {
        let table = [entry(0x7, 1, 1 << 5, 0, 0, 0), entry(0xd, 0, 1, 0, 0, 0)];
        let f = of(&table);
        assert_eq!(get(&f, "avx512-bf16"), Some(true));
        assert_eq!(get(&f, "xsaveopt"), Some(false), "xsaveopt is in sub-leaf 1, not 0");
        assert_eq!(get(&f, "avx512f"), Some(false), "leaf 7 sub-leaf 0 is absent");
    }

    #[test]
    fn a_name_on_two_bits_needs_both() {
        assert_eq!(get(&of(&[entry(0x4000_0001, 0, 1, 0, 0, 0)]), "kvmclock"), Some(false));
        assert_eq!(get(&of(&[entry(0x4000_0001, 0, 0b1001, 0, 0, 0)]), "kvmclock"), Some(true));
    }

    #[test]
    fn each_name_once_and_each_bit_once() {
        let f = of(&[]);
        let mut names: Vec<_> = f.iter().map(|f| f.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), f.len());
        assert!(f.iter().all(|f| !f.1), "an empty table sets nothing");
        let mut places: Vec<_> = bits().map(|b| (b.leaf, b.index, b.reg as u8, b.bit)).collect();
        let n = places.len();
        places.sort_unstable();
        places.dedup();
        assert_eq!(places.len(), n);
        assert!(bits().all(|b| b.bit < 32));
    }
}
