#!/usr/bin/env bash
# Install everything gardenbuild needs on Debian/Ubuntu, idempotently and without prompts:
# the container tools from apt, then gardenbuild itself (with its test and publish extras)
# into ./.venv. Safe to run again; a second run does almost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# debian-archive-keyring lets debootstrap verify Debian's mirror on Ubuntu hosts too.
# For the tests only: rabbitmq-server, the broker the Globus Compute SDK reads results from;
# chromium and chromium-driver, the real browser model pages are checked in.
APT_PACKAGES=(buildah skopeo debootstrap debian-archive-keyring docker-registry rabbitmq-server chromium chromium-driver
              python3-venv python3-pip)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
echo "==> installing gardenbuild into .venv"
.venv/bin/uv pip install -q --python .venv/bin/python -e '.[publish,test]'
# Bytecode, as pip writes it on install: with PYTHONDONTWRITEBYTECODE set (CI machines set it)
# Python never caches any, and every command compiled its imports again (1.6 s of a notebook
# edit's rebuild here). gardenbuild's own modules too (__pycache__ is ignored by git). A file
# that does not compile (some packages ship Python 2 test data) is skipped, as pip skips it.
.venv/bin/python -m compileall -qq -j 0 gardenbuild "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
# cffconvert (validates CITATION.cff) pins jsonschema<4: it gets a venv of its own.
if [ ! -x .tools/cffconvert/bin/cffconvert ]; then
  python3 -m venv .tools/cffconvert
  .tools/cffconvert/bin/python -m pip install -q --disable-pip-version-check cffconvert==2.0.0
fi
