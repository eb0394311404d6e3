"""query-cpu-model-expansion against a running godwit guest of VCPUS vCPUs: the feature
properties are the CPUID godwit gives the guest (what KVM supports on this host), asked as
libvirt 9.0 asks (static host, again with migratable=false, then a full expansion of the
static answer); every feature godwit says the guest has that comes from the host CPU is in
the host's /proc/cpuinfo flags; with QEMU_SOCKET (QEMU 7.2 on `-machine none,accel=kvm`),
each feature both name has the value QEMU 7.2 reports for its host model.

    cpu_model.py SOCKET VCPUS [QEMU_SOCKET]
"""
import asyncio, sys

from qemu.qmp import ExecuteError
from qmplib import check, client

sock, vcpus = sys.argv[1], int(sys.argv[2])
qemu_sock = sys.argv[3] if len(sys.argv) > 3 else None

# Bits KVM makes up or emulates whatever the host has, or godwit sets itself: not host flags.
NOT_HOST = {"hypervisor", "x2apic", "tsc-deadline", "tsc-adjust", "arch-capabilities", "arat", "umip", "ht",
            "virt-ssbd", "amd-ssbd", "ssbd", "spec-ctrl", "stibp", "amd-stibp", "ibpb", "ibrs", "md-clear",
            "amd-no-ssb", "svme-addr-chk"}
# QEMU's property names that Linux's /proc/cpuinfo spells otherwise.
LINUX = {"cr8legacy": "cr8_legacy", "invtsc": "constant_tsc", "sse4.1": "sse4_1", "sse4.2": "sse4_2"}
# QEMU 7.2 drops topoext from its host model although KVM's supported CPUID sets it (an
# AMD host); godwit passes KVM's bit through. One vCPU in QEMU's -machine none: no HTT.
QEMU_DIFFERS = {"topoext", "ht"}


async def expand(q, kind, model):
    return (await q.execute("query-cpu-model-expansion", {"type": kind, "model": model}))["model"]


async def error_of(q, args):
    try:
        await q.execute("query-cpu-model-expansion", args)
    except ExecuteError as e:
        return e.error.error.class_, e.error.error.desc
    return None


def host_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


async def libvirt_calls(q):
    static = await expand(q, "static", {"name": "host"})
    check(static["name"] == "base", "a static expansion names the model base")
    props = static["props"]
    check(len(props) > 100 and all(isinstance(v, bool) for v in props.values()), f"{len(props)} feature properties")
    again = await expand(q, "static", {"name": "host", "props": {"migratable": False}})
    check(again["props"] == props, "migratable=false: the same CPUID (godwit has no non-migratable features)")
    full = await expand(q, "full", {"name": "base", "props": props})
    check(full == {"name": "base", "props": props}, "the full expansion of the static answer is itself")
    host = await expand(q, "full", {"name": "host"})
    check(host == {"name": "host", "props": props}, "full host: the same features under its own name")
    return props


async def main():
    q = await client(sock, "cpu-model")
    props = await libvirt_calls(q)
    for f in ["fpu", "tsc", "cx8", "cmov", "sse", "sse2", "lm", "hypervisor"]:
        check(props.get(f) is True, f"{f}: every x86-64 guest of godwit has it")
    check(props["ht"] == (vcpus > 1), f"ht as for {vcpus} vCPUs")
    flags = host_flags()
    claimed = [f for f, on in props.items() if on and f not in NOT_HOST and not f.startswith("kvm")]
    missing = [f for f in claimed if LINUX.get(f, f.replace("-", "_")) not in flags]
    check(claimed and not missing, f"{len(claimed)} host features, all in /proc/cpuinfo (missing: {missing})")
    check(await expand(q, "static", {"name": "Skylake-Client-v4"}) == {"name": "base", "props": props},
          "every model gives what KVM supports (as -cpu help says)")
    off = await expand(q, "static", {"name": "host", "props": {"fpu": False}})
    check(off["props"]["fpu"] is False, "props switch a feature")
    for args, want in [
        ({"type": "full", "model": {"name": "foo"}}, "CPU model 'foo' not found"),
        ({"type": "bogus", "model": {"name": "host"}}, "Parameter 'type' does not accept value 'bogus'"),
        ({"type": "static", "model": {"name": "host", "props": {"nope": True}}}, "Property 'host-x86_64-cpu.nope' not found"),
        ({"type": "static", "model": {"name": "host", "props": {"vme": 3}}}, "Invalid parameter type for 'vme', expected: boolean"),
    ]:
        e = await error_of(q, args)
        check(e == ("GenericError", want), f"{args}: {e}")
    if qemu_sock:
        await compare_with_qemu(props)
    await q.disconnect()


async def compare_with_qemu(props):
    qemu = await client(qemu_sock, "qemu")
    theirs = (await expand(qemu, "static", {"name": "host", "props": {"migratable": False}}))["props"]
    await qemu.disconnect()
    common = [f for f in props if f in theirs]
    check(len(common) == len(props), f"QEMU 7.2 has every property godwit names ({len(common)})")
    differ = {f: (props[f], theirs[f]) for f in common if props[f] != theirs[f] and f not in QEMU_DIFFERS}
    check(not differ, f"each as QEMU 7.2 reports it for its host model (godwit, QEMU): {differ}")


asyncio.run(main())
print("PASS")
