"""The sandbox worker: one untrusted memory program in a process of its own.

Started by :class:`agentmem_evolve.sandbox.SandboxedProgram` as
``python -P -s -B .../worker.py`` (``python -m agentmem_evolve.worker`` works
too, but importing the package pulls in the evolution loop and LangGraph,
seconds the worker does not need), in a fresh scratch directory, with a
scrubbed environment, usually inside new user, network and mount namespaces.

Order matters, and is the point of this module:

1. move the channel off fds 0/1 and point fds 1/2 at a log file in scratch,
   so nothing the program prints can corrupt the channel;
2. read the init message, set the resource limits (CPU, address space, file
   size, no core files);
3. import everything trusted (agentmem, pydantic, numpy, chromadb, sqlite3,
   every installed memory plugin) and open the Chroma client;
4. install the audit-hook policy (:func:`install_policy`);
5. only then compile and run the candidate's source.

The policy is enforced from Python's audit hooks, which cannot be removed
once added. Everything the hook consults is bound at install time into
default arguments that hold only immutable values (tuples, strings,
frozensets, builtin functions), so a program that rebinds module attributes
(``os.path.realpath = ...``, ``sys.modules[...] = ...``) cannot loosen it;
the ways to reach into the hook itself (``gc.get_referrers``, setting
``__code__``/``__defaults__``, patching trusted classes, adding hooks,
sub-interpreters) are themselves denied.

A denial raises :class:`SandboxDenied` (a ``PermissionError``) inside the
program; if it escapes the operation, the worker reports the operation as
``denied`` with the first denial's reason.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

CANDIDATE_MODULE = "agentmem_candidate"
CANDIDATE_FILE = "candidate.py"
LOG_FILE = "worker.log"

_TRACEBACK_CHARS = 4000


def _load_protocol() -> Any:
    """The protocol module, without importing the agentmem_evolve package (see the module docstring)."""
    if __package__:
        from agentmem_evolve import protocol

        return protocol
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol.py")
    spec = importlib.util.spec_from_file_location("agentmem_evolve.protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class SandboxDenied(PermissionError):
    """An operation the sandbox forbids; the message starts with ``denied:``."""


#: every denial, in order (read by the worker after each op; a program that clears it only hurts its report)
DENIALS: list[str] = []
#: the exit code of a worker whose program tampered with the channel its denials are reported on
TAMPER_EXIT = 87


# --------------------------------------------------------------------------- the policy


def _policy_roots(scratch: str, policy: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(read roots, read files, hidden paths) the program may read under, computed before it runs.

    The controller sends the jail's view (:class:`agentmem_evolve.jail.JailView`): the same paths the
    private root holds, so that without a jail (the audit-hook-only mode) the hook still hides
    environment packages, datasets, caches and the project's other files.
    """
    roots = {scratch, *map(str, policy.get("readable") or ())}
    read_roots = tuple(sorted({os.path.realpath(r) for r in roots if r}))
    read_files = ("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero", "/etc/passwd", "/etc/group")
    hidden = tuple(sorted({os.path.realpath(h) for h in policy.get("hidden") or () if h}))
    return read_roots, read_files, hidden


