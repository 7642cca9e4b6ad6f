#!/usr/bin/env python3
"""Open N idle PostgreSQL sessions and hold them.

usage: idle_sessions.py HOST PORT USER PASSWORD DATABASE N

Each session does the v3 startup and password login (cleartext, MD5 or SCRAM-SHA-256) and
waits for ReadyForQuery, then sits idle. Prints "ready N" on stdout once every session is
logged in, then holds them until SIGTERM or SIGINT (then sends Terminate on each). Exits 1 with a
message if a session cannot log in.
"""

import base64
import hashlib
import hmac
import os
import signal
import socket
import struct
import sys


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed the connection")
        buf += chunk
    return buf


def read_msg(s):
    head = recv_exact(s, 5)
    tag, length = head[:1], struct.unpack("!i", head[1:])[0]
    return tag, recv_exact(s, length - 4)


def send_msg(s, tag, body):
    s.sendall(tag + struct.pack("!i", len(body) + 4) + body)


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '?')}"


def scram(s, user, password, mechanisms):
    if "SCRAM-SHA-256" not in mechanisms:
        raise RuntimeError(f"unsupported SASL mechanisms {mechanisms}")
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    body = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
    send_msg(s, b"p", body)
    tag, body = read_msg(s)
    if tag == b"E":
        raise RuntimeError(error_text(body))
    server_first = body[4:].decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salt = base64.b64decode(attrs["s"])
    iters = int(attrs["i"])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{server_first},{final_bare}".encode()
    sig = hmac.new(stored_key, auth_msg, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    final = f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
    send_msg(s, b"p", final)


def login(host, port, user, password, database):
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0"
    params += b"application_name\0hoop-bench-idle\0\0"
    body = struct.pack("!i", 196608) + params
    s.sendall(struct.pack("!i", len(body) + 4) + body)
    while True:
        tag, body = read_msg(s)
        if tag == b"E":
            raise RuntimeError(error_text(body))
        if tag == b"R":
            code = struct.unpack("!i", body[:4])[0]
            if code == 0:
                continue
            if code == 3:
                send_msg(s, b"p", password.encode() + b"\0")
            elif code == 5:
                salt = body[4:8]
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
                outer = hashlib.md5(inner + salt).hexdigest()
                send_msg(s, b"p", b"md5" + outer.encode() + b"\0")
            elif code == 10:
                mechs = [m.decode() for m in body[4:].split(b"\0") if m]
                scram(s, user, password, mechs)
            elif code in (11, 12):
                continue  # SASLContinue handled inside scram(); SASLFinal needs nothing
            else:
                raise RuntimeError(f"unsupported authentication request {code}")
        elif tag == b"Z":
            s.settimeout(None)
            return s
        # ParameterStatus, BackendKeyData, NoticeResponse: ignore


def on_term(*_):
    raise KeyboardInterrupt


def main():
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    host, port, user, password, database, n = sys.argv[1:]
    signal.signal(signal.SIGTERM, on_term)
    sessions = []
    try:
        for i in range(int(n)):
            sessions.append(login(host, int(port), user, password, database))
    except Exception as e:  # noqa: BLE001 - report any failure plainly
        print(f"idle_sessions: session {len(sessions) + 1} failed: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ready {len(sessions)}", flush=True)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    for s in sessions:
        try:
            send_msg(s, b"X", b"")
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
