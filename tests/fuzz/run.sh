#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS (default 20),
# seeded with tests/fuzz/seeds/TARGET/ and files the project can make itself (synthetic .ebw,
# ../shared models when present), with tests/fuzz/dict/TARGET.dict where the format has
# keywords. Prints executions per target; exits non-zero on any crash or sanitizer report (the
# crashing input is left in tests/fuzz/regressions/, which the unit tests replay once fixed).
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
# A campaign: FUZZ_RUNS=10000000 tests/fuzz/run.sh 7200 frame  (stops at N executions, or after
# SECONDS at the latest). FUZZ_MAX_LEN=65536 bounds the inputs (default 4 MB): the importer then
# mutates the small seed models and the head of the large ones at ~5,000 executions/s instead
# of ~200 (each execution parsed a whole 2 MB model, and libFuzzer hashed it). FUZZ_LEAKS=0 skips
# LeakSanitizer's scan after each input, ~55% of fuzz_handshake's time (each input is a live TCP
# session): for long campaigns; the smoke run and the unit tests under ASan keep leak checks.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
shift || true
targets=()
for t in "$@"; do [[ " ${targets[*]} " == *" $t "* ]] || targets+=("$t"); done  # each once
[ ${#targets[@]} -gt 0 ] || targets=(import weights frame handshake image json trace profile labels hello reply)
parallel=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
[[ $parallel =~ ^[1-9][0-9]*$ ]] || { echo "FUZZ_JOBS must be a positive integer, not '$parallel'" >&2; exit 2; }
build=build-fuzz
cmake -S . -B $build -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEDGEBAND_FUZZ=ON -DEDGEBAND_SANITIZE=address,undefined -DEDGEBAND_STATIC=OFF -DEDGEBAND_TESTS=OFF \
  -DEDGEBAND_WERROR=ON >/dev/null
cmake --build $build -j2 --target edgeband $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null
# Corpora persist under $build/corpus, so that a campaign run in several sittings goes on
# where it stopped; logs go to a temporary directory.
work=$build/corpus
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
mkdir -p "$work"/{import,weights,frame,handshake,reply}
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  [ -d tests/fuzz/seeds/$t ] && cp tests/fuzz/seeds/$t/* "$work/$t/"
done
# Seeds.
./$build/edgeband export --model mobilenet_v1:0.25:32 -o "$work/weights/m.ebw" >/dev/null
if [ -d ../shared/weights ]; then
  { printf '\0'; cat ../shared/weights/coral/mobilenet_v1_0.25_128_quant.tflite; } >"$work/import/tflite"
  { printf '\1'; cat ../shared/weights/tfslim/mobilenet_v1_0.25_224_frozen.pb; } >"$work/import/pb"
else
  echo "note: ../shared missing; the import fuzzer starts without real model seeds"
fi
printf '\2\x08\x08' >"$work/import/onnx"
# Frame headers carry the protocol version (kProtocolVersion, 7) after the magic.
printf 'EBND\7\0\4\0' >"$work/frame/seed"
# A ROWS frame (checksum left zero: the target goes on past it) of zero-elided fp32: two mask
# words (bit 0 set) and one value, for row 0 of node 0 (16x16x8) of the target's model.
zrows='{"image":1,"node":0,"row0":0,"rows":1,"wire":"fp32z"}'
{ printf 'EBND\7\0\5\0\0\0\0\0\0\0\0\0'; printf "\\x$(printf %02x ${#zrows})\0\0\0\0\0\0\0";
  printf '\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'; printf '%s' "$zrows";
  printf '\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x80\x3f'; } >"$work/frame/rows_fp32z"
# The input's row 0 (32x3) as palettes: 3 channels of one value each (1.0), then 32 x 3 indices.
prows='{"image":1,"node":-1,"row0":0,"rows":1,"wire":"fp32p"}'
{ printf 'EBND\7\0\5\0\0\0\0\0\0\0\0\0'; printf "\\x$(printf %02x ${#prows})\0\0\0\0\0\0\0";
  printf '\x74\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'; printf '%s' "$prows"; printf '\3\0';
  for c in 0 1 2; do printf '\1\0\0\0\x80\x3f'; done; head -c 96 /dev/zero; } >"$work/frame/rows_fp32p"
# A worker's reply: the same rows with spans and peak memory riding on them.
rrows='{"image":1,"node":0,"row0":0,"rows":1,"wire":"fp32z","spans":[[0,0,5,9]],"peak_rss_kb":4096}'
{ printf 'EBND\7\0\5\0\0\0\0\0\0\0\0\0'; printf "\\x$(printf %02x ${#rrows})\0\0\0\0\0\0\0";
  printf '\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'; printf '%s' "$rrows";
  printf '\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x80\x3f'; } >"$work/reply/rows"
cp "$work/frame/seed" "$work/reply/header"
# Handshake scripts: a correct handshake, then a signed PLAN and ROWS with plausible JSON.
plan='{"device":1,"plan":{"scheme":"halp","devices":2,"tail_first":28,"edge_first":false,"blocks":[],"transfers":[]}}'
rows='{"image":1,"node":-1,"row0":0,"rows":1,"wire":"fp32"}'
le16() { printf '\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8)); }
printf '\3' >"$work/handshake/hello"
{ printf '\3\2\4'; printf "$(le16 ${#plan})"; printf '%s' "$plan"; printf '\0\0';
  printf '\2\5'; printf "$(le16 ${#rows})"; printf '%s' "$rows"; printf '\0\0'; } >"$work/handshake/plan"
runs_flag=(); [ -n "${FUZZ_RUNS:-}" ] && runs_flag=(-runs="$FUZZ_RUNS")
# FUZZ_JOBS targets at a time (default: one per core; fuzz_handshake's worker threads mostly
# wait on its sockets). Each writes its summary to $logs/TARGET.out, printed in order at the
# end; its exit status says whether it failed.
fuzz_one() {
  local t=$1 log="$logs/$1.log" t0 runs cov slow dict
  t0=$(date +%s)
  dict=(); [ -f tests/fuzz/dict/$t.dict ] && dict=(-dict=tests/fuzz/dict/$t.dict)
  if ASAN_OPTIONS=detect_leaks=${FUZZ_LEAKS:-1} ./$build/fuzz_$t "$work/$t" "${dict[@]}" -max_total_time="$secs" \
      "${runs_flag[@]}" -max_len="${FUZZ_MAX_LEN:-4000000}" -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix=tests/fuzz/regressions/${t}- >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    slow=$(grep -c 'slow-unit-' "$log" || true)
    echo "fuzz_$t: ${runs} executions in $(( $(date +%s) - t0 ))s, ${cov}, 0 crashes" \
         "$([ "$slow" -gt 0 ] && echo "($slow inputs over 10 s, in tests/fuzz/regressions/: replay them; a busy or paused machine makes these too)")"
  else
    echo "fuzz_$t: FAILED"
    tail -40 "$log"
    return 1
  fi
}
pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  fuzz_one "$t" >"$logs/$t.out" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  wait "${pids[$i]}" || status=1  # a job's status is kept after `wait -n` reaped it
  cat "$logs/${targets[$i]}.out"
done
exit $status
