"""libvirt's capability probe, asked of `godwit -machine none` as libvirt 9.0 asks it
(`-S -no-user-config -nodefaults -nographic -machine none,accel=kvm:tcg -qmp ...
-daemonize`): every answer libvirt needs, true to what godwit has.

    probe.py SOCKET
"""
import asyncio, sys

from qemu.qmp import ExecuteError
from qmplib import check, client

sock = sys.argv[1]


async def error_of(q, cmd, args=None):
    try:
        await q.execute(cmd, args)
    except ExecuteError as e:
        return e.error.error.class_, e.error.error.desc
    return None


async def main():
    q = await client(sock, "probe")
    v = await q.execute("query-version")
    check((v["qemu"]["major"], v["qemu"]["minor"]) >= (4, 2), f"a version libvirt accepts: {v['qemu']}")
    check(v["package"].startswith(" (godwit "), f"godwit's own version in package: {v['package']!r}")
    check((await q.execute("query-target"))["arch"] == "x86_64", "x86_64")
    kvm = await q.execute("query-kvm")
    check(kvm == {"enabled": True, "present": True}, "KVM")
    commands = {c["name"] for c in await q.execute("query-commands")}
    schema = await q.execute("query-qmp-schema")
    in_schema = {e["name"] for e in schema if e["meta-type"] == "command"}
    check(commands == in_schema, "query-commands and the schema name the same commands")
    for c in ["qom-list-types", "device-list-properties", "qom-list-properties", "query-machines",
              "query-cpu-definitions", "query-command-line-options", "qom-list", "qom-get"]:
        check(c in commands, f"{c} exists")
    check("query-cpu-model-expansion" in commands, "query-cpu-model-expansion exists")
    types = {t["name"]: t.get("parent") for t in await q.execute("qom-list-types")}
    for t in ["isa-serial", "virtio-net-pci", "memory-backend-ram", "secret", "kvm-accel",
              "pc-i440fx-7.2-machine", "qemu64-x86_64-cpu"]:
        check(t in types, f"type {t}")
    for t in ["tcg-accel", "ide-hd", "virtio-blk-pci", "piix3-usb-uhci", "memory-backend-file"]:
        check(t not in types, f"no type {t}")
    isa = [t["name"] for t in await q.execute("qom-list-types", {"implements": "isa-device"})]
    check(isa == ["isa-serial"], f"implements isa-device: {isa}")
    props = {p["name"] for p in await q.execute("device-list-properties", {"typename": "isa-serial"})}
    check({"chardev", "index"} <= props, f"isa-serial properties {sorted(props)}")
    e = await error_of(q, "device-list-properties", {"typename": "virtio-blk-pci"})
    check(e == ("DeviceNotFound", "Device 'virtio-blk-pci' not found"), f"a device godwit lacks: {e}")
    m = {p["name"] for p in await q.execute("qom-list-properties", {"typename": "none-machine"})}
    check("memory-backend" in m, "machines take memory-backend")
    check(await q.execute("qom-list-properties", {"typename": "memory-backend-file"}) == [],
          "memory-backend-file: no properties (libvirt asks whatever the type list says)")
    e = await error_of(q, "qom-list-properties", {"typename": "bogus"})
    check(e == ("GenericError", "Class 'bogus' not found"), f"an unknown class: {e}")
    machines = {m["name"]: m for m in await q.execute("query-machines")}
    pc = machines.get("pc-i440fx-7.2", {})
    check(pc.get("alias") == "pc" and pc.get("is-default") is True, "pc-i440fx-7.2, alias pc, the default")
    check(pc.get("default-ram-id") == "pc.ram" and pc.get("hotpluggable-cpus") is False, "pc.ram, no CPU hot-plug")
    cpus = {c["name"]: c for c in await q.execute("query-cpu-definitions")}
    check(cpus.get("qemu64", {}).get("typename") == "qemu64-x86_64-cpu", "CPU model qemu64")
    # libvirt's host CPU probe: a static expansion of host, again with migratable=false, and a
    # full expansion of the static answer.
    static = (await q.execute("query-cpu-model-expansion", {"type": "static", "model": {"name": "host"}}))["model"]
    check(static["name"] == "base" and static["props"].get("lm") is True, "static expansion of host: base, with lm")
    nm = {"name": "host", "props": {"migratable": False}}
    check((await q.execute("query-cpu-model-expansion", {"type": "static", "model": nm}))["model"] == static,
          "the same with migratable=false")
    full = (await q.execute("query-cpu-model-expansion", {"type": "full", "model": static}))["model"]
    check(full == static, "the full expansion of the static answer is itself")
    check(static["props"].get("ht") is False, "no HTT without a machine (as QEMU's -machine none)")
    check(await q.execute("query-tpm-models") == [] and await q.execute("query-tpm-types") == [], "no TPM")
    opts = {o["option"]: {p["name"] for p in o["parameters"]} for o in await q.execute("query-command-line-options")}
    check("sandbox" not in opts and {"timestamp"} <= opts.get("msg", set()), "msg, no sandbox")
    check({"mem-lock"} <= opts.get("overcommit", set()), "overcommit mem-lock")
    caps = {c["capability"] for c in await q.execute("query-migrate-capabilities")}
    check(caps == {"xbzrle", "auto-converge", "events", "postcopy-ram", "block", "return-path", "multifd", "late-block-activate"}, f"godwit's capabilities only: {caps}")
    check(await q.execute("query-cpus-fast") == [], "no CPUs without a machine")
    e = await error_of(q, "query-balloon")
    check(e == ("DeviceNotActive", "No balloon device has been activated"), f"no balloon: {e}")
    check(await q.execute("query-iothreads") == [], "no iothreads")
    check(await q.execute("qom-get", {"path": "/machine", "property": "type"}) == "none-machine", "qom-get /machine type")
    e = await error_of(q, "qom-list", {"path": "/nowhere"})
    check(e == ("DeviceNotFound", "Device '/nowhere' not found"), f"qom-list of no object: {e}")
    await q.execute("quit")
    await q.disconnect()


asyncio.run(main())
print("PASS")
