"""The documentation stays true to the CLI (docs/README.md, "Code blocks in these pages").

- every command and option that `--help` lists is in its command's page, in an options table;
- every ```console block (a shell session) runs, in a temporary directory holding `ckpt/`, the
  checkpoint `make demo` breaks: each `$ ` line exits 0 (or its `# exits N`) and prints the lines
  shown under it, unless an `<!-- illustrative -->` line stands right above the fence;
- every `fp8doctor` command line in a session or a ```sh block names real commands and options;
- every fence names its language, `$ ` prompts appear only in console blocks, relative links
  resolve, and the README stays a front page."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
import typer.main
from typer.testing import CliRunner

from fp8doctor.cli.app import app
from tests.helpers.repo import ROOT

README = os.path.join(ROOT, "README.md")
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKDOWN = [README, *PAGES]
ILLUSTRATIVE = "<!-- illustrative -->"
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Block:
    path: str
    line: int  # 1-based line of the opening fence
    lang: str
    body: tuple[str, ...]
    illustrative: bool

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.path, ROOT)}:{self.line}"


def blocks(path: str) -> list[Block]:
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(`{3,})(.*)$", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).strip(), i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        out.append(Block(path, start + 1, lang, tuple(body), before == ILLUSTRATIVE))
        i += 1
    return out


ALL_BLOCKS = [b for p in MARKDOWN for b in blocks(p)]
SESSIONS = [b for b in ALL_BLOCKS if b.lang == "console" and not b.illustrative]


def options_of(command) -> list[str]:
    return [o for p in command.params if p.param_type_name == "option" and not getattr(p, "hidden", False)
            for o in (*p.opts, *p.secondary_opts)]


def table_rows(path: str) -> str:
    return "\n".join(line for line in open(path, encoding="utf-8") if line.startswith("|"))


# --- every command and option of --help is documented ------------------------------------------------

@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_help_is_in_the_commands_page(name):
    page = os.path.join(ROOT, "docs", f"{name}.md")
    assert os.path.isfile(page), f"no docs/{name}.md for `fp8doctor {name}`"
    help_text = CliRunner().invoke(app, [name, "--help"], env={"NO_COLOR": "1", "COLUMNS": "200",
                                                                "TERMINAL_WIDTH": "200"}).output
    rows = table_rows(page)
    missing = []
    for opt in options_of(COMMANDS[name]):
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", help_text), f"--help does not list {opt}"
        if not re.search(rf"`{re.escape(opt)}(?=[`\s=\\\[])", rows):
            missing.append(opt)
    assert not missing, f"docs/{name}.md has no options-table row for {missing}"


def test_every_command_of_help_is_in_the_readme_with_its_page():
    help_text = CliRunner().invoke(app, ["--help"], env={"NO_COLOR": "1", "COLUMNS": "200"}).output
    readme = open(README, encoding="utf-8").read()
    commands = readme[readme.index("## Commands"):]
    commands = commands[:commands.index("\n## ")]
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", help_text), name
        assert f"| `fp8doctor {name}" in commands and f"(docs/{name}.md)" in commands, name
    for opt in options_of(typer.main.get_command(app)):
        assert opt in help_text and f"fp8doctor {opt}" in readme, opt


# --- shell sessions run ------------------------------------------------------------------------------

def _demo():
    spec = importlib.util.spec_from_file_location("fp8doctor_demo_docs", os.path.join(ROOT, "examples", "demo.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def broken_demo_checkpoint(tmp_path_factory):
    demo = _demo()
    root = str(tmp_path_factory.mktemp("docs") / "ckpt")
    demo.write_checkpoint(root)
    assert demo.break_padding(root) > 0
    return root


def session_steps(block: Block) -> list[tuple[str, int, list[str]]]:
    """(command, expected exit code, output lines shown) per `$ ` line."""
    steps: list[tuple[str, int, list[str]]] = []
    for line in block.body:
        if line.startswith("$ "):
            m = re.search(r"#\s*exits?\s+(\d+)", line)
            steps.append((line[2:], int(m.group(1)) if m else 0, []))
        else:
            assert steps, f"{block.where}: output before the first `$ ` command"
            steps[-1][2].append(line)
    assert steps, f"{block.where}: a console block without a `$ ` command"
    return steps


def shown_pattern(lines: list[str]) -> re.Pattern[str]:
    """The shown lines in order, spaces collapsed, `...` for anything."""
    parts = []
    for line in lines:
        text = " ".join(line.split())
        if text and text != "...":
            parts.append(".*?".join(re.escape(p.strip()) for p in text.split("...")))
    return re.compile(".*?".join(parts), re.S)


def session_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "FP8DOCTOR_DEBUG")}
    env.update(NO_COLOR="1", COLUMNS="200", TERM="dumb",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    return env


@pytest.mark.parametrize("block", SESSIONS, ids=[b.where for b in SESSIONS])
def test_console_sessions_run(block, broken_demo_checkpoint, tmp_path):
    shutil.copytree(broken_demo_checkpoint, tmp_path / "ckpt")
    env = session_env()
    for command, code, shown in session_steps(block):
        r = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        assert r.returncode == code, f"{block.where}: `{command}` exited {r.returncode}, not {code}:\n{r.stdout}"
        printed = " ".join(r.stdout.split())
        assert shown_pattern(shown).search(printed), f"{block.where}: `{command}` printed\n{r.stdout}"


def test_the_sessions_cover_every_command_but_verify():
    ran = {shlex.split(c)[1] for b in SESSIONS for c, _, _ in session_steps(b) if c.startswith("fp8doctor ")}
    assert ran >= set(COMMANDS) - {"verify"}, ran  # verify needs torch: its forms are in sh blocks


def test_a_session_that_does_not_match_fails(broken_demo_checkpoint, tmp_path):
    """The runner itself can fail: a wrong exit code and a wrong output line are both caught."""
    shutil.copytree(broken_demo_checkpoint, tmp_path / "ckpt")
    r = subprocess.run(["bash", "-c", "fp8doctor scan ckpt --quiet"], cwd=tmp_path, env=session_env(), text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == 1
    printed = " ".join(r.stdout.split())
    assert shown_pattern(["✗ ... errors, 0 warnings in 40 scale tensors ..."]).search(printed)
    assert not shown_pattern(["✓ no findings in 40 scale tensors"]).search(printed)
    assert not shown_pattern(["errors", "✗"]).search(printed)  # order matters


# --- command lines name real commands and options ----------------------------------------------------

def command_lines(block: Block) -> list[str]:
    """`fp8doctor ...` lines of a session or an sh block, indented continuation lines joined."""
    out: list[str] = []
    for line in block.body:
        text = line[2:] if block.lang == "console" and line.startswith("$ ") else line
        if block.lang == "console" and not line.startswith("$ "):
            continue
        if text.startswith("fp8doctor "):
            out.append(text)
        elif out and text.startswith(" ") and text.strip().startswith("["):
            out[-1] += " " + text.strip()
    return out


def test_command_lines_use_real_commands_and_options():
    root_options = set(options_of(typer.main.get_command(app))) | {"--help", "-h"}
    checked = 0
    for block in ALL_BLOCKS:
        if block.lang not in ("console", "sh"):
            continue
        for line in command_lines(block):
            words = shlex.split(line.split(" #")[0].split(" | ")[0])
            name = words[1]
            if name.startswith("-"):
                assert name in root_options, f"{block.where}: {line}"
                continue
            assert name in COMMANDS, f"{block.where}: no command {name!r} in {line!r}"
            known = set(options_of(COMMANDS[name])) | {"--help", "-h"}
            for word in words[2:]:
                m = re.match(r"^\[?(--?[A-Za-z][\w-]*)", word)
                if m:
                    assert m.group(1) in known, f"{block.where}: `fp8doctor {name}` has no option {m.group(1)}"
            checked += 1
    assert checked > 30


# --- fences, prompts, links, size --------------------------------------------------------------------

def test_every_fence_names_its_language_and_prompts_are_sessions():
    for block in ALL_BLOCKS:
        assert block.lang, f"{block.where}: a fence without a language (console, sh, json, toml, ...)"
        if block.lang != "console":
            assert not any(line.startswith("$ ") for line in block.body), \
                f"{block.where}: a `$ ` prompt outside a console block"
    assert len(SESSIONS) >= 5


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_resolve():
    for path in MARKDOWN:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"^(`{3,}).*?^\1", "", text, flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            assert os.path.exists(dest), f"{os.path.relpath(path, ROOT)}: broken link {target}"
            if anchor and dest.endswith(".md"):
                heads = {_slug(h) for h in re.findall(r"^#+ (.+)$", open(dest, encoding="utf-8").read(), re.M)}
                assert anchor in heads, f"{os.path.relpath(path, ROOT)}: no heading #{anchor} in {file or 'itself'}"


def test_readme_is_a_front_page_and_links_every_page():
    readme = open(README, encoding="utf-8").read()
    assert readme.count("\n") <= 250
    index = open(os.path.join(ROOT, "docs", "README.md"), encoding="utf-8").read()
    for page in PAGES:
        name = os.path.basename(page)
        if name != "README.md":
            assert f"(docs/{name}" in readme or f"]({name})" in index, name
            assert f"]({name})" in index, f"docs/README.md does not list {name}"
