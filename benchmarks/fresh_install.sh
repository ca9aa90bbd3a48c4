#!/usr/bin/env bash
# Fresh clone -> `voicestream demo` done: the README's first command on a clone of
# this checkout, as a new user runs it, with nothing of ours cached.
#
# Run: bash benchmarks/fresh_install.sh [WORKDIR]
#
# HOME points into WORKDIR, so the model cache (~/.cache/voicestream: Whisper and
# Moonshine graphs, the embedder, the Moonshine wheel) and Maven's repository (the
# Kafka jars) start empty, and pip runs without its cache. What it cannot undo:
# Debian packages already installed (setup.sh then skips apt) and the registries'
# own caches. Prints the wall time, whether torch got installed, and the demo's
# outcome column; the full log is WORKDIR/log.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work/home"
rm -rf "$work/voicestream"
git clone -q "$repo" "$work/voicestream"
cd "$work/voicestream"
start=$(date +%s.%N)
HOME="$work/home" PIP_NO_CACHE_DIR=1 bash -c 'bash setup.sh && .venv/bin/voicestream demo' \
  >"$work/log" 2>&1 || { tail -30 "$work/log"; exit 1; }
end=$(date +%s.%N)
torch=$(.venv/bin/python -c 'import importlib.util as u; print("yes" if u.find_spec("torch") else "no")')
echo "fresh clone -> demo done: $(python3 -c "print(f'{$end - $start:.0f}')") s; torch installed: $torch"
sed -n '/^latency after/,$p' "$work/log"