def install_policy(
    scratch: str,
    candidate_module: str = CANDIDATE_MODULE,
    *,
    policy: dict[str, Any] | None = None,
    report_fd: int | None = None,
) -> None:
    """Add the audit hook that denies what a memory program may not do, and close the side doors.

    ``scratch`` is the only directory the program may write to; ``policy`` is the controller's view of
    what may be read and imported (see :func:`_policy_roots`). Every denial is also written at once, as a
    ``denied`` frame, to ``report_fd`` (the channel to the controller), so that a program that catches
    the exception still fails: the hook checks that the descriptor is still the channel it was given
    (a program that swapped it for /dev/null ends the worker with :data:`TAMPER_EXIT`).
    """
    import _imp
    import _posixsubprocess
    import _stat
    import _thread
    import gc
    import json
    import pathlib
    import posix
    import threading

    scratch = os.path.realpath(scratch)
    policy = policy or {}
    read_roots, read_files, hidden = _policy_roots(scratch, policy)
    report_id = None
    if report_fd is not None:
        st = posix.fstat(report_fd)
        report_id = (st.st_dev, st.st_ino)
    pid = posix.getpid()
    self_proc = f"/proc/{pid}"

    # pathlib objects are trusted only while pathlib's classes are as imported: the C code that opens a
    # file converts the path (through __fspath__/__str__, which cache the text in the ``_str`` slot)
    # before the audit event, so the hook reads that slot directly - the exact text that was opened -
    # and refuses if anything on the way could have been swapped (class attributes are not audited).
    path_classes = tuple((cls, tuple(cls.__dict__.items())) for cls in pathlib.PosixPath.__mro__[:-1])
    str_slot = pathlib.PurePath.__dict__["_str"]

    def resolve(
        path: Any,
        _lstat=posix.lstat,
        _readlink=posix.readlink,
        _getcwd=posix.getcwd,
        _islnk=_stat.S_ISLNK,
        _type=type,
        _OSError=OSError,
        _bytes=bytes,
        _str=str,
        _fspath=posix.fspath,
        _isinstance=isinstance,
        _len=len,
        _join="".join,
        _classes=path_classes,
        _slot=str_slot,
        _posix=pathlib.PosixPath,
        _pure=pathlib.PurePosixPath,
    ) -> str | None:
        """The absolute, symlink-free form of ``path`` (None: a path object we do not trust)."""
        kind = _type(path)
        if kind is _bytes:
            path = path.decode("utf-8", "surrogateescape")
        elif kind is not _str:
            if kind is not _posix and kind is not _pure:
                return None
            for cls, items in _classes:
                namespace = cls.__dict__
                if _len(namespace) != _len(items):
                    return None
                for key, value in items:
                    if namespace.get(key) is not value:
                        return None
            try:
                path = _slot.__get__(path)
            except AttributeError:  # not converted yet (sqlite3.connect audits first): pathlib's own code caches it
                try:
                    _fspath(path)
                    path = _slot.__get__(path)
                except Exception:
                    return None
            if _isinstance(path, _bytes):
                path = _join((path.decode("utf-8", "surrogateescape"),))
            elif _isinstance(path, _str):
                path = _join((path,))  # an exact str, whatever subclass the slot held
            else:
                return None
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        parts = [p for p in path.split("/") if p and p != "."]
        out: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if out:
                    out.pop()
                continue
            candidate = "/" + "/".join([*out, part])
            try:
                is_link = _islnk(_lstat(candidate).st_mode)
            except _OSError:
                is_link = False
            if is_link and hops < 40:
                hops += 1
                target = _readlink(candidate)
                if target.startswith("/"):
                    out = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            out.append(part)
        return "/" + "/".join(out)

    def inside(path: str, roots: tuple[str, ...]) -> bool:
        for root in roots:
            if path == root or path.startswith(root + "/") or root == "/":
                return True
        return False

    write_ok = (scratch,)
    write_files = ("/dev/null",)
    flags_write = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    path_events = frozenset(
        {
            "os.remove",
            "os.unlink",
            "os.rmdir",
            "os.mkdir",
            "os.truncate",
            "os.chmod",
            "os.chown",
            "os.lchown",
            "os.utime",
            "os.chflags",
            "os.lchflags",
            "os.lchmod",
            "os.setxattr",
            "os.removexattr",
            "os.mkfifo",
            "os.mknod",
            "shutil.rmtree",
            "shutil.chown",
        }
    )
    two_path_events = frozenset(
        {
            "os.rename",
            "os.replace",
            "os.link",
            "shutil.copyfile",
            "shutil.copymode",
            "shutil.copystat",
            "shutil.copytree",
            "shutil.move",
        }
    )
    process_events = frozenset(
        {
            "os.fork",
            "os.forkpty",
            "os.posix_spawn",
            "os.posix_spawnp",
            "os.exec",
            "os.spawn",
            "os.system",
            "os.startfile",
            "subprocess.Popen",
            "pty.spawn",
            "os.killpg",
            "resource.setrlimit",
            "resource.prlimit",
            "sys.addaudithook",
            "sys.setprofile",
            "sys.settrace",
            "sys._current_frames",
            "gc.get_referrers",
            "gc.get_referents",
            "gc.get_objects",
            "sqlite3.enable_load_extension",
            "sqlite3.load_extension",
            "os.setns",
            "os.unshare",
            "shutil.make_archive",
            "shutil.unpack_archive",
            "webbrowser.open",
            "cpython.run_command",
            "cpython.run_module",
            "_xxsubinterpreters.create",
            "os.chroot",
            "os.pidfd_open",
            "cpython.PyInterpreterState_New",
        }
    )
    socket_calls = frozenset(
        {
            "socket.connect",
            "socket.bind",
            "socket.sendto",
            "socket.sendmsg",
            "socket.getaddrinfo",
            "socket.gethostbyname",
            "socket.gethostbyaddr",
            "socket.gethostbyname_ex",
            "socket.getnameinfo",
            "socket.sethostname",
        }
    )
    blocked_imports = frozenset(
        {
            "ctypes",
            "_ctypes",
            "cffi",
            "_cffi_backend",
            "_xxsubinterpreters",
            "_xxinterpchannels",
            "_posixsubprocess",
            "_thread",
            "_socket",
            "posix",
            "_signal",
            "_testcapi",
            "_testinternalcapi",
            "resource",
            "readline",
            "pty",
            "_lsprof",
            "_tracemalloc",
            "_tkinter",
            "tkinter",
            "uvloop",
            "_testbuffer",
            "_testimportmultiple",
            "_testmultiphase",
            "_xxtestfuzz",
            "_multiprocessing",
            "_posixshmem",
        }
        | {str(m) for m in policy.get("blocked_imports") or ()}
    )
    ioctl_events = frozenset({"fcntl.ioctl"})

    # opening a directory yields a handle that dir_fd= and fchdir() resolve against, out of the hook's
    # sight (the "open" audit event does not carry dir_fd): no directory handles at all
    dir_flags = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_PATH", 0)
    dir_fd_events = frozenset({"os.rename", "os.replace", "os.link", "os.symlink"})
    # Modules already imported by trusted code stay importable by name
    # (``import ctypes`` finds sys.modules without an import event); their dangerous calls are events.
    protected_modules = frozenset({candidate_module})

    def readable(real: str, _inside=inside, _roots=read_roots, _files=read_files, _hidden=hidden) -> bool:
        return (_inside(real, _roots) or real in _files) and not (_hidden and _inside(real, _hidden))

    def listable(real: str, _readable=readable, _roots=read_roots) -> bool:
        """Names in a readable directory, or in a directory on the way to one (the import system lists them)."""
        if _readable(real):
            return True
        prefix = "/" if real == "/" else real + "/"
        for root in _roots:
            if root.startswith(prefix):
                return True
        return False

    def report(
        reason: str,
        _fd=report_fd,
        _id=report_id,
        _fstat=posix.fstat,
        _write=posix.write,
        _exit=posix._exit,
        _enc=json.encoder.encode_basestring_ascii,
        _to_bytes=int.to_bytes,
        _len=len,
        _bytes=bytes,
        _memoryview=memoryview,
        _exitcode=TAMPER_EXIT,
    ) -> None:
        """Tell the controller now, on the channel it reads (it fails the candidate whatever follows)."""
        if _fd is None:
            return
        try:
            st = _fstat(_fd)
            if (st.st_dev, st.st_ino) != _id:
                _exit(_exitcode)
            body = b'{"type":"denied","reason":' + _enc(reason).encode("ascii") + b"}"
            data = _memoryview(_to_bytes(_len(body), 4, "big") + body)
            while _len(data):
                data = data[_write(_fd, data) :]
        except BaseException:  # the channel is gone or was tampered with: nothing may go on
            _exit(_exitcode)

    def sql_guard(action: int, *args: Any, _attach=24, _deny=1, _ok=0, _denials=DENIALS, _report=report) -> int:
        """sqlite authorizer: no other database file by SQL (ATTACH, and VACUUM INTO, which attaches)."""
        if action != _attach:
            return _ok
        reason = f"denied: SQL that opens another database file ({str(args[0] if args else '')[:200]!r})"
        _denials.append(reason)
        _report(reason)
        return _deny

    def hook(
        event: str,
        args: tuple,
        _resolve=resolve,
        _inside=inside,
        _readable=readable,
        _listable=listable,
        _report=report,
        _write_ok=write_ok,
        _write_files=write_files,
        _flags_write=flags_write,
        _dir_flags=dir_flags,
        _path_events=path_events,
        _two=two_path_events,
        _process=process_events,
        _sockets=socket_calls,
        _dir_fd_events=dir_fd_events,
        _stat=posix.stat,
        _isdir=_stat.S_ISDIR,
        _ioctl_events=ioctl_events,
        _imports=blocked_imports,
        _own=protected_modules,
        _pid=pid,
        _self_proc=self_proc,
        _denials=DENIALS,
        _exc=SandboxDenied,
        _type=type,
        _isinstance=isinstance,
        _str=str,
        _getattr=getattr,
        _types=(type,),
        _len=len,
        _int=int,
        _OSError=OSError,
    ) -> None:
        reason = None
        if event == "open":
            path, mode, flags = (args + (None, None, None))[:3]
            if _type(path) is _int:
                return
            real = _resolve(path)
            if real is None:
                reason = f"open() of a {_type(path).__name__} path (use str or pathlib.Path)"
            else:
                writing = (_isinstance(mode, _str) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) or (
                    _isinstance(flags, _int) and (flags & _flags_write) != 0
                )
                is_dir = _isinstance(flags, _int) and (flags & _dir_flags) != 0
                if not is_dir:
                    try:
                        is_dir = _isdir(_stat(real).st_mode)
                    except _OSError:
                        is_dir = False
                if is_dir:
                    reason = f"opening a directory handle on {real} (directory handles are not allowed)"
                elif writing:
                    if not (_inside(real, _write_ok) or real in _write_files):
                        reason = f"writing {real} (outside the scratch directory)"
                elif real.startswith("/proc/"):
                    if real == _self_proc or real.startswith(_self_proc + "/"):
                        if real.endswith("/environ"):
                            reason = f"reading {real} (environment variables)"
                    elif real not in ("/proc/cpuinfo", "/proc/meminfo"):
                        reason = f"reading {real} (another process)"
                elif not _readable(real):
                    reason = f"reading {real} (outside the sandbox's readable paths)"
        elif event == "os.chdir":
            reason = f"os.chdir to {args[0] if args else '?'!r} (the working directory stays the scratch directory)"
        elif event == "os.listdir" or event == "os.scandir":
            target = args[0] if args else None
            if _type(target) is _int:
                reason = f"{event} of a file descriptor"
            else:
                real = _resolve("." if target is None else target)
                if real is None or not (_inside(real, _write_ok) or _listable(real)):
                    reason = f"{event} of {real or target!r} (outside the sandbox's readable paths)"
        elif event == "os.fwalk":
            reason = "os.fwalk (it walks by directory handles; use os.walk)"
        elif event in _path_events:
            real = _resolve(args[0]) if args else None
            dir_fd = (
                args[-1]
                if event in ("os.mkdir", "os.remove", "os.rmdir", "os.chmod", "os.utime", "shutil.rmtree")
                else None
            )
            if real is None or not _inside(real, _write_ok) or (dir_fd not in (None, -1) and _type(dir_fd) is _int):
                reason = f"{event} on {real or args[:1]} (outside the scratch directory)"
        elif event in _two:
            if event in _dir_fd_events and any(_type(a) is _int and a != -1 for a in args[2:]):
                reason = f"{event} relative to a directory handle"
            for arg in args[:2]:
                if reason is not None:
                    break
                real = _resolve(arg)
                if real is None or not _inside(real, _write_ok):
                    reason = f"{event} of {real or arg} (outside the scratch directory)"
                    break
        elif event == "os.symlink":
            real = _resolve(args[1]) if _len(args) > 1 else None
            if _len(args) > 2 and _type(args[2]) is _int and args[2] != -1:
                reason = "os.symlink relative to a directory handle"
            elif real is None or not _inside(real, _write_ok):
                reason = f"os.symlink at {real} (outside the scratch directory)"
        elif event in _process:
            reason = event + (
                " (no new processes in the sandbox)" if event.startswith(("os.", "subprocess", "pty")) else ""
            )
        elif event == "os.kill":
            if args and args[0] != _pid:
                reason = f"os.kill of process {args[0]}"
        elif event.startswith("socket."):
            if (
                event == "socket.getaddrinfo"
                and args
                and _isinstance(args[0], _str)
                and args[0]
                and (args[0].strip("0123456789.") == "" or ":" in args[0])
            ):
                return  # an IP literal: no lookup leaves the process; the connect that follows is what we judge
            if event in _sockets:
                target = args[1] if _len(args) > 1 else ""
                if event in ("socket.connect", "socket.sendto"):
                    reason = f"{event} to {target!r}"
                else:
                    reason = f"{event} {args[:2]!r}"[:200]
            elif event == "socket.__new__":
                family = args[1] if _len(args) > 1 else -1
                kind = args[2] if _len(args) > 2 else -1
                if family not in (1, 2, 10) or (_isinstance(kind, _int) and (kind & 0xF) not in (1, 2)):
                    reason = f"opening a raw or special socket (family {family}, type {kind})"
        elif event.startswith("ctypes."):
            reason = f"{event} (no native code from the program)"
        elif event == "import":
            name = args[0] if args else ""
            if _type(name) is not _str:
                reason = f"importing {name!r}"
            else:
                for part in name.split(
                    "."
                ):  # an extension loaded under an alias ('x._thread') is found by its last part
                    if part in _imports:
                        reason = f"importing {name!r}"
                        break
        elif event == "sqlite3.connect":
            target = args[0] if args else ""
            if _type(target) is _str and target.startswith("file:"):  # a URI: its path part is what sqlite opens
                target = target[5:].split("?", 1)[0].split("#", 1)[0]
                if target.startswith("//"):
                    target = "/" + target[2:].split("/", 1)[-1] if "/" in target[2:] else ""
                if target in ("", ":memory:"):
                    target = "/"  # a URI naming no file: refuse rather than guess
            if not (_type(target) is _str and (target == ":memory:" or target == "")):
                real = _resolve(target)
                if real is None or not _inside(real, _write_ok):
                    reason = f"sqlite3.connect to {real or target!r} (outside the scratch directory)"
        elif event in _ioctl_events:
            reason = f"{event} (device and file-flag controls are not allowed)"
        elif event == "object.__setattr__" or event == "object.__delattr__":
            target = args[0] if args else None
            if _isinstance(target, _types) or _type(target).__name__ in (
                "function",
                "code",
                "builtin_function_or_method",
            ):
                owner = _getattr(target, "__module__", None)
                if owner not in _own:
                    name = args[1] if _len(args) > 1 else "?"
                    reason = f"patching {owner}.{_getattr(target, '__qualname__', '?')}.{name}"
        if reason is not None:
            reason = "denied: " + reason
            _denials.append(reason)
            _report(reason)
            raise _exc(reason)

    def guarded(
        event: str, args: tuple, _hook=hook, _isenabled=gc.isenabled, _disable=gc.disable, _enable=gc.enable
    ) -> None:
        """The hook with the garbage collector off: no gc callback can run between its checks."""
        if _isenabled():
            _disable()
            try:
                _hook(event, args)
            finally:
                _enable()
        else:
            _hook(event, args)

    sys.addaudithook(guarded)

    # built-in and extension modules made afresh (``_imp``: no audit event) must not bring back what is blocked
    def module_maker(
        original: Any,
        _imports=blocked_imports,
        _report=report,
        _str=str,
        _type=type,
        _getattr=getattr,
        _basename=os.path.basename,
    ) -> Any:
        def make(spec: Any, *rest: Any) -> Any:
            name = _getattr(spec, "name", None)
            origin = _getattr(spec, "origin", None)
            parts = name.split(".") if _type(name) is _str else [""]
            if _type(origin) is _str:
                parts.append(_basename(origin).split(".", 1)[0])
            for part in parts:
                if part in _imports or part == "":
                    reason = f"denied: making module {name!r} (blocked in the sandbox)"
                    DENIALS.append(reason)
                    _report(reason)
                    raise SandboxDenied(reason)
            return original(spec, *rest)

        return make

    # connections come with an authorizer that refuses SQL opening another file (ATTACH, VACUUM INTO):
    # sqlite3.connect is wrapped where a program finds it (a connection is not ready inside the audit event)
    import _sqlite3
    import sqlite3 as _sqlite_module
    import sqlite3.dbapi2 as _dbapi2

    def guarded_connect(*args: Any, _connect=_sqlite3.connect, _guard=sql_guard, **kwargs: Any) -> Any:
        connection = _connect(*args, **kwargs)
        connection.set_authorizer(_guard)
        return connection

    for module in (_sqlite3, _sqlite_module, _dbapi2):
        module.connect = guarded_connect  # type: ignore[attr-defined]  # typeshed has no connect on a module object

    _imp.create_builtin = module_maker(_imp.create_builtin)
    _imp.create_dynamic = module_maker(_imp.create_dynamic)

    # the process doors that are not audit events in Python 3.11
    def no_threads(*args: Any, _report=report, **kwargs: Any) -> Any:
        reason = "denied: starting a thread (threads are not allowed in the sandbox)"
        DENIALS.append(reason)
        _report(reason)
        raise SandboxDenied(reason)

    def no_fork_exec(*args: Any, _report=report, **kwargs: Any) -> Any:
        reason = "denied: _posixsubprocess.fork_exec (no new processes in the sandbox)"
        DENIALS.append(reason)
        _report(reason)
        raise SandboxDenied(reason)

    _thread.start_new_thread = no_threads
    _thread.start_new = no_threads
    threading._start_new_thread = no_threads  # type: ignore[attr-defined]  # private, absent from typeshed
    _posixsubprocess.fork_exec = no_fork_exec


