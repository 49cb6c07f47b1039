#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real S3 server (tests only).

    s3faults.py UPSTREAM_PORT PIDFILE PORTFILE

Listens on 127.0.0.1 (a free port, written to PORTFILE; its pid to PIDFILE)
and forwards every request unchanged (the Host header included, so SigV4
signatures stay valid) to 127.0.0.1:UPSTREAM_PORT.  Faults are armed
through the proxy itself, never forwarded:

    GET /__faults/arm?n=N&status=503&code=SlowDown[&method=PUT]

makes the next N requests (of that method, if given) answer STATUS with an
S3 error body <Error><Code>CODE</Code>... instead of reaching the server.
    GET /__faults/stats   -> "injected=I forwarded=F armed=A"
Standard library only; stopped by SIGTERM to its pid.
"""
import http.client
import http.server
import os
import socketserver
import sys
import threading
import urllib.parse

UPSTREAM = int(sys.argv[1])
LOCK = threading.Lock()
STATE = {"armed": 0, "status": 503, "code": "SlowDown", "method": None,
         "injected": 0, "forwarded": 0}
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
       "te", "trailer", "upgrade"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        with LOCK:
            if u.path == "/__faults/arm":
                STATE["armed"] = int(q.get("n", "1"))
                STATE["status"] = int(q.get("status", "503"))
                STATE["code"] = q.get("code", "SlowDown")
                STATE["method"] = q.get("method")
            body = "injected=%d forwarded=%d armed=%d" % (
                STATE["injected"], STATE["forwarded"], STATE["armed"])
        self.reply(200, body.encode(), "text/plain")

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def handle_any(self):
        if self.path.startswith("/__faults/"):
            return self.control()
        data = self.body()
        with LOCK:
            inject = STATE["armed"] > 0 and (
                STATE["method"] is None or STATE["method"] == self.command)
            if inject:
                STATE["armed"] -= 1
                STATE["injected"] += 1
            else:
                STATE["forwarded"] += 1
            status, code = STATE["status"], STATE["code"]
        if inject:
            err = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s"
                   "</Code><Message></Message><RequestId>fault</RequestId>"
                   "</Error>" % code).encode()
            return self.reply(status, err)
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=300)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP and k.lower() != "expect"}
        conn.request(self.command, self.path, body=data if data else None,
                     headers=headers)
        resp = conn.getresponse()
        rbody = resp.read()
        self.send_response(resp.status)
        head = self.command == "HEAD"
        for k, v in resp.getheaders():
            if k.lower() not in HOP and (head or k.lower() != "content-length"):
                self.send_header(k, v)
        if not head:
            self.send_header("Content-Length", str(len(rbody)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(rbody)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    with open(sys.argv[3] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(sys.argv[3] + ".tmp", sys.argv[3])
    with open(sys.argv[2], "w") as f:
        f.write(str(os.getpid()))
    srv.serve_forever()


if __name__ == "__main__":
    main()
