"""HTTPPolicy against real HTTP servers on loopback: the reference server around a real
policy, and hand-written servers that are slow, fail, or answer garbage."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from robot_rl.policies.http import (
    HTTPPolicy,
    PolicyServerError,
    PolicyServerProtocolError,
    PolicyServerTimeout,
    decode_array,
    encode_array,
    serve,
)
from robot_rl.policies.vgps import ValueGuidedPolicy


class EchoPolicy:
    """Server-side policy whose actions are computed from what arrived: proves the observation
    (float state and uint8 image) crossed the wire intact."""

    def sample(self, obs, n):
        a = np.array([obs["state"].sum(), obs["front"].astype(np.float64).mean() / 255.0,
                      float(obs["front"][1, 2, 0]), float(obs["front"].dtype == np.uint8)])
        return np.stack([a + 0.01 * i for i in range(n)])


def observation():
    rng = np.random.default_rng(0)
    return {"state": rng.normal(size=14).astype(np.float32),
            "front": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)}


@pytest.fixture
def reference_server():
    server = serve(EchoPolicy())
    yield f"http://127.0.0.1:{server.server_address[1]}/act"
    server.shutdown()
    server.server_close()


def raw_server(handler_fn):
    """A loopback server whose POST handler is `handler_fn(handler)`."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            handler_fn(self)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/act"


def reply(handler, status: int, body: bytes):
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_arrays_round_trip_through_the_wire_format():
    for a in (np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros((4, 4, 3), np.uint8) + 7,
              np.array([1.5], np.float64)):
        b = decode_array(json.loads(json.dumps(encode_array(a))))
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        decode_array({"dtype": "float32", "shape": [3], "data": "AAAA"})  # 3 bytes for 12


def test_success_against_the_reference_server(reference_server):
    obs = observation()
    pol = HTTPPolicy(reference_server, instruction="pick up the red cube", timeout=5.0, action_dim=4)
    actions = pol.sample(obs, 5)
    assert actions.shape == (5, 4) and actions.dtype == np.float32
    want = [obs["state"].sum(), obs["front"].mean() / 255.0, obs["front"][1, 2, 0], 1.0]
    np.testing.assert_allclose(actions[0], want, rtol=1e-5)
    np.testing.assert_allclose(actions[4] - actions[0], 0.04, atol=1e-5)
    np.testing.assert_allclose(pol.act(obs), actions[0], rtol=1e-6)


def test_vgps_steers_a_policy_served_over_http(reference_server):
    """V-GPS over the HTTP client: K candidates in one request, the critic picks the best."""
    class PreferSmallFirstDim:
        def q_values(self, obs, actions):
            return -np.abs(actions[:, 0] - obs["state"].sum() - 0.03)
    vg = ValueGuidedPolicy(HTTPPolicy(reference_server), PreferSmallFirstDim(), num_samples=6)
    assert vg.last_index is None
    vg.act(observation())
    assert vg.last_index == 3


def test_timeout_is_a_clear_error():
    server, url = raw_server(lambda h: (time.sleep(1.5), reply(h, 200, b'{"actions": [[0]]}')))
    try:
        t0 = time.perf_counter()
        with pytest.raises(PolicyServerTimeout, match=r"did not answer within 0.3 s") as err:
            HTTPPolicy(url, timeout=0.3).act(observation())
        assert time.perf_counter() - t0 < 1.4
        assert url in str(err.value) and isinstance(err.value, TimeoutError)
    finally:
        server.shutdown()
        server.server_close()


def test_http_error_status_is_reported_with_the_body():
    server, url = raw_server(lambda h: reply(h, 503, b"model not loaded yet"))
    try:
        with pytest.raises(PolicyServerError, match=r"HTTP 503.*model not loaded yet"):
            HTTPPolicy(url).act(observation())
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("body, why", [
    (b"<html>oops</html>", "not JSON"),
    (b'{"action": [[0, 0]]}', 'key "actions"'),
    (b'{"actions": [[0, 0], [1, 1]]}', r"shape \[1, A\] or \[1, H, A\], got \[2, 2\]"),
    (b'{"actions": [[0, 0, 0]]}', "3 dims, expected 2"),
    (b'{"actions": [["a", "b"]]}', '"actions"'),
    (b'{"actions": [[NaN, 0]]}', "NaN or inf"),
])
def test_malformed_replies_are_clear_errors(body, why):
    server, url = raw_server(lambda h: reply(h, 200, body))
    try:
        with pytest.raises(PolicyServerProtocolError, match=why) as err:
            HTTPPolicy(url, action_dim=2).act(observation())
        assert "malformed reply" in str(err.value) and isinstance(err.value, ValueError)
    finally:
        server.shutdown()
        server.server_close()


