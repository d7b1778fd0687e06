"""The chat page's files, read as a reviewer would: no inline script or style (the Content
Security Policy would block them anyway), only its own files loaded, nothing from the API
inserted as HTML, the pasted key kept in sessionStorage only, and the policy itself strict."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from agent.http.kit import API_PREFIX
from agent.ui.page import ASSETS, CONTENT_SECURITY_POLICY, HERE, ROUTE, asset_bytes


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []  # text inside <script> or <style>
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def page_tags() -> Tags:
    parser = Tags()
    parser.feed(asset_bytes("index.html").decode("utf-8"))
    return parser


def test_the_page_has_no_inline_script_style_or_event_handler():
    parsed = page_tags()
    assert parsed.inline == []
    assert [t for t, _ in parsed.tags].count("style") == 0
    for tag, attrs in parsed.tags:
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "script":
            assert attrs.get("type") == "module" and attrs.get("src")


def test_the_page_loads_only_its_own_files_under_the_api_prefix():
    parsed = page_tags()
    loaded = [a.get("src") or a.get("href") for t, a in parsed.tags if t in ("script", "link")]
    assert sorted(loaded) == [f"{API_PREFIX}/{ROUTE}/app.css", f"{API_PREFIX}/{ROUTE}/app.js"]


def test_every_form_control_has_a_label():
    parsed = page_tags()
    labelled = {a["for"] for t, a in parsed.tags if t == "label"}
    controls = [a for t, a in parsed.tags if t in ("input", "textarea", "select")]
    assert controls and all(a["id"] in labelled for a in controls)


def test_the_script_never_inserts_text_as_html_nor_evaluates_it():
    script = asset_bytes("app.js").decode("utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setTimeout(\"", "setTimeout('"):  # fmt: skip
        assert sink not in script, sink


def test_the_key_is_kept_in_session_storage_and_nothing_else_in_local_storage():
    script = asset_bytes("app.js").decode("utf-8")
    assert "sessionStorage.setItem(KEY_STORAGE" in script
    local = re.findall(r"localStorage\.(\w+)\(([^,)]*)", script)
    assert local and {key for _, key in local} == {"CONVERSATIONS_STORAGE"}
    assert "document.cookie" not in script


def test_the_policy_allows_only_the_pages_own_origin_and_no_framing():
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def test_only_the_three_page_files_can_be_served():
    assert sorted(ASSETS) == sorted(
        p.name for p in HERE.iterdir() if p.suffix != ".py" and p.is_file()
    )
    with pytest.raises(KeyError):
        asset_bytes("page.py")
