"""What the pages the project serves on this machine share (tools/livepage.py, the live hall
page; tools/panel.py, the simulator's panel): answers only to loopback names, no logging, and
headers that keep the page to itself - nothing loaded from outside (it works on a hall network
without internet), nothing a browser may guess or cache."""
from http.server import BaseHTTPRequestHandler

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


class LocalHandler(BaseHTTPRequestHandler):
    def host_name(self):
        """The name the request was sent to (its Host header without the port)."""
        host = (self.headers.get("Host") or "").strip().lower()
        return host[:host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]

    def loopback_host(self):
        """A loopback server answers only to loopback names: a web page open elsewhere in the
        browser cannot reach it through DNS rebinding."""
        return self.host_name() in LOOPBACK_NAMES

    def _send(self, code, ctype, body):
        try:
            self._answer(code, ctype, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True    # the client left before the answer: nothing to do

    def _answer(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; script-src 'self'; "
                         "connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass    # an open page asks every second or two: not worth a line each
