"""A generalist policy served over HTTP (OpenVLA-, Octo-style servers) as a Policy.

Request/response schema (JSON over HTTP/1.1)
--------------------------------------------
``POST <url>`` (e.g. ``http://gpu-box:8000/act``), ``Content-Type: application/json``::

    {
      "observation": {                       # every key of the env observation
        "state": {"dtype": "float32", "shape": [14], "data": "<base64>"},
        "front": {"dtype": "uint8", "shape": [128, 128, 3], "data": "<base64>"}
      },
      "instruction": "pick up the red cube",  # or null
      "num_samples": 10                       # how many independent action samples
    }

Each array is ``{"dtype", "shape", "data"}`` with ``data`` the base64 of its raw C-order
bytes in little-endian byte order (``numpy.ndarray.tobytes()`` on x86/ARM), so images cost
4/3 of their size and nothing is lost. A ``200`` reply is::

    {"actions": [[...], ...]}                 # [num_samples, A] or [num_samples, H, A]

where ``actions`` is a nested list of numbers or an encoded array as above. Actions are in
the server's own action space; put an ``ActionRescale`` between it and a critic (V-GPS) or
the env. Any other status is an error; its body (first 300 characters) ends up in the
exception. :func:`serve` is a reference server for this schema around any local
``Policy`` (a few lines wrap an OpenVLA/Octo model the same way).

Errors (all subclasses of :class:`PolicyServerError`, each naming the URL):
``PolicyServerTimeout`` (no reply within ``timeout`` seconds; also a ``TimeoutError``),
``PolicyServerError`` (connection refused, HTTP status != 200),
``PolicyServerProtocolError`` (reply is not JSON, lacks ``actions``, has the wrong number of
samples, wrong action dim, or non-finite numbers; also a ``ValueError``).
"""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Mapping, Optional

import numpy as np

__all__ = ["HTTPPolicy", "PolicyServerError", "PolicyServerTimeout", "PolicyServerProtocolError",
           "encode_array", "decode_array", "serve"]


class PolicyServerError(RuntimeError):
    pass


class PolicyServerTimeout(PolicyServerError, TimeoutError):
    pass


class PolicyServerProtocolError(PolicyServerError, ValueError):
    pass


