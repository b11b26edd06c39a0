"""The declared dependencies are the imported ones (R4, R45: known components only).

- PK1 Every third-party module a product package imports, at the top or
  inside a function, comes from a distribution that ``pyproject.toml``
  declares: nothing arrives only because another package happens to bring it.
- PK2 Every declared dependency is imported by the product, or is listed
  here with the reason it is needed without an import.
- PK3 The device distribution (``packaging/device``) declares what its three
  packages import, and those packages import nothing outside themselves
  but the lazy imports listed here, each with the path that reaches it.
- PK4 The device's lock holds no web framework, database layer, WSGI server,
  migration tool, metrics library or database driver, and pins each package
  at the server lock's version with the server lock's hashes.
- PK5 Each distribution's version is the project's, and its licence file is
  the repository's LICENSE.
"""

from __future__ import annotations

import tomllib

from packaging.utils import canonicalize_name

from tests.packaging.imports import (
    DEVICE_PACKAGES,
    DEVICE_PROJECT,
    PACKAGES,
    ROOT,
    SERVER_PROJECT,
    declared,
    distribution_of,
    imports,
    is_third_party,
    read_lock,
)

#: Declared without an import of their own (PK2), and why.
NEEDED_WITHOUT_IMPORT = {
    # SQLAlchemy loads the driver named by the database URL (postgresql+psycopg).
    "psycopg": "the PostgreSQL driver SQLAlchemy loads from database_url",
}
#: Imports a device package makes of a package the device does not ship (PK3).
DEVICE_LAZY = {
    ("fwcommon.keyref", "hsm_mock"): "only for fwhsm: URIs (the software token, never a device's)",
}
#: What a device never installs (PK4, issue 12).
SERVER_ONLY = {
    "flask", "flask-wtf", "werkzeug", "jinja2", "wtforms", "sqlalchemy", "alembic",
    "gunicorn", "psycopg", "psycopg-binary", "prometheus-client", "argon2-cffi", "pyotp",
    "jsonschema", "segno", "tqdm",
}  # fmt: skip


def _third_party(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Distribution (or the bare module, if none provides it) -> importing modules."""
    found: dict[str, set[str]] = {}
    for item in imports(packages):
        if is_third_party(item.top):
            name = distribution_of(item.top) or f"<no distribution provides {item.top}>"
            found.setdefault(name, set()).add(item.importer)
    return found


def test_every_third_party_import_is_a_declared_dependency_pk1() -> None:
    used = _third_party(PACKAGES)
    undeclared = {
        name: sorted(who)[:3] for name, who in used.items() if name not in declared(SERVER_PROJECT)
    }
    assert undeclared == {}, "declare these in pyproject.toml (and requirements.in)"


def test_every_declared_dependency_is_imported_or_has_its_reason_pk2() -> None:
    used = set(_third_party(PACKAGES))
    unused = set(declared(SERVER_PROJECT)) - used - set(NEEDED_WITHOUT_IMPORT)
    assert unused == set()
    assert set(NEEDED_WITHOUT_IMPORT) <= set(declared(SERVER_PROJECT))


def test_the_device_distribution_declares_what_its_packages_import_pk3() -> None:
    used = _third_party(DEVICE_PACKAGES)
    device = declared(DEVICE_PROJECT)
    assert {name: sorted(who)[:3] for name, who in used.items() if name not in device} == {}
    assert set(device) - set(used) == set(), "the device declares only what it imports"
    assert not set(device) & SERVER_ONLY


def test_the_device_packages_import_nothing_they_do_not_ship_but_the_listed_lazy_ones_pk3() -> None:
    outside = {
        (item.importer, item.top): item.lazy
        for item in imports(DEVICE_PACKAGES)
        if item.top in PACKAGES and item.top not in DEVICE_PACKAGES
    }
    assert set(outside) == set(DEVICE_LAZY)
    assert all(outside.values()), "each is imported inside the function that needs it"


def test_the_device_project_ships_exactly_the_device_packages_pk3() -> None:
    found = tomllib.loads(DEVICE_PROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]
    assert sorted(found["include"]) == sorted(
        name for package in DEVICE_PACKAGES for name in (package, f"{package}.*")
    )


def test_the_device_lock_has_no_server_package_and_matches_the_server_lock_pk4() -> None:
    device = read_lock(ROOT / "requirements-device.lock")
    server = read_lock(ROOT / "requirements.lock")
    assert device, "the device lock pins something"
    assert not set(device) & {canonicalize_name(name) for name in SERVER_ONLY}
    assert set(declared(DEVICE_PROJECT)) <= set(device)
    for name, pin in device.items():
        assert pin.hashes, f"{name} is pinned without hashes"
        assert (server[name].version, server[name].hashes) == (pin.version, pin.hashes), name


def test_both_distributions_carry_the_project_version_and_the_licence_pk5() -> None:
    server = tomllib.loads(SERVER_PROJECT.read_text())["project"]
    device = tomllib.loads(DEVICE_PROJECT.read_text())["project"]
    assert device["version"] == server["version"]
    assert server["license-files"] == device["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert (DEVICE_PROJECT.parent / "LICENSE").read_text() == licence
    assert "fwupdate authors" in licence
