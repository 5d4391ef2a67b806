# shellcheck shell=bash
# Install azurite (Azure Blob Storage's emulator, from npm) for the object-storage tests;
# meant to be *sourced* (by .ci/run, or by hand: `source .ci/azurite.sh`) so that the
# export below reaches the test run. The tests start and stop their own azurite-blob on
# a free port; this only makes the program available:
#
#   exports KRAITER_TEST_AZURITE=<cache>/node_modules/.bin/azurite-blob
#
# The install lives in a cache folder outside the checkout (XDG_CACHE_HOME or ~/.cache)
# and is reused while the pinned version matches: from scratch it takes about 20-40 s.

_kraiter_azurite_version="3.35.0"
_kraiter_azurite_dir="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kraiter-sync/azurite-${_kraiter_azurite_version}"
_kraiter_azurite_bin="${_kraiter_azurite_dir}/node_modules/.bin/azurite-blob"

if [ ! -x "$_kraiter_azurite_bin" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "azurite.sh: npm is missing; install Node.js (Debian: apt-get install nodejs npm)" >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "azurite.sh: installing azurite ${_kraiter_azurite_version} into ${_kraiter_azurite_dir}" >&2
    mkdir -p "$_kraiter_azurite_dir"
    npm install --silent --no-audit --no-fund --prefix "$_kraiter_azurite_dir" \
        "azurite@${_kraiter_azurite_version}" >&2
fi
export KRAITER_TEST_AZURITE="$_kraiter_azurite_bin"
