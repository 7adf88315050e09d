"""An HTTPS server on 127.0.0.1 that plays an IdP's metadata URL, with a certificate of its own."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class MetadataServer:
    """An HTTPS server on 127.0.0.1 serving whatever metadata it is given, with its own trusted cert."""

    def __init__(self, folder: Path) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cert_file, key_file = folder / "server.pem", folder / "server.key"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.body = b""
        # path -> (status, headers, body) for anything but a plain 200 with `body`
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.trickle: set[str] = set()  # paths whose body is sent a byte every 0.2 s
        self.stall_headers: set[str] = set()  # paths whose headers stop halfway for 3 s
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests += 1
                if self.path in server.stall_headers:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n")
                    self.wfile.flush()
                    time.sleep(3)
                    return
                status, headers, body = server.routes.get(
                    self.path, (200, {"Content-Type": "application/samlmetadata+xml"}, server.body))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path not in server.trickle:
                    self.wfile.write(body)
                    return
                for byte in body:
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return
                    time.sleep(0.2)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, key_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/metadata"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url_for(self, path: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"
