#!/usr/bin/env bash
# Testbed: N devices as separate processes on separate network stacks. Each device has its own
# network namespace and one port on a bridge (the switch of a LAN); the kernel shapes both
# directions of every port with tbf at RATE. `edgeband worker` runs in each secondary's
# namespace, `edgeband infer` in the host's. What loopback runs cannot show: the kernel's own
# TCP, queueing and pacing instead of edgeband's userspace link emulation (`--link`).
#
# It runs the same inference in rounds, each round twice:
#   kernel:    infer --link measure across the namespaces (tbf shapes; edgeband emulates nothing)
#   emulated:  infer --link RATE,DELAY on loopback (edgeband emulates the link the kernel run
#              measured: TCP's goodput, half the round trip)
# Both plan from one profile of this machine (`edgeband profile`, dilated like the devices).
# and prints both lines per round, so edgeband's emulator can be checked against the kernel's.
# Needs root (ip netns, tc). This kernel has no netem: the kernel links have a rate, no delay.
#
# usage: tests/testbed_netns.sh [-b BIN] [-r RATE] [-n DEVICES] [-m MODEL] [-s SCHEME]
#                               [-k ROUNDS] [-d DILATE] [-c] [-- extra infer flags]
#   defaults: build/edgeband, 100mbit, 3, vgg16:112, halp, 2 rounds, no dilation
#   -c: check that every link measured 80-105% of RATE (TCP/IP headers take ~4%); exit 1 if not
#   e.g. tests/testbed_netns.sh -m vgg16 -d 9 -r 100mbit -- --runs 5
set -euo pipefail
bin=build/edgeband rate=100mbit devices=3 model=vgg16:112 scheme=halp rounds=2 dilate=1 check=0
while getopts "b:r:n:m:s:k:d:ch" o; do
  case $o in
    b) bin=$OPTARG ;; r) rate=$OPTARG ;; n) devices=$OPTARG ;; m) model=$OPTARG ;;
    s) scheme=$OPTARG ;; k) rounds=$OPTARG ;; d) dilate=$OPTARG ;; c) check=1 ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
extra=("$@")
[ "$(id -u)" -eq 0 ] || { echo "testbed_netns: needs root (ip netns, tc)" >&2; exit 1; }
bin=$(realpath "$bin")
[ -x "$bin" ] || { echo "testbed_netns: no edgeband binary at $bin" >&2; exit 1; }
[[ $devices =~ ^[2-9]$ ]] || { echo "testbed_netns: -n must be 2..9" >&2; exit 1; }

tag=ebtb$$  # namespaces and files of this run
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for i in $(seq 0 $((devices - 1))); do ip netns del "$tag-$i" 2>/dev/null || true; done
  ip netns del "$tag-sw" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Dilated devices take turns on this machine's CPUs (see README, Slow-device emulation).
dev_flags=(--threads 1)
if [ "$dilate" != 1 ]; then dev_flags+=(--dilate "$dilate" --dilate-lock "$work/turns"); fi

# The switch: a bridge in its own namespace; device i is 10.77.0.(i+1) behind port p$i.
ip netns add "$tag-sw"
ip -n "$tag-sw" link add br0 type bridge
ip -n "$tag-sw" link set br0 up
for i in $(seq 0 $((devices - 1))); do
  ns=$tag-$i
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$tag-sw"
  ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$tag-sw" link set "p$i" master br0
  ip -n "$tag-sw" link set "p$i" up
  # Uplink (device -> switch) and downlink (switch -> device), each a token bucket at the rate.
  # A burst of 64 KiB takes whole GSO segments of the veth; queueing is bounded at 50 ms.
  tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 50ms
  tc -n "$tag-sw" qdisc add dev "p$i" root tbf rate "$rate" burst 64kb latency 50ms
done

