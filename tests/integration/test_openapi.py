# SPDX-License-Identifier: Apache-2.0
"""The API contract, docs/openapi.yaml (OpenAPI 3.1):

- it describes exactly the routes demsd serves: every route of `demsd
  routes` is an operation of the document and every operation is a route
  (method and path template; parameter names may differ, and a `head`
  operation stands for the GET route that serves HEAD), with the same roles
  (`x-dems-roles`);
- it is a well-formed OpenAPI 3.1 document as far as can be checked offline
  with Debian's python3-jsonschema: no OpenAPI metaschema is packaged, so
  the structure is checked here (required members, responses with
  descriptions, path parameters declared, every `$ref` resolving, the
  security schemes used being defined) and every schema in it is checked
  against the JSON Schema Draft 2020-12 metaschema (the dialect of OpenAPI
  3.1);
- GET /v1/openapi.json serves the same document as JSON, to anyone, with an
  ETag.

Every other integration test validates the answers it receives against the
document (tests/integration/contract.py, called by harness.Server.request).
"""
import json
import os
import re
import subprocess

import jsonschema

import contract
from harness import DEMSD, Server, run_tests

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def norm(template):
    return re.sub(r"\{[^}/]*\}", "{}", template)


def operations(doc):
    """{(METHOD, normalised path): (path, operation)}."""
    ops = {}
    for path, item in doc["paths"].items():
        for m in METHODS:
            if m in item:
                ops[(m.upper(), norm(path))] = (path, item[m])
    return ops


def setup():
    doc = contract.load_document()
    srv = Server().start()
    return {"doc": doc, "srv": srv}


def teardown(c):
    c["srv"].stop()