# --------------------------------------------------------------------------- output


class CappedStream:
    """A text stream that writes to a file descriptor until ``cap`` bytes, then drops (and counts) the rest."""

    def __init__(self, fd: int, cap: int) -> None:
        self._fd = fd
        self._left = cap
        self.dropped = 0
        self.encoding = "utf-8"
        self.errors = "replace"

    def write(self, text: str) -> int:
        data = str(text).encode("utf-8", "replace")
        if self._left > 0:
            chunk = data[: self._left]
            self._left -= len(chunk)
            try:
                os.write(self._fd, chunk)
            except OSError:  # the file-size limit, or a full disk: output is best effort
                self._left = 0
            self.dropped += len(data) - len(chunk)
        else:
            self.dropped += len(data)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True


# --------------------------------------------------------------------------- proxies of the controller's services


class _Channel:
    """The worker's end: sends calls to the controller and waits for their answers."""

    def __init__(self, proto: Any, fd_in: int, fd_out: int, max_bytes: int) -> None:
        self.proto = proto
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.max_bytes = max_bytes
        self.schemas: dict[str, Any] = {}

    def send(self, message: dict[str, Any]) -> None:
        self.proto.write_frame(self.fd_out, message, self.max_bytes)

    def read(self) -> dict[str, Any]:
        return self.proto.read_frame_blocking(self.fd_in, self.max_bytes)

    def call(self, method: str, **payload: Any) -> Any:
        self.send({"type": "call", "method": method, **payload})
        while True:
            message = self.read()
            kind = message.get("type")
            if kind == "return":
                return message.get("value")
            if kind == "raise":
                raise _remote_error(message)
            if kind == "call" and message.get("method") == "validate":
                self.send(self._validate(message))
                continue
            raise self.proto.ProtocolError("invalid", f"unexpected message {kind!r} while waiting for {method}")

    def _validate(self, message: dict[str, Any]) -> dict[str, Any]:
        """Check an LLM reply against the program's own schema (the controller's structured() asks)."""
        schema = self.schemas.get(str(message.get("schema")))
        if schema is None:
            return {"type": "raise", "error_type": "ValueError", "message": "unknown schema"}
        try:
            value = schema.model_validate_json(str(message.get("text", "")))
        except Exception as exc:  # ValidationError, ValueError: the controller's repair loop handles it
            return {
                "type": "raise",
                "error_type": type(exc).__name__,
                "message": _one_line(exc),
                "errors": _errors_of(exc),
            }
        return {"type": "return", "value": value.model_dump(mode="json")}


