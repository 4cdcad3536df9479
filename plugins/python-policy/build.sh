#!/usr/bin/env bash
# Builds the Python policy into a WebAssembly component of the `policy` world of
# `crochet:plugin@1.1.0`:
#
#   plugins/python-policy/build.sh OUTPUT.wasm
#
# Needs `python3` (3.11 or later, with `venv`). Installs componentize-py, pinned below,
# from PyPI into a virtual environment under `~/.cache` the first time (override the
# place with `COMPONENTIZE_PY_VENV`); later builds reuse it and need no network.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

if [ "$#" -ne 1 ]; then
  echo "usage: $0 OUTPUT.wasm" >&2
  exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)
wit=$(cd "$here/../../wit" && pwd)
venv=${COMPONENTIZE_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/crochet/componentize-py-$COMPONENTIZE_PY_VERSION}
tool=$venv/bin/componentize-py

if ! "$tool" --version 2>/dev/null | grep -qF "$COMPONENTIZE_PY_VERSION"; then
  if ! command -v python3 >/dev/null; then
    echo "python3 is not installed: it is needed to install componentize-py" >&2
    exit 3
  fi
  echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

mkdir -p "$(dirname "$out")"
# Everything happens in a scratch folder, so the build leaves nothing (such as
# `__pycache__`) beside the source.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/test" "$work/src"
# The decision's unit tests first, natively, against the generated bindings.
cp "$here/app.py" "$here/test_app.py" "$work/test/"
(cd "$work/test" && "$tool" -d "$wit" -w policy bindings . >/dev/null \
  && "$venv/bin/python" -B -m unittest -q test_app >&2)
# componentize-py generates the guest bindings (`wit_world`) itself, snapshots an
# initialised CPython with `app` imported, and writes the component; it is moved to
# OUTPUT only once complete.
cp "$here/app.py" "$work/src/"
(cd "$work/src" && "$tool" -d "$wit" -w policy componentize app -o "$work/policy.wasm" >&2)
mv "$work/policy.wasm" "$out"
echo "built $out ($(wc -c <"$out") bytes)" >&2
