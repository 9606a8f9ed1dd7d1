#!/usr/bin/env bash
# Two Minis with a Mac's Docker as a non-root account meets it, for the docker executor: each a
# Docker-in-Docker engine run as root with its socket handed to the account `me` (uid 501, login
# shell zsh, sshd's minimal PATH /usr/bin:/bin:/usr/sbin:/sbin, no docker CLI on it), on the
# pool's LAN, reached over SSH. The CLI is Debian's docker-cli 26 (trixie), the plugin Debian's
# docker-buildx 0.13.
#   mm4-mac-desktop (ssh 127.0.0.1:2261, 172.30.0.31): Docker Desktop. Socket
#     ~/.docker/run/docker.sock (no /var/run/docker.sock); CLI and docker-credential-desktop in
#     /usr/local/bin; buildx linked into ~/.docker/cli-plugins from the app's folder;
#     ~/.docker/config.json with "credsStore": "desktop", whose helper fails as it does from an
#     ssh session (tests/rig/docker-credential-desktop); context desktop-linux. No base image:
#     python:3.11-slim comes from a registry that challenges as Docker Hub does
#     (tests/rig/hubproxy.py on fake-mini-1 at 172.30.0.11:5001, the engine's registry mirror).
#   mm4-mac-colima (ssh 127.0.0.1:2262, 172.30.0.32): colima with Homebrew's docker. Socket
#     ~/.colima/default/docker.sock; CLI in /opt/homebrew/bin; `brew install docker-buildx` done
#     but not linked (the plugin in /opt/homebrew/lib/docker/cli-plugins, which the CLI does not
#     search); a second CLI at /opt/nobuildx/bin/docker with no plugin anywhere (docker_cli =
#     that path: a Mac where docker-buildx was never installed). python:3.11-slim loaded.
# Needs up.sh and pool.sh first (the node image, the key, the LAN and its registry). Idempotent.
# Writes $RIG/macdocker.env.
set -euo pipefail
RIG=${MM4_RIG_DIR:-/var/lib/mm4watch-rig}
MIRROR=${MM4_RIG_MIRROR:-http://deb.debian.org/debian}
DOCKER=/usr/bin/docker
HERE=$(cd "$(dirname "$0")" && pwd)
NET=mm4-lan
HUB=172.30.0.11:5001
CLI_DEB=pool/main/d/docker.io/docker-cli_26.1.5+dfsg1-9+deb13u1+b1_amd64.deb
BUILDX_DEB=pool/main/d/docker-buildx/docker-buildx_0.13.1+ds1-3_amd64.deb
IMAGE=mm4-mac-docker
log() { printf '[macdocker] %s\n' "$*" >&2; }
source "$HERE/link.sh"
[ -s "$RIG/pool.env" ] || { log "run tests/rig/up.sh first"; exit 1; }
on_node1() { ssh -i "$RIG/id_ed25519" -p 2231 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 "$@"; }

# the image: the fake Mini's (an engine 20.10, sshd) with zsh, the account, docker-cli 26 and buildx
if ! "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  mkdir -p "$RIG/debs"
  for deb in "$CLI_DEB" "$BUILDX_DEB"; do
    [ -s "$RIG/debs/$(basename "$deb")" ] || curl -sSf -o "$RIG/debs/$(basename "$deb")" "$MIRROR/$deb"
  done
  log "making $IMAGE (mm4-fake-mini + zsh, user me, docker-cli 26, docker-buildx)"
  "$DOCKER" rm -f mm4-mac-docker-build >/dev/null 2>&1 || true
  "$DOCKER" run --name mm4-mac-docker-build -v "$RIG/debs:/debs:ro" mm4-fake-mini bash -c '
    set -e
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends zsh >/dev/null
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
    mkdir -p /tmp/x && for d in /debs/*.deb; do dpkg-deb -x "$d" /tmp/x; done
    install -D -m 755 /tmp/x/usr/bin/docker /opt/docker-cli/docker
    install -D -m 755 /tmp/x/usr/libexec/docker/cli-plugins/docker-buildx /opt/docker-cli/docker-buildx
    rm -rf /tmp/x /usr/bin/docker   # no docker on the PATH an ssh command gets
    useradd -m -u 501 -s /bin/zsh me && : >/home/me/.zshrc && chown me /home/me/.zshrc
    printf "\nSetEnv PATH=/usr/bin:/bin:/usr/sbin:/sbin\nPasswordAuthentication no\n" >>/etc/ssh/sshd_config' >&2
  "$DOCKER" commit mm4-mac-docker-build "$IMAGE" >/dev/null
  "$DOCKER" rm -f mm4-mac-docker-build >/dev/null
fi

# Docker Hub's manners (TLS, a Bearer challenge, anonymous tokens) in front of the pool's registry
[ -s "$RIG/hub.crt" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=mm4-rig-hub \
  -addext "subjectAltName=IP:${HUB%:*}" -keyout "$RIG/hub.key" -out "$RIG/hub.crt" 2>/dev/null
hub_up() { on_node1 "python3 -c 'import ssl, urllib.request; urllib.request.urlopen(\"https://127.0.0.1:5001/token\", context=ssl._create_unverified_context())'" >/dev/null 2>&1; }
if ! hub_up; then
  log "starting the Hub-like registry on fake-mini-1 ($HUB)"
  for f in "$HERE/hubproxy.py" "$RIG/hub.crt" "$RIG/hub.key"; do "$DOCKER" cp "$f" "mm4-pool-1:/usr/local/lib/mm4-hub-$(basename "$f")"; done
  on_node1 '(setsid python3 /usr/local/lib/mm4-hub-hubproxy.py 5001 http://127.0.0.1:5000 /usr/local/lib/mm4-hub-hub.crt /usr/local/lib/mm4-hub-hub.key >/var/log/hubproxy.log 2>&1 </dev/null &)'
  for _ in $(seq 40); do hub_up && break; sleep 0.25; done
  hub_up || { log "the Hub-like registry did not start"; on_node1 tail /var/log/hubproxy.log >&2; exit 1; }
fi
if ! on_node1 "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5000/v2/library/python/manifests/3.11-slim\")'" >/dev/null 2>&1; then
  log "pushing python:3.11-slim to the registry as library/python:3.11-slim"
  on_node1 'docker tag python:3.11-slim 172.30.0.11:5000/library/python:3.11-slim && docker push -q 172.30.0.11:5000/library/python:3.11-slim >/dev/null'
fi

mini() {  # mini NAME IP PORT SOCKET DAEMON_JSON SETUP: start one, as root, then SETUP as root
  local name=$1 ip=$2 port=$3 sock=$4 daemon=$5 setup=$6
  if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != "true" ]; then
    "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true
    log "starting $name at $ip, ssh 127.0.0.1:$port (user me, zsh, socket $sock)"
    "$DOCKER" run -d --init --name "$name" --hostname "${name#mm4-}" --network "$NET" --ip "$ip" \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup -v "$name-docker:/var/lib/docker" \
      -v "$RIG/id_ed25519.pub:/home/me/.ssh/authorized_keys:ro" -v "$HERE/caffeinate:/usr/bin/caffeinate:ro" \
      --mount "type=bind,source=$RIG/hub.crt,target=/etc/docker/certs.d/$HUB/ca.crt,readonly" -p "127.0.0.1:$port:22" "$IMAGE" \
      bash -c "set -e; mkdir -p /run/sshd /etc/docker $(dirname "$sock") && chown me:me /home/me /home/me/.ssh && chmod 700 /home/me/.ssh \
        && chown -R me:me /home/me/$(echo "${sock#/home/me/}" | cut -d/ -f1) \
        && echo '$daemon' >/etc/docker/daemon.json && touch /var/log/caffeinate.log && chmod 666 /var/log/caffeinate.log \
        && $setup && /usr/sbin/sshd && exec dockerd -H unix://$sock --group me >/var/log/dockerd.log 2>&1" >/dev/null
  fi
  local ssh=(ssh -i "$RIG/id_ed25519" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR me@127.0.0.1)
  for _ in $(seq 120); do "${ssh[@]}" "/opt/docker-cli/docker -H unix://$sock info" >/dev/null 2>&1 && break; sleep 0.5; done
  "${ssh[@]}" "/opt/docker-cli/docker -H unix://$sock info" >/dev/null 2>&1 \
    || { log "$name's engine does not answer over SSH"; "$DOCKER" logs "$name" | tail -20 >&2; "$DOCKER" exec "$name" tail -20 /var/log/dockerd.log >&2; exit 1; }
  shape_link "$name"
}

DD_SOCK=/home/me/.docker/run/docker.sock
mini mm4-mac-desktop 172.30.0.31 2261 "$DD_SOCK" \
  "{\"registry-mirrors\": [\"https://$HUB\"], \"insecure-registries\": [\"$HUB\"]}" \
  "install -D -m 755 /opt/docker-cli/docker /usr/local/bin/docker \
   && install -D -m 755 /opt/docker-cli/docker-buildx /opt/Docker.app/Contents/Resources/cli-plugins/docker-buildx"
"$DOCKER" cp "$HERE/docker-credential-desktop" mm4-mac-desktop:/usr/local/bin/docker-credential-desktop
# what Docker Desktop writes into the account's ~/.docker: the plugin links, its context, credsStore
CONTEXT=/home/me/.docker/contexts/meta/fe9c6bd7a66301f49ca9b6a70b217107cd1284598bfc254700c989b916da791e
"$DOCKER" exec -i -u me mm4-mac-desktop sh -c "mkdir -p ~/.docker/cli-plugins $CONTEXT \
  && ln -sfn /opt/Docker.app/Contents/Resources/cli-plugins/docker-buildx ~/.docker/cli-plugins/docker-buildx \
  && cat >$CONTEXT/meta.json" <<JSON
{"Name":"desktop-linux","Metadata":{"Description":"Docker Desktop"},"Endpoints":{"docker":{"Host":"unix://$DD_SOCK","SkipTLSVerify":false}}}
JSON
"$DOCKER" exec -i -u me mm4-mac-desktop sh -c 'cat >~/.docker/config.json' <<JSON
{
  "auths": {},
  "credsStore": "desktop",
  "currentContext": "desktop-linux"
}
JSON

COLIMA_SOCK=/home/me/.colima/default/docker.sock
mini mm4-mac-colima 172.30.0.32 2262 "$COLIMA_SOCK" "{}" \
  "install -D -m 755 /opt/docker-cli/docker /opt/homebrew/Cellar/docker/26.1.5/bin/docker \
   && mkdir -p /opt/homebrew/bin /opt/homebrew/lib/docker/cli-plugins \
   && ln -sfn ../Cellar/docker/26.1.5/bin/docker /opt/homebrew/bin/docker \
   && install -D -m 755 /opt/docker-cli/docker-buildx /opt/homebrew/Cellar/docker-buildx/0.13.1/lib/docker/cli-plugins/docker-buildx \
   && ln -sfn ../../../Cellar/docker-buildx/0.13.1/lib/docker/cli-plugins/docker-buildx /opt/homebrew/lib/docker/cli-plugins/docker-buildx \
   && install -D -m 755 /opt/docker-cli/docker /opt/nobuildx/bin/docker \
   && chown -R me:me /home/me/.colima"
colima_ssh=(ssh -i "$RIG/id_ed25519" -p 2262 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR me@127.0.0.1)
if ! "${colima_ssh[@]}" "/opt/homebrew/bin/docker -H unix://$COLIMA_SOCK image inspect python:3.11-slim" >/dev/null 2>&1; then
  log "loading python:3.11-slim into mm4-mac-colima"
  "$DOCKER" save python:3.11-slim | "${colima_ssh[@]}" "/opt/homebrew/bin/docker -H unix://$COLIMA_SOCK load" >/dev/null
fi

cat >"$RIG/macdocker.env" <<ENV
DESKTOP_HOST=127.0.0.1
DESKTOP_PORT=2261
DESKTOP_SOCKET=$DD_SOCK
DESKTOP_CONTAINER=mm4-mac-desktop
COLIMA_HOST=127.0.0.1
COLIMA_PORT=2262
COLIMA_SOCKET=$COLIMA_SOCK
COLIMA_CONTAINER=mm4-mac-colima
MACDOCKER_USER=me
MACDOCKER_KEY=$RIG/id_ed25519
HUB_REGISTRY=$HUB
ENV
log "ready: mm4-mac-desktop (Docker Desktop-like) on 2261, mm4-mac-colima (colima-like) on 2262"
