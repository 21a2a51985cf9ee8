#!/usr/bin/env bash
# Installs what tfvae needs on a fresh Debian machine with Python 3.11:
# Debian's Fashion-MNIST package (the real data), Chromium (which the
# explorer's browser test drives through playwright; `playwright install`
# needs the network and is not used) and tfvae itself with its Python
# dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  echo "[setup] installing Debian's dataset-fashion-mnist"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  echo "[setup] installing Debian's chromium (for tests/test_explore_browser.py)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi
echo "[setup] installing tfvae and its Python dependencies"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
