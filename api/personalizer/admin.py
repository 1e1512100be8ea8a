"""The policy, model and logs routes of a loop.

- GET/PUT/DELETE /configurations/policy: the VW arguments of the loop's model
  (api.personalizer.policy); a PUT or DELETE is a new catalog version, and a model of new
  settings starts empty, as Personalizer's did.
- GET /model: the loop's model as this process serves it, a zip of the model's bytes and
  `loopwise.json` (its settings key, examples learned, sha256); `signed` is accepted and
  changes nothing (Loopwise does not sign models). PUT /model loads such a zip back, refused
  when its settings differ from the loop's or its sha256 does not match. DELETE /model
  starts the model anew. These three act on the API process that receives them: each
  process's model is a view of the training log (docs/decisions/model-replica.md), so with
  several processes send them to each (as catalogs are, in v1).
- GET /model/properties: when the model was started (created, imported or reset) and when
  its settings last changed; GET /v1/models/{loop} says what it has learned.
- DELETE /logs is refused: the logs are Kafka topics shared by every catalog, kept by
  their retention. GET /logs/properties answers the window an evaluation could read.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api import bodies, requests
from api.personalizer import extras, policy
from api.personalizer.bodies import PolicyContract
from api.personalizer.configuration import iso
from api.personalizer.dialects import Dialect, loop_name
from api.personalizer.errors import PersonalizerError
from api.personalizer.loops import default_learning, join_settings, loop
from api.serving.replica import Model
from api.serving.state import State, of
from engine.catalog import Catalog
from engine.errors import CorruptCheckpoint, InvalidInput
from policies.registry import build, model_key

MAX_MODEL_BYTES = 64 * 1024 * 1024
FORMAT = "loopwise-model/1"
DEFAULT_POLICY_NAME = "Loopwise default"


# -- policy --------------------------------------------------------------------------


def _policy(st: State, catalog: Catalog) -> dict[str, str]:
    name = extras.read(st, catalog.name).get("policyName", DEFAULT_POLICY_NAME)
    return {"name": str(name), "arguments": policy.arguments(catalog.learning)}


async def get_policy(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    return JSONResponse(_policy(st, catalog))


async def put_policy(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    req = requests.convert(await bodies.json_object(request, st.settings.limits), PolicyContract)
    catalog = await loop(st, loop_name(request, st))
    learning = policy.learning_body(req.arguments)
    changed = await _set_learning(st, catalog, learning)
    extras.update(st, catalog.name, policyName=req.name)
    return JSONResponse(_policy(st, changed))


async def delete_policy(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    changed = await _set_learning(st, catalog, default_learning())
    extras.update(st, catalog.name, policyName=DEFAULT_POLICY_NAME)
    return JSONResponse(_policy(st, changed))


async def _set_learning(st: State, catalog: Catalog, learning: dict[str, Any]) -> Catalog:
    """The catalog with these learning settings and its own reward settings kept."""

    def edit(body: dict[str, Any]) -> None:
        body["learning"] = {**learning, **join_settings(body)}

    try:
        return await run_in_threadpool(st.catalogs.edit, catalog.name, edit, time.time())
    except InvalidInput as exc:
        raise InvalidInput(f"arguments: {exc.detail}", field="arguments") from exc


# -- model ---------------------------------------------------------------------------


async def get_model(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    model = st.replica.policy(catalog)
    data = model.policy.save()
    meta = {
        "format": FORMAT,
        "loop": catalog.name,
        "key": model.key,
        "learned": model.policy.learned,
        "generation": model.generation,
        "exported_at": time.time(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model", data)
        z.writestr("loopwise.json", json.dumps(meta, indent=1))
    headers = {"Content-Disposition": f'attachment; filename="{catalog.name}.model.zip"'}
    return Response(out.getvalue(), media_type="application/octet-stream", headers=headers)


async def put_model(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "admin")
    raw = await bodies.read(request, MAX_MODEL_BYTES)
    catalog = await loop(st, loop_name(request, st))
    data, meta = _unpacked(raw)
    key = model_key(catalog.learning)
    if meta.get("key") != key:
        raise PersonalizerError(
            400,
            "InvalidModelImportFormat",
            f"the model was trained with settings {meta.get('key')!r}; loop {catalog.name!r} "
            f"learns with {key!r}: PUT /configurations/policy to the same arguments first",
            "body",
        )
    try:
        imported = build(catalog.learning, data, int(meta.get("learned", 0)))
    except CorruptCheckpoint as exc:
        raise PersonalizerError(400, "InvalidModelImportFormat", exc.detail, "body") from exc
    _replace(st, catalog, Model(key, imported, 0))
    return Response(status_code=204)


async def delete_model(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "admin")
    catalog = await loop(st, loop_name(request, st))
    _replace(st, catalog, Model(model_key(catalog.learning), build(catalog.learning), 0))
    return Response(status_code=204)


async def model_properties(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    model = st.replica.policy(catalog)
    started = _settings_since(st, catalog)
    created = max(started, float(extras.read(st, catalog.name).get("modelStarted", 0.0)))
    return JSONResponse(
        {
            "creationTime": iso(created),
            "lastModifiedTime": iso(max(created, catalog.updated_at)),
            "learned": model.policy.learned,  # extensions: what GET /v1/models/{loop} says
            "modelVersion": st.replica.model_version(catalog.name),
        }
    )


def _unpacked(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """The model bytes and their `loopwise.json` from an exported zip, sha256 checked."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            data, meta = z.read("model"), json.loads(z.read("loopwise.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise PersonalizerError(
            400,
            "InvalidModelImportFormat",
            "the body is not a model exported by Loopwise's GET /model (a zip of `model` and "
            "`loopwise.json`); a Personalizer model file cannot be imported: Loopwise encodes "
            f"features into VW namespaces of its own, so its weights would not apply ({exc})",
            "body",
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PersonalizerError(
            400, "InvalidModelImportFormat", f"loopwise.json is not {FORMAT}", "body"
        )
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise PersonalizerError(
            400, "InvalidModelImportFormat", "the model's sha256 does not match", "body"
        )
    return data, meta


def _replace(st: State, catalog: Catalog, model: Model) -> None:
    """This process's model of `catalog` replaced by `model`, and when, for its properties."""
    st.replica.replace(catalog, model)
    extras.update(st, catalog.name, modelStarted=time.time())


def _settings_since(st: State, catalog: Catalog) -> float:
    """When the loop's current learning settings were set: the first of the latest run of
    catalog versions with the same model key."""
    key, since = model_key(catalog.learning), catalog.updated_at
    for version in range(catalog.version - 1, 0, -1):
        older = st.catalogs.version(catalog.name, version)
        if older is None or model_key(older.learning) != key:
            break
        since = older.updated_at
    return since


# -- logs ----------------------------------------------------------------------------


async def log_properties(request: Request, dialect: Dialect) -> Response:
    st = of(request)
    st.authorize(request, "marketer")
    catalog = await loop(st, loop_name(request, st))
    now = time.time()
    first = st.catalogs.version(catalog.name, 1)
    start = first.updated_at if first is not None else catalog.updated_at
    if not st.settings.broker:  # the embedded broker keeps a bounded window of each topic
        start = max(start, now - st.settings.broker_retention_seconds)
    return JSONResponse({"dateRange": {"from": iso(start), "to": iso(now)}})
