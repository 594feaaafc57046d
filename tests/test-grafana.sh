#!/bin/bash
# docs/grafana-dashboard.json against what a running server emits:
#  - a server with two disks, some I/O and a scrub; casdisk metrics;
#  - every metric the dashboard queries (panels and template variables)
#    is one the server emits, with a # TYPE line;
#  - rate() and increase() are taken of counters only, and counters are
#    never shown raw;
#  - every label a selector matches on (but instance, which Prometheus
#    adds) is a label of that metric, and each op="..." value is one the
#    server emits;
#  - the JSON is a dashboard Grafana can import: unique panel ids, a data
#    source on each query, a layout within the 24 columns.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd
dash=$top_srcdir/docs/grafana-dashboard.json

st=$tmp/store
start_nbdkit store="$st" size=64M
for _ in $(seq 200); do "$CASDISK" status "$st" >/dev/null 2>&1 && break; sleep 0.1; done
"$CASDISK" disk add "$st" second 16M >/dev/null || fail "disk add"
$PYTHON -c '
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"\1" * (1 << 20), 0); h.pread(4096, 0); h.trim(65536, 0); h.flush()
' "$(uri)" || fail "client I/O"
"$CASDISK" scrub "$st" >/dev/null || fail "scrub"
"$CASDISK" metrics "$st" >"$tmp/metrics" || fail "casdisk metrics"
stop_nbdkit

$PYTHON - "$dash" "$tmp/metrics" <<'PY' || fail "the dashboard does not match the metrics"
import json, re, sys
dash = json.load(open(sys.argv[1]))
types, labels, ops = {}, {}, set()
for line in open(sys.argv[2]):
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        types[name] = kind
    elif line.strip() and not line.startswith("#"):
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ", line)
        assert m, line
        name = m.group(1)
        ls = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        labels.setdefault(name, set()).update(ls)
        if "op" in ls:
            ops.add(ls["op"])
assert set(labels) <= set(types), "samples without # TYPE: %s" % (set(labels) - set(types))

exprs = []
ids = set()
def walk(panels):
    for p in panels:
        assert p["id"] not in ids, "panel id %d twice" % p["id"]
        ids.add(p["id"])
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, "panel %r outside 24 columns" % p["title"]
        for t in p.get("targets", []):
            assert t.get("datasource"), "a query of %r has no data source" % p["title"]
            exprs.append((p["title"], t["expr"]))
        walk(p.get("panels", []))
walk(dash["panels"])
for v in dash["templating"]["list"]:
    if v["type"] == "query":
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        exprs.append(("variable " + v["name"], q))
assert len(exprs) > 20, "only %d queries" % len(exprs)

used = set()
for where, e in exprs:
    for m in re.finditer(r"\b(casdisk_[a-z0-9_]+)\b(\{([^}]*)\})?", e):
        name = m.group(1)
        used.add(name)
        assert name in types, "%s: %s is not a metric casdisk emits" % (where, name)
        for lname, op, val in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', m.group(3) or ""):
            if lname == "instance":
                continue
            assert lname in labels[name], "%s: %s has no label %s" % (where, name, lname)
            if lname == "op" and not val.startswith("$"):
                vals = val.split("|") if op == "=~" else [val]
                assert set(vals) <= ops, "%s: op %s is not one of %s" % (where, val, sorted(ops))
    counted = set(re.findall(r"\b(?:rate|irate|increase)\((casdisk_[a-z0-9_]+)", e))
    for name in counted:
        assert types[name] == "counter", "%s: rate of the gauge %s" % (where, name)
    for name in set(re.findall(r"\b(casdisk_[a-z0-9_]+)", e)) - counted:
        assert types[name] != "counter", "%s: the counter %s shown raw" % (where, name)
print("ok: %d queries, %d metrics used of %d emitted" % (len(exprs), len(used), len(types)))
PY
pass "every metric, label and op the dashboard queries is one casdisk metrics emits; rates of counters only"
