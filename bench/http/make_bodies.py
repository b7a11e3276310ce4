#!/usr/bin/env python3
"""Extract the request bodies bench/http/run.sh sends from the captured Prisma
fixtures (tests/clients/prisma/fixtures), so the benchmark replays exactly what
an unmodified Prisma 7 client sent to the reference server.

    make_bodies.py FIXTURES_DIR OUT_DIR

Writes
  prisma-find-unique.json  User.findUnique by id (all scalar columns), the first
                           exchange of crud__find-unique; params {"%1": __ID__}
  prisma-create.json       User.createOne (name, email, password; the rest
                           defaults, createdAt/updatedAt from now()) from
                           crud__create-minimal; params.%2 (the unique email)
                           becomes "bench-__SEQ__@example.com"
  prisma-find-many.json    User.findMany (id <= 20, ORDER BY id, LIMIT 20: 20 users, all
                           13 columns), built from the findUnique plan's query and
                           result structure (the cache benchmark's body)
  neon-point-select.json   {"query": "SELECT abalance FROM pgbench_accounts
                           WHERE aid = $1", "params": ["__ID__"]}
wrk.lua replaces __ID__ / __SEQ__ per request. Fails loudly if the fixtures no
longer hold the expected exchanges (model, operation, parameter names, 200).
"""
import json
import os
import sys


def pick(fixtures, name, model, operation, param_names):
    with open(os.path.join(fixtures, name + ".json")) as f:
        fixture = json.load(f)
    for ex in fixture["exchanges"]:
        body = ex.get("body") or {}
        if (
            ex["method"] == "POST"
            and ex["path"] == "/query"
            and body.get("model") == model
            and body.get("operation") == operation
            and ex["response"]["status"] == 200
            and sorted(body.get("params", {})) == sorted(param_names)
        ):
            return body
    sys.exit(f"make_bodies.py: no 200 {model}.{operation} with params {param_names} in {name}.json")


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)

    find = pick(fixtures, "crud__find-unique", "User", "findUnique", ["%1"])
    sql = json.dumps(find["plan"])
    assert '"id\\" = ' in sql, "findUnique plan is not by id"
    find["params"]["%1"] = "__ID__"
    text = json.dumps(find, separators=(",", ":")).replace('"__ID__"', "__ID__")
    with open(os.path.join(out, "prisma-find-unique.json"), "w") as f:
        f.write(text)

    query = find["plan"]["args"]["expr"]["args"]
    assert find["plan"]["args"]["expr"]["type"] == "unique" and query["type"] == "query", "findUnique plan shape changed"
    tmpl = json.loads(json.dumps(query["args"]))
    head = tmpl["fragments"][0]["chunk"]
    assert head.endswith('WHERE ("t0"."id" = '), head
    tmpl["fragments"] = [
        {"type": "stringChunk", "chunk": head[: -len("= ")] + "<= "},
        {"type": "parameter"},
        {"type": "stringChunk", "chunk": ' AND 1=1) ORDER BY "t0"."id" ASC LIMIT '},
        {"type": "parameter"},
    ]
    tmpl["args"] = [tmpl["args"][0], "20"]
    many = {
        "model": "User",
        "operation": "findMany",
        "plan": {"type": "dataMap", "args": dict(find["plan"]["args"], expr={"type": "query", "args": tmpl})},
        "params": {"%1": 20},
    }
    with open(os.path.join(out, "prisma-find-many.json"), "w") as f:
        f.write(json.dumps(many, separators=(",", ":")))

    create = pick(fixtures, "crud__create-minimal", "User", "createOne", ["%1", "%2", "%3"])
    assert "INSERT INTO" in json.dumps(create["plan"]), "createOne plan has no INSERT"
    create["params"] = {"%1": "Bench User", "%2": "bench-__SEQ__@example.com", "%3": "secret"}
    with open(os.path.join(out, "prisma-create.json"), "w") as f:
        f.write(json.dumps(create, separators=(",", ":")))

    neon = {"query": "SELECT abalance FROM pgbench_accounts WHERE aid = $1", "params": ["__ID__"]}
    with open(os.path.join(out, "neon-point-select.json"), "w") as f:
        f.write(json.dumps(neon, separators=(",", ":")))


if __name__ == "__main__":
    main()
