"""A local OTLP/HTTP receiver for the benchmarks: answers every export 200 and counts the spans it
was sent, walking the protobuf's nesting (request field 1: resource spans, its field 2: scope
spans, its field 2: a span), into the file given (so a processor that drops spans shows).

    python3 bench/otlp_sink.py PORT COUNT_FILE
"""
import http.server, sys
def varint(b, i):
    n = shift = 0
    while True:
        c = b[i]; i += 1; n |= (c & 0x7F) << shift; shift += 7
        if c < 0x80: return n, i
def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        kind = key & 7
        if kind == 0: _, i = varint(b, i)
        elif kind == 1: i += 8
        elif kind == 5: i += 4
        elif kind == 2:
            n, i = varint(b, i); yield key >> 3, b[i:i + n]; i += n
        else: raise ValueError(f"wire type {kind}")
def spans(body):
    return sum(1 for f, rs in fields(body) if f == 1 for g, ss in fields(rs) if g == 2 for h, _ in fields(ss) if h == 2)
received = 0
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global received
        received += spans(self.rfile.read(int(self.headers.get("content-length", 0))))
        open(sys.argv[2], "w").write(str(received))
        self.send_response(200); self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
