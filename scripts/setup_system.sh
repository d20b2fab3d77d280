#!/usr/bin/env bash
# Optional system packages, installed only when missing, as root, with apt-get; everything works
# without them:
# - memcached doubles the local Swift server's throughput (it caches container info in the
#   proxy); without it the local Swift is only slower;
# - tinyproxy is the real forward proxy tests/test_proxy.py runs its own copy of (those tests
#   are skipped without it).
set -u
# Debian may start a packaged service; we only need the binaries (the tests run their own).
install() {  # install <package> <why>
  if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $1 (optional: $2)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1") >/dev/null 2>&1 \
      || echo "note: could not install $1; $2 is not available"
    (command -v systemctl >/dev/null && systemctl stop "$1") >/dev/null 2>&1 || true
  else
    echo "note: $1 not found; $2 is not available"
  fi
}
install memcached "a faster local Swift server"
install tinyproxy "the forward-proxy tests"
exit 0
