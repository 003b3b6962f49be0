#!/usr/bin/env sh
# Install swarmwall's manual pages (docs/operations.md "Deployment"): `swarmwall man` generates
# them from the command's own clap definitions (swarmwall.1 and one page per subcommand, e.g.
# swarmwall-user-add.1); this script writes them gzipped into MANDIR/man1 and refreshes the
# man index when mandb is there.
#
# Usage: packaging/install-man-pages.sh [BINARY] [MANDIR]
#   BINARY  the swarmwall binary (default: target/release/swarmwall)
#   MANDIR  the manual root (default: /usr/local/share/man)
# Then: man swarmwall-serve
set -eu
bin=${1:-target/release/swarmwall}
mandir=${2:-/usr/local/share/man}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM
"$bin" man --out "$scratch" >/dev/null
install -d -m 0755 "$mandir/man1"
count=0
for page in "$scratch"/*.1; do
  gzip -9n "$page"
  install -m 0644 "$page.gz" "$mandir/man1/"
  count=$((count + 1))
done
if command -v mandb >/dev/null 2>&1; then
  mandb -q "$mandir" >/dev/null 2>&1 || true
fi
echo "installed $count manual pages into $mandir/man1"
