"""A migration driven only by QMP: capabilities (events), parameters, migrate, MIGRATION
events, query-migrate polled to completed. With --fd the two sides get the ends of a
socket pair this script made, with getfd; the destination waits in -incoming defer.
Meanwhile clients connect to the source's second QMP monitor, ask and leave.
Usage: migrate.py SRC_SOCK SRC_TCP_PORT DST_SOCK (--tcp PORT | --fd)"""
import asyncio, socket, sys, threading, time

from qmplib import Raw, check, client, close_after_quit, next_event

src_sock, churn_port, dst_sock, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
stop_churn = threading.Event()
churned = [0]


def churn():
    """Clients that connect, negotiate, ask for the figures and leave, over and over."""
    while not stop_churn.is_set():
        r = Raw(("127.0.0.1", churn_port))
        r.cmd("qmp_capabilities")
        info = r.cmd("query-migrate")
        assert "return" in info, info
        r.close()
        churned[0] += 1
        time.sleep(0.01)


async def main():
    src = await client(src_sock, "src")
    dst = await client(dst_sock, "dst")
    caps = [{"capability": "events", "state": True}]
    for q in (src, dst):
        await q.execute("migrate-set-capabilities", {"capabilities": caps})
        got = {c["capability"]: c["state"] for c in await q.execute("query-migrate-capabilities")}
        check(got["events"] is True and "compress" not in got and got.get("postcopy-ram") is False,
              f"events capability on, only godwit's listed ({q.name})")
    await src.execute("migrate-set-parameters", {"max-bandwidth": 64 << 20, "downtime-limit": 300})
    params = await src.execute("query-migrate-parameters")
    check(params["max-bandwidth"] == 64 << 20 and params["downtime-limit"] == 300, "parameters set")
    check((await dst.execute("query-status"))["status"] == "inmigrate", "destination waits in inmigrate")
    if mode == "--fd":
        a, b = socket.socketpair()
        src.send_fd_scm(a.fileno())
        await src.execute("getfd", {"fdname": "mig"})
        dst.send_fd_scm(b.fileno())
        await dst.execute("getfd", {"fdname": "mig"})
        a.close()
        b.close()
        await dst.execute("migrate-incoming", {"uri": "fd:mig"})
        uri = "fd:mig"
    else:
        port = int(sys.argv[5])
        await dst.execute("migrate-incoming", {"uri": f"tcp:127.0.0.1:{port}"})
        addr = (await dst.execute("query-migrate"))["socket-address"]
        check(addr == [{"type": "inet", "host": "127.0.0.1", "port": str(port), "ipv4": True}], "destination's SocketAddress")
        uri = f"tcp:127.0.0.1:{port}"
    t = threading.Thread(target=churn)
    t.start()
    await src.execute("migrate", {"uri": uri})
    seen = []
    statuses = set()
    end = time.time() + 120
    while time.time() < end:
        info = await src.execute("query-migrate")
        statuses.add(info.get("status"))
        if info.get("status") == "active":
            check(info["ram"]["total"] > 0 and "expected-downtime" in info, "active figures") if "active" not in seen else None
            seen.append("active")
        if info.get("status") in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(0.01)
    stop_churn.set()
    t.join()
    check(info["status"] == "completed", f"query-migrate reaches completed ({info})")
    check(info["ram"]["remaining"] == 0 and info["downtime"] >= 0 and info["total-time"] > 0, "completed figures")
    check(churned[0] > 5, f"{churned[0]} clients came and went meanwhile")
    events = []
    while True:
        e = await next_event(src, ["MIGRATION", "STOP"])
        events.append(e["data"]["status"] if e["event"] == "MIGRATION" else "STOP")
        if events[-1] == "completed":
            break
    check(events[0] == "setup" and "active" in events and events.index("STOP") < events.index("completed"),
          f"source events {events}")
    dst_events = []
    while "completed" not in dst_events:
        e = await next_event(dst, ["MIGRATION", "RESUME"])
        dst_events.append(e["data"]["status"] if e["event"] == "MIGRATION" else "RESUME")
    # `setup` comes with migrate-incoming's answer (as QEMU's), the rest with the stream.
    check(dst_events == ["setup", "active", "RESUME", "completed"], f"destination events {dst_events}")
    check((await src.execute("query-status"))["status"] == "postmigrate", "source in postmigrate")
    check((await dst.execute("query-status"))["status"] == "running", "destination runs")
    await src.execute("quit")
    await close_after_quit(src)
    await dst.disconnect()


asyncio.run(main())
print("PASS")
