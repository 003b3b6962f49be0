#!/usr/bin/env bash
# Regenerate the loopback captures in this directory (lt_*.pcap): real python3-libtorrent
# sessions (plain TCP + HTTP tracker, forced MSE/RC4, uTP only, UDP tracker via opentracker,
# DHT + magnet, a peer handshake through microsocks) and benign curl HTTP/TLS/SOCKS5 traffic.
# Needs root (tcpdump on lo), python3-libtorrent, opentracker, microsocks, curl, openssl.
#   tests/captures/record.sh [MODE...]      (modes: see record.py; default all)
# Each capture is a few KB to ~100 KB (64 KiB torrents, snap length 2048). The flows expected
# in each file are listed in LABELS.md; the inspect tests read them from labels.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$here/record.py" "$here" "$@"
