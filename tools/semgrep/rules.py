# ruff: noqa
# The cases of rules.yml, checked by `semgrep --test tools/semgrep` (make security):
# each `ruleid:` line must be found by that rule, each `ok:` line must not.
# Mistakes on purpose: never imported, not scanned by bandit or the product scan.
import logging
import os
import random
import shutil
import ssl
import subprocess
import tarfile
from pathlib import Path
from random import Random

import requests
import urllib3
import yaml

log = logging.getLogger(__name__)


def tls(url: str, context: ssl.SSLContext, ca: str) -> None:
    # ruleid: tls-verification-disabled
    requests.get(url, verify=False)
    # ruleid: tls-verification-disabled
    urllib3.PoolManager(cert_reqs="CERT_NONE")
    # ruleid: tls-verification-disabled
    context.verify_mode = ssl.CERT_NONE
    # ruleid: tls-verification-disabled
    context.check_hostname = False
    # ruleid: tls-verification-disabled
    ssl._create_unverified_context()
    # ruleid: tls-verification-disabled
    urllib3.disable_warnings()
    # ok: tls-verification-disabled
    urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca)
    # ok: tls-verification-disabled
    requests.get(url, verify=ca)


def loads(text: str) -> None:
    # ruleid: yaml-unsafe-load
    yaml.load(text)
    # ruleid: yaml-unsafe-load
    yaml.load(text, Loader=yaml.Loader)
    # ruleid: yaml-unsafe-load
    yaml.unsafe_load(text)
    # ok: yaml-unsafe-load
    yaml.safe_load(text)
    # ok: yaml-unsafe-load
    yaml.load(text, Loader=yaml.SafeLoader)


def logs(user: str, otp: str, password: str, token: str, request: object, pin: str) -> None:
    # ruleid: secret-logged
    log.info("login %s with %s", user, otp)
    # ruleid: secret-logged
    log.warning("bad password %s", password)
    # ruleid: secret-logged
    logging.debug(f"token {token}")
    # ruleid: secret-logged
    log.error("token %s", request.token)
    # ruleid: secret-logged
    log.info("unlocking with %r", pin)
    # ok: secret-logged
    log.info("login of %s refused", user)
    # ok: secret-logged
    log.info("token of %s revoked", user)


def shells(name: str) -> None:
    # ruleid: subprocess-shell
    subprocess.run(f"ls {name}", shell=True)
    # ruleid: subprocess-shell
    os.system("ls " + name)
    # ok: subprocess-shell
    subprocess.run(["ls", name], check=True)


def pickles(blob: bytes) -> None:
    # ruleid: pickle-used
    import pickle

    # ruleid: pickle-used
    pickle.loads(blob)


def tars(archive: Path, work: Path, tar: tarfile.TarFile) -> None:
    with tarfile.open(archive) as opened:
        # ruleid: tarfile-extract-without-filter
        opened.extractall(work)
        # ruleid: tarfile-extract-without-filter
        opened.extract("member", work)
        # ok: tarfile-extract-without-filter
        opened.extractall(work, filter="data")
    # ruleid: tarfile-extract-without-filter
    tar.extract("member", work)
    # ruleid: tarfile-extract-without-filter
    shutil.unpack_archive(archive, work)
    # ok: tarfile-extract-without-filter
    shutil.unpack_archive(archive, work, filter="data")


def extract(source: Path, work: Path) -> None:
    """Our own function of that name (backup.archive) is no tarfile call."""


def calls_our_extract(archive: object, source: Path, work: Path) -> None:
    # ok: tarfile-extract-without-filter
    archive.extract(source, work)


def randoms(rng: Random) -> None:
    # ruleid: random-for-secrets
    random.randint(0, 999999)
    # ruleid: random-for-secrets
    Random(42)
    # ruleid: random-for-secrets
    random.choice("abc")
    # ok: random-for-secrets
    random.SystemRandom()
    # ok: random-for-secrets
    rng.random()


def evals(text: str) -> None:
    # ruleid: eval-or-exec
    eval(text)
    # ruleid: eval-or-exec
    exec(text)
