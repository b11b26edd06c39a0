"""The SBOM matcher's pure core: OSV subset, SBOM components, version ranges, matching (R41, R56).

R41 asks that the components of each firmware release be known and held
against the vulnerabilities found in them; R56 that the devices running an
affected release can be found and moved. These tests pin the rules the
answer rests on: ``advisories`` A1-A6, ``documents`` D1-D4, ``versions``
V1-V4 and ``matching`` M1-M4.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from repo_metadata.firmware import SbomRef
from update_server.publication.repository import target_file
from update_server.sbom.advisories import Advisory, load_advisories
from update_server.sbom.documents import Component, parse_purl, read_components
from update_server.sbom.errors import AdvisoryError, DocumentError, UncheckedError
from update_server.sbom.inventory import verified_sbom
from update_server.sbom.matching import judge, match
from update_server.sbom.versions import Verdict, verdict

SBOM_BYTES = b'{"bomFormat": "CycloneDX", "components": []}'


def osv(*records: dict[str, Any], wrap: bool = True) -> tuple[Advisory, ...]:
    document: object = {"vulns": list(records)} if wrap else list(records)
    return load_advisories(json.dumps(document).encode())


def record(
    ident: str = "OSV-1", *, name: str = "zlib", ecosystem: str = "ECO", **affected: Any
) -> dict[str, Any]:
    return {
        "id": ident,
        "affected": [{"package": {"ecosystem": ecosystem, "name": name}, **affected}],
    }


def one_range(kind: str, *events: tuple[str, str]) -> dict[str, Any]:
    return {"ranges": [{"type": kind, "events": [{k: v} for k, v in events]}]}


def answer(version: str, kind: str, *events: tuple[str, str]) -> Verdict:
    (advisory,) = osv(record(**one_range(kind, *events)))
    return verdict(version, advisory.affected[0])


# --- versions V1-V4 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0.0", Verdict.NOT_AFFECTED),  # below introduced
        ("1.2.0", Verdict.AFFECTED),  # introduced is inclusive
        ("1.4.9", Verdict.AFFECTED),
        ("1.5.0", Verdict.NOT_AFFECTED),  # fixed is exclusive
        ("2.0.0", Verdict.NOT_AFFECTED),
        ("1.5.0-rc.1", Verdict.AFFECTED),  # a pre-release of the fix precedes it
    ],
)
def test_introduced_is_inclusive_and_fixed_exclusive_in_a_semver_range_v2(
    version: str, expected: Verdict
) -> None:
    assert answer(version, "SEMVER", ("introduced", "1.2.0"), ("fixed", "1.5.0")) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [("2.3", Verdict.AFFECTED), ("2.3.0", Verdict.AFFECTED), ("2.3.1", Verdict.NOT_AFFECTED)],
)
def test_last_affected_is_inclusive_v2(version: str, expected: Verdict) -> None:
    events = (("introduced", "2.0"), ("last_affected", "2.3"))
    assert answer(version, "ECOSYSTEM", *events) is expected


def test_a_range_in_several_pieces_holds_only_inside_each_piece_v2() -> None:
    events = (("introduced", "1.0"), ("fixed", "1.5"), ("introduced", "2.0"), ("fixed", "2.5"))
    found = {v: answer(v, "ECOSYSTEM", *events) for v in ("0.9", "1.1", "1.7", "2.0", "2.5")}
    assert [v for v, a in found.items() if a is Verdict.AFFECTED] == ["1.1", "2.0"]


def test_introduced_zero_reaches_the_first_version_and_limit_bounds_the_range_v2() -> None:
    assert answer("0.0.1", "SEMVER", ("introduced", "0"), ("fixed", "1.0.0")) is Verdict.AFFECTED
    events = (("introduced", "0"), ("limit", "3.0"))
    assert answer("2.9", "ECOSYSTEM", *events) is Verdict.AFFECTED
    assert answer("3.0", "ECOSYSTEM", *events) is Verdict.NOT_AFFECTED


def test_dotted_numbers_compare_as_numbers_not_text_v3() -> None:
    events = (("introduced", "1.2.9"), ("fixed", "1.2.13"))
    assert answer("1.2.10", "ECOSYSTEM", *events) is Verdict.AFFECTED
    assert answer("v1.2.10", "ECOSYSTEM", *events) is Verdict.AFFECTED  # a leading v is no part


@pytest.mark.parametrize("version", ["1.1.1w", "1:1.2.11.dfsg-2", ""])
def test_a_version_the_range_cannot_order_is_unknown_never_clean_v4(version: str) -> None:
    events = (("introduced", "1.0"), ("fixed", "3.0"))
    assert answer(version, "ECOSYSTEM", *events) is Verdict.UNKNOWN


def test_a_listed_version_is_affected_whatever_its_form_v1() -> None:
    (advisory,) = osv(record(versions=["1.1.1w"]))
    assert verdict("1.1.1w", advisory.affected[0]) is Verdict.AFFECTED
    assert verdict("1.1.1x", advisory.affected[0]) is Verdict.NOT_AFFECTED


# --- advisories A1-A6 -------------------------------------------------------------


def test_a_list_a_vulns_object_and_a_single_record_all_read_a1() -> None:
    one = record(**one_range("SEMVER", ("introduced", "0")))
    assert osv(one) == osv(one, wrap=False) == load_advisories(json.dumps(one).encode())


def test_a_withdrawn_advisory_no_longer_applies_a2() -> None:
    assert osv({**record(versions=["1.0"]), "withdrawn": "2026-01-01T00:00:00Z"}) == ()


def test_git_ranges_beside_versions_are_skipped_a4() -> None:
    git = {"type": "GIT", "repo": "https://example.org/z.git", "events": [{"introduced": "0"}]}
    (advisory,) = osv(record(ranges=[git], versions=["1.2.11"]))
    assert verdict("1.2.11", advisory.affected[0]) is Verdict.AFFECTED


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{not json", "not JSON"),
        (b'"text"', "OSV record, a list of them"),
        (json.dumps([{"affected": []}]).encode(), "record 0 has no id"),
        (json.dumps([{"id": "X", "affected": [{"ranges": []}]}]).encode(), "names no package"),
        (
            json.dumps(
                [record(ranges=[{"type": "GIT", "events": [{"introduced": "0"}]}])]
            ).encode(),
            "only GIT ranges",
        ),
        (json.dumps([record(**one_range("NPM", ("introduced", "0")))]).encode(), "'NPM'"),
        (json.dumps([record(**one_range("SEMVER", ("fixed", "1.0.0")))]).encode(), "no introduced"),
        (
            json.dumps([record(**one_range("SEMVER", ("introduced", "1.0")))]).encode(),
            "not a semantic version",
        ),
        (json.dumps([record(**one_range("ECOSYSTEM", ("broken", "1")))]).encode(), "'broken'"),
        (json.dumps([record(versions="1.0")]).encode(), "versions must be a list"),
    ],
)
def test_anything_outside_the_subset_is_refused_naming_where_a1_a5(data: bytes, says: str) -> None:
    with pytest.raises(AdvisoryError, match=says):
        load_advisories(data)


# --- documents D1-D4 --------------------------------------------------------------


def test_cyclonedx_components_nested_ones_included_and_the_subject_excluded_d1() -> None:
    bom = {
        "bomFormat": "CycloneDX",
        "metadata": {"component": {"name": "pump-firmware", "version": "2.0.0"}},
        "components": [
            {"name": "busybox", "version": "1.36.1", "components": [{"name": "ash"}]},
            {"name": "zlib", "version": "1.2.13", "purl": "pkg:generic/zlib@1.2.13"},
        ],
    }
    names = [str(c) for c in read_components(json.dumps(bom).encode())]
    assert names == ["busybox@1.36.1", "ash", "zlib@1.2.13"]


def test_spdx_packages_with_their_purl_d2() -> None:
    ref = {"referenceType": "purl", "referenceLocator": "pkg:pypi/Jinja2@3.1.2"}
    spdx = {"spdxVersion": "SPDX-2.3", "packages": [{"name": "jinja2", "versionInfo": "3.1.2"}]}
    spdx["packages"][0]["externalRefs"] = [ref]
    (component,) = read_components(json.dumps(spdx).encode())
    assert component == Component("jinja2", "3.1.2", parse_purl("pkg:pypi/Jinja2@3.1.2"))


@pytest.mark.parametrize(
    "data",
    [b"\xff", b"[]", b'{"bomFormat": "other"}', b'{"bomFormat": "CycloneDX", "components": [{}]}'],
)
def test_an_sbom_that_does_not_read_is_refused_d4(data: bytes) -> None:
    with pytest.raises(DocumentError):
        read_components(data)


def test_package_urls_are_read_percent_decoded_with_their_namespace() -> None:
    purl = parse_purl("pkg:npm/%40scope/left-pad@1.3.0?arch=x#sub")
    assert (purl.type, purl.namespace, purl.name, purl.version) == (
        "npm",
        "@scope",
        "left-pad",
        "1.3.0",
    )
    with pytest.raises(ValueError, match="not a package URL"):
        parse_purl("npm/left-pad")


# --- matching M1-M4 ---------------------------------------------------------------


def test_a_typed_purl_matches_its_ecosystem_and_not_another_m1() -> None:
    (advisory,) = osv(record(name="Jinja2", ecosystem="PyPI", versions=["3.1.2"]))
    pypi = Component("jinja2", "3.1.2", parse_purl("pkg:pypi/jinja2@3.1.2"))
    npm = Component("jinja2", "3.1.2", parse_purl("pkg:npm/jinja2@3.1.2"))
    assert judge(pypi, advisory) == (Verdict.AFFECTED, "purl")
    assert judge(npm, advisory) == (Verdict.NOT_AFFECTED, "")


def test_maven_and_go_names_join_the_namespace_as_osv_writes_them_m1() -> None:
    log4j = osv(
        record(name="org.apache.logging.log4j:log4j-core", ecosystem="Maven", versions=["2.14.1"])
    )
    component = Component(
        "log4j-core", "2.14.1", parse_purl("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1")
    )
    assert judge(component, log4j[0]) == (Verdict.AFFECTED, "purl")
    net = osv(record(name="golang.org/x/net", ecosystem="Go", versions=["0.7.0"]))
    module = Component(
        "golang.org/x/net", "v0.7.0", parse_purl("pkg:golang/golang.org/x/net@v0.7.0")
    )
    assert judge(module, net[0]) == (Verdict.AFFECTED, "purl")


def test_a_firmware_library_without_a_typed_purl_matches_by_name_m2() -> None:
    (advisory,) = osv(record(name="OpenSSL", ecosystem="Debian:12", versions=["3.0.7"]))
    assert judge(Component("openssl", "3.0.7"), advisory) == (Verdict.AFFECTED, "name")
    generic = Component("openssl", "3.0.7", parse_purl("pkg:generic/openssl@3.0.7"))
    assert judge(generic, advisory) == (Verdict.AFFECTED, "name")


def test_findings_list_every_release_holding_the_component_affected_first_m3_m4() -> None:
    advisories = osv(
        record(
            "B-2", name="zlib", **one_range("ECOSYSTEM", ("introduced", "0"), ("fixed", "1.2.12"))
        ),
        record("A-1", name="busybox", **one_range("ECOSYSTEM", ("introduced", "1.30"))),
    )
    old, new = Component("zlib", "1.2.11"), Component("zlib", "1.2.13")
    releases = {
        "m/fw-1.bin": [old, Component("busybox", "1.36.1-r0")],
        "m/fw-2.bin": [new],
        "m/fw-3.bin": [old],
    }
    found = [
        (f.advisory.id, str(f.component), f.verdict, f.releases)
        for f in match(releases, advisories)
    ]
    assert found == [
        ("B-2", "zlib@1.2.11", Verdict.AFFECTED, ("m/fw-1.bin", "m/fw-3.bin")),
        ("A-1", "busybox@1.36.1-r0", Verdict.UNKNOWN, ("m/fw-1.bin",)),
    ]


# --- inventory I2: the server's copy trusted only as the metadata signs it ------------


class _Published:
    """The two things ``verified_sbom`` asks of the published repository."""

    def __init__(self, directory: Path, targets: dict[str, TargetFile]) -> None:
        self.directory = directory
        self.targets = targets

    def published_target(self, path: str) -> TargetFile | None:
        return self.targets.get(path)


@pytest.mark.parametrize(
    ("listed", "named", "on_disk", "says"),
    [
        (False, SBOM_BYTES, SBOM_BYTES, "is not a published target"),
        (True, b"other document", SBOM_BYTES, "signed with other bytes than the release names"),
        (True, SBOM_BYTES, None, "the server has no file for its SBOM"),
        (True, SBOM_BYTES, SBOM_BYTES + b" ", "is not the signed one"),
    ],
    ids=["unlisted", "other-bytes", "no-file", "changed-file"],
)
def test_an_sbom_is_read_only_as_the_signed_metadata_lists_it_i2(
    tmp_path: Path, listed: bool, named: bytes, on_disk: bytes | None, says: str
) -> None:
    path = "pump-x100/fw-1.0.0.sbom.json"
    target = TargetFile.from_data(path, SBOM_BYTES, ["sha256"])
    digest = target.hashes["sha256"]
    if on_disk is not None:
        file = tmp_path / target_file(path, digest)
        file.parent.mkdir(parents=True)
        file.write_bytes(on_disk)
    repository = _Published(tmp_path, {path: target} if listed else {})
    ref = SbomRef(path=path, sha256=hashlib.sha256(named).hexdigest())
    with pytest.raises(UncheckedError, match=says):
        verified_sbom(repository, ref)  # type: ignore[arg-type]  # a stand-in
    repository.targets[path] = target
    if on_disk == SBOM_BYTES:
        assert verified_sbom(repository, SbomRef(path=path, sha256=digest)) == SBOM_BYTES  # type: ignore[arg-type]
