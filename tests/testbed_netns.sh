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
#   -r R1,R2,...: one rate per worker (the host's port gets the fastest), a heterogeneous LAN
#   -d F0,F1,...: one dilation per device (the host first): boards of different speeds
#   -c: check that every link measured 70-100% of its rate; exit 1 if not
#   e.g. tests/testbed_netns.sh -m vgg16 -d 9 -r 100mbit -- --runs 5
#        tests/testbed_netns.sh -m vgg16:64 -n 3 -r 100mbit,50mbit -d 4,8,4 -c
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
mbit_of() {  # RATE (tc's spelling: 100mbit, 1gbit, 500kbit) in Mbit/s
  awk -v r="$1" 'BEGIN { v = r + 0; u = substr(r, length(v "") + 1);
    print v * (u == "gbit" ? 1000 : u == "kbit" ? 0.001 : 1) }'
}
# Per-port rates (index 0: the host's, the fastest of the workers') and per-device dilations.
IFS=, read -r -a rate_list <<<"$rate"
IFS=, read -r -a dilate_list <<<"$dilate"
if [ "${#rate_list[@]}" -eq $((devices - 1)) ] && [ "$devices" -gt 2 ]; then
  fastest=${rate_list[0]}
  for r in "${rate_list[@]}"; do
    awk -v a="$(mbit_of "$r")" -v b="$(mbit_of "$fastest")" 'BEGIN { exit !(a > b) }' && fastest=$r
  done
  rate_list=("$fastest" "${rate_list[@]}")
elif [ "${#rate_list[@]}" -eq 1 ]; then
  for _ in $(seq 2 "$devices"); do rate_list+=("$rate"); done
else
  echo "testbed_netns: -r: give one rate, or one per worker ($((devices - 1)))" >&2; exit 1
fi
if [ "${#dilate_list[@]}" -eq 1 ]; then
  for _ in $(seq 2 "$devices"); do dilate_list+=("$dilate"); done
elif [ "${#dilate_list[@]}" -ne "$devices" ]; then
  echo "testbed_netns: -d: give one factor, or one per device ($devices)" >&2; exit 1
fi

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

# Dilated devices take turns on this machine's CPUs while their sections fill at most half a
# core, as `cluster` does (docs/DESIGN.md, Turns); side by side otherwise.
turns=$(printf '%s\n' "${dilate_list[@]}" | awk '{ s += 1 / $1 } END { print (s <= 0.5) }')
dev_flags() {  # DEVICE: its flags
  local f=(--threads 1)
  [ "${dilate_list[$1]}" = 1 ] || f+=(--dilate "${dilate_list[$1]}")
  [ "${dilate_list[$1]}" = 1 ] || [ "$turns" = 0 ] || f+=(--dilate-lock "$work/turns")
  echo "${f[@]}"
}

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
  tc -n "$ns" qdisc add dev eth0 root tbf rate "${rate_list[$i]}" burst 64kb latency 50ms
  tc -n "$tag-sw" qdisc add dev "p$i" root tbf rate "${rate_list[$i]}" burst 64kb latency 50ms
done

