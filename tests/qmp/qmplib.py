"""Helpers for the QMP integration tests: the real client (qemu.qmp), and a raw socket for
what a well-behaved client never sends."""
import asyncio, json, socket, sys, time

from qemu.qmp import QMPClient


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


async def client(address, name="test"):
    """A negotiated QMPClient, retrying while godwit starts."""
    end = time.time() + 20
    while True:
        qmp = QMPClient(name)
        try:
            await qmp.connect(address)
            return qmp
        except Exception:
            if time.time() > end:
                raise
            await asyncio.sleep(0.05)


async def close_after_quit(qmp):
    """Disconnects from a server that was told to `quit`. Its closing the stream may reach
    qemu.qmp's reader first, and disconnect() then re-raises that EOFError: expected after
    a quit (QEMU's own Python test harness accepts it the same way)."""
    try:
        await qmp.disconnect()
    except EOFError:
        pass


async def next_event(qmp, names, timeout=30):
    """The next event with one of `names` (others are skipped)."""
    async def wait():
        async for e in qmp.events:
            if e["event"] in names:
                return e
    return await asyncio.wait_for(wait(), timeout)


class Raw:
    """A QMP client on a bare socket: lines in, replies out, events kept aside."""

    def __init__(self, address):
        fam = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        end = time.time() + 20
        while True:
            try:
                self.s = socket.socket(fam)
                self.s.connect(address)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.05)
        self.s.settimeout(30)
        self.f = self.s.makefile("rb")
        self.events = []
        self.greeting = json.loads(self.f.readline())

    def close(self):
        # The file object holds the socket open too.
        self.f.close()
        self.s.close()

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("connection closed")
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def cmd(self, name, args=None, **extra):
        msg = {"execute": name, **extra}
        if args is not None:
            msg["arguments"] = args
        self.send(json.dumps(msg) + "\n")
        return self.reply()
