#!/usr/bin/env bash
# Install what is missing to run (`setup.sh run`) or test (`setup.sh test`) the project.
#
# Idempotent and quiet: prints one summary line when it installed something, nothing
# otherwise. System packages come from apt (git, bubblewrap, chromium, LibreOffice and
# poppler-utils; postgresql for tests);
# Python packages go into .venv, reinstalled only when pyproject.toml changes.
# Environment: PYTHON picks the interpreter for a new .venv (default: python3).
set -euo pipefail

usage() {
    echo "usage: $0 run|test" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
mode=$1
case "$mode" in
    run | test) ;;
    *) usage ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "setup.sh: $*" >&2
    exit 1
}

done_items=()
python=${PYTHON:-python3}
venv=.venv

# --- system packages ----------------------------------------------------------------

apt_pkgs=()
command -v git >/dev/null 2>&1 || apt_pkgs+=(git)
command -v bwrap >/dev/null 2>&1 || apt_pkgs+=(bubblewrap)
if [[ $mode == test ]] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt_pkgs+=(postgresql)
fi
# The browser tool drives the system Chromium (Playwright's own download is not assumed).
[[ -x /usr/bin/chromium ]] || apt_pkgs+=(chromium)
# A doc job's review pictures its changes: LibreOffice prints them, pdftoppm turns the pages
# into PNGs (without them the review says the picture is missing).
if ! command -v soffice >/dev/null 2>&1; then
    apt_pkgs+=(libreoffice-calc libreoffice-writer)
fi
command -v pdftoppm >/dev/null 2>&1 || apt_pkgs+=(poppler-utils)
# Debian's system python ships venv without ensurepip; python3-venv provides it.
if [[ ! -x $venv/bin/python ]] && command -v "$python" >/dev/null 2>&1 \
    && [[ "$(command -v "$python")" == /usr/bin/* ]] \
    && ! "$python" -c 'import ensurepip' >/dev/null 2>&1; then
    apt_pkgs+=(python3-venv)
fi

if ((${#apt_pkgs[@]} > 0)); then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${apt_pkgs[*]} and apt-get is not available; install them by hand"
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 \
            || die "missing ${apt_pkgs[*]}; run as root or install sudo to install them"
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >/dev/null \
        || die "apt-get update failed"
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null \
        || die "apt-get install ${apt_pkgs[*]} failed"
    done_items+=("apt: ${apt_pkgs[*]}")
fi

# --- virtualenv ---------------------------------------------------------------------

py_ok='import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "$py_ok" >/dev/null 2>&1; then
    command -v "$python" >/dev/null 2>&1 \
        || die "$python not found; Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"
    if ! "$python" -c "$py_ok" >/dev/null 2>&1; then
        found=$("$python" -c 'import platform; print(platform.python_version())' 2>/dev/null || true)
        die "Python >= 3.11 is required, $python is ${found:-unusable}" \
            "(set PYTHON=/path/to/python3.11)"
    fi
    rm -rf "$venv"
    "$python" -m venv "$venv" || die "could not create $venv with $python"
    done_items+=("created $venv ($("$venv/bin/python" -c 'import platform; print(platform.python_version())'))")
fi

# --- the project, editable ----------------------------------------------------------

hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp=$venv/.acp-installed-$mode
installed() { [[ -f $1 && "$(<"$1")" == "$hash" ]]; }

# A test install is a superset of a run install.
if ! installed "$stamp" && ! { [[ $mode == run ]] && installed "$venv/.acp-installed-test"; }; then
    target=.
    [[ $mode == test ]] && target='.[test]'
    "$venv/bin/python" -m pip install -qq --disable-pip-version-check -e "$target" \
        || die "pip install -e '$target' failed"
    # A new pyproject.toml invalidates the other mode's install too.
    rm -f "$venv"/.acp-installed-*
    echo "$hash" >"$stamp"
    done_items+=("pip install -e '$target'")
fi

if ((${#done_items[@]} > 0)); then
    summary=$(printf '%s; ' "${done_items[@]}")
    echo "setup.sh $mode: ${summary%; }"
fi
