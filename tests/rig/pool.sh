#!/usr/bin/env bash
# A pool of two fake Minis for the Swarm executor: each its own Docker engine in
# its own container, on a LAN of fixed addresses (172.30.0.0/24), each reached
# over SSH on its own 127.0.0.1 port and at its LAN address, links shaped to
# 1 Gbit/s; one swarm (fake-mini-1 manager, fake-mini-2 worker) and a registry
# on the first (Debian's docker-registry, no auth, LAN only). Needs up.sh first
# (the engine here, the node image, the key, python:3.11-slim). Idempotent.
# Writes $RIG/pool.env.
set -euo pipefail
RIG=${MM4_RIG_DIR:-/var/lib/mm4watch-rig}
DOCKER=/usr/bin/docker
NET=mm4-lan
SUBNET=172.30.0.0/24
REGISTRY=172.30.0.11:5000
log() { printf '[pool] %s\n' "$*" >&2; }
source "$(dirname "$0")/link.sh"
[ -s "$RIG/rig.env" ] || { log "run tests/rig/up.sh first"; exit 1; }

# the node image: the fake Mini's, plus Debian's registry
if ! "$DOCKER" image inspect mm4-pool-node >/dev/null 2>&1; then
  log "making mm4-pool-node (mm4-fake-mini + docker-registry)"
  "$DOCKER" rm -f mm4-pool-build >/dev/null 2>&1 || true
  "$DOCKER" run --name mm4-pool-build mm4-fake-mini bash -c \
    'apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry >/dev/null && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb' >&2
  "$DOCKER" commit mm4-pool-build mm4-pool-node >/dev/null
  "$DOCKER" rm -f mm4-pool-build >/dev/null
fi

"$DOCKER" network inspect "$NET" >/dev/null 2>&1 || "$DOCKER" network create --subnet "$SUBNET" "$NET" >/dev/null

node() {  # node N: start fake-mini-N at 172.30.0.1N, sshd on 127.0.0.1:223N
  local n=$1 name="mm4-pool-$1" ip="172.30.0.1$1" port="223$1"
  if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != "true" ]; then
    "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    log "starting $name (fake-mini-$n) at $ip, ssh 127.0.0.1:$port"
    # insecure-registries must be in daemon.json before dockerd starts: a running dockerd does not reread it
    "$DOCKER" run -d --init --name "$name" --hostname "fake-mini-$n" --network "$NET" --ip "$ip" \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup \
      -v "$name-docker:/var/lib/docker" -v "$RIG/id_ed25519.pub:/root/.ssh/authorized_keys:ro" \
      -p "127.0.0.1:$port:22" mm4-pool-node \
      bash -c "mkdir -p /run/sshd /etc/docker && echo '{\"insecure-registries\": [\"$REGISTRY\"]}' >/etc/docker/daemon.json \
        && /usr/sbin/sshd && exec dockerd >/var/log/dockerd.log 2>&1" >/dev/null
  fi
  local ssh=(ssh -i "$RIG/id_ed25519" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1)
  for _ in $(seq 120); do "${ssh[@]}" docker info >/dev/null 2>&1 && break; sleep 0.5; done
  "${ssh[@]}" docker info >/dev/null 2>&1 || { log "$name's engine does not answer over SSH"; "$DOCKER" logs "$name" | tail -20 >&2; exit 1; }
  if ! "${ssh[@]}" docker image inspect python:3.11-slim >/dev/null 2>&1; then
    log "loading python:3.11-slim into $name"
    "$DOCKER" save python:3.11-slim | "${ssh[@]}" docker load >/dev/null
  fi
  shape_link "$name"
}
node 1
node 2
on() { local n=$1; shift; ssh -i "$RIG/id_ed25519" -p "223$n" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 "$@"; }

# the registry on fake-mini-1: Debian's package demands htpasswd auth by default; a LAN test registry has none
if ! on 1 'curl -sf http://127.0.0.1:5000/v2/ >/dev/null 2>&1 || python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5000/v2/\")" 2>/dev/null'; then
  log "starting the registry on fake-mini-1 ($REGISTRY)"
  on 1 'mkdir -p /var/lib/mm4-registry && printf "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/mm4-registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n" >/etc/mm4-registry.yml \
    && (setsid docker-registry serve /etc/mm4-registry.yml >/var/log/registry.log 2>&1 </dev/null &)'
  for _ in $(seq 40); do on 1 'python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5000/v2/\")"' 2>/dev/null && break; sleep 0.25; done
fi

# one swarm: fake-mini-1 manager, fake-mini-2 worker
if [ "$(on 1 docker info -f '{{.Swarm.LocalNodeState}}')" != "active" ]; then
  log "docker swarm init on fake-mini-1"
  on 1 docker swarm init --advertise-addr 172.30.0.11 >/dev/null
fi
if [ "$(on 2 docker info -f '{{.Swarm.LocalNodeState}}')" != "active" ]; then
  log "fake-mini-2 joins the swarm"
  token=$(on 1 docker swarm join-token -q worker)
  on 2 docker swarm join --token "$token" 172.30.0.11:2377 >/dev/null
fi
for _ in $(seq 60); do
  [ "$(on 1 "docker node ls -f role=worker --format '{{.Status}}'" | grep -c Ready)" -ge 1 ] && break; sleep 0.5
done

# a suite killed part-way leaves its runs: services and their containers on the nodes hold reservations
# (Swarm then places every new run on the other node); nothing runs when the rig comes up
on 1 "docker service ls -q --filter name=mm4-run- | xargs -r docker service rm >/dev/null"
for n in 1 2; do on "$n" "docker ps -aq --filter name=mm4-run- | xargs -r docker rm -f >/dev/null"; done

cat >"$RIG/pool.env" <<ENV
POOL_MANAGER=ssh://root@127.0.0.1:2231
POOL_NODE1=fake-mini-1
POOL_NODE1_PORT=2231
POOL_NODE2=fake-mini-2
POOL_NODE2_PORT=2232
POOL_REGISTRY=$REGISTRY
POOL_KEY=$RIG/id_ed25519
ENV
log "ready: $(on 1 "docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}}'" | tr '\n' ';')"
