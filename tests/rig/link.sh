# shape_link CONTAINER: a gigabit link between this machine and the container, both directions
# (sourced by up.sh, mac.sh and pool.sh)
shape_link() {
  local name=$1 pid peer hostif
  pid=$(/usr/bin/docker inspect -f '{{.State.Pid}}' "$name")
  nsenter -t "$pid" -n tc qdisc replace dev eth0 root tbf rate 1gbit burst 256kb latency 5ms
  # the container's own sysfs names its peer (nsenter -n would still read this machine's /sys)
  peer=$(/usr/bin/docker exec "$name" cat /sys/class/net/eth0/iflink)
  hostif=$(ip -o link | awk -F': ' -v i="$peer" '$1 == i {print $2}' | cut -d@ -f1)
  if [ -n "$hostif" ]; then tc qdisc replace dev "$hostif" root tbf rate 1gbit burst 256kb latency 5ms; fi
}
