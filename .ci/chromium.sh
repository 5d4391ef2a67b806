# shellcheck shell=bash
# Make headless Chromium available for the HTML report's browser test; meant to be
# *sourced* (by .ci/run, or by hand: `source .ci/chromium.sh`) so that the export below
# reaches the test run:
#
#   exports KRAITER_TEST_CHROMIUM=/usr/bin/chromium
#
# Chromium is installed from Debian's packages when missing (without recommends: about
# 15-60 s with a warm apt mirror). The test drives it over the DevTools pipe with a fresh
# profile per page; nothing is downloaded at test time.

_kraiter_chromium_log() { echo "chromium.sh: $*" >&2; }

_kraiter_chromium_find() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

_kraiter_chromium_setup() {
    local started=$SECONDS bin
    bin=$(_kraiter_chromium_find)
    if [ -z "$bin" ]; then
        if [ "$(id -u)" != 0 ]; then
            _kraiter_chromium_log "Chromium is not installed and this is not root; skipping"
            return 0
        fi
        _kraiter_chromium_log "installing Chromium from Debian packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium >/dev/null
        bin=$(_kraiter_chromium_find)
        _kraiter_chromium_log "installed in $((SECONDS - started)) s"
    fi
    if [ -z "$bin" ]; then
        _kraiter_chromium_log "Chromium could not be installed"
        return 1
    fi
    export KRAITER_TEST_CHROMIUM="$bin"
    _kraiter_chromium_log "$("$bin" --version 2>/dev/null | head -n 1)"
}

_kraiter_chromium_setup
