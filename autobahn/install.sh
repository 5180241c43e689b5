#!/usr/bin/env bash
# Idempotent installer for the Autobahn|Testsuite (`wstest`).
#
# wstest only runs on Python 2.7. Debian 12 (bookworm) no longer ships it, so
# this script:
#   1. adds Debian's bullseye suite (same mirror + keyring as the existing
#      Debian source, pinned to a low priority so nothing else comes from it),
#   2. installs python2.7 + python2.7-dev from bullseye,
#   3. bootstraps pip/setuptools/wheel for python2.7 from the last Python 2
#      wheels (downloaded with the system python3's pip), as `pip --user`
#      installs into a private PYTHONUSERBASE (nothing lands in /usr/local),
#   4. installs virtualenv the same way, creates a venv and installs
#      autobahntestsuite (+ pinned dependencies) into it,
#   5. checks that `wstest --help` works.
# Only the apt steps need root (sudo is used when not root); pip, virtualenv
# and the venv live in user directories (see WS_AUTOBAHN_CACHE, WS_AUTOBAHN_VENV).
# Every step is skipped when it is already done.
#
# Environment:
#   WS_AUTOBAHN_VENV   venv location (default: <this dir>/.venv)
#   WS_AUTOBAHN_CACHE  download cache (default: ${XDG_CACHE_HOME:-$HOME/.cache}/ws-autobahn)
#   PYTHON2            python2.7 interpreter (default: /usr/bin/python2.7)
#   PYTHON3            python3 interpreter used for downloads (default: python3)
# (defaults are set in lib.sh)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

CACHE="${WS_AUTOBAHN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ws-autobahn}"
WHEELS="$CACHE/py2-bootstrap"
# PYTHONUSERBASE for pip/setuptools/wheel/virtualenv of the system python2.7
PY2_TOOLS="$CACHE/py2-tools"

# Versions. autobahntestsuite's wheel pins its own dependency set
# (Twisted 19.10.0, cryptography 3.3.2, pyOpenSSL 19.1.0, autobahn 0.10.9, ...);
# CONSTRAINTS pins the extra transitive dependencies that would otherwise
# resolve to versions that no longer work on Python 2.7.
PIP_VERSION=20.3.4
SETUPTOOLS_VERSION=44.1.1
WHEEL_VERSION=0.37.1
VIRTUALENV_VERSION=20.15.1
AUTOBAHNTESTSUITE_VERSION=25.10.1
CONSTRAINTS="$HERE/constraints-py27.txt"

