#!/usr/bin/env bash
# The whole story so far, as the people who run it would type it.
# Run by `make demo` (which puts the project's venv first on PATH).
#
#   the server operator  creates the update server and its online keys
#   security officers    create the repository with root keys held in HSM tokens
#   a release manager    delegates the pump-x100 product line to two engineers
#   the server           imports the repository and serves it over TLS, with a
#                        certificate from its own CA (the CA is what devices trust)
#   alice and bob        finish their first login (new password, TOTP)
#   alice                adds firmware 2.4.0; alice and bob sign it (2 of 2)
#   alice                publishes it with password + TOTP, confirmed by a fresh code
#   a device             downloads and verifies it with a stock TUF client
#   two pumps (fwclient)  register with the server (device keys, enrolment tokens);
#                        update; one refuses a tampered file; one falls back
#                        from a firmware that fails its health check
#   tom, a technician     authorizes pump-001's update to 2.6.0 with a fresh code;
#                        only pump-001 installs it; the same authorization is
#                        refused on pump-002
#   mona, max            deploy 2.7.0 in waves, four eyes (release managers)
#   olga, oscar, otto    freeze the system; two others' votes lift it (officers)
#   alice                signs 2.8.0 with a delta from 2.7.0; pump-002 takes the delta;
#                        isolated pump-001 installs 2.8.0 from a bundle, no network
#   the auditor          verifies the audit log of all of it
set -euo pipefail

DEMO_DIR="$(cd "$(dirname "$0")" && pwd)"
OUT="${DEMO_OUT:-$DEMO_DIR/out}"
rm -rf "$OUT" && mkdir -p "$OUT"
export PYTHONPATH="$DEMO_DIR/..${PYTHONPATH:+:$PYTHONPATH}"
if [ "$(id -u)" = 0 ]; then
    # fwserver refuses to serve as root (R6). Run as root, every fwserver
    # command runs as an unprivileged user ($FW_DEMO_USER, default nobody),
    # who owns the server's data directory, as an operator runs them as the
    # server's user in production; the other people's tools run as root.
    DEMO_USER="${FW_DEMO_USER:-nobody}"
    chown "$DEMO_USER:" "$OUT"
    PYTHON="$(command -v python)"
    # Compiled once here: that user cannot write the checkout's __pycache__.
    (cd "$DEMO_DIR/.." && "$PYTHON" -m compileall -q fwcommon repo_metadata hsm_mock signer \
        update_server client >/dev/null)
    fwserver() {
        setpriv --reuid="$DEMO_USER" --regid="$(id -g "$DEMO_USER")" --init-groups -- \
            "$PYTHON" -c 'from update_server.cli import main; main()' "$@"
    }
    fwserver --help >/dev/null || {
        echo "run as root, fwserver runs as $DEMO_USER, who cannot run $PYTHON or read $DEMO_DIR:"
        echo "run the demo from a directory and a Python others can use, or as an unprivileged user"
        exit 1
    } >&2
