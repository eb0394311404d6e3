//! `info registers` in QEMU 7.2's layout, from a vCPU's saved state.
//!
//! The layout switches between 64-bit and 32-bit forms on the same conditions QEMU uses:
//! 64-bit register names when CS is a 64-bit code segment in long mode, 64-bit descriptor
//! table and control register widths whenever long mode is active.

use super::state::VcpuState;
use kvm_bindings::kvm_segment;
use std::fmt::Write;

const CR0_PE: u64 = 1;
const EFER_LMA: u64 = 0x400;
const MP_STATE_HALTED: u32 = 3;
const XSTATE_SSE: u64 = 1 << 1;
const XSTATE_YMM: u64 = 1 << 2;
const XSTATE_AVX512: u64 = (1 << 5) | (1 << 6) | (1 << 7);

// The segment's attributes packed as in a descriptor's high dword.
const DESC_A: u32 = 1 << 8;
const DESC_W: u32 = 1 << 9; // data: writable; code: readable
const DESC_E: u32 = 1 << 10; // data: expand-down; code: conforming
const DESC_CS: u32 = 1 << 11;
const DESC_S: u32 = 1 << 12;
const DESC_P: u32 = 1 << 15;
const DESC_L: u32 = 1 << 21;
const DESC_B: u32 = 1 << 22;

fn seg_flags(s: &kvm_segment) -> u32 {
    let present = s.present != 0 && s.unusable == 0;
    (u32::from(s.type_) << 8)
        | (u32::from(s.s) << 12)
        | (u32::from(s.dpl) << 13)
        | (u32::from(present) << 15)
        | (u32::from(s.avl) << 20)
        | (u32::from(s.l) << 21)
        | (u32::from(s.db) << 22)
        | (u32::from(s.g) << 23)
}

const SYS32: [&str; 16] = [
    "Reserved",
    "TSS16-avl",
    "LDT",
    "TSS16-busy",
    "CallGate16",
    "TaskGate",
    "IntGate16",
    "TrapGate16",
    "Reserved",
    "TSS32-avl",
    "Reserved",
    "TSS32-busy",
    "CallGate32",
    "Reserved",
    "IntGate32",
    "TrapGate32",
];
const SYS64: [&str; 16] = [
    "<hiword>",
    "Reserved",
    "LDT",
    "Reserved",
    "Reserved",
    "Reserved",
    "Reserved",
    "Reserved",
    "Reserved",
    "TSS64-avl",
    "Reserved",
    "TSS64-busy",
    "CallGate64",
    "Reserved",
    "IntGate64",
    "TrapGate64",
];

struct Mode {
    cs64: bool,
    lma: bool,
    pe: bool,
}

fn seg(out: &mut String, m: &Mode, name: &str, s: &kvm_segment) {
    let f = seg_flags(s);
    if m.cs64 {
        let _ = write!(
            out,
            "{name:<3}={:04x} {:016x} {:08x} {:08x}",
            s.selector,
            s.base,
            s.limit,
            f & 0x00ff_ff00
        );
    } else {
        let _ = write!(
            out,
            "{name:<3}={:04x} {:08x} {:08x} {:08x}",
            s.selector,
            s.base as u32,
            s.limit,
            f & 0x00ff_ff00
        );
    }
    if m.pe && f & DESC_P != 0 {
        let _ = write!(out, " DPL={} ", s.dpl);
        if f & DESC_S != 0 {
            let c = |bit: u32, ch: char| if f & bit != 0 { ch } else { '-' };
            if f & DESC_CS != 0 {
                out.push_str(if f & DESC_L != 0 {
                    "CS64"
                } else if f & DESC_B != 0 {
                    "CS32"
                } else {
                    "CS16"
                });
                let _ = write!(out, " [{}{}", c(DESC_E, 'C'), c(DESC_W, 'R'));
            } else {
                out.push_str(if f & DESC_B != 0 || m.lma { "DS  " } else { "DS16" });
                let _ = write!(out, " [{}{}", c(DESC_E, 'E'), c(DESC_W, 'W'));
            }
            let _ = write!(out, "{}]", c(DESC_A, 'A'));
        } else {
            out.push_str(if m.lma { SYS64 } else { SYS32 }[(s.type_ & 0xf) as usize]);
        }
    }
    out.push('\n');
}

