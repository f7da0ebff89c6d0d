"""The buildah backend: pure argv/tail/stream logic, then real builds (marked integration)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gardenbuild.backends.base import bootstrap
from gardenbuild.backends import Limits
from gardenbuild.backends.buildah import (
    BUILDAH_HINT,
    Buildah,
    CommandError,
    RunResult,
    private_network,
    stream,
    strip_run_noise,
    tail,
    volume_args,
)
from gardenbuild.errors import BackendError, ToolMissingError
from gardenbuild.report import NullReporter, RecordingReporter

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


# --- pure parts --------------------------------------------------------------------------

def test_bud_argv_is_complete_and_stable(tmp_path):
    b = Buildah()
    argv = b.bud_argv(tmp_path / "Containerfile", tmp_path, volumes=[(tmp_path / "wh", "/wheels", "ro")],
                      build_args={"B": 2, "A": "1"}, labels={"z": "last", "a": "first"}, timestamp=0,
                      iidfile=tmp_path / "iid")
    assert argv == [
        "buildah", "bud", "--isolation", "chroot", "--pull=never", "--identity-label=false",
        "--layers", "--force-rm", "--timestamp", "0",
        "-v", f"{tmp_path}/wh:/wheels:ro",
        "--build-arg", "A=1", "--build-arg", "B=2",
        "--label", "a=first", "--label", "z=last",
        "--iidfile", f"{tmp_path}/iid",
        "-f", f"{tmp_path}/Containerfile", str(tmp_path),
    ]


def test_bud_argv_without_layers_or_timestamp(tmp_path):
    argv = Buildah().bud_argv(tmp_path / "C", tmp_path, layers=False, timestamp=None, no_cache=True)
    assert "--layers" not in argv and "--timestamp" not in argv
    assert "--no-cache" in argv and "--force-rm" in argv
    argv = Buildah().bud_argv(tmp_path / "C", tmp_path, layers=False)
    assert "--force-rm" not in argv  # buildah rejects it without --layers/--no-cache


def test_run_argv(tmp_path):
    argv = Buildah().run_argv("ctr", ["python3", "-c", "pass"], env={"B": "2", "A": "1"}, workdir="/w",
                              volumes=[(tmp_path, "/data", "")], user="0:0")
    assert argv == ["buildah", "run", "--isolation", "chroot", "--env", "A=1", "--env", "B=2",
                    "-v", f"{tmp_path}:/data", "--workingdir", "/w", "--user", "0:0",
                    "ctr", "--", "python3", "-c", "pass"]


def test_volume_args_resolve_and_validate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert volume_args([(Path("rel"), "/in", "ro")]) == ["-v", f"{tmp_path}/rel:/in:ro"]
    with pytest.raises(ValueError, match="absolute"):
        volume_args([(tmp_path, "in", "ro")])
    with pytest.raises(ValueError, match="':'"):
        volume_args([(tmp_path / "a:b", "/in", "ro")])


def test_network_modes():
    chroot = Buildah()
    flags, hook = chroot._network("none")
    assert flags == [] and callable(hook)
    assert chroot._network("host") == ([], None)
    assert chroot._network(None) == ([], None)
    with pytest.raises(ValueError, match="chroot"):
        chroot._network("private")
    assert Buildah(isolation="oci")._network("none") == (["--network=none"], None)


def test_tail():
    lines = [f"line {i}" for i in range(100)]
    assert tail(lines, 3) == "line 97\nline 98\nline 99"
    assert tail(lines).splitlines() == lines[-40:]
    assert tail(["a"], 40) == "a"
    assert tail(lines, 0) == ""


def test_buildah_error_keeps_whole_log_and_shows_tail():
    log = "\n".join(f"out {i}" for i in range(200))
    err = CommandError("buildah bud failed", ["buildah", "bud"], log, returncode=1)
    assert isinstance(err, BackendError)
    assert err.log == log
    assert err.log_tail.splitlines() == [f"out {i}" for i in range(160, 200)]
    assert err.lines()[:2] == ["buildah bud failed", "  command: buildah bud"]
    assert err.lines()[-1] == "    out 199"


def test_strip_run_noise():
    noisy = b"real err\nsubprocess exited with status 3\nsubprocess exited with status 3\nError: exit status 3\n"
    assert strip_run_noise(noisy) == b"real err\n"
    glued = b"no newline at endsubprocess exited with status 1\nError: exit status 1\n"
    assert strip_run_noise(glued) == b"no newline at end"
    assert strip_run_noise(b"subprocess exited on killed\nsubprocess exited with status 1\nError: exit status 1\n") == b""
    assert strip_run_noise(b"Error: exit status 3 is what my program prints\n") == \
        b"Error: exit status 3 is what my program prints\n"


def test_missing_buildah_is_reported_once_lazily():
    b = Buildah(executable="gardenbuild-no-such-buildah")  # constructing never fails
    with pytest.raises(ToolMissingError) as info:
        b.exists("localhost/x")
    assert info.value.message.startswith("buildah is not installed")
    assert info.value.hint == BUILDAH_HINT and "apt-get install -y buildah" in info.value.hint
    with pytest.raises(ToolMissingError):
        b.bud(Path("Containerfile"), Path("."), tag=None)
    with pytest.raises(ToolMissingError):
        b.run("img", ["true"])


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_stream_logs_every_line_and_raises_with_tail():
    rec = RecordingReporter()
    code = "import sys\nfor i in range(100): print('line', i, flush=True)\nprint('bar 10%\\rbar 100%')\n" \
           "sys.stderr.write('oops\\n'); sys.exit(3)"
    with pytest.raises(CommandError) as info:
        stream(_py(code), reporter=rec, what="thing")
    err = info.value
    assert err.message == "thing failed" and err.returncode == 3
    logged = rec.messages("log")
    assert logged[:2] == ["line 0", "line 1"] and logged[-2:] == ["bar 100%", "oops"]
    assert err.log.splitlines() == logged
    assert err.log_tail.splitlines() == logged[-40:]


def test_stream_returns_lines_on_success():
    assert stream(_py("print('a'); print('b')"), reporter=NullReporter(), what="x") == ["a", "b"]


def test_stream_missing_program_is_tool_missing():
    with pytest.raises(ToolMissingError, match="gardenbuild-nope is not installed"):
        stream(["gardenbuild-nope"], reporter=NullReporter(), what="x", hint="install it")


def test_stream_interrupt_stops_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild"
    code = ("import subprocess, sys, time\n"
            f"p = subprocess.Popen(['sleep', '60']); open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "print('READY', flush=True); time.sleep(60)")

    class Interrupting(RecordingReporter):
        def log(self, line: str) -> None:
            if line == "READY":
                raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stream(_py(code), reporter=Interrupting(), what="x")
    assert time.monotonic() - start < 10
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(grandchild) and time.monotonic() < deadline:  # a signal takes a moment
        time.sleep(0.02)
    assert not _alive(grandchild), "the grandchild survived the interrupt"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a killed orphan may linger as a zombie until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@needs_root
def test_private_network_has_loopback_and_nothing_else():
    code = ("import socket\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "socket.create_connection(s.getsockname(), timeout=2); print('loopback ok')\n"
            "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\n"
            "except OSError as e:\n    print('errno', e.errno)\n")
    out = subprocess.run(_py(code), capture_output=True, text=True, preexec_fn=private_network(), check=True).stdout
    assert out.splitlines()[0] == "loopback ok"
    assert out.splitlines()[1] == "errno 101"  # ENETUNREACH: no route, no interface


def test_run_result_ok():
    assert RunResult(0, b"", b"", 0.1).ok and not RunResult(2, b"", b"", 0.1).ok


# --- against real buildah ----------------------------------------------------------------

@pytest.fixture(scope="session")
def base_image() -> str:
    """The real 3.11 base (bootstrapped once per machine; reused when it exists)."""
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
    return bootstrap("3.11", buildah=Buildah(), reporter=NullReporter())


@pytest.fixture
def buildah() -> Buildah:
    return Buildah(reporter=RecordingReporter())


@pytest.fixture
def tag(buildah):
    """A unique tag for one test, removed afterwards."""
    name = f"localhost/gardenbuild-test/t{uuid.uuid4().hex[:12]}:latest"
    yield name
    if buildah.exists(name):
        buildah.rmi(name)


def _containers(buildah: Buildah) -> set[str]:
    return set(subprocess.run([buildah.executable, "containers", "--quiet", "--notruncate"],
                              capture_output=True, text=True, check=True).stdout.split())


def _containerfile(tmp_path: Path, text: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Containerfile").write_text(text)
    return ctx


@pytest.mark.integration
def test_bud_reads_a_read_only_volume_and_runs_without_network(tmp_path, base_image, buildah, tag):
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    secret = uuid.uuid4().hex
    (wheels / "message.txt").write_text(secret)
    ctx = _containerfile(tmp_path, f"FROM {base_image}\n"
                                   f"ARG MESSAGE_DIGEST\n"  # volume contents are not in the cache key
                                   "RUN cp /mnt/wheels/message.txt /message.txt && ! touch /mnt/wheels/x "
                                   "&& python3 -c \"import socket; socket.create_connection(('192.0.2.1', 80), 2)\" "
                                   "2>&1 | grep -q 'Network is unreachable'\n")
    image_id = buildah.bud(ctx / "Containerfile", ctx, tag=tag, volumes=[(wheels, "/mnt/wheels", "ro")],
                           build_args={"MESSAGE_DIGEST": secret})
    assert len(image_id) == 64 and buildah.image_id(tag) == image_id
    assert buildah.run(tag, ["cat", "/message.txt"]).stdout.decode() == secret
    assert not (wheels / "x").exists()
    assert any(line.startswith("STEP 2/3") for line in buildah.reporter.messages("log"))


@pytest.mark.integration
def test_bud_with_network_none_cannot_reach_out_but_host_can(tmp_path, base_image, buildah, tag):
    probe = ("RUN python3 -c \"import socket; e = socket.socket().connect_ex(('192.0.2.1', 80)); "
             "open('/errno', 'w').write(str(e))\"\n")
    ctx = _containerfile(tmp_path, f"FROM {base_image}\n{probe}")
    buildah.bud(ctx / "Containerfile", ctx, tag=tag, network="none", no_cache=True)
    assert buildah.run(tag, ["cat", "/errno"]).stdout == b"101"  # ENETUNREACH


@pytest.mark.integration
def test_failing_bud_raises_with_tail_and_moves_no_tag(tmp_path, base_image, buildah, tag):
    good = _containerfile(tmp_path, f"FROM {base_image}\nRUN echo good > /state\n")
    good_id = buildah.bud(good / "Containerfile", good, tag=tag)
    before = _containers(buildah)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Containerfile").write_text(f"FROM {base_image}\nRUN echo bad > /state\n"
                                       "RUN for i in $(seq 1 60); do echo noise $i; done; "
                                       "echo 'the real reason' >&2; exit 7\n")
    with pytest.raises(CommandError) as info:
        buildah.bud(bad / "Containerfile", bad, tag=tag)
    err = info.value
    assert err.message == "buildah bud failed"
    assert err.command[:2] == ["buildah", "bud"]
    assert "the real reason" in err.log_tail and "exit status 7" in err.log_tail
    assert len(err.log_tail.splitlines()) == 40
    assert "noise 1\n" in err.log + "\n" and "noise 1\n" not in err.log_tail + "\n"

    assert buildah.image_id(tag) == good_id  # the tag did not move
    other = f"{tag.rsplit(':', 1)[0]}-never:latest"
    with pytest.raises(CommandError):
        buildah.bud(bad / "Containerfile", bad, tag=other)
    assert not buildah.exists(other)
    assert _containers(buildah) <= before  # no build container left behind


@pytest.mark.integration
def test_interrupted_bud_leaves_no_tag_no_container_no_process(tmp_path, base_image, tag):
    class Interrupting(RecordingReporter):
        def log(self, line: str) -> None:
            if line == "GB-SLEEPING":
                raise KeyboardInterrupt

    buildah = Buildah(reporter=Interrupting())
    ctx = _containerfile(tmp_path, f"FROM {base_image}\nRUN echo GB-SLEEPING && sleep 61\n")
    before = _containers(buildah)
    with pytest.raises(KeyboardInterrupt):
        buildah.bud(ctx / "Containerfile", ctx, tag=tag, no_cache=True)
    assert not buildah.exists(tag)
    assert _containers(buildah) <= before
    leftovers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 61" not in leftovers


@pytest.mark.integration
def test_cached_bud_is_fast(tmp_path, base_image, buildah, tag):
    ctx = _containerfile(tmp_path, f"FROM {base_image}\nRUN echo cached > /c\n")
    first = buildah.bud(ctx / "Containerfile", ctx, tag=tag)
    start = time.perf_counter()
    assert buildah.bud(ctx / "Containerfile", ctx, tag=tag) == first
    assert time.perf_counter() - start < 2


@pytest.mark.integration
def test_run_returns_output_exit_code_stdin_env_workdir_volume(tmp_path, base_image, buildah):
    (tmp_path / "in.txt").write_text("from the host")
    code = ("import os, sys\n"
            "data = sys.stdin.buffer.read()\n"
            "print(len(data), os.environ['GREETING'], os.getcwd(), open('/data/in.txt').read())\n"
            "sys.stderr.write('to stderr\\n'); sys.exit(5)")
    result = buildah.run(base_image, ["python3", "-c", code], stdin=b"x" * 100_000, env={"GREETING": "hi"},
                         workdir="/tmp", volumes=[(tmp_path, "/data", "ro")])
    assert result.returncode == 5 and not result.ok
    assert result.stdout == b"100000 hi /tmp from the host\n"
    assert result.stderr == b"to stderr\n"  # buildah's own exit notes are stripped
    assert 0 < result.seconds < 30

    ok = buildah.run(base_image, ["python3", "-c", "pass"])
    assert ok.returncode == 0 and ok.stdout == b"" and ok.stderr == b""


@pytest.mark.integration
def test_run_uses_a_fresh_container_each_time(base_image, buildah):
    before = _containers(buildah)
    assert buildah.run(base_image, ["sh", "-c", "test ! -e /mark && touch /mark"]).ok
    assert buildah.run(base_image, ["sh", "-c", "test ! -e /mark && touch /mark"]).ok
    assert _containers(buildah) == before


@pytest.mark.integration
def test_run_network_none_and_host(base_image, buildah):
    # /proc/net/dev shows the process's own namespace (/sys/class/net would show the host's)
    probe = ["python3", "-c", "print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))"]
    assert buildah.run(base_image, probe, network="none").stdout == b"['lo']\n"
    assert buildah.run(base_image, probe, network="host").stdout != b"['lo']\n"


@pytest.mark.integration
def test_a_confined_run_past_its_time_limit_is_stopped_with_all_it_started(base_image, buildah):
    start = time.perf_counter()
    result = buildah.run(base_image, ["sh", "-c", "(sleep 63 &); sleep 62"], limits=Limits(seconds=1))
    assert result.limit == "time" and not result.ok
    assert time.perf_counter() - start < 15
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 62" not in running and "sleep 63" not in running  # the background child went too


@pytest.mark.integration
def test_a_confined_run_past_its_memory_limit_is_killed_and_says_so(base_image, buildah):
    result = buildah.run(base_image, ["python3", "-c", "x = bytearray(400 * 2**20); print('kept it')"],
                         limits=Limits(memory=100 * 2**20))
    assert (result.limit, result.ok, result.stdout) == ("memory", False, b"")
    small = buildah.run(base_image, ["python3", "-c", "x = bytearray(10 * 2**20); print('fine')"],
                        limits=Limits(memory=100 * 2**20))
    assert (small.limit, small.stdout) == (None, b"fine\n")
    assert small.peak_memory is not None and 10 * 2**20 < small.peak_memory <= 100 * 2**20


@pytest.mark.integration
def test_a_confined_run_is_nobody_with_no_capabilities_in_its_own_pid_namespace(base_image, buildah):
    probe = ("import os; st = dict(l.split(':') for l in open('/proc/self/status') if ':' in l);"
             "print(os.getuid(), os.getgid(), st['CapEff'].strip(), st['CapPrm'].strip(), st['NoNewPrivs'].strip(),"
             " len([p for p in os.listdir('/proc') if p.isdigit()]), os.getpid() < 100)")
    uid, gid, eff, permitted, no_new_privs, processes, low_pid = buildah.run(
        base_image, ["python3", "-c", probe], limits=Limits()).stdout.decode().split()
    assert (uid, gid) == ("65534", "65534")
    assert eff == permitted == "0" * 16 and no_new_privs == "1"  # and a setuid su cannot give any back
    escalate = buildah.run(base_image, ["sh", "-c", "su -c id root </dev/null"], limits=Limits(seconds=20))
    assert not escalate.ok and b"uid=0" not in escalate.stdout
    assert int(processes) < 10 and low_pid == "True"  # sees its own few processes, not the host's
    plain = buildah.run(base_image, ["python3", "-c", "import os; print(os.getuid())"])
    assert plain.stdout == b"0\n"  # unconfined runs (apt at lock time) keep the image's user


@pytest.mark.integration
def test_what_a_killed_gardenbuild_left_is_found_and_swept(base_image, tmp_path, monkeypatch):
    """A process killed with SIGKILL while its container runs: nothing keeps running, and
    the next process finds and removes the container it left."""
    monkeypatch.setenv("GARDENBUILD_RUN_DIR", str(tmp_path / "run"))
    script = tmp_path / "victim.py"
    script.write_text("import sys; from gardenbuild.backends.buildah import Buildah\n"
                      f"Buildah().run({base_image!r}, ['sh', '-c', 'echo started > /dev/stderr; sleep 64'],"
                      " limits=__import__('gardenbuild.backends', fromlist=['Limits']).Limits())\n")
    victim = subprocess.Popen([sys.executable, str(script)], env={**os.environ}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while "sleep 64" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline and victim.poll() is None
        time.sleep(0.2)
    victim.kill()
    victim.wait()
    time.sleep(0.5)
    assert "sleep 64" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    sweeper = Buildah()
    left = sweeper.leftovers()
    assert [c["name"].endswith(c["name"].split("-run-")[-1]) for c in left] == [True]
    assert sweeper.sweep() == [left[0]["name"]]
    assert sweeper.leftovers() == [] and list((tmp_path / "run").glob("*.json")) == []


@pytest.mark.integration
def test_run_of_a_missing_image_raises(buildah):
    with pytest.raises(CommandError, match="buildah from"):
        buildah.run("localhost/gardenbuild-test/absent:nope", ["true"])


@pytest.mark.integration
def test_image_queries_and_tags(base_image, buildah, tag):
    image_id = buildah.image_id(base_image)
    assert image_id and len(image_id) == 64
    assert buildah.image_id("localhost/gardenbuild-test/absent:nope") is None
    assert not buildah.exists("localhost/gardenbuild-test/absent:nope")
    info = buildah.inspect(base_image)
    assert info["FromImageID"] == image_id
    assert buildah.digest(base_image).startswith("sha256:")
    assert 10_000_000 < buildah.size(base_image) < 400_000_000

    buildah.tag(image_id, tag)
    assert buildah.image_id(tag) == image_id
    buildah.untag(tag)
    assert not buildah.exists(tag) and buildah.image_id(base_image) == image_id  # only the name went


@pytest.fixture
def registry(tmp_path):
    """A real OCI registry on loopback (docker-registry), stopped afterwards."""
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("docker-registry or skopeo is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
def test_push_returns_the_registry_digest(tmp_path, base_image, buildah, registry):
    dest = f"docker://{registry}/gardenbuild/python:test"
    digest = buildah.push(base_image, dest, tls_verify=False, digestfile=tmp_path / "digest")
    assert digest.startswith("sha256:") and (tmp_path / "digest").read_text().strip() == digest
    seen = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", dest],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert seen == digest


@pytest.mark.integration
def test_images_read_from_storage_are_the_ones_buildah_lists(tmp_path, base_image, buildah, tag):
    ctx = _containerfile(tmp_path, f"FROM {base_image}\nLABEL probe={uuid.uuid4().hex}\n")
    image_id = buildah.bud(ctx / "Containerfile", ctx, tag=tag)
    prefix = (tag.rsplit(":", 1)[0],)
    listed, stored = buildah.images(prefix), buildah.images(prefix, sized=False)
    assert {i["id"]: sorted(i["names"]) for i in stored} == {i["id"]: sorted(i["names"]) for i in listed}
    assert image_id in {i["id"] for i in stored} and all(i["size"] is None for i in stored)


def test_run_tries_a_fresh_container_when_buildah_fails_before_the_command_starts(tmp_path, monkeypatch):
    """buildah's chroot re-exec can fail to seal its memfd copy (EBUSY): nothing ran, so
    `run` tries again; any other failure, the command's own included, is the result as is."""
    from gardenbuild.backends import buildah as module

    runs = tmp_path / "runs"
    fake = tmp_path / "buildah"
    fake.write_text(f"""#!/bin/sh
case "$1" in
  from) echo container ;;
  rm) ;;
  run) echo x >> "{runs}"
       if [ "$(wc -l < "{runs}")" -lt "$FAILS_BEFORE" ]; then
         echo "Close_Fd sealing memfd copy: Device or resource busy" >&2; echo "Error: exit status 1" >&2; exit 1
       fi
       cat; echo " ran" ;;
esac
""")
    fake.chmod(0o755)
    b = module.Buildah(executable=str(fake))
    monkeypatch.setenv("FAILS_BEFORE", "3")  # the first two runs fail before starting
    result = b.run("img", ["cmd"], stdin=b"input", network=None)
    assert (result.returncode, result.stdout) == (0, b"input ran\n")
    assert runs.read_text().count("x") == 3
    runs.unlink()
    monkeypatch.setenv("FAILS_BEFORE", "9")  # never starts: the last failure is the result
    result = b.run("img", ["cmd"], network=None)
    assert result.returncode == 1 and b"sealing memfd copy" in result.stderr
    assert runs.read_text().count("x") == module.NOT_STARTED_TRIES
