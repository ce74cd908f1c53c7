"""`vittle-bench report` on a real run: two stand-in models on two local tasks (one with hostile text in its
questions, choices and categories) under an image, a text and a joint shift. What the site holds is checked here;
how a browser shows it in test_report_browser.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vittle_bench.cli import main
from vittle_bench.models.base import MODELS, Model
from vittle_bench.report.site import ReportSettings, build_report
from vittle_bench.report.thumbnails import DataSettings
from vittle_bench.schema import Request, image_digest

from fake_openai_server import FakeServer, ok
from synthetic_runs import write_run

SHIFTS = "gaussian_noise@2,gaussian_noise@5,keyboard@3,gaussian_noise@3+keyboard@3"
HOSTILE = ('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
           '<a href="javascript:window.__pwned = 3">click me</a>')


class GuessingModel(Model):
    """Answers from a hash of the prompt, the image pixels and its own name: a shift changes some answers (so
    samples flip) and two names disagree. `guess:hostile` appends markup to every answer."""

    def __init__(self, name: str) -> None:
        self.name, self.fingerprint = f"guess:{name}", f"guess-{name}-v1"

    @classmethod
    def load(cls, name: str, **model_args: object) -> GuessingModel:
        return cls(name)

    def generate(self, requests: list[Request]) -> list[str]:
        out = []
        for r in requests:
            key = self.name + r.prompt + "".join(image_digest(i) for i in r.images)
            h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
            answer = ("ABC"[h % 3] if "option's letter" in r.prompt else f"Noise number {h % 5}."
                      if r.prompt.startswith("Describe") else "Yes" if h % 2 else "No")
            out.append(f"{answer} {HOSTILE}" if self.name == "guess:hostile" else answer)
        return out


MODELS.register("guess")(GuessingModel)


def write_tasks(root: Path, n: int = 12) -> Path:
    """Two local tasks over n noise pictures; the multiple-choice questions, a choice and the categories carry
    hostile markup."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    mc, yn = [], []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        question = f"What colour is picture {i}? {HOSTILE}"
        mc.append({"question_id": f"q{i}", "question": question, "image": f"images/{i}.png",
                   "choices": ["red", "<b>blue</b>", "green"], "answer": "A", "category": f"<i>c{i % 2}</i>"})
        yn.append({"question_id": f"y{i}", "question": f"Is there a dog in picture {i}?", "image": f"images/{i}.png",
                   "answer": "yes" if i % 2 else "no"})
    described = [{"question_id": f"d{i}", "question": f"Describe picture {i}.", "image": f"images/{i}.png",
                  "answer": "Coloured noise."} for i in range(n)]
    for name, adapter, rows in (("pics_mc", "closed_form", mc), ("pics_yn", "pope", yn),
                                ("pics_open", "open_ended", described)):
        (root / f"{name}.yaml").write_text(f"task: {name}\ndescription: test pictures\nsource: local:{name}.jsonl\n"
                                           f"adapter: {adapter}\n")
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _review(payload: dict) -> tuple:
    """An LLM judge's review: scores that depend on the answer, then prose holding hostile markup."""
    answer = payload["messages"][1]["content"].split("[Assistant 2]\n", 1)[1].split("\n", 1)[0]
    return ok(f"9 {2 + int(hashlib.sha256(answer.encode()).hexdigest(), 16) % 7}\nThe answer is vague. {HOSTILE}")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    tasks, cache, run = write_tasks(root / "tasks"), root / "cache", root / "run"
    with FakeServer(default=_review) as judge:
        assert main(["run", "--model", "guess:plain,guess:hostile", "--tasks", "pics_mc,pics_yn,pics_open",
                     "--include-path", str(tasks), "--shifts", SHIFTS, "--output", str(run), "--cache-dir",
                     str(cache), "--batch-size", "8", "--judge", "openai:judge", "--judge-args",
                     f"base_url={judge.url},api_key=test"]) == 0
    return run, tasks, cache


@pytest.fixture(scope="module")
def site(report_run):
    run, tasks, cache = report_run
    settings = ReportSettings(run / "site", DataSettings(cache, include_paths=[tasks]), examples=4, n_boot=200,
                              progress=False)
    return settings.output, build_report([run], settings)


