#!/usr/bin/env bash
# Debian packages the test suite drives for real: Chromium (the dashboard's browser test),
# Redis (the rate limit shared by every worker), nginx (deploy/nginx.conf in front of the
# receiver) and PostgreSQL (the shared spool engine; the tests start their own cluster with
# its initdb and pg_ctl). Installs only what is missing; needs root or sudo when something is.
# Java (default-jre-headless): Spark, for tests/test_spark.py.
set -euo pipefail

PACKAGES=(chromium redis-server nginx postgresql default-jre-headless)
COMMANDS=(chromium redis-server nginx pg_ctlcluster java)

missing=()
for i in "${!PACKAGES[@]}"; do
    # nginx lives in /usr/sbin, which a non-root PATH may lack.
    PATH="$PATH:/usr/sbin" command -v "${COMMANDS[$i]}" >/dev/null 2>&1 || missing+=("${PACKAGES[$i]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1; then
    run=(sudo)
else
    echo "system-deps: please install ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -qq
"${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
