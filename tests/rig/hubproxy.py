"""A registry that answers as Docker Hub does: every request without a token gets a 401 with a
Bearer challenge, the token endpoint hands out an anonymous token, and with it the request is
passed to a plain registry behind (read-only). Docker clients then ask their credential helper
for this host before they fetch the anonymous token, as they do for Docker Hub: a helper that
cannot reach its keychain fails the pull there (tests/rig/macdocker.sh).

Served over TLS as Docker Hub is (a self-signed certificate: the engines list this registry in
``insecure-registries``, which makes a mirror's TLS unverified rather than plain HTTP).

Usage: python3 hubproxy.py LISTEN_PORT UPSTREAM CERT KEY (e.g. 5001 http://127.0.0.1:5000 hub.crt hub.key)
"""

from __future__ import annotations

import http.client
import http.server
import json
import shutil
import ssl
import sys
import urllib.parse

TOKEN = "anonymous-mm4-rig"


class Proxy(http.server.BaseHTTPRequestHandler):
    upstream: urllib.parse.SplitResult
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def do_GET(self) -> None:
        self._handle(body=True)

    def _handle(self, body: bool) -> None:
        if self.path.startswith("/token"):
            data = json.dumps({"token": TOKEN, "access_token": TOKEN, "expires_in": 300}).encode()
            self._reply(200, {"Content-Type": "application/json"}, data if body else b"", len(data))
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            host = self.headers.get("Host", "")
            scope = self._scope()
            challenge = f'Bearer realm="https://{host}/token",service="mm4-rig-hub"' + (
                f',scope="{scope}"' if scope else ""
            )
            data = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self._reply(
                401,
                {"Content-Type": "application/json", "WWW-Authenticate": challenge},
                data if body else b"",
                len(data),
            )
            return
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
        connection.request(self.command, self.path, headers=headers)
        answer = connection.getresponse()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("connection", "transfer-encoding"):
                self.send_header(key, value)
        self.end_headers()
        if body:
            shutil.copyfileobj(answer, self.wfile, 1 << 20)
        connection.close()

    def _scope(self) -> str:
        parts = self.path.split("/")
        if len(parts) > 4 and parts[1] == "v2":
            kind = next((i for i, p in enumerate(parts) if p in ("manifests", "blobs", "tags")), 0)
            if kind > 2:
                return f"repository:{'/'.join(parts[2:kind])}:pull"
        return ""

    def _reply(self, status: int, headers: dict[str, str], data: bytes, length: int) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    Proxy.upstream = urllib.parse.urlsplit(upstream)
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Proxy)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