/// Reads little-endian u64 number `i` of the XSAVE area.
fn xq(x: &[u32; 1024], byte_off: usize) -> u64 {
    let w = byte_off / 4;
    u64::from(x[w]) | (u64::from(x[w + 1]) << 32)
}

/// One CPU's block as `info registers` prints it (`\nCPU#N\n` header included).
pub fn format(index: usize, st: &VcpuState) -> String {
    let (r, s) = (&st.regs, &st.sregs);
    let m = Mode {
        cs64: s.efer & EFER_LMA != 0 && s.cs.l != 0,
        lma: s.efer & EFER_LMA != 0,
        pe: s.cr0 & CR0_PE != 0,
    };
    let mut o = format!("\nCPU#{index}\n");
    let fl = r.rflags;
    let flag = |bit: u64, ch: char| if fl & bit != 0 { ch } else { '-' };
    let flags = [
        flag(0x400, 'D'),
        flag(0x800, 'O'),
        flag(0x80, 'S'),
        flag(0x40, 'Z'),
        flag(0x10, 'A'),
        flag(0x4, 'P'),
        flag(0x1, 'C'),
    ];
    let flags: String = flags.iter().collect();
    let tail = format!(
        "[{flags}] CPL={} II={} A20=1 SMM={} HLT={}",
        s.ss.dpl,
        u8::from(st.events.interrupt.shadow != 0),
        st.events.smi.smm,
        u8::from(st.mp_state.mp_state == MP_STATE_HALTED)
    );
    if m.cs64 {
        let _ = writeln!(o, "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}", r.rax, r.rbx, r.rcx, r.rdx);
        let _ = writeln!(o, "RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}", r.rsi, r.rdi, r.rbp, r.rsp);
        let _ = writeln!(o, "R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}", r.r8, r.r9, r.r10, r.r11);
        let _ = writeln!(o, "R12={:016x} R13={:016x} R14={:016x} R15={:016x}", r.r12, r.r13, r.r14, r.r15);
        let _ = writeln!(o, "RIP={:016x} RFL={:08x} {tail}", r.rip, fl as u32);
    } else {
        let _ = writeln!(
            o,
            "EAX={:08x} EBX={:08x} ECX={:08x} EDX={:08x}",
            r.rax as u32, r.rbx as u32, r.rcx as u32, r.rdx as u32
        );
        let _ = writeln!(
            o,
            "ESI={:08x} EDI={:08x} EBP={:08x} ESP={:08x}",
            r.rsi as u32, r.rdi as u32, r.rbp as u32, r.rsp as u32
        );
        let _ = writeln!(o, "EIP={:08x} EFL={:08x} {tail}", r.rip as u32, fl as u32);
    }
    for (name, sg) in [
        ("ES", &s.es),
        ("CS", &s.cs),
        ("SS", &s.ss),
        ("DS", &s.ds),
        ("FS", &s.fs),
        ("GS", &s.gs),
        ("LDT", &s.ldt),
        ("TR", &s.tr),
    ] {
        seg(&mut o, &m, name, sg);
    }
    let dr = &st.debugregs;
    if m.lma {
        let _ = writeln!(o, "GDT=     {:016x} {:08x}", s.gdt.base, s.gdt.limit);
        let _ = writeln!(o, "IDT=     {:016x} {:08x}", s.idt.base, s.idt.limit);
        let _ = writeln!(
            o,
            "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
            s.cr0 as u32, s.cr2, s.cr3, s.cr4 as u32
        );
        for (i, d) in dr.db.iter().enumerate() {
            let _ = write!(o, "DR{i}={d:016x} ");
        }
        let _ = writeln!(o, "\nDR6={:016x} DR7={:016x}", dr.dr6, dr.dr7);
    } else {
        let _ = writeln!(o, "GDT=     {:08x} {:08x}", s.gdt.base as u32, s.gdt.limit);
        let _ = writeln!(o, "IDT=     {:08x} {:08x}", s.idt.base as u32, s.idt.limit);
        let _ = writeln!(
            o,
            "CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}",
            s.cr0 as u32, s.cr2 as u32, s.cr3 as u32, s.cr4 as u32
        );
        for (i, d) in dr.db.iter().enumerate() {
            let _ = write!(o, "DR{i}={d:08x} ");
        }
        let _ = writeln!(o, "\nDR6={:08x} DR7={:08x}", dr.dr6, dr.dr7);
    }
    let _ = writeln!(o, "EFER={:016x}", s.efer);
    fpu(&mut o, st, m.cs64);
    o
}

