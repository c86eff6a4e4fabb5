#!/usr/bin/env bash
# What a `tc tbf` limit charges for headers: MIB MiB of bulk TCP (a Python
# socket pair) from one network namespace to another across a veth with
# the tbf the namespace tests use (tests/common/fleet.rs), then the bytes
# the qdisc charged (`tc -s qdisc`) and the veth's own counter (`ip -s
# link`), each as a multiple of the payload. The simulator's
# `wire_overhead` (simulator/README.md, "Framing on the wire") is the
# first figure less one. Needs root (namespaces).
#
#   scripts/bench-framing.sh [MIB] [RATE]      # 20 MiB, 20mbit
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "bench-framing: needs root (network namespaces)" >&2; exit 1; }
mib=${1:-20}
rate=${2:-20mbit}
a=pfa$$ b=pfb$$
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add va netns "$a" type veth peer name vb netns "$b"
ip -n "$a" addr add 10.199.0.1/24 dev va
ip -n "$b" addr add 10.199.0.2/24 dev vb
ip -n "$a" link set va up
ip -n "$b" link set vb up
ip netns exec "$a" tc qdisc replace dev va root tbf rate "$rate" burst 32kb latency 400ms

# The receiver binds before it tells the sender to start (a line on stdout).
ready=$(mktemp -u)
mkfifo "$ready"
ip netns exec "$b" python3 -c '
import socket, sys
s = socket.socket(); s.bind(("10.199.0.2", 9000)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
print(n, flush=True)
' > "$ready" &
exec 3< "$ready"
rm "$ready"
read -r _ <&3
ip netns exec "$a" python3 -c "
import socket
s = socket.create_connection(('10.199.0.2', 9000)); d = b'x' * (1 << 20)
for _ in range($mib): s.sendall(d)
s.close()
"
read -r got <&3
wait
sent=$((mib << 20))
[[ $got -eq $sent ]] || { echo "bench-framing: received $got of $sent bytes" >&2; exit 1; }
qdisc=$(ip netns exec "$a" tc -s qdisc show dev va | awk '/Sent/ {print $2; exit}')
veth=$(ip -n "$a" -s link show va | awk '/TX:/ {getline; print $1; exit}')
awk -v p="$sent" -v q="$qdisc" -v v="$veth" -v r="$rate" 'BEGIN {
  printf "payload %d B over tbf %s: the qdisc charged %d B (%.4f x), the veth counted %d B (%.4f x)\n", p, r, q, q / p, v, v / p
}'
