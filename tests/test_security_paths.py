"""Resource canonicalisation: nothing outside AutoGPT's workspace is ever treated as `workspace`.

Through the launcher's real `map_command` (the function its dispatcher patch calls), against a real
directory tree with symlinks in and out of the workspace. The oracle is independent of the code
under test: the write is then really performed the way AutoGPT 0.2.2's write_to_file does it
(makedirs of the parent, open for writing) and the kernel tells where the file landed (its inode is
looked for in the workspace tree without following symlinks). Whenever `map_command` said
`workspace`, the file must have landed inside the workspace, at the resource it named.

Plus: the gateway refuses `..` segments and control characters in any resource, and real
AutoGPT 0.2.2 under the launcher writes nothing outside its workspace through any of these paths.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import strategies as st

from meshguard_autogpt import map_command
from tests.autogpt_run import REFUSAL, autogpt_available
from tests.conftest import LiveGateway
from tests.reliability.driver import Driver, start_driver
from tests.reliability.figures import record
from tests.reliability.soak import run_examples

FIGURES = {"paths_tried": 0, "classified_workspace": 0, "landed_outside_as_workspace": 0}

LOOKALIKES = [
    "\u2025",  # ‥ two dot leader
    "\u2024\u2024",  # ․․ one dot leader twice
    "\uff0e\uff0e",  # ．． fullwidth full stops
    "..\u200b",  # dots + zero-width space
    "\u2215",  # ∕ division slash
    "\uff0f",  # ／ fullwidth solidus
    "..\uff0fx",
    "\u2025\u2215x",
]
SEGMENTS = [
    "..", ".", "", "inner", "deep", "out", "abs_out", "secret", "up", "upup", "loop", "chain1", "dangling",
    "escape", "self", "x.txt", "new", "...", "%2e%2e", "..\\..", "\\", "~", "a\x00b", " .. ",
    *LOOKALIKES,
]  # fmt: skip


def build_tree(root: Path) -> Path:
    """root/outside/{secret.txt,inside-name/} and root/ws/ (the workspace) full of symlinks."""
    outside = root / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside")
    ws = root / "ws"
    (ws / "inner" / "deep").mkdir(parents=True)
    (ws / "out").symlink_to("../outside", target_is_directory=True)  # dir, relative, out
    (ws / "abs_out").symlink_to(outside, target_is_directory=True)  # dir, absolute, out
    (ws / "secret").symlink_to(outside / "secret.txt")  # file, out
    (ws / "inner" / "up").symlink_to("..", target_is_directory=True)  # dir, back to the workspace: in
    (ws / "inner" / "upup").symlink_to("../..", target_is_directory=True)  # dir, to root: out
    (ws / "loop").symlink_to("loop")  # a loop
    (ws / "chain2").symlink_to("inner/upup/outside", target_is_directory=True)
    (ws / "chain1").symlink_to("chain2", target_is_directory=True)  # nested chain, out
    (ws / "dangling").symlink_to("../outside/not-yet.txt")  # dangling, a write creates it outside
    (ws / "inner" / "deep" / "escape").symlink_to("../../../outside", target_is_directory=True)  # nested, out
    (ws / "self").symlink_to(".", target_is_directory=True)  # in
    return ws


def inodes_inside(ws: Path) -> dict[tuple[int, int], str]:
    """(dev, inode) -> relative path, for every regular file in the workspace, symlinks not followed."""
    found: dict[tuple[int, int], str] = {}
    for dirpath, _dirs, files in os.walk(ws, followlinks=False):
        for f in files:
            p = os.path.join(dirpath, f)
            st_ = os.lstat(p)
            if not os.path.islink(p):
                found[(st_.st_dev, st_.st_ino)] = os.path.relpath(p, ws)
    return found


def write_like_autogpt(ws: Path, filename: str) -> tuple[int, int] | None:
    """What AutoGPT 0.2.2's write_to_file does (without its own workspace check, which a config can
    turn off): makedirs(dirname(ws/filename)), open(..., "w"). Returns the written file's (dev, inode)."""
    target = os.path.join(ws, filename)
    try:
        directory = os.path.dirname(target)
        if not os.path.exists(directory):
            os.makedirs(directory)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write("x")
        st_ = os.stat(target)
    except (OSError, ValueError):
        return None
    return st_.st_dev, st_.st_ino


JAIL_DEPTH = 48  # empty folders above the tree: a relative path climbing fewer levels stays in the sandbox


