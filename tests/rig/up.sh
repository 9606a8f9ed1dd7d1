#!/usr/bin/env bash
# The test rig: a real Docker engine here, and a fake "Mac Mini" (a second
# engine in its own container, with its own filesystem, reached only over SSH
# on 127.0.0.1:2222, link shaped to 1 Gbit/s). Idempotent: a second call only
# checks. Slow parts (debootstrap) are cached under $RIG.
# Writes $RIG/rig.env with what tests and benchmarks need.
set -euo pipefail
RIG=${MM4_RIG_DIR:-/var/lib/mm4watch-rig}
MIRROR=${MM4_RIG_MIRROR:-http://deb.debian.org/debian}
PORT=${MM4_RIG_PORT:-2222}
NAME=mm4-fake-mini
DOCKER=/usr/bin/docker   # Debian's CLI (20.10), which matches Debian's engine
mkdir -p "$RIG"
log() { printf '[rig] %s\n' "$*" >&2; }

need=()
for pair in chromium:chromium dockerd:docker.io sshd:openssh-server debootstrap:debootstrap rsync:rsync tc:iproute2 nsenter:util-linux ssh:openssh-client; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
done
[ -x "$DOCKER" ] || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

if ! "$DOCKER" info >/dev/null 2>&1; then
  log "starting dockerd"
  nohup dockerd >"$RIG/dockerd.log" 2>&1 &
  for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
  "$DOCKER" info >/dev/null 2>&1 || { log "dockerd did not start; see $RIG/dockerd.log"; tail -20 "$RIG/dockerd.log" >&2; exit 1; }
fi

rootfs() {  # rootfs NAME PACKAGES: a cached debootstrap tarball
  local name=$1 pkgs=$2 dir="$RIG/$1.root"
  if [ ! -s "$RIG/$name.tar" ]; then
    log "debootstrap $name (cached in $RIG/$name.tar)"
    rm -rf "$dir"
    debootstrap --variant=minbase --include="$pkgs" bookworm "$dir" "$MIRROR" >"$RIG/$name.debootstrap.log" 2>&1 \
      || { tail -20 "$RIG/$name.debootstrap.log" >&2; exit 1; }
    rm -f "$dir/usr/lib/python3.11/EXTERNALLY-MANAGED"
    mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs"
    ln -sf /usr/bin/python3 "$dir/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$dir/usr/local/bin/pip"
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$dir/etc/pip.conf"
    rm -rf "$dir/var/cache/apt/archives/"*.deb
    tar -C "$dir" -cf "$RIG/$name.tar.part" . && mv "$RIG/$name.tar.part" "$RIG/$name.tar"
    rm -rf "$dir"
  fi
}

if ! "$DOCKER" image inspect python:3.11-slim >/dev/null 2>&1; then
  rootfs base python3,python3-venv,python3-pip,ca-certificates
  log "importing python:3.11-slim (stand-in)"
  "$DOCKER" import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'CMD ["python3"]' "$RIG/base.tar" python:3.11-slim >/dev/null
fi

if ! "$DOCKER" image inspect "$NAME" >/dev/null 2>&1; then
  rootfs mini docker.io,openssh-server,ca-certificates,python3,python3-venv,python3-pip,iproute2,iptables,rsync,procps
  log "importing $NAME"
  "$DOCKER" import "$RIG/mini.tar" "$NAME" >/dev/null
fi

[ -f "$RIG/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$RIG/id_ed25519"
SSH=(ssh -i "$RIG/id_ed25519" -p "$PORT" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1)

if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != "true" ]; then
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  log "starting $NAME on 127.0.0.1:$PORT"
  "$DOCKER" run -d --init --name "$NAME" \
    --cap-add ALL --cap-drop SYS_RESOURCE \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup \
    -v mm4-mini-docker:/var/lib/docker -v "$RIG/id_ed25519.pub:/root/.ssh/authorized_keys:ro" \
    -p "127.0.0.1:$PORT:22" "$NAME" \
    bash -c 'rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid /run/sshd.pid; mkdir -p /run/sshd && /usr/sbin/sshd && exec dockerd >>/var/log/dockerd.log 2>&1' >/dev/null
fi
for _ in $(seq 120); do "${SSH[@]}" docker info >/dev/null 2>&1 && break; sleep 0.5; done
"${SSH[@]}" docker info >/dev/null 2>&1 || { log "the fake Mini's engine does not answer over SSH"; "$DOCKER" logs "$NAME" | tail -20 >&2; exit 1; }

if ! "${SSH[@]}" docker image inspect python:3.11-slim >/dev/null 2>&1; then
  log "loading python:3.11-slim into $NAME"
  "$DOCKER" save python:3.11-slim | "${SSH[@]}" docker load >/dev/null
fi

# a suite killed part-way leaves run containers (a run that lost its Mini keeps its own): none at the start
"${SSH[@]}" "docker ps -aq --filter name=mm4-run- | xargs -r docker rm -f >/dev/null"

# macOS's caffeinate, as a recorder (tests/rig/caffeinate): a run on the Mini holds an idle-sleep assertion
"$DOCKER" cp "$(dirname "$0")/caffeinate" "$NAME:/usr/bin/caffeinate"
"$DOCKER" exec "$NAME" sh -c 'touch /var/log/caffeinate.log && chmod 666 /var/log/caffeinate.log'

# a gigabit link: shape both directions of the veth pair
source "$(dirname "$0")/link.sh"
shape_link "$NAME"
pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$NAME")

cat >"$RIG/rig.env" <<ENV
MINI_HOST=127.0.0.1
MINI_PORT=$PORT
MINI_USER=root
MINI_KEY=$RIG/id_ed25519
MINI_CONTAINER=$NAME
MINI_PID=$pid
ENV
log "ready: ssh -i $RIG/id_ed25519 -p $PORT root@127.0.0.1"

# a Mac-like Mini (non-root, zsh, python3 3.9, no docker) for the native executor
bash "$(dirname "$0")/mac.sh"

# a pool of two more fake Minis in one swarm, with a registry (the Swarm executor's tests)
bash "$(dirname "$0")/pool.sh"

# two Minis with a Mac's Docker for a non-root account (Docker Desktop-like, colima-like): needs pool.sh's LAN and registry
bash "$(dirname "$0")/macdocker.sh"

# a pool of two Mac-like Minis on Dask (the dask executor's tests): needs pool.sh's LAN and this machine's dask
bash "$(dirname "$0")/dask.sh"