/// FPU, SSE/AVX/AVX-512 registers from the (standard-format) XSAVE area.
fn fpu(o: &mut String, st: &VcpuState, cs64: bool) {
    let x = &*st.xsave;
    let fcw = x[0] & 0xffff;
    let fsw = x[0] >> 16;
    let ftw = x[1] & 0xff; // abridged tag: bit i set = register i holds a value
    let mxcsr = x[6];
    let _ = writeln!(
        o,
        "FCW={fcw:04x} FSW={fsw:04x} [ST={}] FTW={ftw:02x} MXCSR={mxcsr:08x}",
        (fsw >> 11) & 7
    );
    for i in 0..8 {
        let base = 32 + 16 * i;
        let _ = write!(o, "FPR{i}={:016x} {:04x}", xq(x, base), x[(base + 8) / 4] & 0xffff);
        o.push(if i & 1 == 1 { '\n' } else { ' ' });
    }
    let xcr0 = st
        .xcrs
        .xcrs
        .iter()
        .take(st.xcrs.nr_xcrs as usize)
        .find(|c| c.xcr == 0)
        .map_or(XSTATE_SSE | 1, |c| c.value);
    let n = if cs64 { 16 } else { 8 };
    let xmm = |i: usize, q: usize| xq(x, 160 + 16 * i + 8 * q);
    let ymm_hi = |i: usize, q: usize| xq(x, 576 + 16 * i + 8 * q);
    if xcr0 & (XSTATE_AVX512 | XSTATE_YMM | XSTATE_SSE) == XSTATE_AVX512 | XSTATE_YMM | XSTATE_SSE {
        for i in 0..8 {
            let _ = write!(
                o,
                "Opmask{i:02}={:016x}{}",
                xq(x, 1088 + 8 * i),
                if i & 3 == 3 { "\n" } else { " " }
            );
        }
        let count = if cs64 { 32 } else { 8 };
        for i in 0..count {
            let q: [u64; 8] = if i < 16 {
                [
                    xmm(i, 0),
                    xmm(i, 1),
                    ymm_hi(i, 0),
                    ymm_hi(i, 1),
                    xq(x, 1152 + 32 * i),
                    xq(x, 1160 + 32 * i),
                    xq(x, 1168 + 32 * i),
                    xq(x, 1176 + 32 * i),
                ]
            } else {
                let b = 1664 + 64 * (i - 16);
                [
                    xq(x, b),
                    xq(x, b + 8),
                    xq(x, b + 16),
                    xq(x, b + 24),
                    xq(x, b + 32),
                    xq(x, b + 40),
                    xq(x, b + 48),
                    xq(x, b + 56),
                ]
            };
            let _ = writeln!(
                o,
                "ZMM{i:02}={:016x} {:016x} {:016x} {:016x} {:016x} {:016x} {:016x} {:016x}",
                q[7], q[6], q[5], q[4], q[3], q[2], q[1], q[0]
            );
        }
    } else if xcr0 & (XSTATE_YMM | XSTATE_SSE) == XSTATE_YMM | XSTATE_SSE {
        for i in 0..n {
            let _ = writeln!(
                o,
                "YMM{i:02}={:016x} {:016x} {:016x} {:016x}",
                ymm_hi(i, 1),
                ymm_hi(i, 0),
                xmm(i, 1),
                xmm(i, 0)
            );
        }
    } else {
        for i in 0..n {
            let _ = write!(o, "XMM{i:02}={:016x} {:016x}", xmm(i, 1), xmm(i, 0));
            o.push(if i & 1 == 1 { '\n' } else { ' ' });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::*;

    fn state_64() -> VcpuState {
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: 0x10,
            type_: 0xb,
            present: 1,
            dpl: 0,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let data = kvm_segment {
            selector: 0x18,
            type_: 0x3,
            l: 0,
            db: 1,
            ..code
        };
        let sregs = kvm_sregs {
            cs: code,
            ds: data,
            es: data,
            ss: data,
            fs: data,
            gs: data,
            cr0: 0x8000_0011,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        };
        let mut xsave = Box::new([0u32; 1024]);
        xsave[0] = 0x37f;
        xsave[6] = 0x1f80;
        VcpuState {
            mp_state: kvm_mp_state::default(),
            regs: kvm_regs {
                rip: 0x100200,
                rflags: 0x46,
                rsi: 0x7000,
                ..Default::default()
            },
            sregs,
            xsave,
            xcrs: kvm_xcrs {
                nr_xcrs: 1,
                xcrs: [kvm_xcr {
                    xcr: 0,
                    value: 3,
                    ..Default::default()
                }; 16],
                ..Default::default()
            },
            debugregs: kvm_debugregs {
                dr6: 0xffff0ff0,
                dr7: 0x400,
                ..Default::default()
            },
            lapic: kvm_lapic_state::default(),
            msrs: vec![],
            events: kvm_vcpu_events::default(),
            cpuid: vec![],
        }
    }

    #[test]
    fn long_mode_layout() {
        let out = format(0, &state_64());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(lines[1], "CPU#0");
        assert_eq!(
            lines[2],
            "RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000"
        );
        assert_eq!(
            lines[3],
            "RSI=0000000000007000 RDI=0000000000000000 RBP=0000000000000000 RSP=0000000000000000"
        );
        assert_eq!(lines[6], "RIP=0000000000100200 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0");
        assert_eq!(lines[7], "ES =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]");
        assert_eq!(lines[8], "CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]");
        assert_eq!(lines[13], "LDT=0000 0000000000000000 00000000 00000000");
        assert_eq!(lines[15], "GDT=     0000000000000000 00000000");
        assert_eq!(lines[17], "CR0=80000011 CR2=0000000000000000 CR3=0000000000000000 CR4=00000020");
        assert_eq!(lines[19], "DR6=00000000ffff0ff0 DR7=0000000000000400");
        assert_eq!(lines[20], "EFER=0000000000000500");
        assert_eq!(lines[21], "FCW=037f FSW=0000 [ST=0] FTW=00 MXCSR=00001f80");
        assert_eq!(lines[22], "FPR0=0000000000000000 0000 FPR1=0000000000000000 0000");
        assert_eq!(
            lines[26],
            "XMM00=0000000000000000 0000000000000000 XMM01=0000000000000000 0000000000000000"
        );
        assert_eq!(lines.len(), 34);
    }

    #[test]
    fn real_mode_layout() {
        let mut st = state_64();
        st.sregs = kvm_sregs::default();
        st.sregs.cs = kvm_segment {
            selector: 0xf000,
            base: 0xffff_0000,
            limit: 0xffff,
            type_: 0xb,
            present: 1,
            s: 1,
            ..Default::default()
        };
        st.regs.rip = 0xfff0;
        let out = format(1, &st);
        assert!(out.contains("\nEIP=0000fff0 EFL=00000046 [---Z-P-] CPL=0"), "{out}");
        assert!(out.contains("\nCS =f000 ffff0000 0000ffff 00009b00\n"), "{out}");
        assert!(out.contains("\nGDT=     00000000 00000000\n"), "{out}");
    }
}
