#!/usr/bin/env bash
# Optional system packages, installed only when missing, as root, with apt-get; everything works
# without them:
# - memcached doubles the local Swift server's throughput (it caches container info in the
#   proxy); without it the local Swift is only slower;
# - tinyproxy is the real forward proxy tests/test_proxy.py runs its own copy of;
# - slurm-wlm + munge: tests/test_slurm.py runs a real single-node Slurm
#   (swiftzarr_batch.testing.slurm.LocalSlurm: its own munged/slurmctld/slurmd on 127.0.0.1,
#   config in a temp dir);
# - chromium: tests/test_docs_browser.py looks at the built documentation site in a real
#   headless browser (driven by playwright from the docs extra; no browser download).
# The tests that need a missing one skip, saying so. Debian may start the packaged services; we
# only need the binaries (the tests run their own daemons), so those are stopped.
set -u
apt_updated=0
install() {  # install BINARY WHY PACKAGE... (BINARY: the file that says it is installed)
  local binary=$1 why=$2; shift 2
  if command -v "$binary" >/dev/null 2>&1 || [ -x "/usr/bin/$binary" ] || [ -x "/usr/sbin/$binary" ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: $* not found and not root: $why is not available"; return 0
  fi
  echo "installing $* (optional: $why)"
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1 && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || echo "note: could not install $*; $why is not available"
  (command -v systemctl >/dev/null && systemctl stop "$@") >/dev/null 2>&1 || true
}
install memcached "a faster local Swift server" memcached
install tinyproxy "the forward-proxy tests" tinyproxy
install slurmctld "the Slurm tests" slurm-wlm
install munged "the Slurm tests" munge
install chromium "the documentation site's browser test" chromium
exit 0
