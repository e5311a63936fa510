#!/usr/bin/env bash
# Host preparation for Conveyor: glibc >= 2.39 (needed by the TFX 1.21 wheels) and the
# Debian packages the test suite uses. Idempotent; a no-op on hosts that already qualify.
set -euo pipefail

REQUIRED_GLIBC="2.39"
APT_PACKAGES="${CONVEYOR_APT_PACKAGES:-}"   # extra Debian packages, e.g. "mariadb-server"

glibc_version() { getconf GNU_LIBC_VERSION | awk '{print $2}'; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

as_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "conveyor setup: $1 needs root (apt-get). Run 'sudo make setup' once, or $2." >&2
    exit 1
  fi
}

apt_updated=0
apt_update() { [ "$apt_updated" = 1 ] || { apt-get update -qq; apt_updated=1; }; }

if ! version_ge "$(glibc_version)" "$REQUIRED_GLIBC"; then
  as_root "glibc $(glibc_version) < $REQUIRED_GLIBC: upgrading libc from Debian 13" \
          "use a host with glibc >= $REQUIRED_GLIBC (e.g. Debian 13 or Ubuntu 24.04)"
  . /etc/os-release
  if [ "${ID:-}" != debian ]; then
    echo "conveyor setup: glibc $(glibc_version) < $REQUIRED_GLIBC on ${PRETTY_NAME:-this host}; the automatic upgrade only covers Debian 12." >&2
    exit 1
  fi
  echo "conveyor setup: glibc $(glibc_version) < $REQUIRED_GLIBC; installing libc6 from Debian 13 (trixie, pinned at priority 100)"
  cat > /etc/apt/sources.list.d/conveyor-trixie.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/conveyor-trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie --no-install-recommends \
    libc6 libc6-dev libstdc++6 >/dev/null
  echo "conveyor setup: glibc is now $(glibc_version)"
fi

# Python 3.11 with venv support (Debian splits ensurepip into python3.11-venv).
if ! command -v python3.11 >/dev/null 2>&1 || ! python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  APT_PACKAGES="$APT_PACKAGES python3.11 python3.11-venv"
fi

missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  as_root "installing Debian packages:$missing" "install them yourself"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