fi
cd "$OUT"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
SERVER_PID=""
cleanup() {  # the server; under root, the shell of the fwserver function above and its child
    [ -n "$SERVER_PID" ] || return 0
    if [ "$(id -u)" = 0 ]; then
        kill $(cat "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null) 2>/dev/null || true
    fi
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

# Demo-only PINs and passwords, given through the environment as automation
# would. Real people type them at hidden prompts.
export FWHSM_SO_PIN="demo-so-pin-0000" FWHSM_USER_PIN="demo-user-pin-0000"
export FWSIGN_PIN="$FWHSM_USER_PIN"

say "The operator creates the update server: database, TLS CA, online keys in its own token"
fwserver init --data-dir server
# Devices and people are given the server's long-lived CA, never the certificate
# it serves: that one is issued by the CA and renewed without anyone noticing.
CA=server/tls/ca.crt
openssl x509 -in "$CA" -noout -subject -enddate
fwhsm export-public --token server/hsm --label snapshot > snapshot.pub.json
fwhsm export-public --token server/hsm --label authorization > authorization.pub.json
fwhsm export-public --token server/hsm --label timestamp > timestamp.pub.json

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
fwhsm list --token tokens/officer1

say "Security officers create the repository (root 2 of 3; the server's online keys as public keys;"
echo "   the server's authorization key listed in root: devices trust it because the officers say so)"
fwsign init --repo repo \
    --root-key "$OFFICER1" --root-key "$OFFICER2" --root-key "$OFFICER3" \
    --targets-key "$MANAGER" \
    --snapshot-key snapshot.pub.json --timestamp-key timestamp.pub.json \
    --authorization-key authorization.pub.json \
    --key "$OFFICER1" --key "$OFFICER2" --key "$MANAGER"

say "The release manager delegates pump-x100/ to alice and bob (2 of 2, R9), in 16 hashed bins"
fwsign delegate --repo repo --name pump-x100 --path-prefix pump-x100/ \
    --engineer-key "$ALICE" --engineer-key "$BOB" --threshold 2 --bin-bits 4 --key "$MANAGER"
fwsign sign --repo repo --key "$ALICE"
fwsign sign --repo repo --key "$BOB"

say "The server imports the repository (every signature checked) and starts over TLS"
fwserver import --data-dir server repo
fwserver serve --data-dir server --check   # the TLS status line, warnings 30 days ahead
fwserver serve --data-dir server --port 0 > server.out 2> server.err &
SERVER_PID=$!
for _ in $(seq 600); do grep -q '^serving https://' server.out 2>/dev/null && break; sleep 0.1; done
URL=$(grep '^serving https://' server.out | awk '{print $2}')
[ -n "$URL" ] || { cat server.err; exit 1; }
cat server.out
grep -qxF "CA certificate for clients: $(realpath "$CA")" server.out \
    || { echo "UNEXPECTED: the server names another CA for clients"; exit 1; }
curl -sS --cacert "$CA" "$URL/api/v1/health"; echo

say "The administrator adds alice and bob; each finishes first login (new password, TOTP)"
ALICE_INITIAL=$(fwserver user add --data-dir server --role release_engineer alice | tail -n 1 | awk '{print $NF}')
BOB_INITIAL=$(fwserver user add --data-dir server --role release_engineer bob | tail -n 1 | awk '{print $NF}')
ALICE_PASSWORD="pumps need four eyes, always 2026"
python "$DEMO_DIR/phone.py" setup --server "$URL" --ca "$CA" --user alice \
    --initial-password "$ALICE_INITIAL" --new-password "$ALICE_PASSWORD"
python "$DEMO_DIR/phone.py" setup --server "$URL" --ca "$CA" --user bob \
    --initial-password "$BOB_INITIAL" --new-password "second signer on infusion pumps 2026"
fwserver user list --data-dir server

say "Alice builds firmware 2.4.0 and adds it (security version 3, with its SBOM)"
mkdir -p firmware/pump-x100
head -c $((8 * 1024 * 1024)) /dev/urandom > firmware/pump-x100/pump-fw-2.4.0.bin
echo '{"spdxVersion": "SPDX-2.3", "name": "pump-fw-2.4.0"}' > firmware/pump-x100/pump-fw-2.4.0.sbom.json
fwsign add --repo repo firmware/pump-x100/pump-fw-2.4.0.bin --name pump-fw --version 2.4.0 \
    --security-version 3 --hardware-model pump-x100 \
    --sbom firmware/pump-x100/pump-fw-2.4.0.sbom.json \
    --release-notes "Fixes occlusion alarm latency"

say "Alice signs on her machine; one signature is not enough (R9)"
fwsign sign --repo repo --key "$ALICE"
if fwsign verify --repo repo >/dev/null 2>&1; then echo "UNEXPECTED: accepted with one signature"; exit 1; fi
echo "fwsign verify refuses: 1 of 2 signatures"

say "The directory travels to bob (git, removable media); bob signs; everything verifies"
cp -r repo repo-bob
fwsign sign --repo repo-bob --key "$BOB"
fwsign status --repo repo-bob --check
fwsign verify --repo repo-bob --targets-dir firmware

say "Alice publishes: password + TOTP to log in, a fresh code to confirm (R9, R58)"
FWSIGN_PASSWORD="$ALICE_PASSWORD" \
FWSIGN_OTP=$(python "$DEMO_DIR/phone.py" code alice) \
FWSIGN_PUBLISH_OTP=$(python "$DEMO_DIR/phone.py" code alice) \
    fwsign publish --repo repo-bob --server "$URL" --ca "$CA" --user alice --targets-dir firmware

say "A device trusting only root v1 and the server's CA downloads and verifies the release"
python "$DEMO_DIR/device.py" --server "$URL" --ca "$CA" --root repo/metadata/1.root.json \
    --target pump-x100/pump-fw-2.4.0.bin

say "Two pumps are provisioned with the shipped root and their model (no trust on first use)"
for DEVICE in pump-001 pump-002; do
    fwclient provision --state "devices/$DEVICE" --root repo/metadata/1.root.json \
        --hardware-model pump-x100 --device-id "$DEVICE"
done

say "The pumps register: each proves it holds its own device key, with a one-time enrolment token (R10)"
for DEVICE in pump-001 pump-002; do
    fwserver device enrol-token --data-dir server --model pump-x100 --device-id "$DEVICE" \
        --site ward-3 --accept | tail -n 1 > "$DEVICE.token"
    fwclient register --state "devices/$DEVICE" --server "$URL" --ca "$CA" --token-file "$DEVICE.token"
done
fwserver device list --data-dir server
# A registered pump installs only what a deployment assigns it, unless its model's
# fleet takes the newest eligible release: this ward's pumps do (an explicit setting).
fwserver fleet install --data-dir server pump-x100 newest

say "pump-001 updates: verified download into the inactive slot, trial boot, health check passes"
fwclient update --state devices/pump-001 --server "$URL" --ca "$CA" --health-check true
fwclient status --state devices/pump-001

say "An attacker swaps the firmware file on the server: pump-002 refuses it and keeps running (R13)"
SERVED=$(find server/repository/targets/pump-x100 -name '*.pump-fw-2.4.0.bin')
cp "$SERVED" genuine.bin
head -c "$(stat -c %s genuine.bin)" /dev/urandom > "$SERVED"
if fwclient update --state devices/pump-002 --server "$URL" --ca "$CA" --health-check true; then
    echo "UNEXPECTED: a tampered firmware was installed"; exit 1
fi
cp genuine.bin "$SERVED"
fwclient update --state devices/pump-002 --server "$URL" --ca "$CA" --health-check true

# Every later release is signed by alice and bob and published by alice, as 2.4.0 was.
sign_and_publish() {
    fwsign sign --repo repo-bob --key "$ALICE" >/dev/null
    fwsign sign --repo repo-bob --key "$BOB" >/dev/null
    FWSIGN_PASSWORD="$ALICE_PASSWORD" \
    FWSIGN_OTP=$(python "$DEMO_DIR/phone.py" code alice) \
    FWSIGN_PUBLISH_OTP=$(python "$DEMO_DIR/phone.py" code alice) \
        fwsign publish --repo repo-bob --server "$URL" --ca "$CA" --user alice --targets-dir firmware
}

say "Release 2.5.0 (signed by alice and bob, published with MFA) fails its health check on pump-002"
head -c $((4 * 1024 * 1024)) /dev/urandom > firmware/pump-x100/pump-fw-2.5.0.bin
fwsign add --repo repo-bob firmware/pump-x100/pump-fw-2.5.0.bin --name pump-fw --version 2.5.0 \
    --security-version 3 --hardware-model pump-x100
sign_and_publish
fwclient update --state devices/pump-002 --server "$URL" --ca "$CA" --tries 2 \
    --health-check "sh -c 'echo occlusion sensor not responding >&2; exit 1'" || true
for _ in 1 2; do fwclient boot --state devices/pump-002 --health-check false || true; done
fwclient status --state devices/pump-002
fwclient log verify --state devices/pump-002

say "On pump-001 the same 2.5.0 passes its health check"
fwclient update --state devices/pump-001 --server "$URL" --ca "$CA" --health-check true

say "Release 2.6.0 needs a technician's authorization on site (R58); alice and bob sign, alice publishes"
head -c $((4 * 1024 * 1024)) /dev/urandom > firmware/pump-x100/pump-fw-2.6.0.bin
fwsign add --repo repo-bob firmware/pump-x100/pump-fw-2.6.0.bin --name pump-fw --version 2.6.0 \
    --security-version 3 --hardware-model pump-x100 --requires-authorization
sign_and_publish

say "pump-001 waits for an authorization: it keeps running 2.5.0 and says so (exit 0)"
fwclient update --state devices/pump-001 --server "$URL" --ca "$CA" --health-check true
fwclient status --state devices/pump-001 | grep -E '^(installed_version|last_update)'

say "The administrator adds tom, a technician of ward 3; tom finishes first login"
TOM_INITIAL=$(fwserver user add --data-dir server --role technician tom | tail -n 1 | awk '{print $NF}')
TOM_PASSWORD="ward three pumps, checked twice 2026"
python "$DEMO_DIR/phone.py" setup --server "$URL" --ca "$CA" --user tom \
    --initial-password "$TOM_INITIAL" --new-password "$TOM_PASSWORD"
fwserver user scope --data-dir server tom --site ward-3

say "Tom authorizes pump-001 for 2.6.0, confirming with a fresh code (the API his browser uses)"
python "$DEMO_DIR/technician.py" authorize --server "$URL" --ca "$CA" --user tom \
    --password "$TOM_PASSWORD" --device pump-001 --target pump-x100/pump-fw-2.6.0.bin

say "pump-001 picks the authorization up at its next update, installs 2.6.0 and reports"
fwclient update --state devices/pump-001 --server "$URL" --ca "$CA" --health-check true
fwclient status --state devices/pump-001 | grep -E '^(installed_version|last_update)'

say "The same authorization handed to pump-002 is refused: it names pump-001 (R25, R58)"
if fwclient update --state devices/pump-002 --server "$URL" --ca "$CA" \
    --authorization authorization-pump-001.json; then
    echo "UNEXPECTED: pump-002 installed with pump-001's authorization"; exit 1
fi
python "$DEMO_DIR/technician.py" list --server "$URL" --ca "$CA" --user tom --password "$TOM_PASSWORD"
fwserver device show --data-dir server pump-001

say "Fleet operations (issue 11): the ward's fleet goes back to 'assigned': a pump installs only"
echo "   what a deployment gives it; alice and bob sign 2.7.0 and alice publishes it"
fwserver fleet install --data-dir server pump-x100 assigned
head -c $((4 * 1024 * 1024)) /dev/urandom > firmware/pump-x100/pump-fw-2.7.0.bin
fwsign add --repo repo-bob firmware/pump-x100/pump-fw-2.7.0.bin --name pump-fw --version 2.7.0 \
    --security-version 3 --hardware-model pump-x100
sign_and_publish
fwclient update --state devices/pump-002 --server "$URL" --ca "$CA" --health-check true

say "Two release managers and three security officers finish their first login"
declare -A PASSWORD
N=0
for PERSON in mona:release_manager max:release_manager olga:security_officer \
        oscar:security_officer otto:security_officer; do
    NAME=${PERSON%%:*} N=$((N + 1))
    PASSWORD[$NAME]="infusion fleet steward number $N, ward three 2026"
    INITIAL=$(fwserver user add --data-dir server --role "${PERSON#*:}" "$NAME" | tail -n 1 | awk '{print $NF}')
    python "$DEMO_DIR/phone.py" setup --server "$URL" --ca "$CA" --user "$NAME" \
        --initial-password "$INITIAL" --new-password "${PASSWORD[$NAME]}"
done
FLEET=(--server "$URL" --ca "$CA")

say "Mona deploys 2.7.0 to the pump-x100 fleet in two waves; max approves (four eyes, R9)"
python "$DEMO_DIR/fleet.py" deploy "${FLEET[@]}" --user mona --password "${PASSWORD[mona]}" \
    --target pump-x100/pump-fw-2.7.0.bin --fleet pump-x100
python "$DEMO_DIR/fleet.py" approve "${FLEET[@]}" --user max --password "${PASSWORD[max]}" \
    --deployment 1
for _ in 1 2; do  # each poll: the pump in a started wave installs, reports, and the next wave starts
    for DEVICE in pump-001 pump-002; do
        fwclient update --state "devices/$DEVICE" --server "$URL" --ca "$CA" --health-check true
    done
done
fwserver deployment show --data-dir server 1

say "Olga freezes everything with a fresh code; a pump's poll learns it and holds (R24, R59)"
python "$DEMO_DIR/fleet.py" freeze "${FLEET[@]}" --user olga --password "${PASSWORD[olga]}" \
    --reason "drill: a signing token was reported lost"
fwclient update --state devices/pump-001 --server "$URL" --ca "$CA" --health-check true
fwserver status --data-dir server | grep -E '^(mode|ready|deployments)' || true

say "Leaving it takes two other officers' votes, each with a fresh code"
python "$DEMO_DIR/fleet.py" lift "${FLEET[@]}" --user oscar --password "${PASSWORD[oscar]}"
python "$DEMO_DIR/fleet.py" lift "${FLEET[@]}" --user otto --password "${PASSWORD[otto]}"
fwserver status --data-dir server | grep -E '^mode' || true  # exit 3: warnings (an unsynced clock)

say "Release 2.8.0 changes a few blocks of 2.7.0: alice signs it with its delta from 2.7.0 (issue 13)"
cp firmware/pump-x100/pump-fw-2.7.0.bin firmware/pump-x100/pump-fw-2.8.0.bin
head -c $((40 * 1024)) /dev/urandom \
    | dd of=firmware/pump-x100/pump-fw-2.8.0.bin bs=4096 seek=100 conv=notrunc status=none
fwsign add --repo repo-bob firmware/pump-x100/pump-fw-2.8.0.bin --name pump-fw --version 2.8.0 \
    --security-version 3 --hardware-model pump-x100 --targets-dir firmware --delta-from 2.7.0
sign_and_publish

say "Mona deploys 2.8.0 to the fleet; max approves. pump-002 (wave 1), on a thin link, downloads"
echo "   the delta, rebuilds 2.8.0 in its inactive slot and checks it against the signed image"
python "$DEMO_DIR/fleet.py" deploy "${FLEET[@]}" --user mona --password "${PASSWORD[mona]}" \
    --target pump-x100/pump-fw-2.8.0.bin --fleet pump-x100
python "$DEMO_DIR/fleet.py" approve "${FLEET[@]}" --user max --password "${PASSWORD[max]}" \
    --deployment 2
fwclient update --state devices/pump-002 --server "$URL" --ca "$CA" --health-check true

say "pump-001 (wave 2) sits on an isolated segment: the operator writes its bundle to removable"
echo "   media, and the pump installs from it with no network: the same checks as online (R13, R46)"
fwserver bundle --data-dir server --device pump-001 -o pump-001.bundle.tar
fwclient update --state devices/pump-001 --bundle pump-001.bundle.tar --health-check true
fwclient status --state devices/pump-001 | grep -E '^(installed_version|last_update)'
if fwclient update --state devices/pump-001 --bundle pump-001.bundle.tar --health-check true; then
    echo "(nothing newer in the bundle: the pump keeps 2.8.0)"
fi

say "The auditor verifies the audit log of all of it (R27, R28)"
fwserver audit verify --data-dir server
fwhsm log verify --token tokens/alice
echo
echo "demo finished: server data in $OUT/server, repository in $OUT/repo-bob"
