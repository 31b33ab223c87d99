#!/usr/bin/env bash
# Fetch the real images of tests/real_images into caches (idempotent: nothing is fetched twice).
#  * the pyradiomics 3.0.1 source distribution from PyPI (its data/ folder: brain, lung and breast cases with
#    lesion labels, NRRD) into $NNUNET_CAUSAL_DATA_CACHE (default ~/.cache/nnunet_causal/downloads),
#    checked against its SHA-256;
#  * Debian's mricron-data (Colin27 T1 + the AAL atlas, /usr/share/mricron/templates) through apt-get.
# Exit status 0 only when both are in place.
set -euo pipefail
CACHE="${NNUNET_CAUSAL_DATA_CACHE:-$HOME/.cache/nnunet_causal/downloads}"
SDIST="$CACHE/pyradiomics-3.0.1.tar.gz"
SHA256="47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"
TEMPLATES=/usr/share/mricron/templates
PY="${PYTHON:-python3}"

check_sdist() { [ -s "$SDIST" ] && echo "$SHA256  $SDIST" | sha256sum -c --quiet - >/dev/null 2>&1; }

mkdir -p "$CACHE"
if check_sdist; then
  echo "[real data] $SDIST: cached"
else
  echo "[real data] downloading pyradiomics 3.0.1 (source distribution, about 34 MB) from PyPI"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  # pip reads the sdist's metadata with its setup.py, which imports numpy: a throwaway venv provides it
  "$PY" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q numpy wheel setuptools
  "$WORK/venv/bin/pip" download -q --no-deps --no-binary pyradiomics --no-build-isolation pyradiomics==3.0.1 \
    -d "$WORK/download"
  mv "$WORK/download/pyradiomics-3.0.1.tar.gz" "$SDIST.partial"
  mv "$SDIST.partial" "$SDIST"
  check_sdist || { echo "[real data] $SDIST: SHA-256 mismatch (expected $SHA256)" >&2; rm -f "$SDIST"; exit 1; }
fi

if [ -s "$TEMPLATES/ch2.nii.gz" ] && [ -s "$TEMPLATES/aal.nii.gz" ] && [ -s "$TEMPLATES/aal.nii.txt" ]; then
  echo "[real data] $TEMPLATES: installed"
else
  echo "[real data] installing Debian's mricron-data (Colin27 + AAL)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends mricron-data
fi