def check_one(filename: str) -> None:
    """Classify with the launcher, then (only for `workspace`) write for real and see where it landed.

    The real write happens only where it cannot touch anything but the test's own sandbox: the
    tree sits JAIL_DEPTH empty folders deep inside a fresh temp folder, the write is done only when
    the launcher said `workspace`, never for an absolute name outside the sandbox, and never for a
    name with more segments than the jail is deep.
    """
    sandbox = Path(tempfile.mkdtemp(prefix="mg-paths-"))
    try:
        root = sandbox.joinpath(*["j"] * JAIL_DEPTH, "root")
        ws = build_tree(root)
        mapped = map_command("write_to_file", {"filename": filename, "text": "x"}, workspace=ws)
        FIGURES["paths_tried"] += 1
        assert mapped.action in ("write:workspace", "write:system"), mapped
        if mapped.action == "write:system":
            return
        FIGURES["classified_workspace"] += 1
        if os.path.isabs(filename):
            assert os.path.realpath(filename).startswith(os.path.realpath(ws) + os.sep), (
                f"absolute {filename!r} outside the workspace was called workspace ({mapped.resource!r})")
        assert len(filename.split("/")) < JAIL_DEPTH // 2, f"{filename!r}: too deep to write safely in this test"
        landed = write_like_autogpt(ws, filename)
        if landed is None:
            return
        inside = inodes_inside(ws)
        if landed not in inside:
            FIGURES["landed_outside_as_workspace"] += 1
        assert landed in inside, f"{filename!r} was called workspace ({mapped.resource!r}) but was written outside"
        real_rel = os.path.relpath(os.path.realpath(os.path.join(ws, inside[landed])), os.path.realpath(ws))
        assert mapped.resource == real_rel.replace(os.sep, "/"), (filename, mapped.resource, inside[landed])
        assert ".." not in (mapped.resource or "").split("/")
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)


DOTDOT_EVERYWHERE = [
    "..", "../x.txt", "../../x.txt", "./../x.txt", "x/..", "x/../..", "x/../../y.txt", "inner/../x.txt",
    "inner/../../x.txt", "inner/deep/../../x.txt", "inner/deep/../../../x.txt", "inner//..//..//x.txt",
    "inner/./deep/.././../../x.txt", "/..", "/../x.txt", "..//x.txt", "../ws/x.txt", "../outside/x.txt",
    "inner/..", "inner/deep/..", "../" * 20 + "etc/passwd", "x/" * 5 + "../" * 6 + "x.txt",
]  # fmt: skip
ABSOLUTE = ["/etc/passwd", "//etc/passwd", "/", "/tmp/mg-absolute-probe.txt", "/proc/self/cwd/x.txt"]
# (absolute paths into the test's own tree: test_absolute_paths_into_and_out_of_the_real_workspace)
SYMLINKS = [
    "out/x.txt", "out/new/deeper/x.txt", "abs_out/x.txt", "secret", "inner/up/x.txt", "inner/up/out/x.txt",
    "inner/upup/outside/x.txt", "inner/upup/ws/x.txt", "chain1/x.txt", "chain2/sub/x.txt", "dangling",
    "inner/deep/escape/x.txt", "self/x.txt", "self/out/x.txt", "self/self/self/x.txt", "loop", "loop/x.txt",
    "out/../x.txt", "inner/upup/ws/out/x.txt",
]  # fmt: skip
ODD_NAMES = [*(f"{name}/x.txt" for name in LOOKALIKES), *LOOKALIKES, "a\x00b.txt", "../\x00", "out/\x00x",
             "\x00", "...", "....//x.txt", "%2e%2e/x.txt", "..\\x.txt", "..\\..\\x.txt", "~/x.txt", " ../x.txt",
             "x.txt ", "\n../x.txt"]  # fmt: skip


@pytest.mark.parametrize("filename", DOTDOT_EVERYWHERE + ABSOLUTE + SYMLINKS + ODD_NAMES)
def test_named_paths_never_call_outside_workspace(filename: str) -> None:
    check_one(filename)


def test_absolute_paths_into_and_out_of_the_real_workspace() -> None:
    root = Path(tempfile.mkdtemp(prefix="mg-paths-"))
    try:
        ws = build_tree(root)
        cases = {
            f"{ws}/x.txt": ("write:workspace", "x.txt"),
            f"{ws}/inner/up/x.txt": ("write:workspace", "x.txt"),
            f"{ws}/../x.txt": ("write:system", f"{os.path.realpath(root)}/x.txt"),
            f"{ws}/out/x.txt": ("write:system", f"{os.path.realpath(root)}/outside/x.txt"),
            f"{root}/outside/secret.txt": ("write:system", f"{os.path.realpath(root)}/outside/secret.txt"),
            f"{root}/ws2/x.txt": ("write:system", f"{os.path.realpath(root)}/ws2/x.txt"),  # a prefix, not inside
            "/etc/passwd": ("write:system", "/etc/passwd"),
        }
        (root / "ws2").mkdir()
        for name, expected in cases.items():
            mapped = map_command("write_to_file", {"filename": name, "text": "x"}, workspace=ws)
            assert (mapped.action, mapped.resource) == expected, name
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_nul_bytes_are_system_and_unchanged() -> None:
    """A NUL cannot be resolved; the launcher keeps it (system) so the gateway refuses it."""
    mapped = map_command("write_to_file", {"filename": "notes\x00.txt", "text": "x"}, workspace="/tmp")
    assert mapped.action == "write:system" and "\x00" in (mapped.resource or "")