# Starts a worker and waits for its "listening" line; prints its address.
start_worker() {  # NS_OR_EMPTY LISTEN LOG DEVICE
  local log=$3 in_ns=()
  [ -z "$1" ] || in_ns=(ip netns exec "$1")
  # shellcheck disable=SC2046
  "${in_ns[@]}" "$bin" worker --listen "$2" "${key_flags[@]}" $(dev_flags "$4") >/dev/null 2>"$log" &
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
# One profile per distinct dilation, measured at it.
profiles=""
for i in $(seq 0 $((devices - 1))); do
  f=${dilate_list[$i]} prof=$work/device-${dilate_list[$i]}.json
  prof_flags=(--threads 1)
  [ "$f" = 1 ] || prof_flags+=(--dilate "$f")
  [ -f "$prof" ] || "$bin" profile --model "$model" "${prof_flags[@]}" -o "$prof" >/dev/null
  profiles+="${profiles:+,}$prof"
done

kernel_workers="" loop_workers=""
for i in $(seq 1 $((devices - 1))); do
  start_worker "$tag-$i" "10.77.0.$((i + 1)):7070" "$work/kw$i.log" "$i"
  kernel_workers+="${kernel_workers:+,}10.77.0.$((i + 1)):7070"
  start_worker "" "127.0.0.1:0" "$work/lw$i.log" "$i"
  port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/lw$i.log")
  loop_workers+="${loop_workers:+,}127.0.0.1:$port"
done

# -c: the output equals the local one, and on a heterogeneous cluster a worker with a slower
# link or a slower board than the best worker (fastest link and board at once) gets no larger
# a share of the rows than it (the planner's tests check "smaller" on fixed profiles; here the
# plan follows measured link rates, which differ by a few percent between equal links).
check_shares() {  # INFER_OUTPUT
  local shares best="" i
  shares=($(sed -n 's/^rows per device[^:]*: //p' <<<"$1" | tr ',' '\n' | sed 's/.* \([0-9]*\)%$/\1/'))
  grep -q "^output equals local: yes" <<<"$1" || { echo "FAIL: the output differs from local"; exit 1; }
  [ "${#shares[@]}" -eq "$devices" ] || { echo "FAIL: no rows-per-device line"; exit 1; }
  for i in $(seq 1 $((devices - 1))); do
    [ "${rate_list[$i]}" = "${rate_list[0]}" ] && [ "${dilate_list[$i]}" = "${dilate_list[0]}" ] && best=$i
  done
  [ -n "$best" ] || return 0
  for i in $(seq 1 $((devices - 1))); do
    [ "${rate_list[$i]}" = "${rate_list[0]}" ] && [ "${dilate_list[$i]}" = "${dilate_list[0]}" ] && continue
    [ "${shares[$i]}" -le "${shares[$best]}" ] ||
      { echo "FAIL: worker $i (rate ${rate_list[$i]}, dilation ${dilate_list[$i]}) got ${shares[$i]}% of the rows, more than worker $best's ${shares[$best]}%"; exit 1; }
    echo "  check: worker $i (rate ${rate_list[$i]}, dilation ${dilate_list[$i]}) got ${shares[$i]}% of the rows, worker $best ${shares[$best]}%"
  done
}

echo "testbed: $devices devices, $model, scheme $scheme, kernel links tbf $rate (no delay),"
echo "         dilation $dilate, infer flags: ${extra[*]:-none}"
read -r -a host_flags <<<"$(dev_flags 0)"
for r in $(seq 1 "$rounds"); do
  out=$(ip netns exec "$tag-0" "$bin" infer --model "$model" --workers "$kernel_workers" \
    --scheme "$scheme" --link measure --devices "$profiles" "${key_flags[@]}" "${host_flags[@]}" "${extra[@]}")
  echo "round $r, kernel-shaped:"
  grep -E "^(link to|planning for|model|rows per device|fault)" <<<"$out" | sed 's/^/  /'
  if [ "$check" = 1 ]; then
    check_shares "$out"
    got=($(sed -n 's/^link to [^ ]*: \([0-9.]*\) Mbit\/s.*/\1/p' <<<"$out"))
    [ "${#got[@]}" -eq $((devices - 1)) ] || { echo "FAIL: not every link measured"; exit 1; }
    for i in $(seq 1 $((devices - 1))); do
      m=${got[$((i - 1))]} want=$(mbit_of "${rate_list[$i]}")
      # Dilated devices pay F x the frame checksum on both ends of the probe (an emulated board
      # is slower at it too): the rate a board reaches is below the wire's, by ~10% at F = 4.
      # TCP's goodput through tbf is at most ~96% of its rate (headers), so a reading above the
      # rate is the shaper's burst counted as rate (as single probes once read 109%).
      awk -v m="$m" -v w="$want" 'BEGIN { exit !(m >= 0.7 * w && m <= 1.0 * w) }' ||
        { echo "FAIL: measured $m Mbit/s on a ${rate_list[$i]} link"; exit 1; }
    done
    echo "  check: every link measured within 70-100% of its rate"
  fi
  # Emulate the links the kernel testbed measured (TCP's goodput, half the round trip, per
  # worker), so that both runs follow the same plan.
  link=$(sed -n 's/^planning for links \([^ ]*\) .*/\1/p' <<<"$out")
  out=$("$bin" infer --model "$model" --workers "$loop_workers" --scheme "$scheme" \
    --link "$link" --devices "$profiles" "${key_flags[@]}" "${host_flags[@]}" "${extra[@]}")
  echo "round $r, emulated on loopback (--link $link):"
  grep -E "^(model|rows per device|fault)" <<<"$out" | sed 's/^/  /'
done