def _errors_of(exc: BaseException) -> list[dict[str, Any]]:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return []
    try:
        return [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors()][:20]
    except Exception:  # pragma: no cover - best effort
        return []


def _remote_error(message: dict[str, Any]) -> BaseException:
    """The controller's exception, re-raised in the program as the same agentmem error class where there is one."""
    from agentmem import errors

    name = str(message.get("error_type", ""))
    text = str(message.get("message", ""))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.AgentmemError):
        return cls(text)
    return RuntimeError(f"{name}: {text}" if name else text)


class ProxyLLM:
    """The program's LLM: every call is made by the controller, which holds the key and the meter."""

    def __init__(self, channel: _Channel, model: str) -> None:
        self._channel = channel
        self.model = model

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
    ) -> str:
        from agentmem.llm.context import current_tags

        value = self._channel.call(
            "complete",
            messages=messages,
            caller=caller,
            tags=current_tags(),
            options={"max_tokens": max_tokens, "temperature": temperature, "response_format": response_format},
        )
        return str(value)

    def structured(self, messages: list[dict[str, Any]], schema: Any, *, caller: str | None = None) -> Any:
        from agentmem.llm.context import current_tags

        key = f"{schema.__module__}.{schema.__qualname__}"
        self._channel.schemas[key] = schema
        value = self._channel.call(
            "structured",
            messages=messages,
            caller=caller,
            tags=current_tags(),
            schema={"id": key, "name": schema.__name__, "json": schema.model_json_schema()},
        )
        return schema.model_validate(value)

    def note(self, event: str, caller: str | None = None) -> None:
        """Count an outcome (an M* fallback, a split) on the controller's meter."""
        self._channel.call("note", event=str(event)[:40], caller=caller)