log() { printf '\n==> [install] %s\n' "$*" >&2; }
skip() { printf '    [install] skip: %s\n' "$*" >&2; }
die() { printf '\nERROR [install] %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

t_start=$SECONDS

# --------------------------------------------------------------------------
# 0. Already fully installed? (fast path)
# --------------------------------------------------------------------------
venv_ok() {
    [ -x "$WSTEST" ] || return 1
    "$VENV/bin/python" - "$AUTOBAHNTESTSUITE_VERSION" <<'EOF' >/dev/null 2>&1 || return 1
import sys
import autobahntestsuite
assert autobahntestsuite.__version__ == sys.argv[1], autobahntestsuite.__version__
import autobahntestsuite.wstest, autobahntestsuite.fuzzing, twisted, autobahn
EOF
    "$WSTEST" --help >/dev/null 2>&1 || return 1
}
if venv_ok; then
    skip "wstest $AUTOBAHNTESTSUITE_VERSION already installed in $VENV"
    printf '==> [install] done in %ss (nothing to do)\n' "$((SECONDS - t_start))" >&2
    exit 0
fi

# --------------------------------------------------------------------------
# 1. Docker? Only informational: the venv path below works everywhere.
# --------------------------------------------------------------------------
if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    log "note: a docker engine is available (image crossbario/autobahn-testsuite could be used),"
    log "      but these scripts use a local Python 2.7 venv; continuing with that."
fi

# --------------------------------------------------------------------------
# 2. python2.7 from Debian bullseye
# --------------------------------------------------------------------------
have_python2() {
    [ -x "$PYTHON2" ] && "$PYTHON2" -c '
import os, sys
from distutils import sysconfig
assert sys.version_info[:2] == (2, 7)
assert os.path.isfile(os.path.join(sysconfig.get_python_inc(), "Python.h"))' 2>/dev/null
}

if have_python2; then
    skip "python2.7 + headers present ($PYTHON2)"
else
    [ -r /etc/os-release ] || die "no /etc/os-release: not a Debian system?"
    # shellcheck disable=SC1091
    . /etc/os-release
    [ "${ID:-}" = debian ] || die "automatic python2.7 install supports Debian only (found ID=${ID:-?}); install python2.7 + headers yourself and set PYTHON2"
    command -v apt-get >/dev/null || die "apt-get not found"

    SRC=/etc/apt/sources.list.d/ws-autobahn-bullseye.sources
    PREF=/etc/apt/preferences.d/ws-autobahn-bullseye.pref
    if [ -f "$SRC" ]; then
        skip "apt source $SRC exists"
    else
        log "adding Debian bullseye apt source ($SRC), derived from the existing Debian source"
        # Find the main (non-security) Debian source: URIs + Signed-By.
        # Supports deb822 *.sources files and one-line sources.list entries.
        # Prints two lines: URIs, Signed-By (may be empty).
        derived="$("$PYTHON3" - "${VERSION_CODENAME:-bookworm}" <<'EOF'
import glob, re, sys
codename = sys.argv[1]
cands = []  # (uris, signed_by)
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        text = open(path).read()
    except OSError:
        continue
    for stanza in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += "\n" + line.strip()
                continue
            k, _, v = line.partition(":")
            key = k.strip().lower()
            fields[key] = v.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        suites = fields.get("suites", "").split()
        if codename not in suites:
            continue
        uris = [u for u in fields.get("uris", "").split() if "security" not in u]
        if uris:
            cands.append((" ".join(uris), fields.get("signed-by", "")))
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", line + " ")
        if not m or m.group(3) != codename or "security" in m.group(2):
            continue
        opts = m.group(1) or ""
        sb = re.search(r"signed-by=(\S+?)\s*(\]|\s)", opts)
        cands.append((m.group(2), sb.group(1) if sb else ""))
if not cands:
    sys.exit("no Debian '%s' apt source found" % codename)
uris, signed_by = cands[0]
if "\n" in signed_by:  # inline key block: not reusable in a one-line field
    signed_by = "/usr/share/keyrings/debian-archive-keyring.gpg"
print(uris)
print(signed_by)
EOF
)" || die "could not derive the Debian mirror from the apt sources"
        uris="$(printf '%s\n' "$derived" | sed -n 1p)"
        signed_by="$(printf '%s\n' "$derived" | sed -n 2p)"
        printf '    URIs: %s\n    Signed-By: %s\n' "$uris" "${signed_by:-<apt default keyrings>}" >&2
        {
            echo "# Added by autobahn/install.sh (ws project): python2.7 for the Autobahn testsuite."
            echo "Types: deb"
            echo "URIs: $uris"
            echo "Suites: bullseye"
            echo "Components: main"
            [ -n "$signed_by" ] && echo "Signed-By: $signed_by"
        } | "${SUDO[@]}" tee "$SRC.tmp" >/dev/null
        "${SUDO[@]}" mv "$SRC.tmp" "$SRC"
    fi
    if [ -f "$PREF" ]; then
        skip "apt pin $PREF exists"
    else
        log "pinning bullseye to priority 100 ($PREF) so only explicitly requested packages come from it"
        printf 'Package: *\nPin: release n=bullseye\nPin-Priority: 100\n' | "${SUDO[@]}" tee "$PREF" >/dev/null
    fi

    log "apt-get update"
    "${SUDO[@]}" apt-get update
    log "apt-get install -t bullseye python2.7 python2.7-dev"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -t bullseye python2.7 python2.7-dev
    # A C compiler for the few dependencies without a cp27 manylinux wheel
    # (wsaccel, scandir, ...). cryptography/cffi/Twisted come as wheels, so
    # libssl-dev / libffi-dev are not needed.
    missing=()
    for p in gcc libc6-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    have_python2 || die "python2.7 install failed ($PYTHON2 missing or Python.h missing)"
fi
printf '    [install] %s: %s\n' "$PYTHON2" "$("$PYTHON2" --version 2>&1)" >&2

