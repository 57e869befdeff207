"""What the CLI tests' stand-in servers share: a request handler that
answers JSON, and errors in the API's one shape (docs/api.md)."""
import json
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on it (a timeout) or exited

    def error(self, status, code, message, headers=(), **extra):
        self.reply(status, {"error": {"code": code, "message": message}, **extra}, headers)
