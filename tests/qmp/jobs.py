"""Snapshot jobs: snapshot-save/load/delete with their JOB_STATUS_CHANGE events, query-jobs,
job-dismiss, and QEMU's checks.
Usage: jobs.py SOCK NODE"""
import asyncio, sys

from qemu.qmp import ExecuteError
from qmplib import check, client, close_after_quit, next_event

sock, node = sys.argv[1], sys.argv[2]


async def job(q, cmd, args):
    await q.execute(cmd, args)
    statuses = []
    while not statuses or statuses[-1] != "concluded":
        e = await next_event(q, ["JOB_STATUS_CHANGE"])
        if e["data"]["id"] == args["job-id"]:
            statuses.append(e["data"]["status"])
    return statuses


async def main():
    q = await client(sock)
    ok = ["created", "running", "waiting", "pending", "concluded"]
    failed = ["created", "running", "aborting", "concluded"]
    save = {"job-id": "s1", "tag": "t1", "vmstate": node, "devices": [node]}
    check(await job(q, "snapshot-save", save) == ok, "snapshot-save: created, running, waiting, pending, concluded")
    jobs = await q.execute("query-jobs")
    check(jobs == [{"id": "s1", "type": "snapshot-save", "status": "concluded", "current-progress": 1, "total-progress": 1}],
          "query-jobs lists the concluded job")
    try:
        await q.execute("snapshot-save", save)
        check(False, "a job ID in use is refused")
    except ExecuteError as e:
        check(e.error.error.desc == "Job ID 's1' already in use", "a job ID in use is refused")
    again = dict(save, **{"job-id": "s2"})
    check(await job(q, "snapshot-save", again) == failed, "saving an existing tag fails in the job")
    err = (await q.execute("query-jobs"))[0]
    check(err["id"] == "s2" and err["error"] == "Snapshot 't1' already exists in one or more devices", f"the job's error: {err}")
    none = dict(save, **{"job-id": "s3", "devices": []})
    await job(q, "snapshot-save", none)
    check((await q.execute("query-jobs"))[0]["error"] == "At least one device is required for snapshot", "no devices")
    bad = dict(save, **{"job-id": "s4", "devices": ["bogus"]})
    await job(q, "snapshot-save", bad)
    check((await q.execute("query-jobs"))[0]["error"] == "No block device node 'bogus'", "unknown node")
    load = {"job-id": "l1", "tag": "t1", "vmstate": node, "devices": [node]}
    check(await job(q, "snapshot-load", load) == ok, "snapshot-load concludes")
    check((await q.execute("query-status"))["status"] == "running", "the guest runs after the load")
    check(await job(q, "snapshot-delete", {"job-id": "d1", "tag": "t1", "devices": [node]}) == ok, "snapshot-delete concludes")
    hmp = await q.execute("human-monitor-command", {"command-line": "info snapshots"})
    check("t1" not in hmp, f"the snapshot is gone: {hmp!r}")
    await q.execute("job-dismiss", {"id": "s1"})
    e = await next_event(q, ["JOB_STATUS_CHANGE"])
    check(e["data"] == {"id": "s1", "status": "null"}, "job-dismiss: null")
    check("s1" not in [j["id"] for j in await q.execute("query-jobs")], "dismissed job gone")
    try:
        await q.execute("job-dismiss", {"id": "zzz"})
        check(False, "unknown job")
    except ExecuteError as e:
        check(e.error.error.desc == "Job not found", "unknown job")
    await q.execute("quit")
    await close_after_quit(q)


asyncio.run(main())
print("PASS")
