"""deploy/nginx/render.py: every placeholder gets a value, no value adds a directive (N1-N3)."""

from __future__ import annotations

import re

import pytest

from tests.production.nginx import renderer

REQUIRED = {
    "SERVER_NAME": "updates.example.org",
    "CERTIFICATE": "/etc/ssl/updates.crt",
    "CERTIFICATE_KEY": "/etc/ssl/private/updates.key",
    "REPOSITORY": "/var/lib/fwupdate/repository",
    "UPSTREAM_CA": "/etc/nginx/fwupdate-ca.crt",
}


def test_the_required_values_and_the_defaults_fill_every_placeholder_n1_n3() -> None:
    rendered = renderer().render(REQUIRED)
    assert not re.search(r"@[A-Z][A-Z0-9_]*@", rendered)
    assert "root /var/lib/fwupdate/repository;" in rendered
    assert "rate=10r/m;" in rendered and "listen 443 ssl http2;" in rendered


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_value_is_named_n1(missing: str) -> None:
    module = renderer()
    values = {name: value for name, value in REQUIRED.items() if name != missing}
    with pytest.raises(module.RenderError, match=missing):
        module.render(values)


def test_a_name_the_template_does_not_have_is_refused_n1() -> None:
    module = renderer()
    with pytest.raises(module.RenderError, match="SERVER_NAMES"):
        module.render({**REQUIRED, "SERVER_NAMES": "typo.example.org"})


@pytest.mark.parametrize(
    "value",
    ["x; include /etc/shadow", "a b", "x}", "$host", "x#", "'x'", "x\nlisten 80", ""],
)
def test_a_value_that_is_not_one_nginx_word_is_refused_n2(value: str) -> None:
    module = renderer()
    with pytest.raises(module.RenderError, match="REPOSITORY"):
        module.render({**REQUIRED, "REPOSITORY": value})
