"""The JSON API described once, where it is served. Each `/api/` view declares its parameters, request body
and answers with `@described(...)`; the declaration checks the request before the view runs (a bad value
is a 400 naming the parameter) and `document(app)` builds the OpenAPI 3.1 description from the app's URL
map, so a route and its description cannot drift apart, and a route without one is noticed
(`undescribed(app)`).

Schemas are JSON Schema (2020-12, as OpenAPI 3.1 uses it) written with the small helpers below. Requests
are checked against the subset those helpers write (types, enums, bounds, lengths, patterns, required
properties, items); answers are checked against the whole schema by the tests.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from quart import Quart, request
from werkzeug.exceptions import BadRequest

from app.search.numbers import finite_number

Schema = dict[str, Any]
Access = Literal["open", "guest", "user", "admin"]
View = TypeVar("View", bound=Callable[..., Awaitable[Any]])

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
NULL: Schema = {"type": "null"}
ANY: Schema = {}
# a header value as the API shows it: a number, text, a FITS boolean, or COMMENT/HISTORY lines
SCALAR: Schema = {"type": ["string", "number", "boolean"]}
ERROR: Schema = {
    "type": "object", "required": ["error", "status"], "additionalProperties": False,
    "properties": {"error": {"type": "string", "description": "what went wrong, for the person to act on"},
                   "status": {"type": "integer", "description": "the HTTP status, again"}},
}
OPENAPI_PATH = "/api/openapi.json"
# Schemas shown once under components/schemas and referred to by name (`named`).
COMPONENTS: dict[str, Schema] = {"Error": ERROR}
_PATH_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def named(name: str, schema: Schema) -> Schema:
    """`schema` kept under components/schemas as `name`; returns the reference to it."""
    if COMPONENTS.get(name, schema) != schema:
        raise ValueError(f"two schemas are named {name!r}")
    COMPONENTS[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def resolved(schema: Schema) -> Schema:
    """A named schema's own definition (others as they are)."""
    reference = schema.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/components/schemas/"):
        return COMPONENTS[reference.rsplit("/", 1)[-1]]
    return schema


def obj(properties: Mapping[str, Schema], *, optional: Iterable[str] = (), closed: bool = False,
        description: str = "") -> Schema:
    """An object with these properties, all required but the `optional` ones; `closed`: no others."""
    left_out = set(optional)
    schema: Schema = {"type": "object", "properties": dict(properties),
                      "required": [name for name in properties if name not in left_out]}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def array(items: Schema, **bounds: int) -> Schema:
    """A list of `items` (`minItems=`, `maxItems=`)."""
    return {"type": "array", "items": items, **bounds}


def nullable(schema: Schema) -> Schema:
    """`schema` or null."""
    return {"anyOf": [schema, NULL]}


def one_of(*values: str) -> Schema:
    """One of these strings."""
    return {"type": "string", "enum": list(values)}


def mapping(values: Schema) -> Schema:
    """An object whose keys are free and whose values are `values`."""
    return {"type": "object", "additionalProperties": values}


def text(description: str = "", **bounds: Any) -> Schema:
    """A string (`minLength=`, `maxLength=`, `pattern=`)."""
    schema: Schema = {"type": "string", **bounds}
    if description:
        schema["description"] = description
    return schema


def whole(description: str = "", **bounds: int) -> Schema:
    """An integer (`minimum=`, `maximum=`)."""
    schema: Schema = {"type": "integer", **bounds}
    if description:
        schema["description"] = description
    return schema


@dataclass(frozen=True)
class Param:
    """A query or path parameter. Query values arrive as text and are read as the schema's type."""

    name: str
    schema: Schema = field(default_factory=lambda: dict(STRING))
    description: str = ""
    required: bool = False
    where: Literal["query", "path"] = "query"


@dataclass(frozen=True)
class RequestBody:
    """A request body: JSON checked against `schema` when it parses as JSON, or a file (`binary`)."""

    schema: Schema
    description: str = ""
    required: bool = True
    binary: bool = False
    form: bool = False  # the view also takes the same fields as a form


@dataclass(frozen=True)
class Operation:
    """What one view declares: the OpenAPI operation is made from it."""

    summary: str
    description: str
    access: Access
    params: tuple[Param, ...]
    body: RequestBody | None
    answers: dict[int, tuple[str, Schema | None]]
    tag: str


