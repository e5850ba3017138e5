#!/bin/sh
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser test (tests/test_browser.py).
# As root on Debian, install the `chromium` package. Anywhere else, say what to do instead of
# guessing. Playwright's own browser download (`playwright install`) is never used: the test
# drives this Chromium, and the download does not work on every machine that runs the suite.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" != 0 ] || [ ! -r /etc/debian_version ]; then
    echo "labkit: the browser test needs Chromium at $CHROMIUM, and there is none." >&2
    echo "  On Debian or Ubuntu: 'sudo apt-get install chromium' (Debian's package, not the" >&2
    echo "  snap), then run this command again." >&2
    exit 1
fi

echo "labkit: installing Debian's chromium for the browser test" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "labkit: apt-get installed chromium, but $CHROMIUM is still missing." >&2
    exit 1
fi
