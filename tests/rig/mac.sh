#!/usr/bin/env bash
# A Mac-like Mini for the native executor: the defaults a fresh Mac has, in a
# container reached only over SSH on 127.0.0.1:2241. A non-root account `me`
# (uid 501) whose login shell is zsh; the stock python3 3.9 (Debian bullseye's
# 3.9.2, as the Command Line Tools' 3.9.6); sshd giving commands macOS's
# minimal PATH; no docker; a `caffeinate` recorder at /usr/bin/caffeinate (see
# tests/rig/caffeinate; its log is of the current boot) and a Mac's
# `sysctl -n kern.boottime` (tests/rig/sysctl). Link shaped to 1 Gbit/s. Needs
# up.sh first (the engine here, the key). Idempotent; the root filesystem is
# cached in $RIG/mac.tar.
# Writes $RIG/mac.env.
set -euo pipefail
RIG=${MM4_RIG_DIR:-/var/lib/mm4watch-rig}
MIRROR=${MM4_RIG_MIRROR:-http://deb.debian.org/debian}
DOCKER=/usr/bin/docker
NAME=mm4-fake-mac
PORT=${MM4_RIG_MAC_PORT:-2241}
HERE=$(cd "$(dirname "$0")" && pwd)
log() { printf '[mac] %s\n' "$*" >&2; }
[ -s "$RIG/rig.env" ] || { log "run tests/rig/up.sh first"; exit 1; }

if [ ! -s "$RIG/mac.tar" ]; then
  dir="$RIG/mac.root"
  log "debootstrap bullseye for the Mac-like Mini (cached in $RIG/mac.tar)"
  rm -rf "$dir"
  debootstrap --variant=minbase --include=zsh,python3,python3-venv,python3-pip,rsync,openssh-server,procps,ca-certificates,iproute2 \
    bullseye "$dir" "$MIRROR" >"$RIG/mac.debootstrap.log" 2>&1 || { tail -20 "$RIG/mac.debootstrap.log" >&2; exit 1; }
  chroot "$dir" useradd -m -u 501 -s /bin/zsh me
  # what a Mac's sshd gives a non-interactive command
  printf '\nSetEnv PATH=/usr/bin:/bin:/usr/sbin:/sbin\nPasswordAuthentication no\n' >>"$dir/etc/ssh/sshd_config"
  : >"$dir/home/me/.zshrc"  # zsh's first-run wizard only runs on a terminal; an empty rc keeps it quiet there too
  chroot "$dir" chown me /home/me/.zshrc
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$dir/etc/pip.conf"
  rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
  tar -C "$dir" -cf "$RIG/mac.tar.part" . && mv "$RIG/mac.tar.part" "$RIG/mac.tar"
  rm -rf "$dir"
fi
if ! "$DOCKER" image inspect "$NAME" >/dev/null 2>&1; then
  log "importing $NAME"
  "$DOCKER" import "$RIG/mac.tar" "$NAME" >/dev/null
fi

# started again when it is not running, or was started by an older version of this script (a mount missing)
state=$("$DOCKER" inspect -f '{{.State.Running}} {{range .Mounts}}{{.Destination}} {{end}}' "$NAME" 2>/dev/null || true)
if [[ $state != true* || $state != *" /usr/sbin/sysctl "* ]]; then
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  log "starting $NAME on 127.0.0.1:$PORT (user me, zsh, python3 3.9)"
  "$DOCKER" run -d --init --name "$NAME" --hostname fake-mac \
    -v "$RIG/id_ed25519.pub:/home/me/.ssh/authorized_keys:ro" -v "$HERE/caffeinate:/usr/bin/caffeinate:ro" \
    -v "$HERE/sysctl:/usr/sbin/sysctl:ro" -p "127.0.0.1:$PORT:22" "$NAME" \
    bash -c 'mkdir -p /run/sshd && chown me /home/me /home/me/.ssh && chmod 700 /home/me/.ssh \
      && : >/var/log/caffeinate.log && chmod 666 /var/log/caffeinate.log && exec /usr/sbin/sshd -D -e 2>/var/log/sshd.log' >/dev/null
fi
SSH=(ssh -i "$RIG/id_ed25519" -p "$PORT" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR me@127.0.0.1)
for _ in $(seq 60); do "${SSH[@]}" true >/dev/null 2>&1 && break; sleep 0.5; done
"${SSH[@]}" true || { log "the Mac-like Mini does not answer over SSH"; "$DOCKER" logs "$NAME" | tail -20 >&2; exit 1; }

source "$HERE/link.sh"
shape_link "$NAME"

cat >"$RIG/mac.env" <<ENV
MAC_HOST=127.0.0.1
MAC_PORT=$PORT
MAC_USER=me
MAC_KEY=$RIG/id_ed25519
MAC_CONTAINER=$NAME
ENV
log "ready: $("${SSH[@]}" 'echo $SHELL $PATH; id -u; python3 --version' | tr '\n' ' ')"
