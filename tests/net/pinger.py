#!/usr/bin/env python3
"""ICMP echo at a fixed interval, for the network tests (run as root, inside the test's
network namespace). Prints one JSON object: {"sent": N, "replies": [[seq, t_sent, rtt_s],
...]} where t_sent is seconds from the start; lost requests have no entry.

    pinger.py TARGET COUNT INTERVAL_S [WAIT_S]
"""
import json, os, select, socket, struct, sys, time


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo(ident, seq, payload):
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, csum(head + payload), ident, seq) + payload


def main():
    target, count, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    wait = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    start = time.monotonic()
    sent_at, replies = {}, {}
    seq, next_send = 0, start
    end = None
    while True:
        now = time.monotonic()
        if seq < count and now >= next_send:
            payload = struct.pack("!d", now) + b"godwit-pinger" * 4
            s.sendto(echo(ident, seq & 0xFFFF, payload), (target, 0))
            sent_at[seq & 0xFFFF] = (seq, now)
            seq += 1
            next_send += interval
            if seq == count:
                end = now + wait
        if end is not None and now >= end:
            break
        timeout = max(0.0, (next_send if seq < count else end) - now)
        r, _, _ = select.select([s], [], [], timeout)
        if not r:
            continue
        pkt, addr = s.recvfrom(4096)
        ihl = (pkt[0] & 0x0F) * 4
        icmp = pkt[ihl:]
        if len(icmp) < 8 or addr[0] != target:
            continue
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if typ == 0 and rid == ident and rseq in sent_at:
            full, t = sent_at[rseq]
            replies.setdefault(full, [full, t - start, time.monotonic() - t])
    print(json.dumps({"sent": seq, "replies": sorted(replies.values())}))


main()
