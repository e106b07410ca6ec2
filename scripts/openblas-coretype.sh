#!/usr/bin/env bash
# Prints the OpenBLAS core type to force on this CPU. Debian's OpenBLAS 0.3.21 does not know
# Zen 4/5 and falls back to Haswell kernels (half speed) although AVX-512 is there.
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then echo SkylakeX; else echo ""; fi
