#!/usr/bin/env bash
# Install what the tests need, idempotently: Debian packages (root, or sudo) and the npm
# package for the browser test. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
packages=(curl openssl python3 python3-pytest python3-libtorrent redis-server redis-sentinel
          redis-tools opentracker
          tshark tcpdump chromium microsocks dante-server libndpi-bin hyperfine iproute2
          # RADIUS accounts backend (tests/e2e/test_radius.py)
          freeradius
          # rendering the generated manual pages (crates/swarmwall/tests/integration/man.rs)
          man-db
          # encrypted-BitTorrent clients and the HTTPS tracker (tests/e2e/test_mse_clients.py)
          qbittorrent-nox transmission-daemon aria2 rtorrent proxychains4 nginx-light
          # the benign corpus (tests/e2e/test_benign_corpus.py)
          shadowsocks-libev obfs4proxy v2ray openssh-server openssh-client
          # its VPN rows: OpenVPN (--tls-crypt over TCP), WireGuard in user space
          openvpn wireguard-tools wireguard-go
          # the build: tikv-jemalloc-sys (the binary's allocator) runs jemalloc's configure/make
          make)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The machine image ships Node.js with npm (nodesource); Debian's nodejs only if it lacks one.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "installing playwright-core (npm)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