def test_encoded_array_replies_are_accepted():
    body = json.dumps({"actions": encode_array(np.ones((3, 2, 4), np.float32))}).encode()
    server, url = raw_server(lambda h: reply(h, 200, body))
    try:
        chunks = HTTPPolicy(url).sample(observation(), 3)
        assert chunks.shape == (3, 2, 4)
    finally:
        server.shutdown()
        server.server_close()


def test_unreachable_server_and_bad_arguments():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    with pytest.raises(PolicyServerError, match="cannot reach policy server"):
        HTTPPolicy(f"http://127.0.0.1:{port}/act", timeout=2.0).act(observation())
    with pytest.raises(ValueError, match="http://"):
        HTTPPolicy("127.0.0.1:8000/act")
    with pytest.raises(ValueError, match="timeout"):
        HTTPPolicy("http://127.0.0.1:1/act", timeout=0)


def test_reference_server_answers_bad_requests_with_400(reference_server):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(reference_server, data=b'{"observation": {"state": "x"}}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 400 and b"error" in err.value.read()


def test_the_timeout_is_for_the_whole_reply_not_each_read():
    """A server trickling its reply a byte at a time used to make act(timeout=1.0) take 4.8 s
    (urllib's timeout is per socket operation)."""
    def trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", "60")
        h.end_headers()
        for _ in range(60):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.1)
    server, url = raw_server(trickle)
    try:
        t0 = time.perf_counter()
        with pytest.raises(PolicyServerTimeout):
            HTTPPolicy(url, timeout=1.0).act(observation())
        assert time.perf_counter() - t0 < 1.5
    finally:
        server.shutdown()
        server.server_close()


def test_redirects_are_not_followed_and_the_token_stays_home():
    """urllib followed a redirect to another host with the Authorization header (and turned
    the POST into a GET whose reply became the action)."""
    seen = []

    def elsewhere(h):
        seen.append(dict(h.headers))
        reply(h, 200, b'{"actions": [[9, 9, 9, 9]]}')
    other, other_url = raw_server(elsewhere)

    def redirect(h):
        h.send_response(307)
        h.send_header("Location", other_url)
        h.send_header("Content-Length", "0")
        h.end_headers()
    server, url = raw_server(redirect)
    try:
        with pytest.raises(PolicyServerError, match="HTTP 307 .redirects are not followed"):
            HTTPPolicy(url, headers={"Authorization": "Bearer secret"}).act(observation())
        assert seen == []
    finally:
        for s in (server, other):
            s.shutdown()
            s.server_close()


def test_replies_larger_than_the_cap_are_refused():
    def declared(h):
        h.send_response(200)
        h.send_header("Content-Length", str(1 << 30))
        h.end_headers()

    def streamed(h):  # no length: read until the cap
        h.send_response(200)
        h.end_headers()
        h.wfile.write(b'{"actions": [' + b"0, " * 5000)
    for handler in (declared, streamed):
        server, url = raw_server(handler)
        try:
            with pytest.raises(PolicyServerProtocolError, match="bytes"):
                HTTPPolicy(url, max_reply_bytes=10_000).act(observation())
        finally:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("headers,body,status", [
    ({"Content-Length": "-5"}, b"", 400),
    ({"Content-Length": str(1 << 40)}, b"", 413),
    ({}, b"", 400),
    ({"Content-Length": None}, json.dumps({"observation": {}, "num_samples": 10 ** 6}).encode(), 400),
    ({"Content-Length": None}, json.dumps({"observation": {}, "num_samples": 0}).encode(), 400),
    ({"Content-Length": None}, b"[1, 2]", 400),
])
def test_reference_server_refuses_bad_lengths_and_sample_counts(reference_server, headers, body, status):
    import http.client
    port = int(reference_server.split(":")[2].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("POST", "/act")
        for k, v in headers.items():
            conn.putheader(k, str(len(body)) if v is None else v)
        conn.endheaders()
        conn.send(body)
        resp = conn.getresponse()
        assert resp.status == status, resp.read()
    finally:
        conn.close()