def _common_answers(operation: Operation, method: str) -> dict[int, tuple[str, Schema | None]]:
    """Answers an operation may give whatever it declares (its own declarations win)."""
    common: dict[int, tuple[str, Schema | None]] = {}
    if operation.params or operation.body:
        common[400] = ("a parameter or the body is not valid: `error` says which and why", ERROR)
    refusals = []  # the reasons for a 403
    if operation.access != "open":
        who = {"guest": "guest access is off on this site: log in or send an API token",
               "user": "log in or send an API token",
               "admin": "log in as an administrator or send an administrator's API token"}[operation.access]
        common[401] = (who, ERROR)
        refusals.append("the API token sent is not valid (revoked, mistyped, or its account is disabled)")
    if operation.access == "admin":
        refusals.append("the asker is not an administrator")
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        refusals.append("a browser session sent no CSRF token, the site is in demo mode, or the asker may "
                        "not do this")
    if refusals:
        common[403] = ("; ".join(refusals), ERROR)
    if any(param.where == "path" for param in operation.params):
        common[404] = ("there is no such record, or the asker may not see it (the same answer)", ERROR)
    if operation.body is not None and not operation.body.binary:
        common[413] = ("the body is larger than 1 MB", ERROR)
    return common


def described(summary: str, *, description: str = "", access: Access = "guest",
              params: Iterable[Param] = (), body: RequestBody | None = None,
              answers: Mapping[int, tuple[str, Schema | None]], tag: str = "") -> Callable[[View], View]:
    """Declare an `/api/` view's parameters, body and answers. The request's query parameters (and a JSON
    body) are checked before the view runs: a bad value is a 400 naming it. `access`: who may call it
    (`open`: anyone, even when guest access is off; `guest`: guests too while guest access is on;
    `user`, `admin`)."""
    operation = Operation(summary=summary, description=description, access=access, params=tuple(params),
                          body=body, answers=dict(answers), tag=tag)
    for param in operation.params:
        _check_supported(param.schema)
    if body is not None and not body.binary:
        _check_supported(body.schema)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def checked(*args: Any, **kwargs: Any) -> Any:
            for param in operation.params:
                if param.where == "query":
                    check_query(param)
            if body is not None and not body.binary:
                await _check_body(body)
            return await view(*args, **kwargs)

        checked.__dict__["openapi"] = operation
        return checked  # type: ignore[return-value]

    return decorate


def operation_of(view: Callable[..., Any]) -> Operation | None:
    """The declaration of a view, or None when it has none."""
    found = getattr(view, "openapi", None)
    return found if isinstance(found, Operation) else None


# checking requests --------------------------------------------------------------------------------------
_SUPPORTED = {"type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "properties",
              "required", "additionalProperties", "items", "minItems", "maxItems", "anyOf", "description",
              "format", "examples", "default", "const", "x-message", "$ref"}


def _check_supported(schema: Schema) -> None:
    """Refuse, at import, a request schema using keywords the checker below does not apply."""
    schema = resolved(schema)
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise TypeError(f"request schemas may not use {sorted(unknown)} (not checked)")
    for value in (*schema.get("properties", {}).values(), *schema.get("anyOf", ())):
        _check_supported(value)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _check_supported(schema[key])


async def _check_body(body: RequestBody) -> None:
    """A JSON body must parse (as UTF-8 JSON without NaN or Infinity) and fit the schema; a body that is
    not JSON is refused, except a form sent to a view that also takes forms (it reads the form itself)."""
    if body.form and not request.is_json:
        return
    raw = await request.get_data(as_text=False)
    if not raw.strip():
        return  # no body: the view says what it needs
    try:
        parsed = json.loads(raw, parse_constant=_no_constant)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequest(f"the body is not JSON: {error}") from None
    _check(parsed, body.schema, "the body")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def check_query(param: Param) -> None:
    """The request's values of query parameter `param` read as its schema's type and checked against it:
    a 400 naming the parameter for a bad one. `described` runs it for each parameter of an `/api/` view; a
    page's view calls it for the parameters it takes."""
    # a missing required parameter is left to the view: its message says what the request needs as a whole
    # (e.g. both ra= and dec=)
    values = request.args.getlist(param.name)
    schema = param.schema
    kinds = _types(schema)
    for raw in values:
        value: Any = raw
        if "integer" in kinds or "number" in kinds:
            try:
                value = finite_number(raw, param.name)
            except ValueError as error:
                if "string" not in kinds:
                    raise BadRequest(str(error)) from None
                value = raw
            if "integer" in kinds and "number" not in kinds and isinstance(value, float) \
                    and not value.is_integer():
                if "string" not in kinds:
                    raise BadRequest(f"{param.name} must be a whole number, not {raw!r}")
                value = raw
        elif "boolean" in kinds and raw in ("true", "false"):
            value = raw == "true"
        _check(value, schema, param.name)


def _types(schema: Schema) -> set[str]:
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind or ())
    for option in schema.get("anyOf", ()):
        kinds |= _types(option)
    return kinds


def _type_fits(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return False


_TYPE_WORDS = {"null": "null", "boolean": "true or false", "integer": "a whole number", "number": "a number",
               "string": "text", "array": "a list", "object": "an object"}


def _check(value: Any, schema: Schema, where: str) -> None:
    """Raise BadRequest naming `where` when `value` does not fit `schema` (the subset in _SUPPORTED). A
    schema's `x-message` replaces the message for a value that does not fit it at its own level (its
    properties and items keep theirs)."""
    schema = resolved(schema)
    refusal = _refusal(value, schema, where)
    if refusal:
        raise BadRequest(schema.get("x-message", refusal))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for number, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{number}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                _check(item, properties[name], name)
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], name)


