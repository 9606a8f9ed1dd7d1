#!/usr/bin/env bash
# A pool of two Mac-like Minis on Dask, for the dask executor: each as a fresh Mac
# has it (account `me`, uid 501, login shell zsh, sshd giving commands macOS's
# minimal PATH, no docker, a `caffeinate` recorder), with a Python new enough for
# Dask in a venv of its own (/home/me/dask, the worker's only), on the LAN of
# pool.sh (172.30.0.21 and .22, ssh also on 127.0.0.1:2251/2252). `dask
# scheduler` runs on the first (tls://172.30.0.21:8786, dashboard :8787; the pool's certificates
# from `mm4watch pool certs` in $RIG/dask-tls), `dask
# worker --resources mps=1` on each (named mac-1, mac-2), as the user. The dask
# version is this machine's, as doctor wants it everywhere. Each has a core of its
# own (on a machine of two or more). Needs up.sh (the key)
# and pool.sh (the LAN) first, and `distributed` installed here. Idempotent;
# `dask.sh worker N` (re)starts the worker of mac-N. Writes $RIG/dask.env.
set -euo pipefail
RIG=${MM4_RIG_DIR:-/var/lib/mm4watch-rig}
MIRROR=${MM4_RIG_MIRROR:-http://deb.debian.org/debian}
DOCKER=/usr/bin/docker
HERE=$(cd "$(dirname "$0")" && pwd)
NET=mm4-lan
SCHED=tls://172.30.0.21:8786
TLS=$RIG/dask-tls  # the pool's CA and certificates (mm4watch pool certs): node.* in each Mini, client.* here
NODE_TLS="--tls-ca-file /home/me/tls/ca.pem --tls-cert /home/me/tls/node.pem --tls-key /home/me/tls/node-key.pem"
log() { printf '[dask] %s\n' "$*" >&2; }
[ -s "$RIG/rig.env" ] || { log "run tests/rig/up.sh first"; exit 1; }
PY=${MM4_RIG_PYTHON:-python}
VERSION=$("$PY" -c 'import distributed; print(distributed.__version__)' 2>/dev/null) \
  || { log "distributed is not installed here: pip install -e '.[test]'"; exit 1; }

worker() {  # worker N: (re)start the worker of mac-N, and wait until the scheduler lists it
  local n=$1 name="mm4-dask-$1"
  "$DOCKER" exec "$name" pkill -f 'dask worker' >/dev/null 2>&1 || true
  "$DOCKER" exec -d -u me -w /home/me "$name" sh -c \
    "exec /home/me/dask/bin/dask worker $SCHED --protocol tls $NODE_TLS --nworkers 1 --nthreads 1 --resources mps=1 \
      --name mac-$n --no-nanny --no-dashboard >/home/me/dask-worker.log 2>&1"
  for _ in $(seq 120); do
    "$DOCKER" exec "$name" grep -q 'Registered to' /home/me/dask-worker.log 2>/dev/null && return 0; sleep 0.25
  done
  log "the worker of mac-$n did not register"; "$DOCKER" exec "$name" tail -20 /home/me/dask-worker.log >&2; exit 1
}
if [ "${1:-}" = worker ]; then worker "$2"; exit 0; fi

if [ ! -s "$RIG/dmac.tar" ]; then
  dir="$RIG/dmac.root"
  log "debootstrap bookworm for the Mac-like pool (cached in $RIG/dmac.tar)"
  rm -rf "$dir"
  debootstrap --variant=minbase --include=zsh,python3,python3-venv,python3-pip,rsync,openssh-server,procps,ca-certificates,iproute2 \
    bookworm "$dir" "$MIRROR" >"$RIG/dmac.debootstrap.log" 2>&1 || { tail -20 "$RIG/dmac.debootstrap.log" >&2; exit 1; }
  chroot "$dir" useradd -m -u 501 -s /bin/zsh me
  printf '\nSetEnv PATH=/usr/bin:/bin:/usr/sbin:/sbin\nPasswordAuthentication no\n' >>"$dir/etc/ssh/sshd_config"
  : >"$dir/home/me/.zshrc"
  chroot "$dir" chown me /home/me/.zshrc
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$dir/etc/pip.conf"
  rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
  tar -C "$dir" -cf "$RIG/dmac.tar.part" . && mv "$RIG/dmac.tar.part" "$RIG/dmac.tar"
  rm -rf "$dir"
fi
image="mm4-dask-node:$VERSION"
if ! "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
  "$DOCKER" image inspect mm4-dask-base >/dev/null 2>&1 || "$DOCKER" import "$RIG/dmac.tar" mm4-dask-base >/dev/null
  log "making $image (dask $VERSION in /home/me/dask)"
  "$DOCKER" rm -f mm4-dask-build >/dev/null 2>&1 || true
  "$DOCKER" run --name mm4-dask-build -u me -w /home/me mm4-dask-base sh -c \
    "python3 -m venv /home/me/dask && /home/me/dask/bin/pip install -q --disable-pip-version-check 'distributed==$VERSION' 'dask==$VERSION'" >&2
  "$DOCKER" commit mm4-dask-build "$image" >/dev/null
  "$DOCKER" rm -f mm4-dask-build >/dev/null
fi
"$DOCKER" network inspect "$NET" >/dev/null 2>&1 || { log "run tests/rig/pool.sh first (the LAN)"; exit 1; }

for n in 1 2; do
  name="mm4-dask-$n" ip="172.30.0.2$n" port="225$n"
  if [ "$("$DOCKER" inspect -f '{{.State.Running}} {{.Config.Image}}' "$name" 2>/dev/null)" != "true $image" ]; then
    "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    log "starting $name (mac-$n) at $ip, ssh 127.0.0.1:$port (user me, zsh)"
    "$DOCKER" run -d --init -u root -w / --name "$name" --hostname "mac-$n" --network "$NET" --ip "$ip" \
      -v "$RIG/id_ed25519.pub:/home/me/.ssh/authorized_keys:ro" -v "$HERE/caffeinate:/usr/bin/caffeinate:ro" \
      -p "127.0.0.1:$port:22" "$image" \
      bash -c 'mkdir -p /run/sshd && chown me /home/me /home/me/.ssh && chmod 700 /home/me/.ssh \
        && touch /var/log/caffeinate.log && chmod 666 /var/log/caffeinate.log && exec /usr/sbin/sshd -D -e 2>/var/log/sshd.log' >/dev/null
    source "$HERE/link.sh"
    shape_link "$name"
  fi
  # a core of its own, as two Minis do not share a CPU (else the native baseline's one Mini would
  # use the other's core too, and two runs at once would fight for the same two)
  if [ "$(nproc)" -ge 2 ]; then "$DOCKER" update --cpuset-cpus "$(( (n - 1) % $(nproc) ))" "$name" >/dev/null; fi
done
if [ ! -s "$TLS/client-key.pem" ]; then
  log "making the pool's certificates in $TLS (mm4watch pool certs)"
  rm -rf "$TLS"
  "$PY" -m mm4watch pool certs "$TLS" >/dev/null
fi
for n in 1 2; do  # the node's certificate in each Mini, the user's only
  "$DOCKER" exec "mm4-dask-$n" sh -c 'mkdir -p /home/me/tls && chown me /home/me/tls && chmod 700 /home/me/tls'
  for f in ca.pem node.pem node-key.pem; do "$DOCKER" cp "$TLS/$f" "mm4-dask-$n:/home/me/tls/$f"; done
  "$DOCKER" exec "mm4-dask-$n" sh -c 'chown me /home/me/tls/* && chmod 600 /home/me/tls/*'
done
if "$DOCKER" exec mm4-dask-1 pgrep -f 'dask scheduler' >/dev/null \
  && ! "$DOCKER" exec mm4-dask-1 pgrep -f 'dask scheduler.*--protocol tls' >/dev/null; then
  log "the scheduler runs without TLS: restarting the pool with it"
  for n in 1 2; do "$DOCKER" exec "mm4-dask-$n" pkill -f 'dask (scheduler|worker)' >/dev/null 2>&1 || true; done
  sleep 1
fi
if ! "$DOCKER" exec mm4-dask-1 pgrep -f 'dask scheduler' >/dev/null; then
  log "starting the scheduler on mac-1 ($SCHED)"
  "$DOCKER" exec -d -u me -w /home/me mm4-dask-1 sh -c \
    "exec /home/me/dask/bin/dask scheduler --protocol tls $NODE_TLS --host 172.30.0.21 --port 8786 \
      --dashboard-address :8787 >/home/me/dask-scheduler.log 2>&1"
  for _ in $(seq 120); do
    "$DOCKER" exec mm4-dask-1 grep -q 'Scheduler at' /home/me/dask-scheduler.log 2>/dev/null && break; sleep 0.25
  done
fi
for n in 1 2; do
  "$DOCKER" exec "mm4-dask-$n" pgrep -f "dask worker $SCHED " >/dev/null || worker "$n"  # (a worker of the pool without TLS is replaced)
done
cat >"$RIG/dask.env" <<ENV
DASK_SCHEDULER=$SCHED
DASK_DASHBOARD=http://172.30.0.21:8787/status
DASK_VERSION=$VERSION
DASK_NODE1=172.30.0.21
DASK_NODE2=172.30.0.22
DASK_USER=me
DASK_KEY=$RIG/id_ed25519
DASK_TLS_CA=$TLS/ca.pem
DASK_TLS_CERT=$TLS/client.pem
DASK_TLS_KEY=$TLS/client-key.pem
ENV
log "ready: dask $VERSION, scheduler $SCHED, workers mac-1 mac-2 (mps=1 each)"
