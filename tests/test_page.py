"""Model pages: generated from the garden itself, escaped, linked, and looked at in a real
headless Chromium (Debian's chromium and chromium-driver, driven by selenium)."""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

from gardenbuild.card import complete, garden_part
from gardenbuild.consumer.refs import parse
from gardenbuild.consumer.resolve import Resolved
from gardenbuild.manifest.load import load
from gardenbuild.page import DOWNLOADS, context, render, write

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solubility"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DOI = "10.5072/garden.solubility-1.0.0.abcd1234"
FUNCTION = "4b116d3c-1703-4f8f-9f6f-39921e5864df"
IMAGE = "127.0.0.1:5000/gardens/solubility@sha256:" + "ab" * 32
METADATA = {"python": "3.11.2", "pipelines": [{
    "name": "predict_solubility", "signature": "(smiles: list[str]) -> list[float]",
    "docstring": "Predict aqueous solubility (log mol/L) for each SMILES string.", "return_annotation": "list[float]",
    "parameters": [{"name": "smiles", "kind": "positional_or_keyword", "annotation": "list[str]", "required": True}]}]}
HOSTILE = '<script>alert("owned")</script> Löslichkeit — "quoted" & \'single\' ' + "very long " * 60


def resolved(**meta) -> Resolved:
    card = complete(garden_part(load(EXAMPLE)), METADATA, [{"name": "rdkit", "version": "2026.9.1"}])
    card["meta"].update(meta)
    return Resolved(parse("solubility"), card, image_ref=IMAGE, digest=IMAGE.partition("@")[2], doi=DOI,
                    function_ids={"predict_solubility": FUNCTION})


class Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("href"):
            self.hrefs.append(a["href"])
        if a.get("id"):
            self.ids.add(a["id"])


def test_the_page_says_what_the_garden_says_and_links_nothing_broken(tmp_path):
    paths = write(resolved(), tmp_path, usage=[{"pipeline": "predict_solubility", "via": "serve", "calls": 4,
                                                "errors": 1, "seconds": 0.02}])
    assert sorted(p.name for p in paths) == sorted(["index.html", *DOWNLOADS.values()])
    page = (tmp_path / "index.html").read_text()
    for text in ("Aqueous solubility from structure", "Josiah Carberry", "https://orcid.org/0000-0002-1825-0097",
                 f"https://doi.org/{DOI}", "https://spdx.org/licenses/MIT.html", "predict_solubility(smiles: list[str]) -&gt; list[float]",
                 IMAGE, "rdkit", "2026.9.1", f"function {FUNCTION}", "4 call(s) via serve, 1 failed, mean 5.0 ms",
                 f"gardenbuild run {DOI} predict_solubility --input"):
        assert text in page, text
    assert "http://" not in page.replace("http://doi.org", "")  # no CDN, no font, nothing fetched from elsewhere
    links = Links()
    links.feed(page)
    for href in links.hrefs:
        if href.startswith("#"):
            assert href[1:] in links.ids, href
        elif not urllib.parse.urlparse(href).scheme:
            assert (tmp_path / href).is_file(), href


def test_hostile_metadata_is_escaped_and_intact(tmp_path):
    page = render(context(resolved(title=HOSTILE, description=HOSTILE), outputs={}, usage=[]))
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt; Löslichkeit — &#34;quoted&#34; &amp; &#39;single&#39;" in page
    assert page.count("very long") >= 60  # the whole title is there, not cut


def test_the_citation_files_parse(tmp_path):
    import bibtexparser
    import jsonschema

    write(resolved(), tmp_path)
    library = bibtexparser.parse_string((tmp_path / "citation.bib").read_text())
    [entry] = library.entries
    assert entry.entry_type == "software" and entry["doi"] == DOI and entry["author"] == "Carberry, Josiah"
    csl = json.loads((tmp_path / "citation.json").read_text())
    jsonschema.validate(csl, json.loads((FIXTURES / "schemas" / "csl-data.json").read_text()))
    [item] = csl
    assert item["type"] == "software" and item["DOI"] == DOI and item["author"] == [{"family": "Carberry", "given": "Josiah"}]
    ris = (tmp_path / "citation.ris").read_text().splitlines()
    assert ris[0] == "TY  - COMP" and f"DO  - {DOI}" in ris and ris[-1] == "ER  - "
    assert json.loads((tmp_path / "codemeta.json").read_text())["name"] == "Aqueous solubility from structure"


# ---- in a real browser ------------------------------------------------------------------

@pytest.fixture
def site(tmp_path):
    """The page written, and served over HTTP on loopback as a static host would serve it."""
    write(resolved(), tmp_path / "site")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(tmp_path / "site")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "site"
    server.shutdown()
    server.server_close()


def test_the_page_in_a_browser(browser, site, tmp_path):
    from selenium.webdriver.common.by import By

    url, folder = site
    browser.set_window_size(1100, 1400)
    browser.get(f"{url}/index.html")
    assert browser.title == "Aqueous solubility from structure · solubility 1.0.0"
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".author-name")] == ["Josiah Carberry"]
    assert [a.get_attribute("id") for a in browser.find_elements(By.CSS_SELECTOR, "article.pipeline")] == [
        "pipeline-predict_solubility"]
    assert browser.find_element(By.ID, "doi").get_attribute("href") == f"https://doi.org/{DOI}"
    assert [t.text for t in browser.find_elements(By.CSS_SELECTOR, "table.tests td:first-child")] == [
        '{"smiles": ["CCO", "c1ccccc1"]}', '{"smiles": ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]}']
    for link in browser.find_elements(By.CSS_SELECTOR, ".downloads a"):  # each download is the file written
        name = link.get_attribute("href").rsplit("/", 1)[1]
        body = browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done);", name)
        assert body == (folder / name).read_text(), name
    browser.save_screenshot(str(tmp_path / "desktop.png"))
    if os.environ.get("GARDENBUILD_UPDATE_SCREENSHOT"):  # the README's picture, made by this very test
        shutil.copyfile(tmp_path / "desktop.png", Path(__file__).resolve().parent.parent / "docs" / "model-page.png")

    browser.set_window_size(390, 844)  # a phone: nothing wider than the screen
    browser.get(f"{url}/index.html")
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.save_screenshot(str(tmp_path / "phone.png"))
    assert (tmp_path / "phone.png").stat().st_size > 10_000