def _refusal(value: Any, schema: Schema, where: str) -> str:
    """Why `value` does not fit `schema` itself (not its properties' or items' schemas); empty if it does."""
    if "anyOf" in schema:
        reasons = []
        for option in schema["anyOf"]:
            try:
                _check(value, option, where)
                break
            except BadRequest as error:
                reasons.append(str(error.description))
        else:
            return reasons[0] if len(reasons) == 1 else " or ".join(reasons)
    if "enum" in schema and value not in schema["enum"]:
        choices = [str(item) for item in schema["enum"]]
        return f"{where} must be one of {', '.join(choices)}"
    if "const" in schema and value != schema["const"]:
        return f"{where} must be {schema['const']!r}"
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_type_fits(value, one) for one in kinds):
            return f"{where} must be {' or '.join(_TYPE_WORDS[one] for one in kinds)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} must be {schema['minimum']} or more"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be {schema['maximum']} or less"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} must have at least {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} may have at most {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{where} is not of the form {schema['pattern']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{where} must have at least {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} may have at most {schema['maxItems']} items"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{where} needs {name!r}"
        if schema.get("additionalProperties") is False:
            for name in value:
                if name not in schema.get("properties", {}):
                    return f"{where} has an unknown field {name!r}"
    return ""


# the document -------------------------------------------------------------------------------------------
def api_rules(app: Quart) -> list[tuple[str, str, str]]:
    """Every `/api/` route of the app as (OpenAPI path, method, endpoint), in URL-map order."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((_PATH_ARGUMENT.sub(r"{\1}", rule.rule), method, rule.endpoint))
    return found


def undescribed(app: Quart) -> list[str]:
    """The `/api/` routes that declare nothing (`METHOD path`): each one should."""
    return [f"{method} {path}" for path, method, endpoint in api_rules(app)
            if operation_of(app.view_functions[endpoint]) is None]


def document(app: Quart, *, title: str = "ImageX", version: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 description of every described `/api/` route of `app`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    from app.identity import SESSION_COOKIE

    if not version:
        try:
            version = package_version("imagex")
        except PackageNotFoundError:
            version = "0"
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for path, method, endpoint in api_rules(app):
        operation = operation_of(app.view_functions[endpoint])
        if operation is None:
            continue
        tag = operation.tag or path.split("/")[2]
        tags[tag] = None
        paths.setdefault(path, {})[method.lower()] = _operation(operation, method, endpoint, tag)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{title} JSON API", "version": version,
                 "description": "Images, search, uploads, ingest jobs, accounts and the search form of an "
                                "ImageX archive. Errors are `{\"error\": ..., \"status\": ...}` with the "
                                "matching HTTP status."},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a personal API token (`ix_...`), made on the account page or "
                                          "with `POST /api/tokens`"},
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                            "description": "the browser session of a logged-in user (state-changing "
                                           "requests also need the page's X-CSRF-Token header)"},
            },
            "schemas": dict(sorted(COMPONENTS.items())),
        },
    }


def _operation(operation: Operation, method: str, endpoint: str, tag: str) -> dict[str, Any]:
    answers = _common_answers(operation, method)
    for status, (description, schema) in operation.answers.items():
        if status in answers and answers[status][1] is ERROR and schema is ERROR:
            description = f"{description}; or {answers[status][0]}"
        answers[status] = (description, schema)
    described_op: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "summary": operation.summary,
        "tags": [tag],
        "x-access": operation.access,  # open, guest, user or admin: who may call it
        "parameters": [_parameter(param) for param in operation.params],
        "responses": {str(status): _answer(*answers[status]) for status in sorted(answers)},
    }
    if operation.description:
        described_op["description"] = operation.description
    if operation.access == "open":
        described_op["security"] = [{}]
    elif operation.access == "guest":
        described_op["security"] = [{}, {"bearer": []}, {"session": []}]
    else:
        described_op["security"] = [{"bearer": []}, {"session": []}]
    if operation.body is not None:
        media = ("application/octet-stream" if operation.body.binary else "application/json")
        content = {"schema": operation.body.schema}
        described_op["requestBody"] = {"required": operation.body.required, "content": {media: content}}
        if operation.body.description:
            described_op["requestBody"]["description"] = operation.body.description
    return described_op


def _parameter(param: Param) -> dict[str, Any]:
    described_param: dict[str, Any] = {"name": param.name, "in": param.where,
                                       "required": param.required or param.where == "path",
                                       "schema": param.schema}
    if param.description:
        described_param["description"] = param.description
    return described_param


def _answer(description: str, schema: Schema | None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    if schema is ERROR:
        schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}
