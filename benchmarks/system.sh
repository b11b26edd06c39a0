#!/usr/bin/env bash
# Install what the server benchmarks need from Debian, if it is missing:
# nginx (the production path for static files, the baseline of two of them),
# wrk (the HTTP load generator) and curl (the download client). Idempotent:
# does nothing when all are on PATH. Never fails the caller: without them the benchmarks print why and
# mark those comparisons SKIP.
set -u

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "benchmarks/system.sh: no apt-get; install ${missing[*]} by hand (server benchmarks will SKIP them)" >&2
    exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "benchmarks/system.sh: not root and no sudo; install ${missing[*]} by hand (server benchmarks will SKIP them)" >&2
        exit 0
    fi
fi

echo "benchmarks/system.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Installing the nginx package must not start a system-wide nginx on port 80:
# policy-rc.d answering 101 tells invoke-rc.d not to start services.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ] && [ ${#sudo[@]} -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi
status=0
"${sudo[@]}" apt-get update -qq >&2 || status=$?
if [ $status -eq 0 ]; then
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || status=$?
fi
[ $made_policy -eq 1 ] && rm -f "$policy"
if [ $status -ne 0 ]; then
    echo "benchmarks/system.sh: apt-get failed ($status); server benchmarks will SKIP what is missing" >&2
fi
exit 0
