"""Every Python code block of the docs and the README runs (so the docs cannot go stale)."""
import os
import re
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs")))
                         if f.endswith(".md")]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page, tmp_path, monkeypatch, capsys):
    with open(os.path.join(ROOT, page)) as fh:
        blocks = BLOCK.findall(fh.read())
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:
            exec(compile(block, page, "exec"), namespace)  # noqa: S102 - the docs' own examples


def test_every_docs_page_has_examples():
    for page in PAGES:
        if page.endswith(("index.md", "api.md", "theory.md")):
            continue
        with open(os.path.join(ROOT, page)) as fh:
            assert BLOCK.search(fh.read()), page
