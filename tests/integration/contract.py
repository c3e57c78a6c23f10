# SPDX-License-Identifier: Apache-2.0
"""The API contract (docs/openapi.yaml) as the integration tests see it.

harness.Server.request hands every answer it receives to check(): the
request's path is matched against the document's path templates, the
operation's response for the status (or its "default") is taken, and a JSON
body is validated against that response's schema with jsonschema
(Draft 2020-12, the dialect of OpenAPI 3.1; "#/components/..." references
resolved over the whole document). A status the operation does not list,
a body where the response has none, or a content type it does not list is
a violation too. A violation raises ContractError (an AssertionError), so
the test making the request fails with the route, the status, the schema
path and jsonschema's message.

The document is loaded and its validators built once per process, lazily.
DEMS_CONTRACT=off turns the checks off (for debugging a test by hand);
DEMS_CONTRACT_RECORD=FILE appends every answer checked (method, path,
status, content type, body) to FILE as JSON lines, for working on the
document offline.
"""
import http.client
import json
import os
import re
import sys

DOC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                        "openapi.yaml")
BASE = "urn:dems:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
JSON_TYPES = re.compile(r"^application/(?:[a-z0-9.+-]*\+)?json$")


class ContractError(AssertionError):
    pass


def load_document(path=DOC_PATH):
    import yaml
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def template_regex(template, rest=None):
    """A path template's regex: each {name} is one non-empty segment, as the
    router matches (server/http/router.c), except the parameter the path
    item names in x-dems-rest-of-path (the router's {name*}), which takes the
    rest of the path, slashes included."""
    parts = re.split(r"(\{[^}/]+\})", template)
    rx = "".join((".+" if p == "{%s}" % rest else "[^/]+") if p.startswith("{") else re.escape(p)
                 for p in parts)
    return re.compile("^" + rx + "$")


