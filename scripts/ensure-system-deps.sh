#!/usr/bin/env bash
# System packages the test suite and scripts/screenshots.py need, installed only when missing.
# Idempotent and quiet: `make test` calls it every time; it does nothing once they are there.
#   chromium         headless browser driven by Playwright (tests/test_dashboard_browser.py,
#                    scripts/screenshots.py); Playwright's own browser download is never used.
#   fonts-noto-cjk   Chinese glyphs for the screenshots and the browser test's page.
#   openjdk-17-jre-headless  Java for pyspark (tests/test_linkage_spark.py: the Spark link backend).
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
# (fc-list's output is taken whole first: under pipefail, `grep -q` closing the pipe early would
# make fc-list fail with SIGPIPE and the fonts look missing)
fonts=$(fc-list 2>/dev/null || true)
if ! grep -qi "noto sans cjk\|noto serif cjk\|wenquanyi" <<<"$fonts"; then
    missing+=(fonts-noto-cjk)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
        echo "ensure-system-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=()
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -qq && \
       "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "ensure-system-deps: could not install ${missing[*]}" >&2
    exit 1
fi
echo "ensure-system-deps: installed ${missing[*]}"
