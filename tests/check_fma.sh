#!/usr/bin/env bash
# FMA guard: disassembles the built SIMD kernel objects and fails unless every hot microkernel
# family (GEMM, GEMV, Winograd transforms, depthwise 3x3) contains fused multiply-adds of its
# table's vector width. The project compiles with -ffp-contract=off, so an FMA only exists where a
# kernel asks for it explicitly: a change that routes a kernel back through a plain a*b+c (as
# xsimd 8's generic avx512f fma does) turns every FMA into a multiply and an add, and this fails.
# The fp16 wire conversions are guarded the same way: hardware conversions (F16C, FCVTN/FCVTL),
# not the scalar twin's bit twiddling. So are the GEMM kernels that fetch the next weight slice
# while they compute (kernels/gemm.cpp, tile_prefetch): they must contain prefetch instructions.
# A requirement PATTERN@N needs at least N: max pooling keeps four channel chunks of a pixel in
# flight at once (pool_pixel), not one chain per chunk swept across the row (3x slower).
#
# Usage: tests/check_fma.sh OBJDUMP OBJECT...   (objects named avx2*.o, avx512*.o, neon*.o)
set -euo pipefail
objdump=$1; shift
fail=0; checked=0
for obj in "$@"; do
  base=$(basename "$obj")
  # family (a regex over the function names, inlined helpers included)=required instruction
  # pattern[@least] (GEMM and the Winograd transforms at the table's full width, the transforms'
  # leftover channels and the bandwidth-bound kernels at the table's SmallArch, 8 floats on x86).
  case "$base" in
    avx512*) req="gemm_ukernel=vfmadd[0-9]*ps.*zmm gemv_panel=vfmadd[0-9]*ps.*zmm"
             req="$req wino_(f43_input|input_chunk)=vfmadd[0-9]*ps.*zmm wino_(f43_output|output_chunk)=vfmadd[0-9]*ps.*zmm"
             req="$req wino_(f43_input|input_chunk)=vfmadd[0-9]*ps.*ymm wino_(f43_output|output_chunk)=vfmadd[0-9]*ps.*ymm"
             req="$req dwconv3x3_(row|pixel|4px)=vfmadd[0-9]*ps.*ymm"
             req="$req f32_to_f16=vcvtps2ph f16_to_f32=vcvtph2ps gemm_ukernel_prefetching=prefetch"
             req="$req pool_row=vmaxps.*ymm@4" ;;
    avx2*)   req="gemm_ukernel=vfmadd[0-9]*ps.*ymm gemv_panel=vfmadd[0-9]*ps.*ymm"
             req="$req wino_(f43_input|input_chunk)=vfmadd[0-9]*ps.*ymm wino_(f43_output|output_chunk)=vfmadd[0-9]*ps.*ymm dwconv3x3_(row|pixel|4px)=vfmadd[0-9]*ps.*ymm"
             req="$req f32_to_f16=vcvtps2ph f16_to_f32=vcvtph2ps gemm_ukernel_prefetching=prefetch"
             req="$req pool_row=vmaxps.*ymm@4" ;;
    neon*)   req="gemm_ukernel=fmla.*4s gemv_panel=fmla.*4s"
             req="$req wino_(f43_input|input_chunk)=fmla.*4s wino_(f43_output|output_chunk)=fmla.*4s dwconv3x3_(row|pixel|4px)=fmla.*4s"
             req="$req f32_to_f16=fcvtn f16_to_f32=fcvtl gemm_ukernel_prefetching=prfm"
             req="$req pool_row=fmax.*4s@4" ;;
    *) continue ;;
  esac
  dis=$("$objdump" -d -C --no-show-raw-insn "$obj")
  for r in $req; do
    fam=${r%%=*}; pat=${r#*=}; least=1
    case "$pat" in *@*) least=${pat##*@}; pat=${pat%@*} ;; esac
    # Matches per function of the family; the family passes if its SIMD instantiations have enough.
    counts=$(printf '%s\n' "$dis" | awk -v fam="$fam" -v pat="$pat" '
      /^[0-9a-f]+ <.*>:$/ { infn = $0 ~ ("::" fam "<") && index($0, "scalar_arch") == 0; next }
      infn && $0 ~ pat { n++ }
      END { print n + 0 }')
    checked=$((checked + 1))
    if [ "$counts" -ge "$least" ]; then
      echo "ok   $base $fam: $counts instructions matching $pat"
    else
      echo "FAIL $base $fam: $counts instructions matching '$pat', fewer than $least"; fail=1
    fi
  done
done
[ "$checked" -gt 0 ] || { echo "FAIL: no SIMD kernel object given"; exit 1; }
exit $fail
