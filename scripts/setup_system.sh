#!/usr/bin/env bash
# Optional system packages: memcached doubles the local Swift server's throughput (it caches
# container info in the proxy). Installed only when missing, as root, with apt-get; everything
# works without it, only slower.
#
# Slurm (slurm-wlm + munge): tests/test_slurm.py runs a real single-node Slurm
# (swiftzarr_batch.testing.slurm.LocalSlurm, its own munged/slurmctld/slurmd on 127.0.0.1, config
# in a temp dir). Installed the same way; without it (or without root) those tests skip, saying so.
set -u
apt_updated=0
apt_install() {  # apt_install WHAT PACKAGE...
  local what=$1; shift
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: $what not found and not root: not installed"; return 0
  fi
  echo "installing $* ($what)"
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1 && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || echo "note: could not install $*"
}
if ! command -v memcached >/dev/null 2>&1 && [ ! -x /usr/bin/memcached ]; then
  apt_install "optional, speeds up the local Swift server" memcached
  # Debian may start the packaged service; we only need the binary (LocalSwift runs its own).
  (command -v systemctl >/dev/null && systemctl stop memcached) >/dev/null 2>&1 || true
fi
if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/munged ]; then
  apt_install "a local Slurm for tests/test_slurm.py" slurm-wlm munge
  # LocalSlurm runs daemons of its own with a private key and socket; not the packaged ones.
  (command -v systemctl >/dev/null && systemctl stop slurmctld slurmd munge) >/dev/null 2>&1 || true
fi
exit 0
