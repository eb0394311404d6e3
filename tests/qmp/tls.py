"""A TLS migration driven only by QMP: query-migrate-parameters shows the three TLS
parameters as QEMU 7.2 does ("" when unset), migrate-set-parameters sets them and takes
null for "", a wrong type is refused with QEMU's words; a first attempt with a hostname
the destination's certificate lacks fails on the source (query-migrate's error-desc) while
the destination waits on; the second attempt completes.
Usage: tls.py SRC_SOCK DST_SOCK PORT"""
import asyncio, sys, time

from qemu.qmp import ExecuteError
from qmplib import check, client, close_after_quit

src_sock, dst_sock, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
URI = f"tcp:127.0.0.1:{port}"


def tls(params):
    return {k: v for k, v in params.items() if k.startswith("tls-")}


async def settle(q):
    """Polls query-migrate until the migration is over."""
    end = time.time() + 120
    while time.time() < end:
        info = await q.execute("query-migrate")
        if info.get("status") not in ("setup", "active", None):
            return info
        await asyncio.sleep(0.02)
    raise RuntimeError(f"migration still running: {info}")


async def parameters(src):
    got = tls(await src.execute("query-migrate-parameters"))
    check(got == {"tls-creds": "", "tls-hostname": "", "tls-authz": ""}, f"unset TLS parameters are \"\": {got}")
    want = {"tls-creds": "tls0", "tls-hostname": "localhost", "tls-authz": "nobody"}
    await src.execute("migrate-set-parameters", want)
    got = tls(await src.execute("query-migrate-parameters"))
    check(got == want, f"set TLS parameters read back: {got}")
    await src.execute("migrate-set-parameters", {"tls-authz": None, "tls-hostname": None})
    got = tls(await src.execute("query-migrate-parameters"))
    check(got == {"tls-creds": "tls0", "tls-hostname": "", "tls-authz": ""}, f"null sets \"\": {got}")
    try:
        await src.execute("migrate-set-parameters", {"tls-creds": 5})
        check(False, "a number for tls-creds is refused")
    except ExecuteError as e:
        check(str(e) == "Invalid parameter type for 'tls-creds', expected: StrOrNull", f"wrong type: {e}")
    got = tls(await src.execute("query-migrate-parameters"))
    check(got["tls-creds"] == "tls0", "a refused set changes nothing")


async def main():
    src = await client(src_sock, "src")
    dst = await client(dst_sock, "dst")
    await parameters(src)
    await dst.execute("migrate-set-parameters", {"tls-creds": "tls0"})
    await dst.execute("migrate-incoming", {"uri": URI})
    await src.execute("migrate-set-parameters", {"tls-hostname": "elsewhere.example.com"})
    await src.execute("migrate", {"uri": URI})
    info = await settle(src)
    want = "Certificate does not match the hostname elsewhere.example.com"
    check(info["status"] == "failed" and info.get("error-desc") == want, f"wrong hostname fails: {info}")
    check((await src.execute("query-status"))["status"] == "running", "the source runs on")
    check((await dst.execute("query-status"))["status"] == "inmigrate", "the destination waits on")
    await src.execute("migrate-set-parameters", {"tls-hostname": "localhost"})
    await src.execute("migrate", {"uri": URI})
    info = await settle(src)
    check(info["status"] == "completed" and info["ram"]["transferred"] > 0, f"over TLS: {info['status']}")
    check((await src.execute("query-status"))["status"] == "postmigrate", "source in postmigrate")
    end = time.time() + 30
    while (await dst.execute("query-status"))["status"] != "running":
        check(time.time() < end, "destination runs")
        await asyncio.sleep(0.02)
    check((await dst.execute("query-migrate"))["status"] == "completed", "destination completed")
    await src.execute("quit")
    await close_after_quit(src)
    await dst.disconnect()


asyncio.run(main())
print("PASS")
