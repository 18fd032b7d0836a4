"""One HTTP POST for our clients of remote models (the policy-server client, the VLM chat
client), with what urllib does not give: a total deadline for the whole exchange (urllib's
timeout is per socket operation, so a server trickling one byte at a time never times out), a
cap on the reply size, and no redirects (urllib follows them, forwarding an `Authorization`
header to whatever host the redirect names and turning a POST into a GET)."""
from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from typing import Mapping

__all__ = ["ReplyTooLarge", "post"]


class ReplyTooLarge(ValueError):
    pass


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
         max_bytes: int) -> tuple[int, bytes, dict]:
    """POST `body` to `url`; returns (status, reply body, reply headers) for any status (a
    redirect is returned as its 3xx status, not followed). Raises `TimeoutError` when the
    whole exchange takes longer than `timeout` seconds, `ReplyTooLarge` past `max_bytes`, and
    `OSError` when the host cannot be reached."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be http(s)://host[:port]/path, got {url!r}")
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete reply from {url} within {timeout:g} s")
        return left

    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=remaining())
    cutoff = None
    try:
        conn.connect()
        sock = conn.sock  # kept: the connection drops it when the reply closes the connection
        # at the deadline the socket is shut, so a read blocked on a slow server returns
        cutoff = threading.Timer(remaining(), lambda: _shut(sock))
        cutoff.daemon = True
        cutoff.start()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path, body=body, headers=dict(headers))
        sock.settimeout(remaining())
        resp = conn.getresponse()
        declared = resp.getheader("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ReplyTooLarge(f"reply from {url} declares {declared} bytes, more than {max_bytes}")
        chunks, size = [], 0
        while True:
            sock.settimeout(remaining())
            chunk = resp.read1(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise ReplyTooLarge(f"reply from {url} is larger than {max_bytes} bytes")
            chunks.append(chunk)
        remaining()  # a read ended by the cutoff looks like the end of the reply
        return resp.status, b"".join(chunks), dict(resp.getheaders())
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= deadline:  # whatever the cutoff broke
            raise TimeoutError(f"no complete reply from {url} within {timeout:g} s") from exc
        if isinstance(exc, http.client.HTTPException):  # not HTTP: as unreachable as a refusal
            raise OSError(f"bad HTTP reply from {url}: {exc!r}") from exc
        raise
    finally:
        if cutoff is not None:
            cutoff.cancel()
        conn.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
