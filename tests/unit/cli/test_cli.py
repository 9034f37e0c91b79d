"""The ``strom`` command: run forms, exit codes, Ctrl-C and demo as a subprocess of the real
console script; usage errors also in-process (they end before any job runs)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import strom
from strom import StreamExecutionEnvironment
from strom.cli.main import main, split_run_args

STROM = Path(sys.executable).with_name("strom")
TIMEOUT = 30  # a deadline for a hung command, never a performance expectation


def strom_cmd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert STROM.exists(), f"console script not installed next to {sys.executable}"
    return subprocess.run(
        [str(STROM), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


JOB = """
    import sys
    from strom import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    print(f"parallelism={env.get_parallelism()} argv={sys.argv[1:]}", flush=True)
    env.from_collection(list(range(6))).map(lambda x: x * 10).print()
    env.execute("job file")
"""


def printed_records(stdout: str) -> tuple[set[str], list[int]]:
    """(subtask prefixes, values) of lines printed by ``print()`` sinks."""
    prefixes: set[str] = set()
    values: list[int] = []
    for line in stdout.splitlines():
        if line.startswith("parallelism="):
            continue
        prefix, _, value = line.rpartition("> ")
        prefixes.add(prefix)
        values.append(int(value))
    return prefixes, sorted(values)


def test_version() -> None:
    r = strom_cmd("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"strom {strom.__version__}"


def test_run_job_file_with_parallelism_and_arguments(tmp_path: Path) -> None:
    job = write(tmp_path / "job.py", JOB)
    r = strom_cmd("run", str(job), "--parallelism", "2", "first", "--flag", "-p", "5")
    assert r.returncode == 0, r.stderr
    assert "parallelism=2 argv=['first', '--flag', '-p', '5']" in r.stdout
    prefixes, values = printed_records(r.stdout)
    assert values == [0, 10, 20, 30, 40, 50]
    assert prefixes == {"1", "2"}


@pytest.mark.parametrize(
    "options",
    [["-p", "3", "{job}"], ["{job}", "--parallelism=3"], ["{job}", "-p3"], ["--", "{job}", "-p3"]],
)
def test_parallelism_option_positions(tmp_path: Path, options: list[str]) -> None:
    job = str(write(tmp_path / "job.py", JOB))
    r = strom_cmd("run", *(o.format(job=job) for o in options))
    assert r.returncode == 0, r.stderr
    assert "parallelism=3 argv=[]" in r.stdout


def test_without_parallelism_the_job_keeps_the_default(tmp_path: Path) -> None:
    r = strom_cmd("run", str(write(tmp_path / "job.py", JOB)), "--", "-p", "3")
    assert r.returncode == 0, r.stderr
    assert "parallelism=1 argv=['-p', '3']" in r.stdout
    assert printed_records(r.stdout)[0] == {""}


MODULE = """
    from strom import StreamExecutionEnvironment

    def build():
        env = StreamExecutionEnvironment.get_execution_environment()
        env.from_collection([1, 2, 3]).map(lambda x: x + 100).print()
        return env  # executed by strom run

    def build_stream():
        env = StreamExecutionEnvironment.get_execution_environment()
        stream = env.from_collection([1, 2, 3]).map(lambda x: x + 100)
        stream.print()
        return stream

    def execute_itself():
        build().execute("itself")

    def wrong_return():
        return 42
"""


@pytest.mark.parametrize("function", ["build", "build_stream", "execute_itself"])
def test_run_module_function(tmp_path: Path, function: str) -> None:
    write(tmp_path / "myjobs.py", MODULE)
    r = strom_cmd("run", f"myjobs:{function}", "-p", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    prefixes, values = printed_records(r.stdout)
    assert values == [101, 102, 103]
    assert prefixes <= {"1", "2"}
    assert "" not in prefixes  # parallelism 2 reached the environment


def test_missing_job_file_exits_2_naming_it(tmp_path: Path) -> None:
    r = strom_cmd("run", "no/such/job.py", cwd=tmp_path)
    assert r.returncode == 2
    assert "'no/such/job.py' not found" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., int]]:
    """``main(args)`` in this process, in ``tmp_path``, with process-wide state restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(StreamExecutionEnvironment, "_default_parallelism", 1)
    sigint = signal.getsignal(signal.SIGINT)
    modules = set(sys.modules)

    def run(*args: str) -> int:
        try:
            return main(list(args))
        except SystemExit as e:  # argparse's way out
            return int(e.code or 0)

    yield run
    signal.signal(signal.SIGINT, sigint)
    for name in set(sys.modules) - modules:
        if name.startswith("myjobs"):
            del sys.modules[name]


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["run", "no_such_module:main"], ["no module named 'no_such_module'"]),
        (["run", "myjobs:no_such_function"], ["'myjobs' has no function 'no_such_function'"]),
        (["run", "myjobs.sub:build"], ["no module named 'myjobs.sub'"]),
        (["run", "no_such_module"], ["'no_such_module' is neither a job file nor a module"]),
        (["run", "myjobs:wrong_return"], ["'myjobs:wrong_return' returned", "int"]),
        (["run", "-p", "0", "job.py"], ["parallelism", "at least 1"]),
        (["run", "job.py", "--parallelism", "many"], ["parallelism", "'many'"]),
        (["run"], ["TARGET"]),
        (["demo", "--records", "-5"], ["--records", "must be >= 0"]),
        ([], ["COMMAND"]),
    ],
)
def test_bad_input_exits_2_naming_the_problem(
    in_process: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    mentions: list[str],
) -> None:
    write(Path("myjobs.py"), MODULE)
    write(Path("job.py"), JOB)
    assert in_process(*args) == 2
    err = capsys.readouterr().err
    for text in mentions:
        assert text in err
    assert "Traceback" not in err


