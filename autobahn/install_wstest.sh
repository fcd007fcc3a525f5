#!/usr/bin/env bash
# Install the Autobahn|Testsuite (`wstest`, Python 2.7 only) on Debian bookworm.
#
#   WSTEST_PREFIX  install prefix (default /opt/wstest); the launcher is
#                  written to "$WSTEST_PREFIX/wstest".
#
# Steps: python2.7 from Debian bullseye -> pip 20.3.4 bootstrapped from its
# wheel -> autobahntestsuite + py2.7-compatible pinned deps into the prefix
# -> a small python2.7 launcher.  Idempotent: exits early if the launcher works.
# Needs root (apt-get); uses sudo when not root.
set -euo pipefail

PREFIX="${WSTEST_PREFIX:-/opt/wstest}"
LAUNCHER="$PREFIX/wstest"
PY=/usr/bin/python2.7
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Already installed? `wstest -a` prints the version and exits 0.
if [ -x "$LAUNCHER" ] && "$LAUNCHER" -a >/dev/null 2>&1; then
    echo "wstest already installed: $LAUNCHER"
    exit 0
fi

# 1. python2.7 from bullseye (bookworm has none), on the mirror host in use.
if [ ! -x "$PY" ]; then
    MIRROR=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' \
                 /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
             | head -n1 | tr -d ' ' || true)
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${MIRROR%/}" | $SUDO tee /etc/apt/sources.list.d/bullseye-python2.sources >/dev/null
    $SUDO apt-get update -q
    APT=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q)
    "${APT[@]}" gcc libc6-dev            # from bookworm: builds wsaccel/ujson
    "${APT[@]}" -t bullseye python2.7 python2.7-dev
fi

# 2. Bootstrap pip 20.3.4 (last pip for py2.7) from its wheel into the prefix,
#    with setuptools/wheel; later steps run it as `python2.7 -m pip` with the
#    prefix on PYTHONPATH (the sdist builds need the prefix's setuptools).
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
# (python3's pip only downloads the wheel; on a bare Debian get Debian's.)
python3 -m pip --version >/dev/null 2>&1 || {
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip; }
PIP3="python3 -m pip"
$PIP3 download -q -d "$TMP" --no-deps --python-version 2.7 \
    --only-binary=:all: pip==20.3.4
$SUDO mkdir -p "$PREFIX"
SITE="$PREFIX/lib/python2.7/site-packages"
PIPENV=(env PYTHONPATH="$SITE" PIP_DISABLE_PIP_VERSION_CHECK=1)
$SUDO "${PIPENV[@]}" "$PY" "$TMP/pip-20.3.4-py2.py3-none-any.whl/pip" install -q \
    --no-warn-script-location --prefix "$PREFIX" pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
PIP=($SUDO "${PIPENV[@]}" "$PY" -m pip install -q \
    --no-warn-script-location --prefix "$PREFIX")

# 3. autobahntestsuite. Its metadata pins the direct deps (Twisted 19.10.0,
#    autobahn[twisted,accelerate] 0.10.9, txaio 2.1.0, cryptography 3.3.2, ...,
#    and setuptools==44.0.0, which replaces the 44.1.1 above); the transitive
#    ones are pinned here to what pip resolves for py2.7, for repeatable installs.
"${PIP[@]}" autobahntestsuite==25.10.1 \
    attrs==21.4.0 Automat==22.10.0 hyperlink==21.0.0 PyHamcrest==1.10.1 \
    constantly==15.1.0 idna==2.10 cffi==1.15.1 pycparser==2.21 \
    pyasn1==0.5.1 pyasn1-modules==0.3.0 ujson==2.0.3 wsaccel==0.6.6

# 4. Launcher: python2.7 script that adds the prefix's site-packages first.
$SUDO tee "$LAUNCHER" >/dev/null <<EOF
#!$PY
# wstest launcher (written by install_wstest.sh)
import site, sys
site.addsitedir("$SITE")
from autobahntestsuite.wstest import run
sys.exit(run())
EOF
$SUDO chmod 755 "$LAUNCHER"
"$LAUNCHER" -a
echo "wstest installed: $LAUNCHER"
