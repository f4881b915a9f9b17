"""Every command shown in the docs runs, so the docs cannot rot.

Each ```bash block of README.md and docs/*.md is executed, one shell per file (so `export` in one
block holds for the next), in a scratch directory holding the repository's policies, demo and
launcher, against a real gateway with an agent `autogpt-agent` already created and
MESHGUARD_URL / MESHGUARD_ADMIN_TOKEN / MESHGUARD_TOKEN set, as a reader following the docs
would have.

A command passes when it exits 0, or with the status its doc states in a trailing comment
(`meshguard policy test autogpt-agent execute:shell   # exit 1`), and prints no Python traceback.
Long-running commands (`gateway start`, `--follow`/`-f`) pass when they are still running after a
few seconds.

A block that cannot run here is preceded by `<!-- docs-test: skip: REASON -->`; commands run by
another test are listed in RUN_ELSEWHERE. A `<placeholder>` in a block is an error: write
commands a reader can paste (use shell variables).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, LiveGateway

# docs/cli.md starts its own gateway (`meshguard gateway start &`) and is run, with the same
# conventions, by tests/test_cli_docs.py.
DOCS_RUN_ELSEWHERE = {"cli.md": "tests/test_cli_docs.py"}
DOCS = sorted(p for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")] if p.name not in DOCS_RUN_ELSEWHERE)
BLOCK = re.compile(r"(<!--\s*docs-test:\s*skip:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?```bash\n(?P<body>.*?)```", re.S)
PLACEHOLDER = re.compile(r"<[A-Za-z][\w -]*>")
LONG_RUNNING = re.compile(r"(gateway start|--follow|\s-f(\s|$))")
# Commands that this test does not run because another one does (or cannot run anywhere offline).
RUN_ELSEWHERE = {
    "scripts/demo.sh": "tests/test_demo.py runs the demo",
    "scripts/test.sh": ".ci/run runs the test suite",
    "git clone": "needs the network and a repository URL",
}


HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
EXPECTED_EXIT = re.compile(r"#\s*exit (\d+)\s*$")


def commands(body: str) -> list[str]:
    """Shell commands of one block: continuation lines joined, a here-document kept with its
    command, comments and blanks dropped."""
    lines = re.sub(r"\\\n\s*", " ", body).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        heredoc = HEREDOC.search(line)
        if heredoc:
            end = heredoc.group(1)
            doc = [lines[i - 1]]
            while i < len(lines):
                doc.append(lines[i])
                i += 1
                if lines[i - 1].strip() == end:
                    break
            out.append("\n".join(doc))
            continue
        out.append(line)
    return out


def expected_exit(cmd: str) -> int | None:
    """A docs example may state its exit status in a trailing comment: `... # exit 2`."""
    m = EXPECTED_EXIT.search(cmd.splitlines()[0])
    return int(m.group(1)) if m else None


def doc_commands(path: Path) -> tuple[list[str], list[str]]:
    """(commands to run, skipped blocks with reasons)."""
    run: list[str] = []
    skipped: list[str] = []
    for match in BLOCK.finditer(path.read_text(encoding="utf-8")):
        if match.group("reason"):
            skipped.append(match.group("reason"))
            continue
        for cmd in commands(match.group("body")):
            if any(cmd.startswith(prefix) for prefix in RUN_ELSEWHERE):
                continue
            run.append(cmd)
    return run, skipped


def test_docs_have_runnable_commands() -> None:
    """The harness itself must find commands; otherwise every doc test passes vacuously."""
    for name, runner in DOCS_RUN_ELSEWHERE.items():
        assert (ROOT / runner).exists(), f"docs/{name} is said to be run by {runner}, which is missing"
    total = sum(len(doc_commands(p)[0]) for p in DOCS)
    assert total >= 20, f"only {total} commands found in the docs"


def _script(cmds: list[str]) -> str:
    lines = ["cd \"$DOCS_SANDBOX\""]
    for i, cmd in enumerate(cmds):
        first = cmd.splitlines()[0]
        wrapped = f"timeout 4 {cmd}" if LONG_RUNNING.search(first) and not first.startswith("export ") else cmd
        lines.append(f"echo '__CMD__ {i}'")
        head, _, rest = wrapped.partition("\n")
        if rest:  # a here-document: it is the command's stdin, and its end marker must stand alone
            lines.append(f"{head} 2>&1\n{rest}")
        else:
            lines.append(f"{head} </dev/null 2>&1")
        lines.append(f"echo \"__RC__ {i} $?\"")
    return "\n".join(lines) + "\n"


# Documents with no shell commands have nothing to run (the harness test above keeps this honest).
DOCS_WITH_COMMANDS = [p for p in DOCS if doc_commands(p)[0]]


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS, ids=lambda p: p.name)
def test_doc_commands_run(doc: Path, gateway: LiveGateway, tmp_path: Path) -> None:
    cmds, _ = doc_commands(doc)
    bad = [c for c in cmds if PLACEHOLDER.search(c)]
    assert not bad, f"{doc.name}: placeholders in commands (use shell variables): {bad}"

    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    for name in ("policies", "demo"):
        shutil.copytree(ROOT / name, sandbox / name)
    shutil.copy(ROOT / "meshguard_autogpt.py", sandbox)
    shims = tmp_path / "bin"
    shims.mkdir()
    # A wrapper, not a symlink: a symlinked venv interpreter does not find its virtual environment.
    shim = shims / "python"
    shim.write_text(f'#!/bin/sh\nexec "{ROOT / ".venv-autogpt" / "bin" / "python"}" "$@"\n')
    shim.chmod(0o755)
    _, token = gateway.create_agent("autogpt-agent", ["autogpt", "autonomous"])
    env = {
        **gateway.env,
        "PATH": f"{shims}:{ROOT / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "MESHGUARD_URL": gateway.url,
        "MESHGUARD_ADMIN_TOKEN": gateway.admin_token,
        "MESHGUARD_TOKEN": token,
        "DOCS_SANDBOX": str(sandbox),
        "NO_COLOR": "1",
    }
    proc = subprocess.run(["bash", "-c", _script(cmds)], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    failures = []
    for i, cmd in enumerate(cmds):
        m = re.search(rf"__CMD__ {i}\n(?P<out>.*?)__RC__ {i} (?P<rc>\d+)", out, re.S)
        if not m:
            failures.append(f"{cmd!r}: did not run\n{proc.stderr[-2000:]}")
            continue
        rc = int(m.group("rc"))
        expected = expected_exit(cmd)
        if expected is not None:
            ok = rc == expected
        else:
            ok = rc == 0 or (rc == 124 and LONG_RUNNING.search(cmd.splitlines()[0]) is not None)
        if not ok or "Traceback" in m.group("out"):
            failures.append(f"{cmd!r}: exit {rc}\n{m.group('out')[-1500:]}")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not failures, f"{doc.name}:\n" + "\n\n".join(failures) + f"\nstderr:\n{proc.stderr[-2000:]}"
