#!/usr/bin/env bash
# The whole story so far, as the people who run it would type it.
# Run by `make demo` (which puts the project's venv first on PATH).
#
#   security officers  create the repository with root keys held in HSM tokens
#   a release manager  delegates the pump-x100 product line to two engineers
#   engineer alice     adds a firmware image and signs it on her machine
#   engineer bob       receives the directory, signs it on his machine
#   anyone             checks status and verifies the repository as a device would
set -euo pipefail

OUT="${DEMO_OUT:-$(pwd)/demo/out}"
rm -rf "$OUT" && mkdir -p "$OUT"
cd "$OUT"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Demo-only PINs, given through the environment as automation would.
# Real tokens are initialised interactively: fwhsm prompts with hidden input.
export FWHSM_SO_PIN="demo-so-pin-0000" FWHSM_USER_PIN="demo-user-pin-0000"
export FWSIGN_PIN="$FWHSM_USER_PIN"

token() {  # token NAME LABEL PURPOSE ALGORITHM -> prints the key's URI
    fwhsm init --token "tokens/$1" >/dev/null
    fwhsm generate --token "tokens/$1" --label "$2" --purpose "$3" --algorithm "$4" >/dev/null
    fwhsm uri --token "tokens/$1" --label "$2"
}

say "Each person gets an HSM token with one key for one purpose (R47)"
OFFICER1=$(token officer1 root-officer1 root ecdsa-p256)
OFFICER2=$(token officer2 root-officer2 root ecdsa-p256)
OFFICER3=$(token officer3 root-officer3 root ed25519)
MANAGER=$(token manager targets-manager targets ed25519)
ALICE=$(token alice pump-alice delegation ed25519)
BOB=$(token bob pump-bob delegation ecdsa-p256)
fwhsm init --token tokens/server >/dev/null
fwhsm generate --token tokens/server --label snapshot --purpose snapshot --algorithm ed25519 >/dev/null
fwhsm generate --token tokens/server --label timestamp --purpose timestamp --algorithm ed25519 >/dev/null
fwhsm export-public --token tokens/server --label snapshot > snapshot.pub.json
fwhsm export-public --token tokens/server --label timestamp > timestamp.pub.json
fwhsm list --token tokens/officer1

say "Security officers create the repository (root 2 of 3, signed by two of them)"
fwsign init --repo repo \
    --root-key "$OFFICER1" --root-key "$OFFICER2" --root-key "$OFFICER3" \
    --targets-key "$MANAGER" \
    --snapshot-key snapshot.pub.json --timestamp-key timestamp.pub.json \
    --key "$OFFICER1" --key "$OFFICER2" --key "$MANAGER"

say "The release manager delegates pump-x100/ to alice and bob (2 of 2, R9), in 16 hashed bins"
fwsign delegate --repo repo --name pump-x100 --path-prefix pump-x100/ \
    --engineer-key "$ALICE" --engineer-key "$BOB" --threshold 2 --bin-bits 4 --key "$MANAGER"

say "Alice builds firmware 2.4.0 and adds it (security version 3)"
head -c $((8 * 1024 * 1024)) /dev/urandom > pump-fw-2.4.0.bin
echo '{"spdxVersion": "SPDX-2.3", "name": "pump-fw-2.4.0"}' > pump-fw-2.4.0.spdx.json
fwsign add --repo repo pump-fw-2.4.0.bin --name pump-fw --version 2.4.0 \
    --security-version 3 --hardware-model pump-x100 --sbom pump-fw-2.4.0.spdx.json \
    --release-notes "Fixes occlusion alarm latency"

say "Alice signs on her machine; the role now has 1 of the 2 signatures it needs"
fwsign sign --repo repo --key "$ALICE"
fwsign status --repo repo | tail -n 3

say "A single signature is not enough: verify refuses to call it publishable"
if fwsign verify --repo repo; then echo "UNEXPECTED: accepted with one signature"; exit 1; fi

say "The directory travels to bob (git, removable media); bob signs"
cp -r repo repo-bob
fwsign sign --repo repo-bob --key "$BOB"

say "Status and a device-style verification of the whole repository"
fwsign status --repo repo-bob --check
mkdir -p firmware/pump-x100 && cp pump-fw-2.4.0.bin firmware/pump-x100/
fwsign verify --repo repo-bob --targets-dir firmware

say "Every signature each token made is in its own hash-chained usage log"
fwhsm log verify --token tokens/alice
echo
echo "demo finished: repository in $OUT/repo-bob"
