"""TLS for the rediss:// tests: a private CA with a server and a client certificate (made
with the openssl command line), and a redis-server that only speaks TLS.

The password of a TlsRedisServer is never on a command line: it goes, as its SHA-256,
into the ACL file (`user default on #<sha256> ...`), which is what `requirepass` does
(the default user's password); `--requirepass` itself would show in process listings,
and redis ignores it anyway once an `--aclfile` is loaded.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from tests.services import RedisServer, wait_for

DAYS = "2"

_REQUEST_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = palign test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_EXTENSIONS = """\
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A self-signed CA, a server certificate for 127.0.0.1 (SAN IP:127.0.0.1 and
    DNS:localhost) and a client certificate, both signed by that CA: RSA 2048, SHA-256,
    valid 2 days, every file readable by its owner only (0600). The CA's key is deleted
    once both certificates are signed."""
    directory.mkdir(parents=True, exist_ok=True)
    certs = Certificates(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    ca_key = directory / "ca.key"
    request_config = directory / "request.cnf"
    extensions = directory / "extensions.cnf"
    request_config.write_text(_REQUEST_CONFIG)
    extensions.write_text(_EXTENSIONS)
    scratch = [ca_key, request_config, extensions]
    try:
        for key in (ca_key, certs.server_key, certs.client_key):
            _openssl(directory, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
        _openssl(
            directory,
            *("req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", DAYS),
            *("-config", str(request_config), "-extensions", "v3_ca", "-out", str(certs.ca)),
        )
        for kind, subject, key, cert in (
            ("server", "/CN=127.0.0.1", certs.server_key, certs.server_cert),
            ("client", "/CN=palign test client", certs.client_key, certs.client_cert),
        ):
            request = directory / f"{kind}.csr"
            scratch.append(request)
            _openssl(
                directory,
                *("req", "-new", "-key", str(key), "-subj", subject, "-config", str(request_config)),
                *("-out", str(request)),
            )
            _openssl(
                directory,
                *("x509", "-req", "-in", str(request), "-CA", str(certs.ca), "-CAkey", str(ca_key)),
                *("-set_serial", f"0x{secrets.randbits(63):x}", "-days", DAYS, "-sha256"),
                *("-extfile", str(extensions), "-extensions", kind, "-out", str(cert)),
            )
    finally:
        for path in scratch:
            path.unlink(missing_ok=True)
    for path in (certs.ca, certs.server_cert, certs.server_key, certs.client_cert, certs.client_key):
        path.chmod(0o600)
    return certs


def _openssl(cwd: Path, *args: str) -> None:
    binary = shutil.which("openssl")
    assert binary, "the openssl command is not installed"
    # umask 077: keys are never readable by others, not even for a moment.
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, umask=0o077, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")


class TlsRedisServer(RedisServer):
    """A private redis-server that speaks only TLS (`--port 0 --tls-port PORT`) on a free
    loopback port, stopped by its pid (`stop()`, inherited; also on leaving a `with`).

    `certificates`: made under `directory/certs` if not given. `password`: the default
    user's password (as `requirepass` would set it). `acl_lines`: more ACL rules, e.g.
    `"user reader on >pw ~* +@read"`, written with the default user's line to the ACL file
    (a line for `user default` there wins over `password`). `require_client_certificate`:
    `--tls-auth-clients yes` instead of `no`.
    """

    def __init__(
        self,
        directory: Path,
        certificates: Certificates | None = None,
        *,
        password: str | None = None,
        acl_lines: list[str] | None = None,
        require_client_certificate: bool = False,
        persistent: bool = False,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.certificates = certificates or make_certificates(directory / "certs")
        self.password = password
        self.acl_lines = list(acl_lines or [])
        self.require_client_certificate = require_client_certificate
        self.log = directory / "redis-tls.log"
        super().__init__(directory, persistent=persistent)  # picks the port and calls start()

    @property
    def url(self) -> str:
        """rediss://127.0.0.1:PORT/0, with `:PASSWORD@` (percent-encoded) if there is one."""
        login = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"rediss://{login}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test installs it)"
        certs = self.certificates
        acl_file = self.directory / "users.acl"
        acl_file.write_text("".join(line + "\n" for line in self._acl()))
        acl_file.chmod(0o600)
        args = [binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key)]
        args += ["--tls-ca-cert-file", str(certs.ca)]
        args += ["--tls-auth-clients", "yes" if self.require_client_certificate else "no"]
        args += ["--aclfile", str(acl_file), "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always"]
        args += ["--maxmemory-policy", "noeviction", "--protected-mode", "yes"]
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.proc = proc
        client = self.client()
        try:
            wait_for(lambda: proc.poll() is not None or _answers(client), 10, "redis-server to answer over TLS")
        finally:
            client.close()
        if proc.poll() is not None:
            self.proc = None
            raise AssertionError(f"redis-server exited with {proc.returncode}: {self.log.read_text()[-2000:]}")

    def _acl(self) -> list[str]:
        if any(line.split()[:2] == ["user", "default"] for line in self.acl_lines):
            return self.acl_lines
        if self.password is None:
            return ["user default on nopass ~* &* +@all", *self.acl_lines]
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        return [f"user default on #{digest} ~* &* +@all", *self.acl_lines]

    def client(self, username: str | None = None, password: str | None = None) -> redis.Redis:
        """A client over TLS that verifies the server against the test CA (and its name,
        127.0.0.1); `password` defaults to the server's password."""
        certs = self.certificates
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=username,
            password=password if password is not None else self.password,
            ssl=True,
            ssl_ca_certs=str(certs.ca),
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
            ssl_certfile=str(certs.client_cert) if self.require_client_certificate else None,
            ssl_keyfile=str(certs.client_key) if self.require_client_certificate else None,
            socket_connect_timeout=2,
            decode_responses=True,
        )

    def __enter__(self) -> TlsRedisServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _answers(client: redis.Redis) -> bool:
    """True once the server answers over TLS, even if only to refuse the login (when the
    ACL lines turn the default user off)."""
    try:
        return bool(client.ping())
    except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
        return True  # AuthenticationError is a ConnectionError: catch it first
    except redis.exceptions.ConnectionError:
        return False
