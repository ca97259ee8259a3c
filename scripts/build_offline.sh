#!/usr/bin/env bash
# Builds lethe on a machine without apt or internet (a GPU node image with CUDA and PyTorch but
# no MPI/HDF5/Boost/spdlog), against that machine's own LibTorch (python3's torch) with CUDA and
# NCCL (the NCCL that torch loads: the nvidia-nccl wheel, else /usr/local/cuda).
#   on a Debian 12 machine:  scripts/build_offline.sh --fetch DEBS   (apt-get download, see offline_debs.txt)
#   on the target:           scripts/build_offline.sh DEBS PREFIX BUILD [JOBS]
# The .deb files are unpacked into PREFIX (never into /); BUILD/env.sh sets the library path and
# relocates OpenMPI and PMIx into PREFIX: `source BUILD/env.sh` before running lethe or mpirun.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--fetch" ]; then
  mkdir -p "$2" && cd "$2"
  # shellcheck disable=SC2046
  apt-get download $(grep -v '^#' "$SRC/scripts/offline_debs.txt")
  exit 0
fi
[ $# -ge 3 ] || { echo "usage: $0 DEBS PREFIX BUILD [JOBS]  |  $0 --fetch DEBS" >&2; exit 2; }
DEBS=$(cd "$1" && pwd); mkdir -p "$2" "$3"; P=$(cd "$2" && pwd); B=$(cd "$3" && pwd); JOBS=${4:-$(nproc)}
for f in "$DEBS"/*.deb; do dpkg -x "$f" "$P"; done
PY=${PYTHON:-python3}
TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
SITE=$("$PY" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
NCCL_LIB=$(find "$SITE/nvidia" /usr/local/cuda/lib64 -name 'libnccl.so*' 2>/dev/null | sort | head -1 || true)
NCCL_INC=$(find "$SITE/nvidia" /usr/local/cuda/include -name nccl.h 2>/dev/null | head -1 || true)
[ -n "$NCCL_LIB" ] && [ -n "$NCCL_INC" ] || { echo "no NCCL library/header found (torch's wheel or /usr/local/cuda)" >&2; exit 1; }
ML=$P/usr/lib/x86_64-linux-gnu
cat >"$B/env.sh" <<ENV
export LD_LIBRARY_PATH=$ML:$ML/hdf5/serial:$ML/openmpi/lib:$(dirname "$NCCL_LIB"):\${LD_LIBRARY_PATH:-}
export PATH=$P/usr/bin:\$PATH
export OPAL_PREFIX=$P/usr PMIX_INSTALL_PREFIX=$ML/pmix2
export OMPI_MCA_mca_base_component_path=$ML/openmpi/lib/openmpi3
export PMIX_MCA_mca_base_component_path=$ML/pmix2/lib/pmix
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_osc=^ucx OMPI_MCA_plm_rsh_agent=false
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENV
# shellcheck disable=SC1091
source "$B/env.sh"
export PKG_CONFIG_LIBDIR=$ML/pkgconfig:$P/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$P
GEN=(); KEEP=(); if command -v ninja >/dev/null; then GEN=(-G Ninja); KEEP=(-- -k 0); fi
# spdlog 1.10 needs its fmt 9, not the newer fmt that LibTorch bundles: a folder holding only fmt,
# named with -I (searched before every -isystem folder, LibTorch's included).
mkdir -p "$P/fmt-first" && ln -sfn "$P/usr/include/fmt" "$P/fmt-first/fmt"
cmake -S "$SRC" -B "$B" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-I$P/fmt-first" \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$P/usr" -DCMAKE_INCLUDE_PATH="$P/usr/include/hdf5/serial" \
  -DCMAKE_LIBRARY_PATH="$ML/hdf5/serial" -DHDF5_C_COMPILER_EXECUTABLE=HDF5_C_COMPILER_EXECUTABLE-NOTFOUND \
  -DMPI_C_COMPILER="$P/usr/bin/mpicc.openmpi" -DMPIEXEC_EXECUTABLE="$P/usr/bin/mpirun.openmpi" \
  -DPKG_CONFIG_EXECUTABLE="$P/usr/bin/pkgconf" -DLETHE_WITH_CUDA=ON \
  -DNCCL_LIBRARY="$NCCL_LIB" -DNCCL_INCLUDE_DIR="$(dirname "$NCCL_INC")"
cmake --build "$B" -j "$JOBS" "${KEEP[@]}"