# Starts a worker and waits for its "listening" line; prints its address.
start_worker() {  # NS_OR_EMPTY LISTEN LOG
  local log=$3 in_ns=()
  [ -z "$1" ] || in_ns=(ip netns exec "$1")
  "${in_ns[@]}" "$bin" worker --listen "$2" "${key_flags[@]}" "${dev_flags[@]}" >/dev/null 2>"$log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    grep -q "listening on port" "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "testbed_netns: worker on $2 did not start:" >&2
  cat "$log" >&2
  exit 1
}

# Workers on the namespaces' addresses need a key (without one a worker listens on loopback
# only): one pre-shared key for every device, and the same on loopback so both runs pay for
# the encryption alike.
"$bin" keygen --psk -o "$work/psk" >/dev/null
key_flags=(--secret-file "$work/psk")

# One profile for every device and both runs, so that both plan from the same costs.
prof_flags=(--threads 1)
[ "$dilate" = 1 ] || prof_flags+=(--dilate "$dilate")
"$bin" profile --model "$model" "${prof_flags[@]}" -o "$work/device.json" >/dev/null
profiles=$work/device.json
for _ in $(seq 2 "$devices"); do profiles+=",$work/device.json"; done

kernel_workers="" loop_workers=""
for i in $(seq 1 $((devices - 1))); do
  start_worker "$tag-$i" "10.77.0.$((i + 1)):7070" "$work/kw$i.log"
  kernel_workers+="${kernel_workers:+,}10.77.0.$((i + 1)):7070"
  start_worker "" "127.0.0.1:0" "$work/lw$i.log"
  port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/lw$i.log")
  loop_workers+="${loop_workers:+,}127.0.0.1:$port"
done

echo "testbed: $devices devices, $model, scheme $scheme, kernel links tbf $rate (no delay),"
echo "         dilation $dilate, infer flags: ${extra[*]:-none}"
for r in $(seq 1 "$rounds"); do
  out=$(ip netns exec "$tag-0" "$bin" infer --model "$model" --workers "$kernel_workers" \
    --scheme "$scheme" --link measure --devices "$profiles" "${key_flags[@]}" "${dev_flags[@]}" "${extra[@]}")
  echo "round $r, kernel-shaped:"
  grep -E "^(link to|planning for|model|fault)" <<<"$out" | sed 's/^/  /'
  if [ "$check" = 1 ]; then
    want=$(awk -v r="$rate" 'BEGIN { v = r + 0; u = substr(r, length(v "") + 1);
      print v * (u == "gbit" ? 1000 : u == "kbit" ? 0.001 : 1) }')
    got=$(sed -n 's/^link to [^ ]*: \([0-9.]*\) Mbit\/s.*/\1/p' <<<"$out")
    [ "$(wc -l <<<"$got")" -eq $((devices - 1)) ] || { echo "FAIL: not every link measured"; exit 1; }
    for m in $got; do
      # Dilated devices pay F x the frame checksum on both ends of the probe (an emulated board
      # is slower at it too): the rate a board reaches is below the wire's, by ~10% at F = 4.
      awk -v m="$m" -v w="$want" 'BEGIN { exit !(m >= 0.7 * w && m <= 1.05 * w) }' ||
        { echo "FAIL: measured $m Mbit/s on a $rate link"; exit 1; }
    done
    echo "  check: every link measured within 70-105% of $want Mbit/s"
  fi
  # Emulate the link the kernel testbed measured (TCP's goodput, half the slowest round trip),
  # so that both runs follow the same plan.
  link=$(sed -n 's/^planning for link \([0-9.]*mbit,[0-9.]*ms\).*/\1/p' <<<"$out")
  out=$("$bin" infer --model "$model" --workers "$loop_workers" --scheme "$scheme" \
    --link "$link" --devices "$profiles" "${key_flags[@]}" "${dev_flags[@]}" "${extra[@]}")
  echo "round $r, emulated on loopback (--link $link):"
  grep -E "^(model|fault)" <<<"$out" | sed 's/^/  /'
done