def test_lookalikes_are_not_normalised_into_dots_or_slashes() -> None:
    root = Path(tempfile.mkdtemp(prefix="mg-paths-"))
    try:
        ws = build_tree(root)
        for name in LOOKALIKES:
            mapped = map_command("read_file", {"filename": f"{name}/passwd"}, workspace=ws)
            assert mapped.action == "read:workspace", name
            assert mapped.resource == f"{name}/passwd"  # a real name inside the workspace, kept as is
    finally:
        shutil.rmtree(root, ignore_errors=True)


paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=7).map("/".join)
prefixed = st.tuples(st.sampled_from(["", "/", "./", "//"]), paths).map("".join)


def test_any_combination_is_never_outside_as_workspace(request: pytest.FixtureRequest) -> None:
    run_examples(request.config, 150, check_one, prefixed, factor=20)


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    record("paths", **FIGURES)


# ---- the gateway refuses non-canonical resources --------------------------------------------

ALLOW_ALL = """\
name: allow-all
version: "1.0"
appliesTo:
  tags: [paths]
rules:
  - effect: allow
    actions: ["*:*"]
defaultEffect: allow
"""

NON_CANONICAL = ["..", "../etc/passwd", "a/../b", "a/..", "workspace/../../etc", "a\\..\\b", "..\\x", "/..",
                 "x\x00", "x\n", "x\r", "\x1b[31mred", "x\x7f", "x\u0085", "tab\there"]  # fmt: skip
CANONICAL_LOOKING = ["...", "a..b", "..x", "x..", "\u2025/x", "\uff0e\uff0e/x", "..\u200b/x", "a/.../b"]


def test_gateway_refuses_dotdot_and_control_characters(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    policy = tmp_path / "allow-all.yaml"
    policy.write_text(ALLOW_ALL, encoding="utf-8")
    gw = start_gateway(policy)
    _, token = gw.create_agent("paths-bot", tags=["paths"])
    for resource in NON_CANONICAL:
        for action in ("read:workspace", "write:workspace"):
            resp = gw.check(token, action, resource)
            assert resp.status_code == 403, (resource, resp.text)
            body = resp.json()
            assert body["allowed"] is False and body["decision"] == "deny"
            assert "'..'" in body["reason"] or "control characters" in body["reason"], body["reason"]
    for resource in CANONICAL_LOOKING:  # the control: the same gateway allows what is canonical
        resp = gw.check(token, "read:workspace", resource)
        assert resp.status_code == 200, (resource, resp.text)
    resp = httpx.get(gw.url + "/proxy/check", headers={"Authorization": f"Bearer {token}",
                     "X-MeshGuard-Action": "read:workspace", "X-MeshGuard-Resource": "a/../../etc/passwd"}, timeout=10)  # fmt: skip
    assert resp.status_code == 403


# ---- real AutoGPT 0.2.2 under the launcher writes nothing outside ---------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    if not autogpt_available():
        pytest.skip("needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
    drv = start_driver(tmp_path_factory.mktemp("paths") / "run")
    yield drv
    drv.close()


@pytest.mark.autogpt
def test_real_autogpt_writes_nothing_outside_through_tricky_paths(
    driver: Driver, start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    gw = start_gateway()  # the repository's policies: write:workspace allowed, write:system denied
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    ws, outside = driver.workspace, tmp_path / "outside"
    outside.mkdir()
    tag = uuid.uuid4().hex[:8]
    links = {"out": outside, "self": Path(".")}
    for name, target in links.items():
        if not (ws / name).is_symlink():
            (ws / name).symlink_to(target, target_is_directory=True)
    if not (ws / "dangling").is_symlink():
        (ws / "dangling").symlink_to(outside / "created-by-dangling.txt")
    names = [f"../{tag}.txt", f"out/{tag}.txt", f"out/new-{tag}/x.txt", f"self/out/{tag}.txt", "dangling",
             f"{outside}/{tag}.txt", f"self/../{tag}.txt", f"{tag}\x00.txt"]  # fmt: skip
    before = set(os.listdir(outside)) | set(os.listdir(driver.run_dir))
    for name in names:
        answer = driver.run(gw.url, {"filename": name, "text": "escape"}, token=token, timeout=5)
        assert answer["result"].startswith(f"{REFUSAL} 'write_to_file'"), (name, answer["result"])
        assert "write:system" in answer["result"]
    after = set(os.listdir(outside)) | set(os.listdir(driver.run_dir))
    assert after == before, after - before
    control = driver.run(gw.url, {"filename": f"inside-{tag}.txt", "text": "ok"}, token=token, timeout=5)
    assert control["result"] == "File written to successfully."
    assert (ws / f"inside-{tag}.txt").read_text() == "ok"
