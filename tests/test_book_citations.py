"""Every citation in the manuscript resolves in references.bib, and every entry there is cited
and says where to find the work: MyST turns an unknown key into a warning only at `make book`,
after the notebooks' hour of re-execution."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# MyST cross-references share the @ syntax with citations (@sec-methods, @fig-vit)
CROSS_REFERENCE = ("sec-", "fig-", "tbl-", "eq-")
AT_KEY = re.compile(r"(?<![\w.])@([A-Za-z][\w:-]*)")
BIB_ENTRY = re.compile(r"^@(\w+)\{([^,\s]+),(.*?)^\}", re.S | re.M)


def _manuscript_text() -> dict[str, str]:
    texts = {p.name: p.read_text() for p in sorted((ROOT / "content").glob("*.md"))}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts[nb.name] = "\n".join("".join(c["source"]) for c in cells
                                   if c["cell_type"] == "markdown")
    return texts


def _cited() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for name, text in _manuscript_text().items():
        for key in AT_KEY.findall(text):
            if not key.startswith(CROSS_REFERENCE):
                keys.setdefault(key.rstrip(":-"), set()).add(name)
    return keys


def _entries() -> dict[str, tuple[str, str]]:
    text = (ROOT / "references.bib").read_text()
    entries = {m.group(2): (m.group(1).lower(), m.group(3)) for m in BIB_ENTRY.finditer(text)}
    assert len(entries) == text.count("\n@") + text.startswith("@"), "an entry the test missed"
    return entries


def test_manuscript_finds_citations_and_skips_cross_references():
    text = "As shown [@doe2020; @roe2021] and by @poe2019, see @sec-methods and @fig-vit. a@b.c"
    assert [k for k in AT_KEY.findall(text) if not k.startswith(CROSS_REFERENCE)] == [
        "doe2020", "roe2021", "poe2019"]
    cited = _cited()
    assert "dolensek2020facial" in cited and "sec-methods" not in cited


def test_every_citation_has_an_entry():
    entries = _entries()
    missing = {k: sorted(v) for k, v in _cited().items() if k not in entries}
    assert not missing, f"cited but not in references.bib (key: pages): {missing}"


def test_every_entry_is_cited_and_has_a_doi_or_url():
    cited = _cited()
    for key, (kind, body) in _entries().items():
        assert key in cited, f"references.bib entry {key} is cited nowhere in the manuscript"
        fields = {f.lower() for f in re.findall(r"^\s*(\w+)\s*=", body, re.M)}
        # works with a DOI cite it; software without one (a GitHub repository) its URL
        assert "doi" in fields or (kind == "misc" and "url" in fields), (
            f"references.bib entry {key} has no doi (or, for software, url)")
