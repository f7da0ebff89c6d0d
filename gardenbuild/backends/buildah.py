"""The container backend: the only module that runs buildah (or any container process).

`Buildah` is a narrow wrapper around the ``buildah`` CLI. Long commands (``bud``,
``push``) stream their output line by line to ``reporter.log`` and, when they fail,
raise a `CommandError` carrying the command, the last lines of output and the whole log.

Two facts about buildah 1.28 with ``--isolation chroot`` (the only isolation that works
on hosts whose cgroups are in hybrid mode, where crun refuses to start) shape this module:

* buildah rejects ``--network none`` with chroot isolation, and RUN steps then share the
  host's network. We get a hermetic build by starting buildah itself in a fresh network
  namespace that holds only a loopback interface (`private_network`); chroot RUN steps
  inherit it.
* ``buildah run`` resolves a user name through /etc/passwd in the image unless the user is
  numeric, which costs ~30 ms per call; images that set ``USER 0:0`` skip it.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gardenbuild.backends import Limits, RunResult, Volume, owners
from gardenbuild.backends.cgroups import Cgroup
from gardenbuild.errors import BackendError, ToolMissingError
from gardenbuild.report import NullReporter, Reporter

TAIL_LINES = 40
#: Who confined containers run as: nobody, with no capabilities.
UNPRIVILEGED = "65534:65534"
BUILDAH_HINT = "apt-get install -y buildah  (Debian/Ubuntu), or see https://github.com/containers/buildah/blob/main/install.md"



class CommandError(BackendError):
    """An outside command (buildah, debootstrap) failed. ``log`` holds its whole output, ``log_tail`` the end."""

    def __init__(self, message: str, command: list[str], log: str = "", returncode: int | None = None,
                 hint: str | None = None, tail_lines: int = TAIL_LINES) -> None:
        super().__init__(message, command, tail(log.splitlines(), tail_lines), hint)
        self.log = log
        self.returncode = returncode


class TimedOut(CommandError):
    """An outside command ran past its time limit and was stopped."""


def tail(lines: Sequence[str], n: int = TAIL_LINES) -> str:
    """The last ``n`` lines, joined; what a failed command's error shows."""
    return "\n".join(lines[-n:]) if n > 0 else ""


# --- a network namespace with nothing but loopback ---------------------------------------

_CLONE_NEWNET = 0x40000000
_SIOCSIFFLAGS = 0x8914
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40
_libc: ctypes.CDLL | None = None


def _unshare_function() -> Callable[[int], None]:
    """``os.unshare`` (Python >= 3.12) or the libc call; resolved in the parent, not the child."""
    if hasattr(os, "unshare"):
        return os.unshare  # type: ignore[attr-defined]
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    call = _libc.unshare

    def unshare(flags: int) -> None:
        if call(flags) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return unshare


def private_network() -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into a new network namespace with loopback up.

    Everything the child starts (buildah, and the chroot RUN steps it runs) can reach
    127.0.0.1 and nothing else. Needs root (CAP_SYS_ADMIN).
    """
    unshare = _unshare_function()
    ifreq = struct.pack("16sH14x", b"lo", _IFF_UP | _IFF_LOOPBACK | _IFF_RUNNING)

    def enter() -> None:
        unshare(_CLONE_NEWNET)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, _SIOCSIFFLAGS, ifreq)

    return enter


# --- running outside programs -----------------------------------------------------------

def _clean_line(raw: bytes) -> str:
    """One output line as text; of a line redrawn with carriage returns, its last state."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if "\r" in text:
        parts = [p for p in text.split("\r") if p.strip()]
        text = parts[-1] if parts else ""
    return text


_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
#: Every child this process started and has not reaped: stopped by `stop_children` at exit.
_LIVE: set[subprocess.Popen] = set()


def _die_with_parent() -> None:
    """In a child: be killed when gardenbuild dies, however it dies (kill -9 included)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def no_new_privileges() -> None:
    """In a child: no exec, of a setuid binary (su, mount) or a file with capabilities, may
    ever gain a privilege; inherited by everything the child starts."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def child_setup(*steps: Callable[[], None] | None) -> Callable[[], None]:
    """A ``preexec_fn``: die with the parent, then each of `steps` (join a cgroup, a network)."""
    def setup() -> None:
        _die_with_parent()
        for step in steps:
            if step is not None:
                step()

    return setup


