#!/usr/bin/env bash
# Optional system packages: memcached doubles the local Swift server's throughput (it caches
# container info in the proxy). Installed only when missing, as root, with apt-get; everything
# works without it, only slower.
set -u
if command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing memcached (optional, speeds up the local Swift server)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached) >/dev/null 2>&1 \
    || echo "note: could not install memcached; the local Swift server runs without it"
  # Debian may start the packaged service; we only need the binary (LocalSwift runs its own).
  (command -v systemctl >/dev/null && systemctl stop memcached) >/dev/null 2>&1 || true
else
  echo "note: memcached not found; the local Swift server runs without it (slower)"
fi
exit 0
