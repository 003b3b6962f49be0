#!/bin/sh
# Record real DNS queries sent by glibc's stub resolver (getent), for the DNS rule-out tests.
# Usage: record_glibc_dns.sh OUT.pcap   (needs root for tcpdump; no answer is needed)
set -eu
out=$1
tcpdump -i any -U -w "$out" -s 0 'udp dst port 53' 2>/dev/null &
dump=$!
sleep 1  # capture start, not synchronisation
for name in ab. example.org. bittorrent-test.example.; do
  timeout 3 getent ahostsv4 "$name" >/dev/null 2>&1 || true
done
sleep 1
kill "$dump"
wait "$dump" || true
