"""Extract TCP flows from captures into the `.flow` format the classifier tests read.

Usage: extract_flows.py OUTDIR PCAP...
For each TCP stream with payload writes OUTDIR/<pcap>__<stream>__<server port>__<mode>.flow
(segments: 'C'|'S', u32 BE length, bytes; at most 8 KiB per direction, in sequence order;
retransmissions dropped, a direction stops at its first gap). mode is `proxy` when the SYN was
seen (the client is the SYN sender) and `offline` otherwise (the first sender is the client).
Needs tshark. Reads captures only; writes nothing else.
"""
import os, struct, subprocess, sys

LIMIT = 8192
outdir = sys.argv[1]
os.makedirs(outdir, exist_ok=True)
for pcap in sys.argv[2:]:
    fields = ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "tcp.dstport", "tcp.flags.syn",
              "tcp.flags.ack", "tcp.seq_raw", "tcp.len", "tcp.payload"]
    cmd = ["tshark", "-n", "-r", pcap, "-Y", "tcp", "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        continue
    streams = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != len(fields):
            continue
        stream, src4, src6, sport, dport, syn, ack, seq, length, payload = parts
        if not stream or not sport or not seq or not seq.isdigit():
            continue
        st = streams.setdefault(stream, {"client": None, "syn": False, "next": {}, "segs": [], "count": {}, "dead": set(), "server_port": None})
        src = (src4 or src6, sport)
        if syn == "1" and ack == "0" and st["client"] is None:
            st["client"], st["syn"], st["server_port"] = src, True, int(dport.split(",")[0])
            st["next"][src] = (int(seq) + 1) & 0xFFFFFFFF
            continue
        if syn == "1":
            st["next"][src] = (int(seq) + 1) & 0xFFFFFFFF
            continue
        if not payload or not length or int(length) == 0:
            continue
        if st["client"] is None:
            st["client"], st["server_port"] = src, int(dport.split(",")[0])
        d = "C" if src == st["client"] else "S"
        if d in st["dead"]:
            continue
        seq = int(seq)
        try:
            data = bytes.fromhex(payload.replace(":", "").split(",")[0])
        except ValueError:
            continue
        expected = st["next"].get(src, seq)
        if seq != expected:
            if ((seq - expected) & 0xFFFFFFFF) < 0x80000000:
                st["dead"].add(d)  # gap: stop this direction
            continue  # retransmission
        st["next"][src] = (seq + len(data)) & 0xFFFFFFFF
        room = LIMIT - st["count"].get(d, 0)
        if room <= 0:
            continue
        data = data[:room]
        st["count"][d] = st["count"].get(d, 0) + len(data)
        if st["segs"] and st["segs"][-1][0] == d:
            st["segs"][-1] = (d, st["segs"][-1][1] + data)
        else:
            st["segs"].append((d, data))
    base = os.path.basename(pcap)
    for stream, st in streams.items():
        if not st["segs"]:
            continue
        mode = "proxy" if st["syn"] else "offline"
        name = "%s__%s__%d__%s.flow" % (base, stream, st["server_port"], mode)
        with open(os.path.join(outdir, name), "wb") as f:
            for d, data in st["segs"]:
                f.write(d.encode() + struct.pack(">I", len(data)) + data)
