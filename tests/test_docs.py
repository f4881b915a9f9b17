"""Every command shown in the docs runs, so the docs cannot rot.

Each ```bash block of README.md and docs/*.md is executed, one shell per file (so `export` in one
block holds for the next), in a scratch directory holding the repository's policies, demo and
launcher, against a real gateway with an agent `autogpt-agent` already created and
MESHGUARD_URL / MESHGUARD_ADMIN_TOKEN / MESHGUARD_TOKEN set, as a reader following the docs
would have.

A command passes when it exits 0, or with the status its doc states in a trailing comment
(`meshguard policy test autogpt-agent execute:shell   # exit 1`), and prints no Python traceback.
Long-running commands pass when they are still running when the harness stops them (status 124):
`--follow`/`-f` after a few seconds; `gateway start` once it is up, i.e. once `gateway.json` is in
its state folder (its `--state-dir`, else $MESHGUARD_STATE_DIR, else ./.meshguard; at most
GATEWAY_UP_SECONDS), so the database it created is there for the commands after it however slow
the machine. A `gateway start` that never comes up fails (status 125). Write it as one simple
command (`VAR=value` in front is fine; no `&&`, pipes or `&`).

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
GATEWAY_START = re.compile(r"\bgateway start\b")
STATE_DIR_FLAG = re.compile(r"--state-dir[= ](\S+)")
FOLLOW_SECONDS = 4  # a following command still running after this passes
GATEWAY_UP_SECONDS = 120  # generous: a loaded machine can take many seconds to create the database
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


# Runs a `gateway start` command in the background ($1: its state folder, the rest: the command),
# waits until the gateway announced itself (gateway.json) or exited, then stops it: 124 = it was up
# and running, 125 = it never came up in time, else the status it exited with by itself.
UNTIL_UP = f"""
__until_up() {{
  local state="$1"; shift
  "$@" </dev/null 2>&1 &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null && [ ! -f "$state/gateway.json" ] && [ "$waited" -lt {GATEWAY_UP_SECONDS * 10} ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; return $?; fi
  local up=124; [ -f "$state/gateway.json" ] || up=125
  kill -TERM "$pid"; wait "$pid"
  return $up
}}
"""


def _script(cmds: list[str]) -> str:
    lines = [UNTIL_UP, "cd \"$DOCS_SANDBOX\""]
    for i, cmd in enumerate(cmds):
        first = cmd.splitlines()[0]
        long_running = LONG_RUNNING.search(first) and not first.startswith("export ")
        lines.append(f"echo '__CMD__ {i}'")
        if long_running and GATEWAY_START.search(first) and "\n" not in cmd:
            state = STATE_DIR_FLAG.search(first)
            folder = state.group(1) if state else '"${MESHGUARD_STATE_DIR:-.meshguard}"'
            lines.append(f"__until_up {folder} env {cmd}")  # env: VAR=value in front works too
        else:
            wrapped = f"timeout {FOLLOW_SECONDS} {cmd}" if long_running else cmd
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


def test_a_gateway_start_in_the_docs_is_given_the_time_to_come_up(tmp_path: Path) -> None:
    """On a loaded machine a gateway may take longer than FOLLOW_SECONDS to create its database; the
    harness waits for it (so the next command finds its state folder), then stops it. A stand-in
    "gateway" that comes up after SLOW seconds (or fails at once) plays the part."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "slowgw"  # slowgw gateway start --state-dir DIR
    fake.write_text('#!/bin/sh\n[ -n "$FAIL" ] && exit 3\nsleep "${SLOW:-0}"\nmkdir -p "$4"\n'
                    'echo "{\\"mode\\": \\"$MODE\\"}" > "$4/gateway.json"\nexec sleep 300\n')  # fmt: skip
    fake.chmod(0o755)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    cmds = [
        f"SLOW={FOLLOW_SECONDS + 2} slowgw gateway start --state-dir ./slow",
        "test -f ./slow/gateway.json",
        "MODE=audit slowgw gateway start --state-dir ./quick   # flags and VAR=value reach it",
        "grep -q audit ./quick/gateway.json",
        "FAIL=1 slowgw gateway start --state-dir ./broken",
    ]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DOCS_SANDBOX": str(sandbox)}
    out = subprocess.run(["bash", "-c", _script(cmds)], env=env, capture_output=True, text=True, timeout=300).stdout
    statuses = [int(rc) for rc in re.findall(r"__RC__ \d+ (\d+)", out)]
    assert statuses == [124, 0, 124, 0, 3], out
