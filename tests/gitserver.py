"""A smart-HTTP git server with HTTP basic auth, in its own process, for the tests that must
show a password never leaks.

`GitHttpServer(root, username, password)` serves every bare repository under `root` at
http://127.0.0.1:PORT/<name>.git, fetch and push, through git's own `git http-backend`
(CGI, one backend process per request). Every request must carry the basic-auth login;
any other gets 401 with `WWW-Authenticate: Basic realm="git"`.

The server is `python -m tests.gitserver ROOT PORT` in its own process group, stopped by
its pid (the group) at the end. The login reaches it through its environment
(PALIGN_TEST_GIT_USERNAME / PALIGN_TEST_GIT_PASSWORD), never its argv: the tests scan
process command lines for the password, and a command line is readable by everyone
(ps, /proc/PID/cmdline) while an environment only by its owner (/proc/PID/environ). A
test that scans environments too must skip `server.pid`, whose environment holds the
password by design. The `git http-backend` processes get neither variable nor the
Authorization header.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import quote, unquote

from tests.services import free_port, wait_for

USERNAME_ENV = "PALIGN_TEST_GIT_USERNAME"
PASSWORD_ENV = "PALIGN_TEST_GIT_PASSWORD"
PROJECT_DIR = Path(__file__).resolve().parent.parent
BLOCK = 64 * 1024


class GitHttpServer:
    """`git http-backend` behind basic auth on a free loopback port, read and write.

    Use it as a context manager or call `stop()`; it is started by the constructor.
    `log`, if given, receives the server's request log and the backends' stderr.
    """

    def __init__(self, root: Path, username: str, password: str, *, log: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.username = username
        self.password = password
        self.log = log
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self.start()

    # ---- addresses ------------------------------------------------------------------

    def url(self, name: str) -> str:
        """http://127.0.0.1:PORT/NAME.git, without credentials (`name` may end in .git)."""
        return f"http://127.0.0.1:{self.port}/{_repo_path(name)}"

    def url_with_login(self, name: str) -> str:
        """http://USER:PASS@127.0.0.1:PORT/NAME.git, user and password percent-encoded."""
        login = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        return f"http://{login}@127.0.0.1:{self.port}/{_repo_path(name)}"

    @property
    def pid(self) -> int:
        """The server process's pid (also its process group id)."""
        return self._pid

    # ---- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        env = os.environ.copy()
        env[USERNAME_ENV] = self.username
        env[PASSWORD_ENV] = self.password
        args = [sys.executable, "-m", "tests.gitserver", str(self.root), str(self.port)]
        out: IO[bytes] | int = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                args,
                cwd=PROJECT_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self._proc, self._pid = proc, proc.pid
        wait_for(lambda: proc.poll() is not None or _listening(self.port), 20, "the git HTTP server to listen")
        if proc.poll() is not None:
            self._proc = None
            raise AssertionError(f"the git HTTP server exited with {proc.returncode} (log: {self.log})")

    def stop(self) -> None:
        """SIGTERM to the server's process group (server and running backends), SIGKILL
        if it has not exited within 10 s; then reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # backends left behind, if any

    def __enter__(self) -> GitHttpServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _repo_path(name: str) -> str:
    return quote(name.removesuffix(".git")) + ".git"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# ---- the server process ---------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, username: str, password: str, backend_env: dict[str, str]) -> None:
        self.username = username
        self.expected = b"Basic " + base64.b64encode(f"{username}:{password}".encode())
        self.backend_env = backend_env
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response has a Content-Length
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if not self._authorized():
            for _ in self._body():  # drain it, so the connection stays usable for the retry
                pass
            headers = [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Type", "text/plain")]
            self._reply(401, "Unauthorized", headers, b"authentication required\n")
            return
        path, _, query = self.path.partition("?")
        path_info = unquote(path)
        if ".." in path_info.split("/"):
            for _ in self._body():
                pass
            self._reply(404, "Not Found", [("Content-Type", "text/plain")], b"not found\n")
            return
        self._run_backend(path_info, query)

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "").strip().encode()
        if not given.lower().startswith(b"basic "):
            return False
        try:  # compare the decoded login, so that base64 padding variants do not matter
            login = base64.b64decode(given[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(login, base64.b64decode(self.server.expected[6:]))

    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _body(self) -> Iterator[bytes]:
        """The request body, de-chunked if it came with Transfer-Encoding: chunked."""
        if self._chunked():
            while True:
                line = self.rfile.readline(BLOCK)
                if not line:
                    raise ConnectionError("client closed the connection inside a chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(BLOCK).strip():  # trailers, up to the empty line
                        pass
                    return
                yield from self._exactly(size)
                self.rfile.readline(BLOCK)  # the CRLF after the chunk
        else:
            yield from self._exactly(int(self.headers.get("Content-Length") or 0))

    def _exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            data = self.rfile.read(min(size, BLOCK))
            if not data:
                raise ConnectionError("client closed the connection inside the body")
            size -= len(data)
            yield data

    def _run_backend(self, path_info: str, query: str) -> None:
        env = dict(self.server.backend_env)
        env.update(
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL="HTTP/1.1",
            SERVER_NAME="127.0.0.1",
            SERVER_PORT=str(self.server.server_address[1]),
            REQUEST_METHOD=self.command,
            PATH_INFO=path_info,
            QUERY_STRING=query,
            REMOTE_ADDR=self.client_address[0],
            REMOTE_USER=self.server.username,
            AUTH_TYPE="Basic",
        )
        if self.headers.get("Content-Type"):
            env["CONTENT_TYPE"] = self.headers["Content-Type"]
        if not self._chunked() and self.headers.get("Content-Length"):
            env["CONTENT_LENGTH"] = self.headers["Content-Length"]
        # Without CONTENT_LENGTH (a chunked body) http-backend reads its stdin to the end.
        skip = {"authorization", "content-type", "content-length", "transfer-encoding", "connection", "expect"}
        for key, value in self.headers.items():
            if key.lower() not in skip:  # Git-Protocol (v2), Content-Encoding (gzip), ...
                env["HTTP_" + key.upper().replace("-", "_")] = value
        backend = subprocess.Popen(
            ["git", "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd="/"
        )
        assert backend.stdin is not None and backend.stdout is not None
        failure: list[BaseException] = []
        feeder = threading.Thread(target=self._feed, args=(backend.stdin, failure), daemon=True)
        feeder.start()
        output = backend.stdout.read()  # while the feeder streams the body in
        backend.stdout.close()
        feeder.join()
        code = backend.wait()
        if failure:  # the client went away: nobody to answer
            self.close_connection = True
            return
        self._relay(output, code)

    def _feed(self, stdin: IO[bytes], failure: list[BaseException]) -> None:
        """Stream the body to the backend; keep reading it even if the backend stopped
        reading (then the client still gets the backend's answer on a sane connection)."""
        try:
            open_pipe = True
            for data in self._body():
                if open_pipe:
                    try:
                        stdin.write(data)
                    except BrokenPipeError:
                        open_pipe = False
        except (OSError, ValueError) as error:
            failure.append(error)
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def _relay(self, output: bytes, code: int) -> None:
        """Turn the CGI response (headers, empty line, body) into an HTTP response."""
        ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := output.find(sep)) >= 0]
        if not ends:
            message = f"git http-backend exited {code} without a response\n".encode()
            self._reply(500, "Internal Server Error", [("Content-Type", "text/plain")], message)
            return
        end, width = min(ends)
        status, reason = 200, "OK"
        headers: list[tuple[str, str]] = []
        for line in output[:end].decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if name.lower() == "status":
                number, _, reason = value.partition(" ")
                status = int(number)
            elif name and name.lower() not in ("content-length", "transfer-encoding", "connection"):
                headers.append((name, value))
        self._reply(status, reason or "", headers, output[end + width :])

    def _reply(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()


def main(argv: list[str]) -> None:
    """`python -m tests.gitserver ROOT PORT`, the login in PALIGN_TEST_GIT_USERNAME and
    PALIGN_TEST_GIT_PASSWORD."""
    if len(argv) != 2:
        raise SystemExit("usage: python -m tests.gitserver ROOT PORT (login in the environment)")
    root, port = Path(argv[0]).resolve(), int(argv[1])
    username, password = os.environ.pop(USERNAME_ENV), os.environ.pop(PASSWORD_ENV)
    backend_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    backend_env.update(
        GIT_PROJECT_ROOT=str(root),
        GIT_HTTP_EXPORT_ALL="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="http.receivepack",
        GIT_CONFIG_VALUE_0="true",
    )
    server = _Server(port, username, password, backend_env)
    print(f"serving {root} on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