def pointer(*parts):
    return "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    def __init__(self, doc):
        self.doc = doc
        # Literal templates before templated ones: the most specific wins.
        paths = sorted(doc.get("paths", {}).items(),
                       key=lambda kv: (-len(re.sub(r"\{[^}]*\}", "", kv[0])), kv[0]))
        self.paths = [(template_regex(t, item.get("x-dems-rest-of-path")), t, item)
                      for t, item in paths]
        self.validators = {}
        self._make = self._validator_factory()

    def _validator_factory(self):
        import jsonschema
        cls = jsonschema.Draft202012Validator
        try:  # jsonschema >= 4.18 (pip); Debian 12 has 4.10, with RefResolver only
            from referencing import Registry, Resource
            from referencing.jsonschema import DRAFT202012
            registry = Registry().with_resource(
                BASE, Resource.from_contents(self.doc, default_specification=DRAFT202012))
            return lambda schema: cls(schema, registry=registry)
        except ImportError:
            resolver = jsonschema.RefResolver(BASE, self.doc, store={BASE: self.doc})
            return lambda schema: cls(schema, resolver=resolver)

    def resolve(self, obj):
        """Follows a local $ref (components/responses and the like)."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj and seen < 10:
            ref = obj["$ref"]
            if not ref.startswith("#/"):
                raise ContractError(f"unsupported reference {ref}")
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj, seen = node, seen + 1
        return obj

    def match(self, path):
        """(template, path item) for a request path, or (None, None)."""
        for rx, template, item in self.paths:
            if rx.match(path):
                return template, item
        return None, None

    def validator(self, ptr):
        v = self.validators.get(ptr)
        if v is None:
            v = self.validators[ptr] = self._make({"$ref": BASE + "#" + ptr})
        return v

    def check(self, method, target, status, content_type, body):
        """Raises ContractError when the answer breaks the document."""
        path = target.split("?", 1)[0]
        template, item = self.match(path)
        where = f"{method} {path} -> {status}"
        if item is None or (method.lower() not in item and
                            not (method == "HEAD" and "get" in item)):
            # Answered by the router before any route: a problem, always.
            if status < 400:
                raise ContractError(f"{where}: no operation in docs/openapi.yaml for this request")
            if method != "HEAD" and (body or (body is None and content_type)):
                self.check_body(where, "/components/schemas/Problem", body, content_type,
                                {"application/problem+json"})
            return
        m = method.lower()
        if m == "head" and "head" not in item:
            m = "get"
        op = item[m]
        where = f"{method} {template} -> {status}"
        responses = op.get("responses", {})
        key = str(status)
        if key not in responses:
            key = f"{key[0]}XX" if f"{key[0]}XX" in responses else "default"
        if key not in responses:
            raise ContractError(f"{where}: status {status} is not documented for "
                                f"{m.upper()} {template} (documented: {', '.join(responses)})")
        resp = self.resolve(responses[key])
        if method == "HEAD" or body == b"":
            return
        content = resp.get("content")
        if body is None:  # the caller reads the body: its type is checked, when both say one
            if not content or not content_type:
                return
            body = b""
        elif not content:
            raise ContractError(f"{where}: a body ({content_type}, {len(body)} bytes) where the "
                                f"document says there is none")
        ctype = (content_type or "").split(";", 1)[0].strip().lower()
        media = None
        for name in content:
            n = name.lower()
            if n == ctype or n == "*/*" or (n.endswith("/*") and ctype.startswith(n[:-1])):
                media = name
                if n == ctype:
                    break
        if media is None:
            raise ContractError(f"{where}: content type {content_type!r} is not documented "
                                f"(documented: {', '.join(content)})")
        if not body or not JSON_TYPES.match(ctype) or "schema" not in content[media]:
            return
        if "$ref" in responses[key]:
            ptr = self.resolve_pointer(responses[key]["$ref"]) + "/" + pointer("content", media,
                                                                                 "schema")
        else:
            ptr = "/" + pointer("paths", template, m, "responses", key, "content", media,
                                "schema")
        self.check_body(where, ptr, body, content_type, None)

    def resolve_pointer(self, ref):
        """The JSON pointer a chain of local references ends at."""
        ptr = ref[1:]
        while True:
            node = self.doc
            for part in ptr[1:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            if not (isinstance(node, dict) and "$ref" in node):
                return ptr
            ptr = node["$ref"][1:]

    def check_body(self, where, ptr, body, content_type, types):
        ctype = (content_type or "").split(";", 1)[0].strip().lower()
        if types is not None and ctype not in types:
            raise ContractError(f"{where}: content type {content_type!r}, expected "
                                f"{' or '.join(sorted(types))}")
        if body is None:
            return
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise ContractError(f"{where}: the body is not JSON ({e})") from None
        v = self.validator(ptr)
        errors = sorted(v.iter_errors(doc), key=lambda e: (len(e.path), list(e.path)))
        if errors:
            import jsonschema.exceptions
            e = jsonschema.exceptions.best_match(errors)
            at = "/" + "/".join(str(p) for p in e.absolute_path)
            schema_at = "/".join(str(p) for p in e.absolute_schema_path)
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise ContractError(f"{where}: body at {at}: {e.message} [schema {ptr} .. "
                                f"{schema_at}]{more}")


_CONTRACT = None
_MODE = os.environ.get("DEMS_CONTRACT", "on")
_RECORD = os.environ.get("DEMS_CONTRACT_RECORD")


def contract():
    global _CONTRACT
    if _CONTRACT is None:
        _CONTRACT = Contract(load_document())
    return _CONTRACT


def check(method, target, req_headers, status, resp_headers, body):
    """Checks one answer (harness.Server.request). req_headers: the request's
    headers as sent (X-HTTP-Method-Override is honoured for POST, as demsd
    does); resp_headers: an http.client message; body: the raw bytes, or
    None when the caller reads them itself (then the status and content
    type are checked, not the body)."""
    override = {k.lower(): v for k, v in (req_headers or {}).items()}.get(
        "x-http-method-override")
    if method == "POST" and override:
        method = override.upper()
    ctype = resp_headers.get("Content-Type") if resp_headers is not None else None
    if _RECORD and body is not None:
        rec = {"method": method, "path": target, "status": status, "type": ctype,
               "test": os.path.basename(sys.argv[0])}
        if body and ctype and "json" in ctype and len(body) < (1 << 20):
            rec["body"] = body.decode("utf-8", "replace")
        elif body:
            rec["bytes"] = len(body)
        with open(_RECORD, "a") as f:
            f.write(json.dumps(rec) + "\n")
    if _MODE == "off":
        return
    contract().check(method, target, status, ctype, body)


class CheckedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPSConnection whose every response's status (and content type)
    is checked against the document as it arrives (harness.Server.conn):
    for tests that read the answer themselves, streamed or in pieces."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._sent = []  # [method, target, {override}] per request not yet answered

    def putrequest(self, method, url, *args, **kw):
        self._sent.append([method, url, {}])
        return super().putrequest(method, url, *args, **kw)

    def putheader(self, header, *values):
        if self._sent and str(header).lower() == "x-http-method-override" and values:
            v = values[0]
            self._sent[-1][2]["X-HTTP-Method-Override"] = v.decode() if isinstance(v, bytes) else v
        return super().putheader(header, *values)

    def getresponse(self):
        r = super().getresponse()
        if self._sent:
            method, url, h = self._sent.pop(0)
            check(method, url, h, r.status, r.headers, None)
        return r
