"""The files of a maintained project: LICENSE, CHANGELOG.md, .pre-commit-config.yaml.

Oracles: the license pyproject.toml declares (its SPDX identifier and the standard text's
clauses), the Keep a Changelog 1.1.0 layout, and ruff itself run through the pre-commit hook's
own command line on a clean and a faulty file.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_matches_the_declared_license():
    """Oracle: pyproject.toml declares BSD-3-Clause; LICENSE carries that license's title and
    its three numbered conditions (source, binary, no endorsement) and the disclaimer."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = meta["license"]
    declared = declared.get("text", declared.get("file")) if isinstance(declared, dict) \
        else declared
    assert declared == "BSD-3-Clause"
    text = " ".join((ROOT / "LICENSE").read_text(encoding="utf-8").split())
    assert text.startswith("BSD 3-Clause License Copyright (c) ")
    for clause in ("1. Redistributions of source code must retain the above copyright notice",
                   "2. Redistributions in binary form must reproduce the above copyright notice",
                   "3. Neither the name of the copyright holder nor the names of its "
                   "contributors may be used to endorse or promote products",
                   'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"'):
        assert clause in text, clause


def test_changelog_follows_keep_a_changelog():
    """Oracle (Keep a Changelog 1.1.0): a top "Unreleased" section, then released versions as
    "## [X.Y.Z] - YYYY-MM-DD" with the pyproject version among them, entries grouped under
    "### ..." headings and written as "- " items; the unreleased work names issues 11-17."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["version"]
    heads = re.findall(r"^## \[(.+?)\](.*)$", text, flags=re.M)
    assert heads[0][0] == "Unreleased"
    for name, rest in heads[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", name) and re.fullmatch(r" - \d{4}-\d{2}-\d{2}",
                                                                     rest), (name, rest)
    assert version in [h[0] for h in heads]
    unreleased = text.split("\n## [", 2)[1]
    for issue in range(11, 18):
        assert f"### Issue {issue}:" in unreleased, issue
    for block in re.split(r"^### .*$", text, flags=re.M)[1:]:
        items = [ln for ln in block.strip().splitlines() if ln and not ln.startswith("## ")]
        assert items and items[0].startswith("- "), block[:80]


def test_pre_commit_hook_runs_ruff_check_with_the_project_configuration(tmp_path):
    """Oracle: ruff, through the hook's own command line (as pre-commit runs it, file names
    appended, from the repository root): a file with an unused import (F401) fails and is
    reported, a clean file passes."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = [h for repo in config["repos"] for h in repo["hooks"]]
    ruff = [h for h in hooks if h["id"] == "ruff"]
    assert len(ruff) == 1 and "python" in ruff[0]["types_or"]
    entry = shlex.split(ruff[0]["entry"])
    assert entry[:2] == ["ruff", "check"]
    bad, good = tmp_path / "bad.py", tmp_path / "good.py"
    bad.write_text('"""Bad."""\n\nimport os\n')
    good.write_text('"""Good."""\n\nimport os\n\nprint(os.sep)\n')
    fail = subprocess.run([*entry, str(bad)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert fail.returncode == 1 and "F401" in fail.stdout, fail.stdout + fail.stderr
    ok = subprocess.run([*entry, str(good)], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
