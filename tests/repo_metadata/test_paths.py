"""Target paths and role names that cannot reach outside a directory."""

from __future__ import annotations

import pytest

from repo_metadata.errors import InvalidFieldError
from repo_metadata.paths import check_role_name, check_target_path


@pytest.mark.parametrize(
    "path", ["fw.bin", "pump-x100/infusion-1.2.0+b.1.bin", "a/b/c/D_e.spdx.json", "a" * 128]
)
def test_safe_target_paths_are_returned(path: str) -> None:
    assert check_target_path(path) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "non-empty"),
        ("a/" * 127 + "ab", "longer than 255"),
        ("pump/" + "a" * 129, "segment"),
        ("pump/fw\x00.bin", "control character"),
        ("pump/fw\n.bin", "control character"),
        ("pump/fw\x7f.bin", "control character"),
        ("pump\\fw.bin", "backslash"),
        ("/etc/passwd", "absolute"),
        ("pump/../../etc/passwd", "'..'"),
        ("..", "'..'"),
        ("pump/./fw.bin", "'.'"),
        ("pump//fw.bin", "empty"),
        ("pump/", "empty"),
        ("pump/fw 1.bin", "segment"),
        ("pump/fw\u00e9.bin", "segment"),
        ("pump/fw:1.bin", "segment"),
        ("pump/*.bin", "segment"),
    ],
    ids=repr,
)
def test_unsafe_target_paths_are_refused_path_traversal(path: str, reason: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        check_target_path(path)
    assert caught.value.field == "path"
    assert reason in str(caught.value)


def test_non_string_target_path_is_refused() -> None:
    with pytest.raises(InvalidFieldError, match="non-empty string"):
        check_target_path(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["pump-x100", "bin-0a", "a", "a.b_c-d", "a" * 64])
def test_valid_role_names_are_returned(name: str) -> None:
    assert check_role_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Pump", "-pump", ".pump", "_pump", "pump/x", "../pump", "pump x", "pump\n", "a" * 65, 5],
    ids=repr,
)
def test_invalid_role_names_are_refused_file_name_traversal(name: str) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        check_role_name(name)
    assert caught.value.field == "role"
    assert "is not a role name" in str(caught.value)


@pytest.mark.parametrize("name", ["root", "targets", "snapshot", "timestamp"])
def test_top_level_names_are_refused_as_delegated_roles(name: str) -> None:
    with pytest.raises(InvalidFieldError, match="top-level role name"):
        check_role_name(name)
