"""The document as one HTML page, rendered on the server: no script, no dependency.

Operations by tag (method, path, role, parameters, body, example, answers), then every
schema as a table of its fields with their types and limits, then the problem types."""

from __future__ import annotations

import functools
import json
from html import escape
from typing import Any

from api.openapi import document, problems
from engine.limits import Limits

LIMIT_KEYS = (
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "maxProperties", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const", "default",
)  # fmt: skip
STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:2px solid #ddd;padding-top:1rem}h3{margin-bottom:.2rem}
code,pre{font:13px ui-monospace,monospace;background:#f5f5f5}pre{padding:.6rem;overflow:auto}
table{border-collapse:collapse;margin:.4rem 0 1rem}td,th{border:1px solid #ddd;padding:.2rem .5rem;
text-align:left;vertical-align:top}.m{font-weight:bold;text-transform:uppercase;padding:.1rem .4rem;
border-radius:3px;color:#fff;background:#555}.get{background:#2a7}.post{background:#27c}
.put{background:#c82}.delete{background:#c33}.patch{background:#85c}.op{margin:1.2rem 0}
nav a{margin-right:.8rem}
"""


@functools.cache
def render(bounds: Limits) -> str:
    doc = document.build(bounds)
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    nav = " ".join(f'<a href="#tag-{_id(t)}">{escape(t)}</a>' for t in by_tag)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>{escape(doc['info']['title'])} API</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(doc['info']['title'])} API</h1><p>{escape(doc['info']['summary'])}</p>",
        "<p>The machine-readable document: <a href='/openapi.json'>/openapi.json</a> "
        f"(OpenAPI {escape(doc['openapi'])}).</p>",
        f"<nav>{nav} <a href='#schemas'>schemas</a> <a href='#problems'>problems</a></nav>",
    ]
    for tag, ops in by_tag.items():
        parts.append(f"<h2 id='tag-{_id(tag)}'>{escape(tag)}</h2>")
        parts += [_operation(path, method, op) for path, method, op in ops]
    parts.append("<h2 id=schemas>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(_schema(name, schema))
    parts.append(_problems())
    parts.append("</body></html>")
    return "\n".join(parts)


def _id(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    out = [
        f"<div class=op id='{_id(op['operationId'])}'>",
        f"<h3><span class='m {method}'>{method}</span> <code>{escape(path)}</code></h3>",
        f"<p>{escape(op['summary'])}. {escape(op.get('description', ''))}</p>",
    ]
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td><td>{_limits(p['schema'])}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in params
        )
        out.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>type, limits</th>"
            f"<th></th></tr>{rows}</table>"
        )
    body = op.get("requestBody")
    if body:
        for media, content in body["content"].items():
            out.append(f"<p>Body <code>{escape(media)}</code>: {_type(content['schema'])}. ")
            out.append(f"{escape(body.get('description', ''))}</p>")
            if "example" in content:
                out.append(f"<pre>{escape(json.dumps(content['example'], indent=2))}</pre>")
    answers = op["responses"]
    rows = "".join(
        f"<tr><td>{escape(status)}</td><td>{_answer(answer)}</td></tr>"
        for status, answer in answers.items()
        if "$ref" not in answer
    )
    refs = [status for status, answer in answers.items() if "$ref" in answer]
    if refs:
        rows += (
            f"<tr><td>{escape(', '.join(refs))}</td><td><a href='#problems'>problem+json</a>"
            "</td></tr>"
        )
    out.append(f"<table><tr><th>status</th><th>answer</th></tr>{rows}</table></div>")
    return "".join(out)


def _answer(answer: dict[str, Any]) -> str:
    shown = escape(answer.get("description", ""))
    for media, content in answer.get("content", {}).items():
        shown += f" <code>{escape(media)}</code> {_type(content.get('schema', {}))}"
    return shown


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: a link to a component, or its type."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"<a href='#schema-{_id(name)}'>{escape(name)}</a>"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "allOf" in schema:
        return " and ".join(_type(s) for s in schema["allOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if isinstance(kind, list):
        return " or ".join(escape(str(k)) for k in kind)
    if "enum" in schema and "type" not in schema:
        return "one of " + ", ".join(
            f"<code>{escape(json.dumps(v))}</code>" for v in schema["enum"]
        )
    return escape(str(kind))


def _limits(schema: dict[str, Any]) -> str:
    shown = [_type(schema)]
    branches = schema.get("anyOf", [schema])
    for branch in branches:
        for key in LIMIT_KEYS:
            if key in branch:
                shown.append(f"{key} <code>{escape(json.dumps(branch[key]))}</code>")
    return "; ".join(shown)


def _schema(name: str, schema: dict[str, Any]) -> str:
    out = [f"<h3 id='schema-{_id(name)}'>{escape(name)}</h3>"]
    if schema.get("description"):
        out.append(f"<p>{escape(schema['description'])}</p>")
    props = schema.get("properties")
    if not props:
        out.append(f"<p>{_limits(schema)}</p>")
        return "".join(out)
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(field)}</code></td><td>{'yes' if field in required else ''}"
        f"</td><td>{_limits(prop)}</td><td>{escape(prop.get('description', ''))}</td></tr>"
        for field, prop in props.items()
    )
    closed = " Unknown fields are refused." if schema.get("additionalProperties") is False else ""
    out.append(
        f"<table><tr><th>field</th><th>required</th><th>type, limits</th><th></th></tr>{rows}"
        f"</table><p>{closed}</p>"
    )
    return "".join(out)


def _problems() -> str:
    rows = "".join(
        f"<tr><td><code>{escape(k.uri)}</code></td><td>{k.status}</td><td>{escape(k.title)}</td>"
        f"<td>{escape(k.description)}</td></tr>"
        for k in problems.problem_types()
    )
    return (
        "<h2 id=problems>Problem types</h2><p>Every error of the <code>/v1</code> routes is "
        "<code>application/problem+json</code> (RFC 9457): <code>type</code>, "
        "<code>title</code>, <code>status</code>, <code>detail</code>, and <code>field</code> "
        "naming the input at fault. The Personalizer routes answer in Personalizer's shape.</p>"
        "<table><tr><th>type</th><th>status</th><th>title</th><th>meaning</th></tr>"
        f"{rows}</table>"
    )