def test_failing_job_exits_1_with_operator_subtask_and_traceback(tmp_path: Path) -> None:
    job = write(
        tmp_path / "failing.py",
        """
        from strom import StreamExecutionEnvironment

        def explode(x):
            if x == 3:
                raise ValueError("bad record")
            return x

        env = StreamExecutionEnvironment.get_execution_environment()
        env.from_collection([1, 2, 3, 4]).map(explode).name("Exploding Map").print()
        env.execute("failing job")
        """,
    )
    r = strom_cmd("run", str(job), "-p", "2")
    assert r.returncode == 1
    assert "'Exploding Map'" in r.stderr
    assert "subtask" in r.stderr
    assert "ValueError: bad record" in r.stderr
    assert 'in explode\n    raise ValueError("bad record")' in r.stderr  # the task traceback


def test_error_in_job_code_exits_1_with_its_traceback(tmp_path: Path) -> None:
    job = write(tmp_path / "broken.py", "import strom\nraise RuntimeError('no config found')\n")
    r = strom_cmd("run", str(job))
    assert r.returncode == 1
    assert "RuntimeError: no config found" in r.stderr
    assert "broken.py" in r.stderr


ENDLESS = """
    import sys
    import time
    from pathlib import Path

    from strom import StreamExecutionEnvironment
    from strom.functions import RichParallelSourceFunction

    class Endless(RichParallelSourceFunction):
        def __init__(self):
            self.running = True

        def run(self, ctx):
            Path(sys.argv[1]).touch()
            i = 0
            while self.running:
                with ctx.get_checkpoint_lock():
                    ctx.collect(i)
                    i += 1
                time.sleep(0.001)

        def cancel(self):
            self.running = False

    env = StreamExecutionEnvironment.get_execution_environment()
    env.add_source(Endless()).filter(lambda x: False).print()
    env.execute("endless")
"""


def test_sigint_cancels_the_running_job_and_exits_130(tmp_path: Path) -> None:
    job = write(tmp_path / "endless.py", ENDLESS)
    running = tmp_path / "running"
    proc = subprocess.Popen(
        [str(STROM), "run", str(job), "-p", "2", str(running)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not running.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "cancelled" in stderr
    assert "Traceback" not in stderr


def test_demo_prints_the_same_table_at_any_parallelism() -> None:
    one = strom_cmd("demo", "--records", "3000", "--parallelism", "1", "--seed", "5")
    three = strom_cmd("demo", "--records", "3_000", "-p", "3", "--seed", "5")
    assert one.returncode == 0, one.stderr
    assert three.returncode == 0, three.stderr
    table = one.stdout.split("\n\n", 1)[1]
    assert table == three.stdout.split("\n\n", 1)[1]
    header = table.splitlines()[0]
    assert [c.strip() for c in header.split("|")] == [
        "API",
        "requests",
        "success rate %",
        "avg latency ms",
        "max latency ms",
    ]
    assert table.splitlines()[-1].split("|")[1].strip() == "3,000"


@pytest.mark.parametrize(
    ("argv", "own", "job"),
    [
        (["job.py"], ["--", "job.py"], []),
        (["job.py", "a", "-p", "2"], ["--", "job.py"], ["a", "-p", "2"]),
        (["-p", "2", "job.py", "a"], ["-p", "2", "--", "job.py"], ["a"]),
        (["job.py", "-p", "2", "--", "-p", "3"], ["-p", "2", "--", "job.py"], ["-p", "3"]),
        (["job.py", "--parallelism=2", "-h"], ["--parallelism=2", "--", "job.py"], ["-h"]),
        (["job.py", "-pfoo"], ["--", "job.py"], ["-pfoo"]),
        (["--", "-odd.py", "-p1", "x"], ["-p1", "--", "-odd.py"], ["x"]),
        (["-h"], ["-h"], []),
    ],
)
def test_split_run_args(argv: list[str], own: list[str], job: list[str]) -> None:
    assert split_run_args(argv) == (own, job)


def test_console_script_runs_the_strom_under_test(tmp_path: Path) -> None:
    # guards every test here against a stale `strom` from another installation
    job = write(tmp_path / "where.py", "import strom\nprint(strom.__file__)\n")
    r = strom_cmd("run", str(job))
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == Path(strom.__file__)
