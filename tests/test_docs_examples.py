"""Runs the shell and Python examples of docs/*.md and README.md, so the docs cannot drift.

The convention, read from the markdown (nothing else is configured here):

- A ```python block whose first line is a comment naming a file (`# app/jobs.py`, optionally
  followed by a remark) is that file: it is written into the page's working directory, for
  the blocks after it.
- A block (```console, ```sh or unlabelled) whose first line starts with `$ ` is a session:
  each `$ command` runs with bash in the page's directory, and the lines below it, up to the
  next `$ `, are its output (stdout alone, or stdout and stderr together: a page may leave out
  log lines). Output is compared after masking what changes from run to run (ids, times,
  durations, pids, lease owners, host names); `...` in a shown line matches any text, and a
  line that is only `...` any number of lines. As in the reader's shell, `export` holds for
  the page's later commands, `$?` is the previous command's exit code, and `command &` runs in
  the background (as below). A job id the page shows in an output stands, in later commands,
  for the id this run printed in its place.
- `<!-- example: run -->` just before a ```python block without a file name runs it as a
  script; before a shell block without `$ ` lines, runs it with bash. Either must exit 0.
- `<!-- example: background -->` before a session starts each command in the background and
  waits until every shown line has appeared in its output (in any order: several processes
  log at once); it runs until the page's examples end, then gets SIGTERM. While one runs,
  later commands are tried again until their output matches, for up to RETRY_FOR seconds.
- `<!-- example: not run (REASON) -->` before any block skips it; the reasons are reported.
- `<!-- example: fragment -->` before a ```python block: part of a program (names defined
  elsewhere); it is only compiled.
- `<!-- example-page: postgresql -->` anywhere on a page runs its examples against a temporary
  PostgreSQL database (JOBWORKER_DATABASE_URL); other pages use `jobworker.db`, the SQLite
  default, in a temporary directory. `<!-- example-page: redis -->` gives the page Redis
  (JOBWORKER_REDIS_URL) under a prefix of its own, whose keys are deleted afterwards.

A ```python, ```sh, ```console or unlabelled block that is none of these fails the test.
Blocks in other languages (```text, ```sql, ```nginx, ```js, ```yaml, ```promql, ...) are listings.
Each page is one test, so pages run side by side under xdist; the blocks of a page run in
order, in one directory, and build on each other.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
LISTING_LANGS = {
    "text",
    "sql",
    "nginx",
    "js",
    "javascript",
    "yaml",
    "ini",
    "json",
    "toml",
    "promql",
}
REDIS_URL = os.environ.get("JOBWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
COMMAND_TIMEOUT = 90.0
RETRY_FOR = 45.0
BACKGROUND_WAIT = 45.0

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"<!--\s*example:\s*(?P<what>[^>]*?)\s*-->")
PAGE_MARKER = re.compile(r"<!--\s*example-page:\s*(?P<what>[\w-]+)\s*-->")
FILE_LINE = re.compile(r"^#\s+(?P<path>[\w./-]+\.(?:py|toml|cfg|ini|txt|json|yaml))\b")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a page, each with the example marker just before it (if any)."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m["indent"])
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(r"^ *```\s*$", lines[i]):
            prefix = lines[i][:indent]
            body.append(lines[i][indent:] if not prefix.strip() else lines[i].lstrip())
            i += 1
        i += 1
        marker = None
        j = start - 1
        # Blank lines and other HTML comments (markers of other tests) may stand in between.
        while j >= 0 and (
            not lines[j].strip()
            or (lines[j].lstrip().startswith("<!--") and not MARKER.search(lines[j]))
        ):
            j -= 1
        if j >= 0 and (mm := MARKER.search(lines[j])):
            marker = mm["what"]
        found.append(Block(path.name, start + 1, m["lang"], "\n".join(body) + "\n", marker))
    return found


# --- comparing output -----------------------------------------------------------------------

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MASKS: list[tuple[re.Pattern[str], str]] = [
    (UUID, "<ID>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<ID>"),
    (
        re.compile(r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?"),
        "<TIME>",
    ),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<TIME>"),
    # lease owners and holder names: host:supervisor-pid:index.generation:random
    (re.compile(r"[\w.-]+:\d+:\d+\.\d+:[0-9a-f]{6}"), "<OWNER>"),
    (re.compile(r"[\w.-]+:\d+:[0-9a-f]{6}"), "<OWNER>"),
    (re.compile(r"\[\d+\]"), "[<PID>]"),
    (re.compile(r"(?<=leader: )\S+(?= by )"), "<HOLDER>"),
    (re.compile(r"\b(pid|supervisor|process|worker pid) \d+"), r"\1 <PID>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|µs|s|seconds)\b"), "<DUR>"),
    (re.compile(r"\s+"), " "),
]


def mask(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line.strip()


def _line_pattern(shown: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in mask(shown).split("...")]
    return re.compile(".*".join(parts) + r"\Z")


def align(shown: list[str], got: list[str]) -> list[tuple[str, str]] | None:
    """Pairs (shown line, output line) if every shown line matches the next output line, a
    `...` line standing for any number of them; None if the output does not match."""
    shown = [s for s in shown if s.strip()]
    got = [g for g in got if g.strip()]
    masked = [mask(g) for g in got]

    def match(si: int, gi: int) -> list[tuple[str, str]] | None:
        if si == len(shown):
            return [] if gi == len(got) else None
        if shown[si].strip() == "...":
            for k in range(gi, len(got) + 1):
                if (rest := match(si + 1, k)) is not None:
                    return rest
            return None
        if gi < len(got) and _line_pattern(shown[si]).match(masked[gi]):
            rest = match(si + 1, gi + 1)
            return None if rest is None else [(shown[si], got[gi]), *rest]
        return None

    return match(0, 0)


def matches_in_order(shown: list[str], got: list[str]) -> bool:
    return align(shown, got) is not None


def missing_lines(shown: list[str], got: list[str]) -> list[str]:
    """The shown lines (not `...`) that no output line matches, in any order."""
    masked = [mask(g) for g in got]
    return [
        s
        for s in shown
        if s.strip() and s.strip() != "..." and not any(_line_pattern(s).match(g) for g in masked)
    ]


# --- running a page -------------------------------------------------------------------------


@dataclass
class Command:
    command: str
    output: list[str]


def session_of(block: Block) -> list[Command]:
    commands: list[Command] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append(Command(line[2:], []))
        elif commands and commands[-1].command.endswith("\\") and not commands[-1].output:
            commands[-1].command += "\n" + line
        elif commands:
            commands[-1].output.append(line)
    return commands


@dataclass
class Page:
    path: Path
    workdir: Path
    env: dict[str, str]
    background: list[tuple[subprocess.Popen[str], Path]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    last_code: int = 0

    def run(self, command: str) -> tuple[int, list[list[str]]]:
        """Runs a command; its output as the ways a terminal may show it: stdout alone (a
        page may leave out log lines on stderr), then stdout and stderr together."""
        # A session of its own: what the command leaves running (`cmd &` inside a script, a
        # server that forks) is stopped with it, here or on a timeout.
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
            pytest.fail(
                f"`{command}` still ran after {COMMAND_TIMEOUT:.0f} s (a server? mark the block"
                f" `background` or `not run`); it printed:\n{stdout}",
                pytrace=False,
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        out, err = stdout.splitlines(), stderr.splitlines()
        return proc.returncode, [out, out + err, err + out]

    def learn_ids(self, pairs: list[tuple[str, str]]) -> None:
        """The page's ids stand for the ones this run made: the next commands use those."""
        for shown, got in pairs:
            theirs, ours = UUID.findall(shown), UUID.findall(got)
            if len(theirs) == len(ours):
                for doc_id, real_id in zip(theirs, ours, strict=True):
                    self.ids.setdefault(doc_id, real_id)

    def with_ids(self, command: str) -> str:
        for doc_id, real_id in self.ids.items():
            command = command.replace(doc_id, real_id)
        return command

    def session(self, block: Block) -> None:
        for cmd in session_of(block):
            words = shlex.split(cmd.command, comments=True)
            if words and words[0] == "export":
                # The page's later commands see it, as in the reader's shell.
                self.env.update(word.split("=", 1) for word in words[1:])
                continue
            if cmd.command.rstrip().endswith("&"):
                self.start_background(Command(cmd.command.rstrip()[:-1], cmd.output), block)
                continue
            deadline = time.monotonic() + (RETRY_FOR if self.background else 0)
            while True:
                # `$?` is the previous command's exit code, as in the reader's shell.
                code, outputs = self.run(f"(exit {self.last_code}); " + self.with_ids(cmd.command))
                aligned = (align(cmd.output, got) for got in outputs)
                if (pairs := next((a for a in aligned if a is not None), None)) is not None:
                    self.learn_ids(pairs)
                    self.last_code = code
                    break
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{block.where}: `{cmd.command}` (exit code {code}) printed:\n"
                        + "\n".join(outputs[1])
                        + "\n\nthe page shows:\n"
                        + "\n".join(cmd.output),
                        pytrace=False,
                    )
                time.sleep(0.5)

    def start_backgrounds(self, block: Block) -> None:
        for cmd in session_of(block):
            self.start_background(cmd, block)

    def start_background(self, cmd: Command, block: Block) -> None:
        log = self.workdir / f".background-{len(self.background)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {cmd.command}"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        self.background.append((proc, log))
        deadline = time.monotonic() + BACKGROUND_WAIT
        while missing := missing_lines(cmd.output, log.read_text().splitlines()):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(
                    f"{block.where}: `{cmd.command}` never printed:\n"
                    + "\n".join(missing)
                    + "\n\nit printed:\n"
                    + log.read_text(),
                    pytrace=False,
                )
            time.sleep(0.2)

    def stop_background(self) -> None:
        for proc, _ in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, _ in self.background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.background.clear()

    def python(self, block: Block) -> None:
        script = self.workdir / f".example-{block.line}.py"
        script.write_text(block.text)
        code, outputs = self.run(f"{sys.executable} {script.name}")
        if code != 0:
            pytest.fail(
                f"{block.where}: exit code {code}:\n" + "\n".join(outputs[1]), pytrace=False
            )

    def shell(self, block: Block) -> None:
        code, outputs = self.run(f"set -e\n{block.text}")
        if code != 0:
            pytest.fail(
                f"{block.where}: exit code {code}:\n" + "\n".join(outputs[1]), pytrace=False
            )

    def example(self, block: Block) -> None:
        first = block.text.splitlines()[0] if block.text.strip() else ""
        file_line = FILE_LINE.match(first) if block.lang in ("python", "py") else None
        is_session = first.startswith("$ ")
        marker = block.marker or ""
        if marker.startswith("not run"):
            self.skipped.append(f"{block.where}: {marker}")
        elif file_line:
            target = self.workdir / file_line["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            if marker == "run":
                self.python(block)
        elif marker == "fragment" and block.lang in ("python", "py"):
            compile(block.text, block.where, "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT
        elif is_session and marker == "background":
            self.start_backgrounds(block)
        elif is_session and not marker:
            self.session(block)
        elif marker == "run" and block.lang in ("python", "py"):
            self.python(block)
        elif marker == "run":
            self.shell(block)
        else:
            pytest.fail(
                f"{block.where}: a ```{block.lang} block that is neither a file, a session nor"
                f" marked (marker: {block.marker!r}); see {Path(__file__).name}",
                pytrace=False,
            )


def _base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWORKER_")}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(workdir)
    env["HOME"] = str(workdir)
    env["COLUMNS"] = "200"
    return env


@contextmanager
def _page_env(path: Path, workdir: Path) -> Iterator[dict[str, str]]:
    env = _base_env(workdir)
    kinds = set(PAGE_MARKER.findall(path.read_text()))
    with ExitStack() as stack:
        if "postgresql" in kinds:
            from .pg import temporary_database

            env["JOBWORKER_DATABASE_URL"] = stack.enter_context(temporary_database())
        if "redis" in kinds:
            prefix = f"jwdocs-{uuid.uuid4().hex[:12]}:"
            env["JOBWORKER_REDIS_URL"] = REDIS_URL
            env["JOBWORKER_REDIS_PREFIX"] = prefix
            stack.callback(_drop_redis_keys, prefix)
        yield env


def _drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_page_examples(path: Path, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    workdir = tmp_path / "work"
    workdir.mkdir()
    # Unknown languages count as examples: a new one is classified here, not skipped.
    examples = [b for b in blocks_of(path) if b.lang not in LISTING_LANGS]
    with _page_env(path, workdir) as env:
        page = Page(path, workdir, env)
        try:
            for block in examples:
                page.example(block)
        finally:
            page.stop_background()
    for reason in page.skipped:
        print(reason)


def test_masks_and_matching() -> None:
    got = [
        "2026-12-04 16:29:18,123 INFO    [8544] jobworker.supervisor: started worker 0 (pid 91,"
        " owner myhost:8544:0.1:467d84)",
        "done in 12.5 ms",
    ]
    shown = [
        "... INFO [1] jobworker.supervisor: started worker 0 (pid 8547, owner vm:8:0.1:aaaaaa)"
    ]
    assert matches_in_order([*shown, "done in 3 s"], got)
    assert matches_in_order([*shown, "..."], got)
    assert not matches_in_order(shown, got)
    assert not matches_in_order([*shown, "done in 3 s", "more"], got)
    assert missing_lines(["done in 1s", "absent"], got) == ["absent"]


KNOWN_MARKERS = re.compile(r"run|background|fragment|not run \(.+\)")


def test_markers_are_known_and_say_why() -> None:
    """Every marker is one of the convention's; every `not run` gives its reason."""
    unknown, reasons = [], []
    for path in PAGES:
        for block in blocks_of(path):
            if block.marker is None:
                continue
            if not KNOWN_MARKERS.fullmatch(block.marker):
                unknown.append(f"{block.where}: {block.marker}")
            elif block.marker.startswith("not run"):
                reasons.append(f"{block.where}: {block.marker}")
        for line in path.read_text().splitlines():
            if "<!-- example" in line and not (MARKER.search(line) or PAGE_MARKER.search(line)):
                unknown.append(f"{path.name}: {line.strip()}")
    assert unknown == []
    assert reasons, "no block is marked as not run: the markers are not being read"
    print("\n".join(reasons))


def test_a_page_that_drifted_fails(tmp_path: Path) -> None:
    page_md = tmp_path / "page.md"
    page_md.write_text(
        "```python\n# greet.py\nprint('hello')\n```\n\n"
        "```console\n$ python greet.py\nhello\n$ python greet.py\ngoodbye\n```\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    page = Page(page_md, workdir, _base_env(workdir))
    file_block, session = blocks_of(page_md)
    page.example(file_block)
    assert (workdir / "greet.py").read_text() == "# greet.py\nprint('hello')\n"
    with pytest.raises(pytest.fail.Exception, match="goodbye"):
        page.example(session)


def test_an_unmarked_block_fails(tmp_path: Path) -> None:
    page_md = tmp_path / "page.md"
    page_md.write_text("```python\nprint('no file name, no marker')\n```\n")
    page = Page(page_md, tmp_path, _base_env(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="neither a file, a session nor marked"):
        page.example(blocks_of(page_md)[0])


def test_a_command_that_does_not_end_is_stopped_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "COMMAND_TIMEOUT", 1.0)
    page = Page(tmp_path / "page.md", tmp_path, _base_env(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="still ran after 1 s"):
        page.run("sleep 60 & echo $! > child.pid; wait")
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"the command's child {child} outlived it")
