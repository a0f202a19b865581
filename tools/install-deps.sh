#!/usr/bin/env bash
# Installs the Debian packages the build needs, and only those that are missing.
set -euo pipefail
# Everything the build, the tests and the demo use, listed explicitly: a bare Debian root
# (debootstrap minbase) has no compiler, no make and no C library headers (libc6-dev);
# today those headers would arrive only as a dependency of liblua5.4-dev.
pkgs=(make cmake gcc libc6-dev pkg-config                      # toolchain and C headers
      liblua5.4-dev libopenblas-openmp-dev libfftw3-dev          # Lua, BLAS, FFT
      libsndfile1-dev libsamplerate0-dev libcjson-dev            # audio I/O, resampling, JSON
      libopenmpi-dev openmpi-bin                                 # MPI: data-parallel training
      gnuplot-nox)                                               # plots, run as a process
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
