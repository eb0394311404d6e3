"""Negotiation, errors, events, HMP passthrough and limits against a running godwit.
Usage: basic.py QMP_UNIX_SOCKET QMP_TCP_PORT CHARDEV_SOCKET HMP_SOCKET"""
import asyncio, json, sys

from qmplib import Raw, check, client, close_after_quit, next_event

sock, port, chardev_sock, hmp_sock = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def raw_protocol():
    r = Raw(sock)
    check(r.greeting["QMP"]["capabilities"] == ["oob"], "greeting offers oob")
    version = r.greeting["QMP"]["version"]
    refused = r.cmd("query-status")
    check(refused == {"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}},
          "commands before qmp_capabilities are refused as in QEMU")
    check(r.cmd("qmp_capabilities") == {"return": {}}, "negotiation")
    check(r.cmd("query-version")["return"] == version, "query-version is the greeting's version")
    check(r.cmd("qmp_capabilities")["error"]["desc"] == "Capabilities negotiation is already complete, command ignored",
          "a second negotiation is refused")
    bogus = r.cmd("bogus", id=[1, {"a": 2}])
    check(bogus == {"id": [1, {"a": 2}], "error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}},
          "unknown command, id echoed whatever its type")
    check(r.cmd("query-status", {"x": 1})["error"]["desc"] == "Parameter 'x' is unexpected", "unexpected argument")
    check(r.cmd("migrate")["error"]["desc"] == "Parameter 'uri' is missing", "missing argument")
    check(r.cmd("migrate", {"uri": 1})["error"]["desc"] == "Invalid parameter type for 'uri', expected: string", "badly typed argument")
    r.send("{bad json}\n")
    check(r.reply()["error"]["desc"] == "JSON parse error, invalid keyword 'bad'", "malformed JSON answered")
    r.send("[1, 2]\n")
    check(r.reply()["error"]["desc"] == "QMP input must be a JSON object", "not an object")
    r.send("[" * 5000 + "]" * 5000 + "\n")
    check(r.reply()["error"]["desc"] == "JSON nesting depth limit exceeded", "endless nesting refused")
    r.send(b'{"execute": "query-kvm", "id": "' + b"a" * (8 << 20) + b'"}\n')
    check(r.reply()["error"]["desc"] == "JSON token size limit exceeded", "8 MiB message refused")
    check(r.cmd("query-kvm", id=7) == {"return": {"enabled": True, "present": True}, "id": 7}, "the session goes on")
    schema = r.cmd("query-qmp-schema")["return"]
    names = {e["name"] for e in schema}
    check({"query-status", "snapshot-save", "STOP"} <= names and "device_add" not in names, "schema lists godwit's commands only")
    hmp = r.cmd("human-monitor-command", {"command-line": "info status"})
    check(hmp == {"return": "VM status: running\r\n"}, "human-monitor-command returns HMP's text with CR LF")
    labels = {c["label"]: c["filename"] for c in r.cmd("query-chardev")["return"]}
    check(f"unix:{sock},server=on" in labels.get("compat_monitor0", ""), "query-chardev lists the connected QMP monitor")
    check(labels.get("qmpc") == f"disconnected:unix:{chardev_sock},server=on", "and the -mon chardev monitor")
    r.close()


async def events():
    a = await client(sock, "a")
    b = await client(("127.0.0.1", port), "b")
    c = await client(chardev_sock, "c")
    await a.execute("stop")
    for q in (a, b, c):
        e = await next_event(q, ["STOP"])
        check(e["timestamp"]["seconds"] > 0, f"STOP with a timestamp on {q.name}")
    check((await b.execute("query-status"))["status"] == "paused", "paused")
    await b.execute("cont")
    for q in (a, b, c):
        await next_event(q, ["RESUME"])
    check(True, "RESUME on every negotiated session")
    await c.execute("system_reset")
    e = await next_event(a, ["RESET"])
    check(e["data"] == {"guest": False, "reason": "host-qmp-system-reset"}, "RESET from system_reset")
    for q in (b, c):
        await q.disconnect()
    # A client that left is replaced by a fresh one with a fresh greeting.
    b = await client(("127.0.0.1", port), "b2")
    check(b.greeting is not None, "a new client gets a fresh greeting")
    await b.disconnect()
    await a.execute("quit")
    e = await next_event(a, ["SHUTDOWN"], 10)
    check(e["data"] == {"guest": False, "reason": "host-qmp-quit"}, "SHUTDOWN from quit")
    await close_after_quit(a)


raw_protocol()
asyncio.run(events())
print("PASS")