def in_own_pid_namespace(argv: Sequence[str]) -> list[str]:
    """``argv`` as the first process of a new PID namespace (util-linux ``unshare``).

    When it exits, or is killed because gardenbuild died, the kernel kills every process
    left in the namespace: no RUN step or pipeline outlives its build or call, and none
    sees (or can signal) the host's processes. Without unshare or root, `argv` unchanged.
    """
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return list(argv)
    return [unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "--", *argv]


def stop_children() -> None:
    """Stop every child still running (atexit, and after SIGTERM/SIGHUP in the CLI)."""
    for proc in list(_LIVE):
        _stop(proc)


atexit.register(stop_children)


def stream(argv: Sequence[str], *, reporter: Reporter, what: str, env: Mapping[str, str] | None = None,
           cwd: Path | None = None, preexec_fn: Callable[[], None] | None = None,
           on_line: Callable[[str], None] | None = None, hint: str | None = None,
           timeout: float | None = None, own_pids: bool = False, redact: Sequence[str] = ()) -> list[str]:
    """Run ``argv``, sending each line of its merged stdout/stderr to ``reporter.log``.

    Returns all lines. On a non-zero exit raises `CommandError` ("<what> failed") with the
    tail and the whole log; past `timeout` seconds the child and its group are stopped and
    `TimedOut` is raised. On KeyboardInterrupt (or any error while reading) the child is
    terminated and waited for before the exception propagates. The child dies with us;
    with `own_pids` it is the first process of its own PID namespace (errors show `argv`).
    Each string of `redact` (a secret's value) is shown as ``***`` wherever a line holds it.
    """
    argv = [str(a) for a in argv]
    started = in_own_pid_namespace(argv) if own_pids else argv
    lines: list[str] = []
    try:
        # Own process group: on interrupt we stop buildah *and* what it runs (a chroot RUN
        # step outlives a terminated buildah otherwise).
        proc = subprocess.Popen(started, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=None if env is None else dict(env), cwd=cwd,
                                preexec_fn=child_setup(preexec_fn), start_new_session=True)
    except FileNotFoundError as exc:
        if exc.filename != started[0]:
            raise
        raise ToolMissingError(f"{Path(argv[0]).name} is not installed", hint=hint) from None
    except subprocess.SubprocessError as exc:  # the preexec_fn failed (e.g. no CAP_SYS_ADMIN)
        raise CommandError(f"{what} could not start: {exc}", argv,
                           hint="a build without network needs root (it runs in a new network namespace)") from None
    _LIVE.add(proc)
    expired = threading.Event()
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, lambda: (expired.set(), _stop(proc)))
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = _clean_line(raw)
            for secret in redact:
                line = line.replace(secret, "***")
            lines.append(line)
            reporter.log(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        _LIVE.discard(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if expired.is_set():
        raise TimedOut(f"{what} ran past its limit of {timeout:g} s and was stopped", argv, "\n".join(lines), returncode)
    if returncode != 0:
        raise CommandError(f"{what} failed", argv, "\n".join(lines), returncode)
    return lines


def _stop(proc: subprocess.Popen) -> None:
    """Stop a child started here and everything in its process group.

    SIGTERM first (buildah then removes its build container), SIGKILL for stragglers.
    """
    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    if proc.poll() is not None:
        return
    signal_group(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    signal_group(signal.SIGKILL)
    proc.wait()


#: buildah failing before the command starts: with chroot isolation it runs a copy of itself
#: from a sealed memfd, and the kernel can refuse the seal for a moment (EBUSY; seen once in
#: CI, on a pipeline call). Nothing of the command ran, so `run` tries a fresh container.
NOT_STARTED = re.compile(rb"sealing memfd copy: Device or resource busy")
NOT_STARTED_TRIES = 3

IMAGE_ID = re.compile(r"[0-9a-f]{64}")

_BUILDAH_RUN_NOISE = re.compile(rb"(?:subprocess exited (?:with status \d+|on \w+)\n)+Error: exit status \d+\n\Z")


def strip_run_noise(stderr: bytes) -> bytes:
    """Remove the lines ``buildah run`` appends to stderr when the command exits non-zero."""
    return _BUILDAH_RUN_NOISE.sub(b"", stderr)


def volume_args(volumes: Sequence[Volume]) -> list[str]:
    """``-v host:container[:options]`` for each volume, host paths made absolute."""
    args: list[str] = []
    for host, container, options in volumes:
        host_path = str(Path(host).resolve())
        for part, label in ((host_path, "host path"), (container, "container path"), (options, "options")):
            if ":" in part:
                raise ValueError(f"volume {label} may not contain ':': {part!r}")
        if not container.startswith("/"):
            raise ValueError(f"volume container path must be absolute: {container!r}")
        spec = f"{host_path}:{container}" + (f":{options}" if options else "")
        args += ["-v", spec]
    return args


def _pairs(flag: str, values: Mapping[str, object]) -> list[str]:
    """``flag KEY=VALUE`` for each item, sorted so the argv (and any log of it) is stable."""
    out: list[str] = []
    for key in sorted(values):
        out += [flag, f"{key}={values[key]}"]
    return out


def parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` from /proc (the field after the command name, which may
    hold spaces and parentheses itself); None once the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


# --- the backend ------------------------------------------------------------------------

class Running:
    """A command started in a fresh container (`Buildah.start`): its process, container and cgroup."""

    def __init__(self, backend: "Buildah", proc: subprocess.Popen, name: str, group: Cgroup | None) -> None:
        self.backend, self.proc, self.name, self.group = backend, proc, name, group
        self._closed = False

    def descendants(self) -> list[int]:
        """Host PIDs of every process below ours (buildah's chroot child, the command, its children)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(stat.parent.name)
            ppid = parent_pid(pid)
            if ppid is not None:
                children.setdefault(ppid, []).append(pid)
        out, todo = [], [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out

    def close(self) -> None:
        """Stop the command if it still runs (its whole process group) and remove the container."""
        if self._closed:
            return
        self._closed = True
        try:
            _stop(self.proc)
        finally:
            _LIVE.discard(self.proc)
            if self.group is not None:
                self.group.remove()
            self.backend._remove_container(self.name)


class Buildah:
    """Builds, runs, inspects and pushes images through the buildah CLI."""

    def __init__(self, executable: str = "buildah", isolation: str = "chroot", reporter: Reporter | None = None) -> None:
        self.executable = executable
        self.isolation = isolation
        self.reporter: Reporter = reporter or NullReporter()
        self._path: str | None = None
        self._warned_cgroup = False

    # -- plumbing

    def require(self) -> str:
        """The buildah executable's path; looked up once, on first use.

        Raises `ToolMissingError` when it is not installed. Command lines keep the name
        as given (``buildah bud ...``) so that errors show what a user would type.
        """
        if self._path is None:
            found = shutil.which(self.executable)
            if found is None:
                where = "" if self.executable == "buildah" else f" (looked for {self.executable!r})"
                raise ToolMissingError(f"buildah is not installed{where}", hint=BUILDAH_HINT)
            self._path = found
        return self._path

    def _network(self, network: str | None) -> tuple[list[str], Callable[[], None] | None]:
        """Flags and preexec hook for a network mode: ``none``, ``host`` or None (buildah's default)."""
        if network is None:
            return [], None
        if self.isolation == "chroot":
            if network == "none":
                return [], private_network()
            if network == "host":
                return [], None
            raise ValueError(f"network {network!r} is not possible with chroot isolation (use 'none' or 'host')")
        return [f"--network={network}"], None

    def _capture(self, *args: str, stdin: bytes | None = None, what: str | None = None) -> subprocess.CompletedProcess:
        """Run a short buildah command, capture its output, raise `CommandError` if it fails."""
        self.require()
        argv = [self.executable, *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
        if proc.returncode != 0:
            log = proc.stderr.decode("utf-8", "replace") or proc.stdout.decode("utf-8", "replace")
            raise CommandError(f"{what or 'buildah ' + args[0]} failed", argv, log, proc.returncode)
        return proc

    def bud_argv(self, containerfile: Path, context: Path, *, volumes: Sequence[Volume] = (),
                 build_args: Mapping[str, object] | None = None, labels: Mapping[str, object] | None = None,
                 layers: bool = True, timestamp: int | None = 0, network_flags: Sequence[str] = (),
                 no_cache: bool = False, pull: str = "never", iidfile: Path | None = None,
                 tag: str | None = None) -> list[str]:
        """The ``buildah bud`` command line (pure). buildah names the image `tag` as it commits
        the last stage, after every instruction succeeded: a failed build never moves it."""
        argv = [self.executable, "bud", "--isolation", self.isolation, f"--pull={pull}",
                "--identity-label=false"]  # no buildah version label: digests survive buildah upgrades
        if layers:
            argv.append("--layers")
        if no_cache:
            argv.append("--no-cache")
        if layers or no_cache:  # buildah accepts --force-rm only then
            argv.append("--force-rm")  # no intermediate containers left behind by a failed build
        if timestamp is not None:
            argv += ["--timestamp", str(int(timestamp))]
        argv += list(network_flags)
        argv += volume_args(volumes)
        argv += _pairs("--build-arg", build_args or {})
        argv += _pairs("--label", labels or {})
        if iidfile is not None:
            argv += ["--iidfile", str(iidfile)]
        if tag:
            argv += ["--tag", tag]
        argv += ["-f", str(Path(containerfile).resolve()), str(Path(context).resolve())]
        return argv

    # -- building

    def bud(self, containerfile: Path, context: Path, *, tag: str | None, volumes: Sequence[Volume] = (),
            build_args: Mapping[str, object] | None = None, labels: Mapping[str, object] | None = None,
            layers: bool = True, timestamp: int | None = 0, network: str | None = "none",
            no_cache: bool = False, pull: str = "never", on_line: Callable[[str], None] | None = None,
            timeout: float | None = None, secrets: Mapping[str, str] | None = None) -> str:
        """Build ``containerfile`` in ``context``; return the image id (64 hex digits).

        ``tag`` is applied as the image is committed, once every instruction succeeded, so a
        failed or interrupted build never moves the tag. ``network="none"`` gives RUN steps
        a private network namespace with only loopback (with chroot isolation buildah itself
        runs in it, so it cannot pull either). Volume *contents* are not part of buildah's
        layer cache key: declare an ARG (or ENV/LABEL) holding their digest before the RUN
        that reads them, or a changed volume reuses a stale layer. buildah runs as the first
        process of its own PID namespace (nothing a RUN step starts outlives the build) and
        is stopped after `timeout` seconds (`TimedOut`). `secrets` (id -> value) are handed to
        buildah as files readable only by root, for ``RUN --mount=type=secret,id=...``, and
        their values are blanked in every line of output.
        """
        net_flags, preexec = self._network(network)
        with tempfile.TemporaryDirectory(prefix="gardenbuild-bud-") as tmp:
            iidfile = Path(tmp) / "iid"
            argv = self.bud_argv(containerfile, context, volumes=volumes, build_args=build_args, labels=labels,
                                 layers=layers, timestamp=timestamp, network_flags=net_flags,
                                 no_cache=no_cache, pull=pull, iidfile=iidfile, tag=tag)
            for name, value in sorted((secrets or {}).items()):
                path = Path(tmp) / f"secret-{name}"
                path.touch(mode=0o600)
                path.write_text(value)
                argv[-3:-3] = ["--secret", f"id={name},src={path}"]
            self.require()
            froms = set(re.findall(r"(?im)^FROM\s+(\S+)", Path(containerfile).read_text()))
            existing = _stored_container_ids()
            owners.claim().note({i for i in map(self.image_id, froms) if i},
                                existing if existing is not None else {c["id"] for c in self.containers()})
            # buildah 1.28 mounts an empty secret when a variable of the secret's name is in its
            # environment; and a secret's value has no business in buildah's environment anyway.
            env = {k: v for k, v in os.environ.items() if k not in (secrets or {})} if secrets else None
            stream(argv, reporter=self.reporter, what="buildah bud", preexec_fn=child_setup(preexec, no_new_privileges),
                   hint=BUILDAH_HINT, on_line=on_line, timeout=timeout, own_pids=True, env=env,
                   redact=[v for v in (secrets or {}).values() if v])
            return _bare_id(iidfile.read_text())

    # -- running

    def run_argv(self, container: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 volumes: Sequence[Volume] = (), workdir: str | None = None, network_flags: Sequence[str] = (),
                 user: str | None = None, confined: bool = False, devices: Sequence[str] = ()) -> list[str]:
        """The ``buildah run`` command line for an existing working container (pure)."""
        cmd = [self.executable, "run", "--isolation", self.isolation, *network_flags,
               *(["--cap-drop", "all"] if confined else []), *_pairs("--env", env or {}), *volume_args(volumes)]
        for device in devices:
            cmd += ["--device", device]
        if workdir:
            cmd += ["--workingdir", workdir]
        if user:
            cmd += ["--user", user]
        return cmd + [container, "--", *argv]

    def run(self, image: str, argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            volumes: Sequence[Volume] = (), workdir: str | None = None, network: str | None = "none",
            user: str | None = None, limits: Limits | None = None, pull: str = "never",
            devices: Sequence[str] = ()) -> RunResult:
        """Run ``argv`` in a fresh container from ``image``; the container is removed afterwards.

        ``user=None`` keeps the image's USER. A non-zero exit is a result, not an error
        (buildah reports a command killed by a signal as exit code 1). A failure to create
        the container raises `CommandError`.

        With `limits` the command is *confined*, as every pipeline call is: it runs as an
        unprivileged user (``UNPRIVILEGED`` unless `user` says otherwise) with no
        capabilities and no way to gain any (no_new_privs: a setuid ``su`` stays harmless),
        as the first process of its own PID namespace, in a cgroup holding
        its memory and process count, and is stopped after ``limits.seconds``; the result
        then says which limit stopped it (``limit``). `devices` are passed through
        (``--device``, a CDI name such as ``nvidia.com/gpu=all`` for the GPUs).
        """
        for attempt in range(NOT_STARTED_TRIES):
            result = self._run_once(image, argv, stdin=stdin, env=env, volumes=volumes, workdir=workdir,
                                    network=network, user=user, limits=limits, pull=pull, devices=devices)
            if not (result.returncode and not result.stdout and NOT_STARTED.search(result.stderr)):
                break
            time.sleep(0.1 * (attempt + 1))  # buildah failed before the command ran: try a fresh container
        return result

    def _run_once(self, image: str, argv: Sequence[str], *, stdin: bytes | None, **options: Any) -> RunResult:
        start = time.perf_counter()
        limits = options.get("limits")
        running = self.start(image, argv, stdin=stdin is not None, **options)
        try:
            proc = running.proc
            limit = None
            try:
                stdout, stderr = proc.communicate(stdin, timeout=limits.seconds if limits else None)
            except subprocess.TimeoutExpired:
                _stop(proc)
                stdout, stderr, limit = b"", b"", "time"
            if limit is None and running.group is not None and running.group.oom_killed():
                limit = "memory"
            peak = running.group.peak() if running.group is not None else None
        finally:
            running.close()
        if proc.returncode:
            stderr = strip_run_noise(stderr)
        return RunResult(proc.returncode, stdout, stderr, time.perf_counter() - start, limit, peak)

    def start(self, image: str, argv: Sequence[str], *, stdin: bool = False, stdout: Any = subprocess.PIPE,
              env: Mapping[str, str] | None = None, volumes: Sequence[Volume] = (), workdir: str | None = None,
              network: str | None = "none", user: str | None = None, limits: Limits | None = None,
              pull: str = "never", devices: Sequence[str] = ()) -> "Running":
        """Start ``argv`` in a fresh container, confined as `run` describes (``limits.seconds``
        is the caller's to enforce), and return at once; `Running.close` stops it and removes
        the container. `stdout` is where its output goes (stderr with it, unless a pipe)."""
        if not argv:
            raise ValueError("start() needs a command")
        net_flags, network_setup = self._network(network)
        name = f"{owners.claim().prefix}run-{secrets.token_hex(4)}"
        self._capture("from", f"--pull={pull}", "--quiet", "--name", name, image, what=f"buildah from {image}")
        group = None
        try:
            cmd = self.run_argv(name, argv, env={**({"HOME": "/tmp"} if limits else {}), **(env or {})},
                                volumes=volumes, workdir=workdir, network_flags=net_flags,
                                user=user or (UNPRIVILEGED if limits else None), confined=limits is not None,
                                devices=devices)
            if limits is not None:
                group = Cgroup.create(memory=limits.memory, pids=limits.pids)
                if group is None and limits.memory is not None and not self._warned_cgroup:
                    self._warned_cgroup = True
                    self.reporter.warn("no writable cgroup here: the memory limit of pipeline calls is not enforced")
                cmd = in_own_pid_namespace(cmd)
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=stdout,
                                    stderr=subprocess.PIPE if stdout is subprocess.PIPE else subprocess.STDOUT,
                                    preexec_fn=child_setup(group.join if group else None, network_setup,
                                                           no_new_privileges if limits else None),
                                    start_new_session=True)
        except BaseException:
            if group is not None:
                group.remove()
            self._remove_container(name)
            raise
        _LIVE.add(proc)
        return Running(self, proc, name, group)

    def _remove_container(self, name: str) -> None:
        """Remove a working container; a failure is worth a warning, never an exception."""
        proc = subprocess.run([self.executable, "rm", name], capture_output=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            self.reporter.warn(f"could not remove container {name}: {proc.stderr.decode(errors='replace').strip()}")

    # -- what dead processes left behind

    def containers(self) -> list[dict]:
        """Working containers: ``{"id", "name", "image", "builder"}``."""
        out = json.loads(self._capture("containers", "--json", what="buildah containers").stdout or b"[]") or []
        return [{"id": c.get("id", ""), "name": c.get("containername", ""), "image": c.get("imagename", ""),
                 "image_id": _bare_id(c.get("imageid", "")), "builder": bool(c.get("builder"))} for c in out]

    def leftovers(self) -> list[dict]:
        """Containers that gardenbuild processes which no longer run left behind.

        A dead process's `run` containers carry its claim's prefix. Containers of its
        builds (buildah names those itself) are builder containers that did not exist
        when its last build started, made from an image its builds start from (by id:
        one image may carry several names) or from an unnamed intermediate image
        (``--layers``), and not mounted: a build runs in a
        mount namespace of its own, which died with it, while any other build's container
        is mounted. They are counted only while no other gardenbuild process runs.
        """
        dead, live = owners.claims()
        if not dead:
            return []
        mounted = _mounted_layers()
        layers = _stored_container_layers()
        found: dict[str, dict] = {}
        for container in self.containers():
            for claim in dead:
                if container["name"].startswith(claim.prefix):
                    found[container["id"]] = {**container, "claim": claim.token}
                elif (not live and container["builder"] and container["id"] not in claim.data.get("before", [])
                      and (container["image_id"] in claim.data.get("images", []) or not container["image"])
                      and layers.get(container["id"]) not in mounted):
                    found[container["id"]] = {**container, "claim": claim.token}
        return list(found.values())

    def sweep(self) -> list[str]:
        """Remove what dead gardenbuild processes left (containers, claims); their names."""
        removed = []
        for container in self.leftovers():
            proc = subprocess.run([self.executable, "rm", container["id"]], capture_output=True,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode == 0:
                removed.append(container["name"])
        dead, live = owners.claims()
        for claim in dead:  # its builds' containers are found only while no other process runs
            if not live or not claim.data.get("images"):
                owners.release(claim)
        return removed

    # -- images

    def inspect(self, ref: str) -> dict:
        """``buildah inspect --type image``, parsed."""
        return json.loads(self._capture("inspect", "--type", "image", ref).stdout)

    def image_id(self, ref: str) -> str | None:
        """The id of image ``ref``, or None when there is no such image (from local storage
        when it names the image exactly, else from ``buildah inspect``)."""
        stored = None if _short_name(ref) else stored_image_id(ref)  # a short name is buildah's to resolve
        if stored:
            return stored
        self.require()
        argv = [self.executable, "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref]
        proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
        if proc.returncode == 0:
            return proc.stdout.decode().strip()
        err = proc.stderr.decode("utf-8", "replace")
        if "image not known" in err or "no such image" in err.lower():
            return None
        raise CommandError(f"buildah inspect {ref} failed", argv, err, proc.returncode)

    def exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def tag(self, image_id: str, *refs: str) -> None:
        """Give ``image_id`` the names ``refs`` (moving them from whatever image had them)."""
        if refs:
            self._capture("tag", image_id, *refs)

    def untag(self, ref: str) -> None:
        """Remove the name ``ref``; the image itself goes only if that was its last name."""
        self.rmi(ref)

    def rmi(self, ref: str, *, force: bool = False) -> None:
        """``buildah rmi``: drop a name, or the image when it has one name (or is given by id)."""
        self._capture("rmi", *(["--force"] if force else []), ref)

    def digest(self, ref: str) -> str:
        """The digest of the image's manifest as stored locally (``sha256:...``).

        A registry may hold a different manifest after a push (layers get compressed);
        the digest there is what `push` returns. Read from local storage when it can be
        (a millisecond, where ``buildah inspect`` takes tens).
        """
        stored = stored_digest(ref)
        if stored:
            return stored
        return self._capture("inspect", "--type", "image", "--format", "{{.FromImageDigest}}", ref).stdout.decode().strip()

    def size(self, ref: str) -> int:
        """Bytes of the image's layers as its manifest lists them.

        For images built locally the layers are uncompressed tars, so this is the figure
        ``buildah images`` shows (in MB); a pushed image is smaller on the wire.
        """
        manifest = json.loads(self.inspect(ref)["Manifest"])
        return sum(int(layer["size"]) for layer in manifest.get("layers", []))

    def push(self, ref: str, dest: str, *, tls_verify: bool = True, authfile: Path | None = None,
             digestfile: Path | None = None) -> str:
        """Push ``ref`` to ``dest`` (e.g. ``docker://host/name:tag``); return the pushed manifest digest."""
        with tempfile.TemporaryDirectory(prefix="gardenbuild-push-") as tmp:
            dfile = Path(digestfile) if digestfile is not None else Path(tmp) / "digest"
            argv = [self.executable, "push", f"--tls-verify={'true' if tls_verify else 'false'}", "--digestfile", str(dfile)]
            if authfile is not None:
                argv += ["--authfile", str(authfile)]
            argv += [ref, dest]
            self.require()
            stream(argv, reporter=self.reporter, what="buildah push", hint=BUILDAH_HINT)
            return dfile.read_text().strip()


    def pull(self, ref: str, *, tls_verify: bool = True, authfile: Path | None = None) -> str:
        """Pull ``ref`` (``docker://HOST/REPO@sha256:...``) into local storage; return its image id.

        By digest, containers/image checks the manifest it gets against that digest."""
        argv = [self.executable, "pull", "--quiet", f"--tls-verify={'true' if tls_verify else 'false'}"]
        if authfile is not None:
            argv += ["--authfile", str(authfile)]
        self.require()
        lines = stream([*argv, ref], reporter=self.reporter, what="buildah pull", hint=BUILDAH_HINT)
        ids = [line.strip() for line in lines if IMAGE_ID.fullmatch(line.strip())]
        if not ids:
            raise CommandError(f"buildah pull {ref} printed no image id", [*argv, ref], "\n".join(lines[-5:]))
        return ids[-1]

    def images(self, prefixes: Sequence[str] = ("",), sized: bool = True) -> list[dict]:
        """Local images with a name starting with one of `prefixes`: ``{"id", "names", "size"}``.

        Sizes are in bytes, from each image's manifest (buildah prints them only rounded,
        "588 MB"); that costs one inspect per image, so only the wanted ones are sized.
        Unsized (`sized=False`, ``size`` None), the list is read from local storage without
        a process where it can be (a millisecond, where ``buildah images`` takes half a second).
        """
        stored = None if sized else _stored_images()
        if stored is not None:
            return [{"id": i["id"], "names": list(i.get("names") or []), "size": None} for i in stored
                    if any(n.startswith(tuple(prefixes)) for n in i.get("names") or [])]
        for attempt in range(3):  # another process may remove an image while buildah lists them
            try:
                out = json.loads(self._capture("images", "--json", "--no-trunc", what="buildah images").stdout
                                 or b"[]") or []
                break
            except CommandError as exc:
                if "image not known" not in exc.log or attempt == 2:
                    raise
        wanted = [i for i in out if any(n.startswith(tuple(prefixes)) for n in i.get("names") or [])]
        found = []
        for image in wanted:
            try:
                found.append({"id": _bare_id(image["id"]), "names": image["names"],
                              "size": self.size(image["id"]) if sized else None})
            except CommandError:
                continue  # removed meanwhile
        return found

    # -- local storage, read without a process

    def image_in_storage(self, image_id: str, name: str | None = None) -> bool | None:
        return image_in_storage(image_id, name)

    def digest_in_storage(self, digest: str) -> bool | None:
        return digest_in_storage(digest)

    def stored_digest(self, ref: str) -> str | None:
        return stored_digest(ref)

    def stored_labels(self, image_id: str) -> dict[str, str] | None:
        return stored_labels(image_id)

    def export_layers(self, ref: str, dest: Path) -> Path:
        """Write the image as uncompressed layer tarballs named by their diff id (``dir:`` transport)."""
        self.require()
        self._capture("push", "--quiet", "--disable-compression", ref, f"dir:{dest}", what=f"buildah push {ref} dir:")
        return dest


def _bare_id(text: str) -> str:
    """An image id without its ``sha256:`` prefix."""
    text = text.strip()
    return text.split(":", 1)[1] if text.startswith("sha256:") else text


# --- reading local storage without running buildah ---------------------------------------

STORAGE_CONF = (Path("/etc/containers/storage.conf"), Path("/usr/share/containers/storage.conf"))


def _storage_images_json(kind: str = "images") -> Path:
    """Where containers/storage keeps its image (or container) list (root's storage, as buildah uses it here)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    graphroot, driver = "/var/lib/containers/storage", "overlay"
    override = os.environ.get("CONTAINERS_STORAGE_CONF")
    for conf in (Path(override),) if override else STORAGE_CONF:
        try:
            storage = tomllib.loads(conf.read_text()).get("storage", {})
        except (OSError, ValueError):
            continue
        graphroot = storage.get("graphroot", graphroot)
        driver = storage.get("driver", driver) or driver
        break
    return Path(graphroot) / f"{driver}-{kind}" / f"{kind}.json"


def _stored_images() -> list[dict] | None:
    if os.geteuid() != 0:  # rootless storage lives elsewhere; let buildah answer
        return None
    try:
        return json.loads(_storage_images_json().read_text())
    except (OSError, ValueError):
        return None


def _stored_container_ids() -> set[str] | None:
    if os.geteuid() != 0:
        return None
    try:
        return {c["id"] for c in json.loads(_storage_images_json("containers").read_text())}
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stored_container_layers() -> dict[str, str]:
    """Container id -> the id of its read-write layer, from containers/storage."""
    try:
        return {c["id"]: c.get("layer", "") for c in json.loads(_storage_images_json("containers").read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _mounted_layers() -> set[str]:
    """Layers whose overlay is mounted in this mount namespace (a build using them is alive)."""
    found = set()
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4]
            m = re.search(r"/overlay/([0-9a-f]{64})/merged$", point)
            if m:
                found.add(m.group(1))
    except OSError:
        pass
    return found


def digest_in_storage(digest: str) -> bool | None:
    """Is an image with manifest digest `digest` in local storage? None if unknown."""
    images = _stored_images()
    return None if images is None else any(image.get("digest") == digest for image in images)


def image_in_storage(image_id: str, name: str | None = None) -> bool | None:
    """Is image `image_id` (carrying `name`, if given) in local storage? None if unknown.

    A no-op build asks this for every cached image; reading the storage's image list
    takes a millisecond where ``buildah inspect`` takes tens, and runs no buildah at all.
    """
    images = _stored_images()
    if images is None:
        return None
    for image in images:
        if image.get("id") == image_id:
            return name is None or name in image.get("names", [])
    return False


def _short_name(ref: str) -> bool:
    """A name with no registry or repository path (``python:3.11``), not an image id."""
    return "/" not in ref.partition("@")[0] and not IMAGE_ID.fullmatch(ref)


def stored_image_id(ref: str) -> str | None:
    """The id of the image `ref` (a name, an id, or name@digest) in local storage; None if unknown."""
    images = _stored_images()
    if images is None:
        return None
    name, _, digest = ref.partition("@")
    names = {name, f"localhost/{name}"} if _short_name(ref) else {name}
    for image in images:
        if image.get("id") == ref:
            return ref
        if digest and digest in (image.get("digest"), *(image.get("digests") or [])):
            return image.get("id")
        if not digest and names & set(image.get("names", [])):
            return image.get("id")
    return None


def stored_digest(ref: str) -> str | None:
    """The manifest digest of the image named (or with the id) `ref` in local storage, as
    ``buildah inspect`` gives it: the sha256 of the image's current manifest (the image
    list's own "digest" field can be an older one, for an image pulled back after a push).
    None if absent or unknown."""
    image_id = stored_image_id(ref)
    if image_id is None or not IMAGE_ID.fullmatch(image_id):
        return None
    try:
        manifest = (_storage_images_json().parent / image_id / "manifest").read_bytes()
    except OSError:
        return None
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def stored_labels(image_id: str) -> dict[str, str] | None:
    """The labels of image ``image_id`` read from its config in local storage (the big-data
    file containers/storage names ``=base64("sha256:<id>")``); None if it cannot be read."""
    import base64

    if os.geteuid() != 0 or not IMAGE_ID.fullmatch(image_id):
        return None
    key = base64.b64encode(f"sha256:{image_id}".encode()).decode()
    try:
        config = json.loads((_storage_images_json().parent / image_id / f"={key}").read_text())
    except (OSError, ValueError):
        return None
    return dict((config.get("config") or {}).get("Labels") or {})