# --------------------------------------------------------------------------
# 3. pip / setuptools / wheel for python2.7
# --------------------------------------------------------------------------
# Installed with `pip --user` into a private PYTHONUSERBASE, not into
# /usr/local: a system-wide pip 20.3.4 would put /usr/local/bin/pip (a
# Python 2 pip) in front of Debian's Python 3 pip on PATH.
export PYTHONUSERBASE="$PY2_TOOLS"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip2_ok() {
    "$PYTHON2" -m pip --version 2>/dev/null | grep "^pip $PIP_VERSION from $PY2_TOOLS/" >/dev/null &&
        "$PYTHON2" -c "import setuptools, wheel; assert setuptools.__version__ == '$SETUPTOOLS_VERSION'" 2>/dev/null
}
if pip2_ok; then
    skip "pip $PIP_VERSION + setuptools $SETUPTOOLS_VERSION + wheel for python2.7 present in $PY2_TOOLS"
else
    mkdir -p "$WHEELS"
    if [ -f "$WHEELS/pip-$PIP_VERSION-py2.py3-none-any.whl" ] &&
        [ -f "$WHEELS/setuptools-$SETUPTOOLS_VERSION-py2.py3-none-any.whl" ] &&
        [ -f "$WHEELS/wheel-$WHEEL_VERSION-py2.py3-none-any.whl" ]; then
        skip "bootstrap wheels already in $WHEELS"
    else
        log "downloading the last Python 2 wheels of pip/setuptools/wheel into $WHEELS"
        "$PYTHON3" -m pip download --no-deps --python-version 2.7 \
            --only-binary=:all: -d "$WHEELS" \
            "pip==$PIP_VERSION" "setuptools==$SETUPTOOLS_VERSION" "wheel==$WHEEL_VERSION"
    fi
    PIPWHL="$WHEELS/pip-$PIP_VERSION-py2.py3-none-any.whl"
    log "installing setuptools $SETUPTOOLS_VERSION for python2.7 into $PY2_TOOLS (pip run from its wheel)"
    "$PYTHON2" "$PIPWHL/pip" install --user --no-cache-dir --no-warn-script-location \
        --no-index --find-links "$WHEELS" "setuptools==$SETUPTOOLS_VERSION"
    log "installing pip $PIP_VERSION + wheel $WHEEL_VERSION for python2.7 into $PY2_TOOLS"
    "$PYTHON2" "$PIPWHL/pip" install --user --no-cache-dir --no-warn-script-location \
        --no-index --find-links "$WHEELS" "pip==$PIP_VERSION" "wheel==$WHEEL_VERSION"
    pip2_ok || die "pip bootstrap for python2.7 failed"
fi

# --------------------------------------------------------------------------
# 4. virtualenv + venv + autobahntestsuite
# --------------------------------------------------------------------------
if "$PYTHON2" -m virtualenv --version 2>&1 | grep "^virtualenv $VIRTUALENV_VERSION " >/dev/null; then
    skip "virtualenv $VIRTUALENV_VERSION present"
else
    log "installing virtualenv $VIRTUALENV_VERSION for python2.7 into $PY2_TOOLS"
    "$PYTHON2" -m pip install --user --no-warn-script-location \
        -c "$CONSTRAINTS" "virtualenv==$VIRTUALENV_VERSION"
fi

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    skip "venv exists at $VENV"
else
    log "creating venv $VENV"
    rm -rf "$VENV"
    "$PYTHON2" -m virtualenv --no-periodic-update --no-download "$VENV"
fi

log "installing autobahntestsuite $AUTOBAHNTESTSUITE_VERSION into $VENV (builds a few small C extensions)"
"$VENV/bin/python" -m pip install -c "$CONSTRAINTS" "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION"

# --------------------------------------------------------------------------
# 5. verify
# --------------------------------------------------------------------------
log "verifying: wstest --help"
venv_ok || { "$WSTEST" --help || true; die "wstest does not work (see output above)"; }
help="$("$WSTEST" --help 2>&1)"
printf '%s\n' "$help" | sed -n '1,3p' >&2
printf '\n==> [install] done in %ss: %s\n' "$((SECONDS - t_start))" "$WSTEST" >&2
