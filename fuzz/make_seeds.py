#!/usr/bin/env python3
"""Writes the hand-built seed corpus (fuzz/corpus/<target>/seed-*). Run from anywhere:
    python3 fuzz/make_seeds.py
Every seed is a valid message sequence (or, for masking, text with one thing of each kind);
libFuzzer's own finds go beside them under sha1 names and are git-ignored."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def i16(n): return struct.pack(">h", n)
def i32(n): return struct.pack(">i", n)
def cstr(s): return (s.encode() if isinstance(s, str) else s) + b"\0"
def msg(tag, body): return tag + i32(len(body) + 4) + body


def startup(**params):
    body = i32(196608) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return i32(len(body) + 4) + body


SSL = i32(8) + i32(80877103)
GSSENC = i32(8) + i32(80877104)
CANCEL = i32(16) + i32(80877102) + i32(4242) + i32(0x5eed)
HELLO = startup(user="alice", database="app", application_name="psql")


def bind(portal, stmt, params, result_formats, param_formats=()):
    body = cstr(portal) + cstr(stmt) + i16(len(param_formats))
    body += b"".join(i16(f) for f in param_formats)
    body += i16(len(params))
    for p in params:
        body += i32(-1) if p is None else i32(len(p)) + p
    body += i16(len(result_formats)) + b"".join(i16(f) for f in result_formats)
    return msg(b"B", body)


frontend = {
    "seed-simple-query": HELLO + msg(b"Q", cstr("SELECT 1")) + msg(b"X", b""),
    "seed-ssl-then-extended": SSL + HELLO
    + msg(b"P", cstr("s1") + cstr("SELECT * FROM users WHERE id = $1") + i16(1) + i32(23))
    + bind("p1", "s1", [b"42"], [0, 1], [0])
    + msg(b"D", b"P" + cstr("p1"))
    + msg(b"E", cstr("p1") + i32(0))
    + msg(b"C", b"S" + cstr("s1"))
    + msg(b"S", b""),
    "seed-gssenc-multi": GSSENC + startup(user="bob")
    + msg(b"Q", cstr("BEGIN; UPDATE t SET a = 1; COMMIT"))
    + bind("", "", [None, b"x"], [1]) + msg(b"E", cstr("") + i32(100)) + msg(b"S", b""),
    "seed-cancel": CANCEL,
    "seed-password": startup(user="carol", database="db")
    + msg(b"p", cstr("md5" + "0" * 32)) + msg(b"Q", cstr("SHOW server_version")),
}


def row_description(cols):
    body = i16(len(cols))
    for name, table_oid, attnum, type_oid, fmt in cols:
        body += cstr(name) + i32(table_oid) + i16(attnum) + i32(type_oid) + i16(-1) + i32(-1) + i16(fmt)
    return msg(b"T", body)


def data_row(values):
    body = i16(len(values))
    for v in values:
        body += i32(-1) if v is None else i32(len(v)) + v
    return msg(b"D", body)


def error(tag, code, text):
    body = b"S" + cstr("ERROR") + b"V" + cstr("ERROR") + b"C" + cstr(code) + b"M" + cstr(text) + b"\0"
    return msg(tag, body)


READY = msg(b"Z", b"I")
backend = {
    "seed-auth-ok": msg(b"R", i32(0)) + msg(b"S", cstr("server_version") + cstr("15.8"))
    + msg(b"K", i32(4242) + i32(0x5eed)) + READY,
    "seed-select": row_description([("id", 16384, 1, 23, 0), ("email", 16384, 2, 25, 0)])
    + data_row([b"1", b"alice@example.com"]) + data_row([b"2", None])
    + msg(b"C", cstr("SELECT 2")) + READY,
    "seed-errors": error(b"N", "01000", "notice")
    + error(b"E", "42501", "permission denied for table users") + READY,
    "seed-sasl": msg(b"R", i32(10) + cstr("SCRAM-SHA-256") + b"\0")
    + msg(b"R", i32(11) + b"r=abc,s=c2FsdA==,i=4096")
    + msg(b"R", i32(12) + b"v=c2lnbmF0dXJl") + msg(b"R", i32(0)),
    "seed-binary-row": row_description([("n", 0, 0, 20, 1)])
    + data_row([struct.pack(">q", 7)]) + msg(b"C", cstr("SELECT 1")),
}

masking = {
    "seed-card": b"paid with 4111 1111 1111 1111 and 5500-0000-0000-0004",
    "seed-email": b"contact: alice@example.com, bob.smith+x@mail.example.org",
    "seed-ssn": b"SSN 123-45-6789 / 078 05 1120",
    "seed-phone": b"call (555) 123-4567 or 1-555-123-4567 or +44 20 7946 0958",
    "seed-iban": b"IBAN DE89 3704 0044 0532 0130 00 / GB82WEST12345698765432",
    "seed-secrets": b"AKIAIOSFODNN7EXAMPLE ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa "
    b"sk_live_abcdefghijklmnopqrstuvwx xoxb-123456789012-abcdefghij "
    b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
    "seed-pem": b"key: -----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    "seed-plain": b"order 12345 shipped on 2024-01-02 to room 101",
}

# masking_values: the first byte picks the shape (see fuzz_targets/masking_values.rs).
masking_values = {
    "seed-array": b"\x00" + b'{ada@example.com,NULL,"a \\"b\\" c",{x},"4111 1111 1111 1111"}',
    "seed-array-2d": b"\x00" + b"[0:1][1:2]={{ada@example.com,x},{y,NULL}}",
    "seed-record": b"\x01" + b'(1,Ada,"ada@example.com","(555) 123-4567",,"{""x@y.co""}")',
    "seed-json": b"\x02" + b'{"email": "ada@example.com", "name": "Ada", "n": [4111111111111111, "\\u0061@b.co"]}',
    "seed-hstore": b"\x03" + b'"email"=>"ada@example.com", name=>Ada, "n"=>NULL',
    "seed-unknown": b"\x04" + b'(7,"{bob@example.org}",4.111111111111111e+15)',
    "seed-array-of-records": b"\x05" + b'{"(home,ada@example.com)","(work,)"}',
    "seed-number": b"\x06" + b"4111111111111111.00",
}

# SQL texts that lex in odd ways: dollar quotes with tags of any bytes, doubled quotes,
# backslashes (read both ways), U& escapes, nested comments, bodies.
sql = {
    "seed-dollar-tag": "select $€$ --$€$ ; drop table t".encode(),
    "seed-doubled-quotes": b"select 'a'' ; delete from t where id = ''3'' ; select ''b', 1",
    "seed-backslash": b"select 'a\\'' ; drop table t; -- '",
    "seed-unicode": b"select U&\"pg!005fread_file\" UESCAPE '!' ('x'), U&'\\0041', E'\\x41'",
    "seed-comments": b"/* a /* nested */ b */ select 1 -- tail\n; select $$;$$",
    "seed-functional": b"select ('PG_VERSION'::text).pg_read_file, (pid).pg_terminate_backend from pg_stat_activity",
    "seed-merge": b"merge into t using s on true when matched then delete",
    "seed-prepare": b"prepare p as delete from t where id = $1; execute p(1); deallocate p",
    "seed-do": b"do $x$ begin execute $y$ drop table t $y$; perform pg_sleep(1); end $x$",
    "seed-copy": b"copy (select * from t) to stdout with (format binary); copy t from program 'x'",
}
sql_cache_key = {
    "seed-collision": b"select 'a'' ; delete from t where id = ''3'' ; select ''b', 1"
    + b"\xff" + b"select 'a' ; delete from t where id = '3' ; select 'b', 1",
    "seed-numbers": b"delete from t where 1 = 2\xffdelete from t where 1 = 1",
    "seed-same": b"select 1 /* x */ + 2\xffselect 3 -- y\n+ 4",
}
plpgsql = {
    "seed-block": b"declare x int := 1; c cursor for select 1; begin perform pg_read_file('x'); "
    b"x := nextval('s'); if x > 1 then delete from t; end if; execute 'drop table t'; "
    b"for r in select 1 loop null; end loop; end",
    "seed-dynamic": b"begin execute 'dr' || 'op table t'; open c for execute q; end",
    "seed-trigger": b"begin new.a := 1; return new; end;",
}

shell_line = {
    "seed-wrappers": b"env -u X -S 'timeout -s KILL 60 nice -n 5 rm -rf /' 2>&1 </dev/null",
    "seed-sudo": b"sudo -u root -D / FOO=1 exec -a x rm --recur --forc ~/",
    "seed-compound": b"f() { if true; then for x in $(ls); do case $x in a) rm -rf $x;; esac; done; fi; }; f",
    "seed-subst": b"echo \"$(cat <(id) >(wc) <<< `whoami`)\" ${x:-$(id)} $((1+$(id)))",
    "seed-heredoc": b"bash <<'EOF'\nrm -rf /\nEOF\ncat <<X\n$(id)\nX\n",
    "seed-quotes": b"$'\\x72m' r\\m 'r''m' {rm,-rf,/} /???/r? \"$X\" $Y",
    "seed-code": b"sh -c \"bash -c 'eval rm -rf /'\"; su -c id; watch -n1 'ls'; xargs -I{} sh -c {}",
    "seed-find": b"find / -name '*.o' -exec rm -f {} + -o -execdir sh -c 'id' \\;",
    "seed-pipes": b"curl -s u | tee f | sudo bash -s -- x || wget -qO- u | python3 - & disown",
    "seed-scp": b"scp -v -r -p -d -t -- /tmp/dir",
    "seed-arith": b"(( x = a[$(id)] )) && [[ $y -eq 1 ]] && echo ${!z} ${w@P} ${a[$i]}",
}

for target, seeds in (
    ("pg_frontend", frontend),
    ("pg_backend", backend),
    ("masking", masking),
    ("masking_values", masking_values),
    ("sql_analyze", sql),
    ("sql_cache_key", sql_cache_key),
    ("sql_plpgsql", plpgsql),
    ("shell_line", shell_line),
):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