class ProxyEmbedder:
    """The program's embedder: vectors come from the controller's (shared, cached) embedder."""

    def __init__(self, channel: _Channel, name: str, dim: int) -> None:
        self._channel = channel
        self.name = name
        self.dim = dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._channel.call("embed", texts=[str(t) for t in texts])]


# --------------------------------------------------------------------------- the worker


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text[:500]


def _traceback_tail(exc: BaseException) -> str:
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return text[-_TRACEBACK_CHARS:]


def _set_limits(limits: dict[str, Any]) -> list[str]:
    """Resource limits of this process (inherited by nothing: it may not start any)."""
    import resource
    import signal

    applied: list[str] = []

    def setl(which: int, soft: int, hard: int | None = None, label: str = "") -> None:
        hard = soft if hard is None else hard
        try:
            resource.setrlimit(which, (soft, hard))
            applied.append(label)
        except (ValueError, OSError):
            pass

    setl(resource.RLIMIT_CORE, 0, 0, "core")
    if limits.get("cpu_seconds"):
        cpu = int(limits["cpu_seconds"])
        setl(resource.RLIMIT_CPU, cpu, cpu + 5, "cpu")
    if limits.get("address_space_mb"):
        size = int(limits["address_space_mb"]) * 1024 * 1024
        setl(resource.RLIMIT_AS, size, size, "address_space")
    if limits.get("file_bytes"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing us
        setl(resource.RLIMIT_FSIZE, int(limits["file_bytes"]), int(limits["file_bytes"]), "file_size")
    setl(resource.RLIMIT_NOFILE, 512, 512, "open_files")
    return applied


def _trusted_imports() -> None:
    """Everything a program may use, imported before the policy (and the program) exists."""
    import importlib
    import sqlite3  # noqa: F401
    from importlib.metadata import entry_points

    import chromadb  # noqa: F401
    import numpy  # noqa: F401
    import pydantic  # noqa: F401

    import agentmem.assembled
    import agentmem.errors
    import agentmem.llm.context
    import agentmem.memory
    import agentmem.retrieval
    import agentmem.toolkit
    import agentmem.types

    plugins = {}
    for ep in entry_points(group="agentmem.memory"):
        try:
            importlib.import_module(ep.module)
            plugins[ep.name] = ep.value
        except Exception:  # a broken plugin is the program's problem only if it imports it
            pass
    agentmem.assembled.know_plugins(plugins)  # composed plugins are found without reading metadata in the jail
    for name in (
        "json",
        "re",
        "math",
        "datetime",
        "collections",
        "dataclasses",
        "itertools",
        "functools",
        "hashlib",
        "heapq",
        "random",
        "statistics",
        "string",
        "textwrap",
        "uuid",
        "typing",
        "enum",
        "bisect",
        "difflib",
        "copy",
        "inspect",
        "traceback",
        "linecache",
    ):
        importlib.import_module(name)


class Worker:
    """Serves the controller's ops on one program instance."""

    def __init__(self, proto: Any, channel: _Channel, scratch: str, limits: dict[str, Any]) -> None:
        self.proto = proto
        self.channel = channel
        self.scratch = scratch
        self.limits = limits
        self.program: Any = None
        self.toolkit: Any = None

    # -- loading -------------------------------------------------------------------------------
    def load(self, message: dict[str, Any]) -> dict[str, Any]:
        import inspect
        import linecache
        import types

        from pydantic import BaseModel

        from agentmem.memory import MemoryProgram
        from agentmem.toolkit import Clock, Toolkit
        from agentmem.types import Scope

        source = str(message.get("source", ""))
        hint = str(message.get("namespace") or "candidate")
        try:
            code = compile(source, CANDIDATE_FILE, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise _StageError("import", "invalid", f"invalid: syntax error at line {exc.lineno}: {exc.msg}") from exc
        linecache.cache[CANDIDATE_FILE] = (len(source), None, source.splitlines(True), CANDIDATE_FILE)
        module = types.ModuleType(CANDIDATE_MODULE)
        module.__file__ = os.path.join(self.scratch, CANDIDATE_FILE)
        sys.modules[CANDIDATE_MODULE] = module
        try:
            exec(code, module.__dict__)
        except BaseException as exc:
            raise _StageError("import", *_classify(exc, "import")) from exc

        chosen = module.__dict__.get("Program")
        if chosen is None:
            found = [
                o
                for o in list(module.__dict__.values())
                if inspect.isclass(o)
                and issubclass(o, MemoryProgram)
                and o is not MemoryProgram
                and o.__module__ == CANDIDATE_MODULE
            ]
            if len(found) != 1:
                names = ", ".join(c.__name__ for c in found) or "none"
                raise _StageError(
                    "interface",
                    "invalid",
                    f"invalid: the program must define exactly one MemoryProgram subclass (found {names}); "
                    "or set Program = YourClass",
                )
            chosen = found[0]
        if not (inspect.isclass(chosen) and issubclass(chosen, MemoryProgram)):
            raise _StageError("interface", "invalid", f"invalid: Program = {chosen!r} is not a MemoryProgram subclass")
        if inspect.isabstract(chosen) or getattr(chosen.recall, "__isabstractmethod__", False):
            raise _StageError("interface", "invalid", f"invalid: {chosen.__name__} does not implement recall()")
        if not (inspect.isclass(chosen.Params) and issubclass(chosen.Params, BaseModel)):
            raise _StageError("interface", "invalid", f"invalid: {chosen.__name__}.Params is not a pydantic BaseModel")
        templates = getattr(chosen, "templates", {})
        if not isinstance(templates, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in templates.items()
        ):
            raise _StageError(
                "interface", "invalid", f"invalid: {chosen.__name__}.templates must map names to template text"
            )

        embedder = message.get("embedder") or {}
        scope = Scope.model_validate(message.get("scope") or {})
        self.toolkit = Toolkit(
            scope=scope,
            stores=_STORES,
            llm=ProxyLLM(self.channel, str(message.get("model", "controller"))) if message.get("llm") else None,
            embedder=ProxyEmbedder(
                self.channel, str(embedder.get("name", "controller")), int(embedder.get("dim", 384))
            ),
            namespace=(chosen.name or hint),
            clock=Clock(),
        )
        try:
            self.program = chosen(self.toolkit, message.get("params") or None)
        except BaseException as exc:
            raise _StageError("interface", *_classify(exc, "__init__")) from exc
        params = self.program.params.model_dump(mode="json") if isinstance(self.program.params, BaseModel) else {}
        return {
            "name": chosen.name or hint,
            "namespace": self.toolkit.namespace,
            "class": chosen.__name__,
            "templates": sorted(templates),
            "params": params,
        }

    # -- ops -----------------------------------------------------------------------------------
    def run_op(self, message: dict[str, Any]) -> Any:
        from datetime import datetime

        from agentmem.types import Episode, Event, Query, Recall

        name = message.get("name")
        if self.program is None:
            raise _StageError(None, "invalid", f"invalid: {name} before the program was loaded")
        now = message.get("now")
        self.toolkit.clock.set(datetime.fromisoformat(now) if isinstance(now, str) else None)
        if name == "observe":
            self.program.observe(Event.model_validate(message["event"]))
            return None
        if name == "recall":
            got = self.program.recall(Query.model_validate(message["query"]))
            if not isinstance(got, Recall):
                raise _StageError(None, "invalid", f"invalid: recall returned {type(got).__name__}, not a Recall")
            return got.model_dump(mode="json")
        if name == "reflect":
            self.program.reflect(Episode.model_validate(message["episode"]))
            return None
        if name == "instructions":
            context = message.get("context") or {}
            return str(self.program.instructions(str(message.get("template", "usage")), **context))
        if name == "close":
            self.program.close()
            return None
        raise _StageError(None, "invalid", f"invalid: unknown op {name!r}")

    def serve(self) -> None:
        import threading

        while True:
            message = self.channel.read()
            if message.get("type") != "op":
                raise self.proto.ProtocolError("invalid", f"expected an op, got {message.get('type')!r}")
            name = str(message.get("name"))
            if name == "exit":
                return
            del DENIALS[:]
            threads_before = {t.ident for t in threading.enumerate()}
            try:
                value = self.load(message) if name == "load" else self.run_op(message)
                leftover = [t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
                if leftover:
                    raise _StageError(
                        None, "denied", f"denied: a thread the program started was still running after {name}"
                    )
                reply: dict[str, Any] = {"type": "result", "value": value}
            except _StageError as exc:
                reply = {
                    "type": "error",
                    "kind": exc.kind,
                    "reason": exc.reason,
                    "stage": exc.stage,
                    "traceback": _traceback_tail(exc.__cause__ or exc),
                }
            except BaseException as exc:  # the program's own failure, classified
                kind, reason = _classify(exc, name)
                reply = {"type": "error", "kind": kind, "reason": reason, "traceback": _traceback_tail(exc)}
            try:
                self.channel.send(reply)
            except self.proto.ProtocolError as exc:
                self.channel.send(
                    {"type": "error", "kind": "output", "reason": f"output: {name} returned a {exc.reason}"}
                )


class _StageError(Exception):
    def __init__(self, stage: str | None, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.kind = kind
        self.reason = reason


def _classify(exc: BaseException, op: str) -> tuple[str, str]:
    """(kind, one-line reason) for an exception that escaped the program during ``op``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SandboxDenied):
            return "denied", str(seen)
        seen = seen.__cause__ or seen.__context__
    if DENIALS:
        return "denied", DENIALS[0]
    if isinstance(exc, MemoryError):
        return "memory", f"memory: {op} ran out of memory (the address-space limit)"
    if isinstance(exc, SystemExit):
        return "crash", f"crash: the program called sys.exit({exc.code!r}) during {op}"
    if isinstance(exc, KeyboardInterrupt):
        return "crash", f"crash: KeyboardInterrupt during {op}"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 27:  # EFBIG: the file-size limit
        return "output", f"output: {op} wrote more than the file-size limit"
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:  # ENOSPC: the scratch tmpfs is full
        return "output", f"output: {op} filled its scratch space (the disk limit)"
    return "error", f"error: {op} raised {_one_line(exc)}"


_STORES: Any = None


def main() -> None:
    global _STORES
    proto = _load_protocol()
    # 1. the channel moves off fds 0/1; fds 1/2 go to a log file in scratch
    fd_in = os.dup(0)
    fd_out = os.dup(1)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    scratch = os.getcwd()
    # the log is a file the controller opened outside the jail (it reads its tail when a worker dies)
    log_fd = os.environ.pop("AGENTMEM_SANDBOX_LOG_FD", None)
    log = (
        int(log_fd)
        if log_fd
        else os.open(os.path.join(scratch, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    )
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    init = proto.read_frame_blocking(fd_in)
    limits = dict(init.get("limits") or {})
    max_bytes = int(limits.get("max_message_bytes") or proto.DEFAULT_MAX_BYTES)
    cap = int(limits.get("output_bytes") or 1 << 20)
    sys.stdout = CappedStream(1, cap // 2)
    sys.stderr = CappedStream(2, cap - cap // 2)
    sys.dont_write_bytecode = True
    channel = _Channel(proto, fd_in, fd_out, max_bytes)
    # 2. limits, 3. trusted imports, 4. the policy
    started = time.perf_counter()
    applied = _set_limits(limits)
    _trusted_imports()
    from agentmem.retrievers import allow_background_embedding
    from agentmem.toolkit import Stores

    allow_background_embedding(False)  # threads are denied below: retrieval embeds queries in the caller

    _STORES = Stores(scratch)
    _STORES.chroma  # noqa: B018 - the client (and its native threads) starts before the policy
    if limits.get("audit_hook", True) is not False:
        install_policy(scratch, policy=dict(init.get("policy") or {}), report_fd=fd_out)
    channel.send(
        {
            "type": "hello",
            "pid": os.getpid(),
            "limits": applied,
            "import_seconds": round(time.perf_counter() - started, 3),
        }
    )
    # 5. the program arrives as the first op ("load")
    worker = Worker(proto, channel, scratch, limits)
    try:
        worker.serve()
    except proto.ProtocolError:
        pass
    finally:
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
