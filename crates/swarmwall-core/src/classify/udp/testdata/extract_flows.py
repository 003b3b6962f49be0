#!/usr/bin/python3
"""Turn captures into `.flow` fixtures: the UDP payloads of one 5-tuple, in order.

Usage: extract_flows.py CAPTURE OUT.flow [--filter DISPLAY_FILTER] [--skip N] [--count N]
       [--only dht|utp|other]

Record format (big-endian): direction u8 (0 = sent by the endpoint that sent the first
datagram of the selection, 1 = the other), length u16, payload. Needs tshark.
"""
import argparse
import subprocess
import struct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("out")
    ap.add_argument("--filter", default="udp")
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["dht", "utp", "other"])
    args = ap.parse_args()
    rows = subprocess.run(
        ["tshark", "-r", args.capture, "-Y", args.filter, "-T", "fields",
         "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport", "-e", "udp.payload"],
        check=True, capture_output=True, text=True).stdout.splitlines()
    records = []
    for row in rows:
        ip4, ip6, port, payload = (row.split("\t") + ["", "", "", ""])[:4]
        data = bytes.fromhex(payload)
        is_dht = data[:1] == b"d"
        is_utp = bool(data) and data[0] & 0x0F == 1 and data[0] >> 4 <= 4 and not is_dht
        if args.only == "dht" and not is_dht:
            continue
        if args.only == "utp" and not is_utp:
            continue
        if args.only == "other" and (is_dht or is_utp):
            continue
        records.append(((ip4 or ip6, port), data))
    records = records[args.skip:args.skip + args.count]
    if not records:
        raise SystemExit("no datagrams selected")
    first = records[0][0]
    with open(args.out, "wb") as f:
        for source, data in records:
            f.write(struct.pack(">BH", 0 if source == first else 1, len(data)) + data)
    print(args.out, len(records), "datagrams")


if __name__ == "__main__":
    main()