def test_every_route_is_documented_and_every_operation_is_a_route(c):
    r = subprocess.run([DEMSD, "routes"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    routes = {}
    for line in r.stdout.splitlines():
        route = json.loads(line)
        routes[(route["method"], norm(route["path"]))] = route
    ops = operations(c["doc"])
    missing = sorted(f"{m} {routes[(m, p)]['path']}" for m, p in routes if (m, p) not in ops)
    extra = sorted(f"{m} {ops[(m, p)][0]}" for m, p in ops
                   if (m, p) not in routes and not (m == "HEAD" and ("GET", p) in routes))
    assert not missing, ("routes missing from docs/openapi.yaml (add them): " +
                         ", ".join(missing))
    assert not extra, ("operations in docs/openapi.yaml that demsd does not route: " +
                       ", ".join(extra))
    wrong = []
    for (m, p), (path, op) in ops.items():
        route = routes.get((m, p)) or routes.get(("GET", p))
        if sorted(op.get("x-dems-roles", [])) != sorted(route["roles"]):
            wrong.append(f"{m} {path}: x-dems-roles {op.get('x-dems-roles')}, "
                         f"routes.c {route['roles']}")
    assert not wrong, "roles differ: " + "; ".join(wrong)
    print(f"     {len(routes)} routes, {len(ops)} operations")


def walk(node, at=""):
    """Every (JSON pointer, dict) in the document."""
    if isinstance(node, dict):
        yield at, node
        for k, v in node.items():
            yield from walk(v, at + "/" + str(k).replace("~", "~0").replace("/", "~1"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{at}/{i}")


def schemas(doc):
    """(pointer, schema) for every schema object: components/schemas, and the
    schema of every parameter, header, request body and response."""
    for name, s in doc["components"].get("schemas", {}).items():
        yield f"/components/schemas/{name}", s
    for at, node in walk(doc):
        if "schema" in node and isinstance(node["schema"], dict) and \
                not at.startswith("/components/schemas"):
            yield at + "/schema", node["schema"]


def test_the_document_is_well_formed(c):
    doc = c["doc"]
    problems = []
    assert re.fullmatch(r"3\.1\.\d+", str(doc.get("openapi"))), doc.get("openapi")
    assert doc["info"].get("title") and doc["info"].get("version"), doc["info"]
    for tag in doc.get("tags", []):
        if not tag.get("name") or set(tag) - {"name", "description", "externalDocs"}:
            problems.append(f"tag {tag}")
    schemes = doc["components"].get("securitySchemes", {})
    for s in schemes.values():
        if s["type"] not in ("apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"):
            problems.append(f"security scheme type {s['type']}")
    # Every $ref resolves (they are all local).
    c_ = contract.Contract(doc)
    for at, node in walk(doc):
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                c_.resolve({"$ref": ref})
            except (KeyError, IndexError, TypeError, contract.ContractError):
                problems.append(f"{at}: $ref {ref} does not resolve")
    for path, item in doc["paths"].items():
        if not path.startswith("/"):
            problems.append(f"path {path} does not start with /")
        names = re.findall(r"\{([^}/]+)\}", path)
        if len(names) != len(set(names)):
            problems.append(f"{path}: a parameter name twice")
        shared = [c_.resolve(p) for p in item.get("parameters", [])]
        for m in METHODS:
            if m not in item:
                continue
            op = item[m]
            where = f"{m.upper()} {path}"
            params = shared + [c_.resolve(p) for p in op.get("parameters", [])]
            declared = {p["name"] for p in params if p.get("in") == "path"}
            for p in params:
                if p.get("in") not in ("query", "header", "path", "cookie"):
                    problems.append(f"{where}: parameter {p.get('name')} in {p.get('in')}")
                if p.get("in") == "path" and p.get("required") is not True:
                    problems.append(f"{where}: path parameter {p['name']} not required")
            if declared != set(names):
                problems.append(f"{where}: path parameters {sorted(declared)}, "
                                f"template {sorted(names)}")
            if not op.get("responses"):
                problems.append(f"{where}: no responses")
            for status, resp in op.get("responses", {}).items():
                if not re.fullmatch(r"[1-5](\d\d|XX)|default", status):
                    problems.append(f"{where}: response key {status}")
                if "description" not in c_.resolve(resp):
                    problems.append(f"{where} {status}: no description")
            for sec in op.get("security", doc.get("security", [])):
                for name in sec:
                    if name not in schemes:
                        problems.append(f"{where}: security scheme {name} is not defined")
            if "requestBody" in op and "content" not in c_.resolve(op["requestBody"]):
                problems.append(f"{where}: requestBody without content")
    # Every schema is a valid Draft 2020-12 schema.
    n = 0
    for at, s in schemas(doc):
        n += 1
        try:
            jsonschema.Draft202012Validator.check_schema(s)
        except jsonschema.exceptions.SchemaError as e:
            problems.append(f"{at}: {e.message}")
    assert not problems, "docs/openapi.yaml: " + "; ".join(problems[:30])
    print(f"     {n} schemas checked against the Draft 2020-12 metaschema")
    # The OpenAPI 3.1 metaschema, where a validator that carries it is
    # installed (Debian 12 packages none; pip's openapi-spec-validator does).
    try:
        from openapi_spec_validator import validate
    except ImportError:
        print("     no OpenAPI 3.1 metaschema installed: the structure was checked here")
        return
    validate(doc)
    print("     valid against the OpenAPI 3.1 metaschema (openapi-spec-validator)")


def test_problem_bodies_are_problems(c):
    """Every 4xx/5xx answer with a body is a problem details object, but
    those of an operation marked x-dems-protocol-errors (a protocol that
    fixes its own error bodies: C2SP tlog-witness's POST /add-checkpoint)."""
    doc = c["doc"]
    c_ = contract.Contract(doc)
    bad = []
    for path, item in doc["paths"].items():
        for m in METHODS:
            op = item.get(m, {})
            for status, resp in op.get("responses", {}).items():
                if status[0] not in "45" or op.get("x-dems-protocol-errors"):
                    continue
                for ctype, media in c_.resolve(resp).get("content", {}).items():
                    if ctype != "application/problem+json" or \
                            media.get("schema") != {"$ref": "#/components/schemas/Problem"}:
                        bad.append(f"{m.upper()} {path} {status} {ctype}")
    assert not bad, "errors that are not problem details: " + ", ".join(bad)


def test_served_as_json(c):
    srv = c["srv"]
    st, doc, r = srv.request("GET", "/v1/openapi.json")
    assert st == 200, (st, doc)
    assert r.getheader("Content-Type") == "application/json", r.getheader("Content-Type")
    assert doc == c["doc"], "GET /v1/openapi.json differs from docs/openapi.yaml"
    etag = r.getheader("ETag")
    assert etag and re.fullmatch(r'"[0-9a-f]{64}"', etag), etag
    assert r.getheader("Cache-Control") == "no-cache", r.getheader("Cache-Control")
    st, body, r = srv.request("GET", "/v1/openapi.json", headers={"If-None-Match": etag})
    assert st == 304 and not body, (st, body)
    # Public: a bad token is not even looked at.
    st, _, _ = srv.request("GET", "/v1/openapi.json", token="dems_s_not-a-token")
    assert st == 200, st


def test_the_harness_checks_answers(c):
    """contract.check refuses what breaks the document: an undocumented
    status, a wrong type, a missing member, an undocumented content type."""
    ct = contract.Contract(c["doc"])
    bad = [
        ("GET", "/v1/me", 299, "application/json", b"{}"),
        ("GET", "/v1/me", 200, "application/json", b'{"id": "7"}'),
        ("GET", "/v1/cases?limit=1", 200, "application/json", b'{"cases": []}'),
        ("GET", "/v1/cases/1", 404, "text/html", b"<p>no</p>"),
        ("GET", "/healthz", 200, "application/json", b'{"status": "ok", "x": 1} x'),
        ("GET", "/no/such/route", 200, "application/json", b"{}"),
    ]
    for args in bad:
        try:
            ct.check(*args)
        except contract.ContractError as e:
            assert str(e).startswith(f"{args[0]} "), e
            continue
        raise AssertionError(f"contract.check passed {args}")
    ct.check("GET", "/v1/cases?limit=1", 200, "application/json",
             b'{"cases": [], "next_cursor": null}')
    ct.check("HEAD", "/v1/evidence/" + "0" * 64 + "/content", 200, "video/mp4", b"")


if __name__ == "__main__":
    run_tests(globals(), setup, teardown)
