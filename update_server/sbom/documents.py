"""The components an SBOM lists: CycloneDX JSON or SPDX JSON, read for name, version and purl.

Pure: bytes in, ``Component`` values out, or ``DocumentError``. Rules:

- D1 CycloneDX JSON (``"bomFormat": "CycloneDX"``): every entry of
  ``components``, nested ``components`` included; the document's own
  subject (``metadata.component``, the firmware itself) is not one of them.
- D2 SPDX JSON (``spdxVersion`` starting ``SPDX-``): every entry of
  ``packages``, its version from ``versionInfo``, its purl from the
  ``externalRefs`` of type ``purl``.
- D3 A component has a name (a string); its version and purl may be
  missing (an unversioned component cannot be ruled out: ``versions``). A
  purl that does not parse is dropped and the name still counts.
- D4 Anything else (another format, a component without a name, bytes
  that are not UTF-8 JSON) is refused: the release is reported as not
  checked, never as clean.

Package URLs (https://github.com/package-url/purl-spec) are read for what
matching needs: type, namespace, name and version, percent-decoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from update_server.sbom.errors import DocumentError

#: Nesting allowed in a CycloneDX document's ``components`` (a bound, not a format rule).
MAX_DEPTH = 32


@dataclass(frozen=True)
class PackageUrl:
    type: str
    namespace: str
    name: str
    version: str = ""

    def __str__(self) -> str:
        namespace = f"{self.namespace}/" if self.namespace else ""
        version = f"@{self.version}" if self.version else ""
        return f"pkg:{self.type}/{namespace}{self.name}{version}"


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    purl: PackageUrl | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


def parse_purl(text: object) -> PackageUrl:
    """``pkg:type/namespace/name@version?qualifiers#subpath``; ``ValueError`` otherwise."""
    if not isinstance(text, str) or not text.startswith("pkg:"):
        raise ValueError(f"not a package URL (pkg:type/name): {str(text)[:100]!r}")
    rest = text[4:].lstrip("/").split("#", 1)[0].split("?", 1)[0]
    head, _, last = rest.rpartition("/")
    name, at, version = last.rpartition("@")
    if not at:
        name, version = last, ""
    kind, _, namespace = head.partition("/")
    if not kind or not name:
        raise ValueError(f"a package URL needs a type and a name: {text[:100]!r}")
    return PackageUrl(kind.lower(), unquote(namespace), unquote(name), unquote(version))


def read_components(data: bytes) -> tuple[Component, ...]:
    """D1-D4: the components ``data`` lists, each once, in document order."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DocumentError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DocumentError("not a JSON object")
    if document.get("bomFormat") == "CycloneDX":
        found = list(_cyclonedx(document.get("components", []), depth=0))
    elif str(document.get("spdxVersion", "")).startswith("SPDX-"):
        found = list(_spdx(document.get("packages", [])))
    else:
        raise DocumentError("neither CycloneDX JSON (bomFormat) nor SPDX JSON (spdxVersion)")
    return tuple(dict.fromkeys(found))


def _cyclonedx(components: object, *, depth: int) -> Iterator[Component]:
    if depth > MAX_DEPTH:
        raise DocumentError(f"components nested deeper than {MAX_DEPTH}")
    for item in _objects(components, "components"):
        yield _component(item.get("name"), item.get("version"), item.get("purl"))
        if "components" in item:
            yield from _cyclonedx(item["components"], depth=depth + 1)


def _spdx(packages: object) -> Iterator[Component]:
    for item in _objects(packages, "packages"):
        refs = item.get("externalRefs", [])
        purls = [
            ref.get("referenceLocator")
            for ref in (refs if isinstance(refs, list) else [])
            if isinstance(ref, dict) and ref.get("referenceType") == "purl"
        ]
        yield _component(item.get("name"), item.get("versionInfo"), purls[0] if purls else None)


def _objects(items: object, field: str) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise DocumentError(f"{field} must be a list of objects")
    return items


def _component(name: object, version: object, purl: object) -> Component:
    if not isinstance(name, str) or not name:
        raise DocumentError("a component has no name")
    try:
        parsed = None if purl is None else parse_purl(purl)
    except ValueError:
        parsed = None  # D3: the name still identifies it
    return Component(name, version if isinstance(version, str) else "", parsed)