def encode_array(a: Any) -> Dict[str, Any]:
    a = np.ascontiguousarray(a)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(d: Any) -> np.ndarray:
    """An encoded array dict (or a nested list of numbers) -> ndarray; ``ValueError`` if malformed."""
    if isinstance(d, list):
        try:
            return np.asarray(d, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a rectangular list of numbers: {exc}") from None
    if not isinstance(d, dict) or not {"dtype", "shape", "data"} <= set(d):
        raise ValueError("an array must be a nested list or {dtype, shape, data}")
    try:
        dtype = np.dtype(d["dtype"]).newbyteorder("<")
        raw = base64.b64decode(d["data"], validate=True)
        return np.frombuffer(raw, dtype=dtype).reshape([int(s) for s in d["shape"]])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad encoded array ({exc})") from None


class HTTPPolicy:
    """Client for a policy server speaking the schema above.

    Args:
        url: full endpoint, e.g. ``http://127.0.0.1:8000/act``.
        instruction: language instruction sent with every request.
        timeout: seconds the whole exchange may take (connect, send, read) before
            ``PolicyServerTimeout``.
        action_dim: if given, replies whose last axis differs are rejected.
        headers: extra HTTP headers (e.g. an auth token; sent to `url` only: redirects are
            not followed).
        max_reply_bytes: a longer reply is a ``PolicyServerProtocolError``.
    """

    def __init__(self, url: str, instruction: Optional[str] = None, timeout: float = 10.0,
                 action_dim: Optional[int] = None, headers: Optional[Mapping[str, str]] = None,
                 max_reply_bytes: int = 16 << 20):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.url, self.instruction, self.timeout = url, instruction, float(timeout)
        self.max_reply_bytes = int(max_reply_bytes)
        self.action_dim = action_dim
        self.headers = {"Content-Type": "application/json", **dict(headers or {})}

    def request(self, obs: Mapping[str, Any], n: int) -> np.ndarray:
        from robot_rl.http_client import ReplyTooLarge, post
        body = json.dumps({"observation": {k: encode_array(v) for k, v in obs.items()},
                           "instruction": self.instruction, "num_samples": int(n)}).encode()
        try:  # a total deadline, a size cap, no redirects (robot_rl/http_client.py)
            status, raw, _ = post(self.url, body, self.headers, self.timeout, self.max_reply_bytes)
        except TimeoutError as exc:
            raise PolicyServerTimeout(f"policy server {self.url} did not answer within "
                                      f"{self.timeout:g} s") from exc
        except ReplyTooLarge as exc:
            raise PolicyServerProtocolError(f"policy server {self.url}: {exc}") from None
        except OSError as exc:
            raise PolicyServerError(f"cannot reach policy server {self.url}: {exc}") from exc
        if status != 200:
            hint = " (redirects are not followed)" if 300 <= status < 400 else ""
            raise PolicyServerError(f"policy server {self.url} answered HTTP {status}{hint}: "
                                    f"{raw[:300].decode('utf-8', 'replace')}")
        return self._parse(raw, n)

    def _parse(self, raw: bytes, n: int) -> np.ndarray:
        def bad(why: str) -> PolicyServerProtocolError:
            return PolicyServerProtocolError(f"malformed reply from policy server {self.url}: {why}; "
                                             f"got {raw[:200]!r}")
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad("not JSON") from None
        if not isinstance(reply, dict) or "actions" not in reply:
            raise bad('expected an object with key "actions"')
        try:
            actions = decode_array(reply["actions"]).astype(np.float32)
        except ValueError as exc:
            raise bad(f'"actions": {exc}') from None
        if actions.ndim not in (2, 3) or actions.shape[0] != n:
            raise bad(f'"actions" must have shape [{n}, A] or [{n}, H, A], got {list(actions.shape)}')
        if self.action_dim is not None and actions.shape[-1] != self.action_dim:
            raise bad(f"actions have {actions.shape[-1]} dims, expected {self.action_dim}")
        if not np.all(np.isfinite(actions)):
            raise bad("actions contain NaN or inf")
        return actions

    def sample(self, obs: Mapping[str, Any], n: int) -> np.ndarray:
        if n < 1:
            raise ValueError(f"sample: n must be >= 1, got {n}")
        return self.request(obs, n)

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        return self.request(obs, 1)[0]


def serve(policy: Any, host: str = "127.0.0.1", port: int = 0, request_timeout: float = 30.0,
          max_request_bytes: int = 64 << 20, max_samples: int = 1024) -> ThreadingHTTPServer:
    """Serve ``policy.sample(obs, n)`` under the schema above on a background thread.

    Returns the running server (``server.server_address`` has the bound port; stop it with
    ``server.shutdown(); server.server_close()``). Any path is accepted. A request without a
    valid ``Content-Length``, or with ``num_samples`` outside [1, max_samples], is answered
    400; one larger than ``max_request_bytes`` 413; a client silent for ``request_timeout``
    seconds is dropped."""

    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout  # a client that stops sending is dropped, not waited for

        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():  # missing, negative or not a number
                return self._reply(400, {"error": f"bad Content-Length {length!r}"})
            if int(length) > max_request_bytes:
                return self._reply(413, {"error": f"request of {length} bytes, more than {max_request_bytes}"})
            try:
                req = json.loads(self.rfile.read(int(length)))
                obs = {k: decode_array(v) for k, v in req["observation"].items()}
                n = req.get("num_samples", 1)
                if not isinstance(n, int) or not 1 <= n <= max_samples:
                    raise ValueError(f"num_samples must be an integer in [1, {max_samples}], got {n!r}")
                actions = np.asarray(policy.sample(obs, n), np.float32)
                status, body = 200, {"actions": actions.tolist()}
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                status, body = 400, {"error": f"{type(exc).__name__}: {exc}"}
            self._reply(status, body)

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep stderr quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="policy-server").start()
    return server
