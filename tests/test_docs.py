"""Docs that cannot drift: every ``cephalo ...`` and ``python train_1024x1024.py ...`` command written in the README,
DEVELOPERS.md and docs/ names a real subcommand and real flags with the right number of values (checked against
the parsers, not run: example paths need not exist), and every repository path they name exists."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from cephalo.cli.main import build_parser
from cephalo.engine.config import build_parser as build_train_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("**/*.md"))]
PATH_PREFIXES = ("src/", "tests/", "benchmarks/", "docs/")


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = dict(build_parser()._subparsers._group_actions[0].choices)
    parsers["train"] = build_train_parser()
    return parsers


def commands_in(text: str) -> list[str]:
    """The commands written in ``text``: lines of code blocks (joined across trailing backslashes) and inline code
    spans that start with ``cephalo`` or ``python train_1024x1024.py`` (or ``python -m cephalo``)."""
    found = []
    launcher = re.compile(r"^(?:srun )?torchrun .*?-m cephalo ", re.M)  # "torchrun --nproc_per_node 2 -m cephalo train"
    text = "\n".join(launcher.sub("cephalo ", line) for line in text.splitlines())
    starts = re.compile(r"^(?:\$ )?(?:python -m cephalo|cephalo|python train_1024x1024\.py)(?: |$)")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    for block in blocks:
        for line in launcher.sub("cephalo ", block.replace("\\\n", " ")).splitlines():
            for part in re.split(r"\s(?:&&|\|\|?|;)\s", line.strip()):  # "pip install ... && cephalo train ..."
                if starts.match(part.strip()):
                    found.append(part.strip())
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [span for span in re.findall(r"`([^`\n]+)`", outside) if starts.match(span)]
    return found


def problems_of(command: str, parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """What is wrong with one written command: an unknown subcommand, an unknown flag, or a flag with a number of
    values its parser does not take. Placeholders (``...``, ``[--flag VALUE]`` brackets, ``<...>``) are allowed."""
    text = re.split(r"\s#\s", command)[0].replace("[", " ").replace("]", " ")
    text = re.sub(r"\s(?:[12]?>>?|&>)\S*(\s.*)?$", "", text)  # output redirections: "> log.txt 2>&1"
    try:
        words = shlex.split(text)
    except ValueError as e:
        return [f"{command!r}: cannot be split ({e})"]
    if words[:1] == ["$"]:
        words = words[1:]
    if words[:3] == ["python", "-m", "cephalo"]:
        words = ["cephalo", *words[3:]]
    if words[:2] == ["python", "train_1024x1024.py"]:
        words = ["cephalo", "train", *words[2:]]
    rest = words[1:]
    if not rest or rest[0].startswith("-") or rest[0] in ("...", "COMMAND"):
        return []  # "cephalo --help", "cephalo ...": nothing to check
    if rest[0] not in parsers:
        return [f"{command!r}: no subcommand {rest[0]!r}"]
    parser = parsers[rest[0]]
    options = {s: a for a in parser._actions for s in a.option_strings}
    problems, i = [], 1
    while i < len(rest):
        word = rest[i]
        if not word.startswith("--") or word == "--":
            i += 1
            continue
        flag, _, inline = word.partition("=")
        action = options.get(flag)
        if action is None:
            problems.append(f"{command!r}: {rest[0]} has no flag {flag}")
            i += 1
            continue
        values = []
        j = i + 1
        while j < len(rest) and not rest[j].startswith("--") and not inline:
            values.append(rest[j])
            j += 1
        nargs = action.nargs
        if nargs == 0:  # a switch: what follows is a positional argument
            taken, fine = 0, True
        elif nargs is None or nargs == "?":  # one value; more words are positional arguments
            taken = 1 if inline or values else 0
            fine = taken == 1 or nargs == "?"
        elif nargs in ("+", "*", argparse.REMAINDER):
            taken = len(values)
            fine = taken >= (1 if nargs == "+" else 0)
        else:
            taken = min(len(values), int(nargs))
            fine = len(values) >= int(nargs) or (values and values[-1] == "...")
        if not fine:
            problems.append(f"{command!r}: {flag} takes {nargs if nargs is not None else 1} value(s), "
                            f"{1 if inline else len(values)} written")
        i = i + 1 + (0 if inline else taken)
    return problems


def paths_in(text: str) -> list[str]:
    """Repository paths named in inline code or links: ``src/...``, ``tests/...``, ``benchmarks/...`` and
    ``docs/...`` (placeholders in ``<>`` and globs are exempt)."""
    names = re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s#]+)", text)
    out = []
    for name in names:
        name = name.rstrip(".,:;)")
        if any(c in name for c in "<>*{}$") or "://" in name:
            continue
        if name.startswith(PATH_PREFIXES):
            out.append(name)
    return out


@pytest.fixture(scope="module")
def parsers():
    return subcommand_parsers()


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_every_command_written_in_the_docs_parses(document, parsers):
    commands = commands_in(document.read_text(encoding="utf-8"))
    problems = [p for c in commands for p in problems_of(c, parsers)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("document", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_every_repository_path_named_in_the_docs_exists(document):
    text = document.read_text(encoding="utf-8")
    missing = sorted({p for p in paths_in(text) if p.startswith(PATH_PREFIXES) and not (ROOT / p).exists()})
    assert not missing, f"{document.name} names paths that do not exist: {', '.join(missing)}"


def test_the_checks_fail_on_planted_errors(parsers):
    """Each check catches what it is for: a removed flag, a wrong number of values, an unknown subcommand, a path
    that does not exist."""
    written = "```\ncephalo train --image_size 256 --no_such_flag 3\ncephalo predicts --out x\n```\n"
    problems = [p for c in commands_in(written) for p in problems_of(c, parsers)]
    assert any("--image_size takes 2 value(s), 1 written" in p for p in problems)
    assert any("has no flag --no_such_flag" in p for p in problems)
    assert any("no subcommand 'predicts'" in p for p in problems)
    assert problems_of("cephalo predict --checkpoint best.pt scans/ --out preds --overlay", parsers) == []
    assert problems_of("python train_1024x1024.py --image_size 1024 1024 --use_ema", parsers) == []
    assert "benchmarks/nowhere.md" in paths_in("see `benchmarks/nowhere.md`")
    assert not (ROOT / "benchmarks/nowhere.md").exists()


PICTURES = ("learning_curve.png", "overlay.png", "patient_page.png")  # made by benchmarks/docs_pictures.py


def test_the_docs_pictures_exist():
    for name in PICTURES:
        data = (ROOT / "docs" / "images" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name


def test_the_built_site_loads_in_a_browser_with_no_console_error_or_missing_image(tmp_path):
    """Every page of `mkdocs build --strict`, opened in headless Chromium: no console error, no resource that fails
    to load (an image, a script of the theme)."""
    import shutil
    import subprocess

    mkdocs = shutil.which("mkdocs")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if mkdocs is None or chromium is None:
        pytest.skip("needs the docs extra (mkdocs) and headless Chromium")
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = tmp_path / "site"
    subprocess.run([mkdocs, "build", "--strict", "--quiet", "-d", str(site)], cwd=ROOT, check=True, timeout=300)
    pages = sorted(site.glob("**/index.html"))
    assert len(pages) >= 10
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # as `mkdocs serve` shows it: over HTTP, not file://
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _load_every_page(chromium, site, pages, f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()


def _load_every_page(chromium: str, site: Path, pages: list[Path], base: str) -> None:
    import subprocess

    for page in pages:
        url = base + page.relative_to(site).as_posix()
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                               "--v=0", "--virtual-time-budget=2000", "--dump-dom", url],
                              capture_output=True, text=True, timeout=120)
        errors = [line for line in done.stderr.splitlines()
                  if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line) or "Failed to load" in line
                  or "net::ERR_FILE_NOT_FOUND" in line]
        assert not errors, f"{page.relative_to(site)}: {errors[:3]}"
        assert "<article" in done.stdout, page