def test_the_command_prints_the_index_path(report_run, tmp_path, capsys):
    run, tasks, cache = report_run
    code = main(["report", str(run), "--include-path", str(tasks), "--cache-dir", str(cache), "--output",
                 str(tmp_path / "site"), "--n-boot", "200"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == str((tmp_path / "site" / "index.html").resolve())
    assert re.search(r"\d+ pages, \d+ sample cards \(0 without images\)", err)


def test_every_card_shows_the_images_the_model_saw(site):
    output, summary = site
    assert summary.cards > 0 and summary.problems == []
    assert summary.cards_without_images == 0 and summary.mismatched_images == 0  # input hashes equal the records'
    pages = [p.read_text() for p in output.glob("*.html")]
    images = {src for page in pages for src in re.findall(r'<img src="([^"]+)"', page)}
    assert images and all((output / src).is_file() for src in images)
    assert not any("differs from the one the model saw" in page for page in pages)


def test_noise_changes_the_image_and_typos_only_the_question(site):
    output, _ = site
    page = (output / "task-pics_mc.html").read_text()
    cards = page.split('<article class="card')[1:]
    for card in cards:
        clean, shifted = (re.findall(r'<img src="([^"]+)"', f) for f in re.findall(r"<figure>(.*?)</figure>", card,
                                                                                     re.S)[:2])
        condition = re.search(r'data-condition="([^"]+)"', card).group(1)
        assert len(clean) == len(shifted) == 1
        assert (clean == shifted) == (condition == "keyboard@3"), condition
        assert ("<mark>" in card) == ("keyboard" in condition)


class _Rows(HTMLParser):
    """The cells (text, data-value) of every table row in the page's `tests` tables."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str | None]]] = []
        self.depth, self.cell = 0, None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table" and "tests" in (attributes.get("class") or ""):
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag == "td":
            self.cell = ["", attributes.get("data-value")]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.rows[-1].append(tuple(self.cell))
            self.cell = None
        elif tag == "table":
            self.depth = 0


def test_model_vs_model_p_values_equal_compares(site, report_run, tmp_path):
    output, _ = site
    run, _, _ = report_run
    assert main(["compare", str(run), str(run), "--model-a", "guess:plain", "--model-b", "guess:hostile",
                 "--format", "csv", "--n-boot", "200", "--output", str(tmp_path / "c.csv")]) == 0
    compared = pd.read_csv(tmp_path / "c.csv")
    compared = compared[compared.scope == "cell"]
    parser = _Rows()
    parser.feed((output / "versus.html").read_text())
    shown = {(row[0][0], row[1][0]): row[7][1] for row in parser.rows if row}
    assert len(shown) == len(compared) and set(compared.test) == {"McNemar exact", "Wilcoxon signed-rank"}
    for r in compared.itertuples():
        assert f"{float(shown[r.task, r.condition]):.6g}" == f"{r.p_value:.6g}", (r.task, r.condition)


def test_a_judged_card_shows_the_judges_scores_and_reviews(site):
    output, _ = site
    page = (output / "task-pics_open.html").read_text()
    card = page.split('<article class="card')[1]
    assert "<th>reference score</th>" in card and "<td>9</td>" in card  # the judge's score of the reference
    assert card.count("The answer is vague.") >= 2  # the review of the clean answer and of the shifted one
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in card


def test_hostile_text_is_escaped_everywhere(site):
    output, _ = site
    for page in output.glob("*.html"):
        text = page.read_text()
        assert "<script>window" not in text and "<img src=x" not in text and 'href="javascript:' not in text
        assert re.findall(r"<script\b[^>]*>", text) == ['<script src="assets/report.js">']
    gallery = (output / "task-pics_mc.html").read_text()
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in gallery and "&lt;i&gt;c0&lt;/i&gt;" in gallery


def test_every_asset_is_local(site):
    output, _ = site
    for path in [*output.glob("*.html"), *output.glob("assets/*")]:
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z]", re.sub(r"<code>.*?</code>", "", text)), path
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', text):
            assert (output / ref).is_file(), (path, ref)


def test_published_rows_stand_beside_a_measured_llava_bench_coco_run(tmp_path, capsys):
    from test_leaderboard import _as_llava_bench_coco

    run = _as_llava_bench_coco(write_run(tmp_path / "base", "base", skill=0.62, n=30, seed=1, tasks=("syn_open",)))
    code = main(["report", str(run), "--plan", "paper45", "--reference", "paper", "--reference-model",
                 "base=LLaVA-1.5-7B", "--n-boot", "200", "--output", str(tmp_path / "site")])
    assert code == 0
    page = (tmp_path / "site" / "index.html").read_text()
    rows = re.findall(r'<tr class="(measured|published|difference)">(.*?)</tr>', page, re.S)
    kinds = [kind for kind, _ in rows]
    assert kinds == ["measured", "published", "published", "published", "difference"]
    published = next(row for kind, row in rows if "<td>published:LLaVA-1.5-7B</td>" in row)
    assert re.findall(r">(\d+\.\d)<", published) == ["77.8", "73.4", "72.2", "62.3"]  # clean, visual, text, joint
    difference = next(row for kind, row in rows if kind == "difference")
    assert "Δ base vs published:LLaVA-1.5-7B" in difference
    assert "images not reproduced" in capsys.readouterr().err  # a synthetic run has no data to show: said


@pytest.mark.parametrize("args, message", [
    (["report", "no/such/run"], "no/such/run is not a directory"),
    (["report", "{run}", "--examples", "0"], "--examples must be at least 1"),
    (["report", "{run}", "--reference-model", "a=b"], "--reference-model needs --reference"),
    (["report", "{empty}"], "manifest.json not found"),
])
def test_a_users_mistake_is_one_line_and_exit_2(args, message, report_run, tmp_path, capsys):
    run, _, _ = report_run
    (tmp_path / "empty").mkdir()
    code = main([a.format(run=run, empty=tmp_path / "empty") for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


# --- in a real browser: headless Chromium (Debian's chromium and chromium-driver; .ci/run installs them) ---------

@pytest.fixture(scope="module")
def browser():
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    missing += [] if importlib.util.find_spec("selenium") else ["selenium (pip install -e '.[test]')"]
    if missing:  # .ci/run installs them and sets VITTLE_BENCH_REQUIRE_BROWSER: there they must run
        (pytest.fail if os.environ.get("VITTLE_BENCH_REQUIRE_BROWSER") else pytest.skip)(
            f"no headless browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    yield driver
    driver.quit()


def _open(browser, page: Path) -> None:
    browser.get(page.as_uri())
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors


def _shown(browser) -> int:
    return int(browser.find_element("id", "shown").text.split(" of ")[0])


def test_the_overview_shows_the_leaderboard_and_sorts_it(browser, site):
    output, _ = site
    _open(browser, output / "index.html")
    rows = browser.find_elements("css selector", "#leaderboard tbody tr")
    assert len(rows) == 6 and {r.find_elements("tag name", "td")[1].text for r in rows} == {"guess:plain",
                                                                                         "guess:hostile"}
    clean = browser.find_element("css selector", "#leaderboard thead th:nth-child(4)")
    clean.click()
    values = [float(r.find_elements("tag name", "td")[3].get_attribute("data-value"))
              for r in browser.find_elements("css selector", "#leaderboard tbody tr")]
    assert values == sorted(values)
    assert browser.find_elements("css selector", ".chart polyline")  # severity curves drawn


def test_a_flip_card_shows_both_images_and_every_answer_and_filters_change_what_is_shown(browser, site):
    output, _ = site
    _open(browser, output / "task-pics_mc.html")
    card = browser.find_element("css selector", "article.card[data-condition='gaussian_noise@5']")
    browser.execute_script("arguments[0].scrollIntoView()", card)
    images = card.find_elements("css selector", ".images img")
    assert len(images) == 2
    browser.implicitly_wait(0)
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images)
    models = [row.find_elements("tag name", "td")[0].text for row in card.find_elements("css selector",
                                                                                          "table.answers tbody tr")]
    assert models == ["guess:plain", "guess:hostile"]
    total = _shown(browser)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("name", "shift")).select_by_visible_text("keyboard")
    keyboard = _shown(browser)
    assert 0 < keyboard < total
    assert all(c.get_attribute("data-shift") == "keyboard" for c in browser.find_elements("css selector",
                                                                                          "article.card")
               if c.is_displayed())
    Select(browser.find_element("name", "outcome")).select_by_value("better")
    Select(browser.find_element("name", "model")).select_by_visible_text("guess:plain")
    better = _shown(browser)
    assert better < keyboard
    assert all("guess:plain" in c.get_attribute("data-better").split("\n") for c in browser.find_elements(
        "css selector", "article.card") if c.is_displayed())
    Select(browser.find_element("name", "shift")).select_by_value("")
    Select(browser.find_element("name", "outcome")).select_by_value("")
    Select(browser.find_element("name", "model")).select_by_value("")
    sample = card.find_element("css selector", "header code").text
    browser.find_element("name", "search").send_keys(f"sample {sample}")
    assert _shown(browser) >= 1 and all(f"sample {sample}" in c.text for c in browser.find_elements(
        "css selector", "article.card") if c.is_displayed())


def test_planted_markup_shows_as_text_and_nothing_runs(browser, site):
    output, _ = site
    for page in ("index.html", "task-pics_mc.html", "task-pics_open.html", "versus.html"):
        _open(browser, output / page)
        assert browser.execute_script("return window.__pwned === undefined")
        assert browser.find_elements("css selector", "img[src='x'], a[href^='javascript:'], main script") == []
    _open(browser, output / "task-pics_mc.html")
    text = browser.find_element("tag name", "main").text
    assert HOSTILE in text  # the answer, shown literally
    assert re.search(r"What colour is picture \d+\? " + re.escape(HOSTILE), text)  # the question
    assert "<i>c0</i>" in text and "<b>blue</b>" in text  # the category and a choice


def test_model_vs_model_page_filters_by_pair_and_side(browser, site):
    output, _ = site
    _open(browser, output / "versus.html")
    total = _shown(browser)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("name", "loser")).select_by_value("B")
    losers = {c.get_attribute("data-loser") for c in browser.find_elements("css selector", "article.card")
              if c.is_displayed()}
    assert losers == {"B"} and _shown(browser) < total
