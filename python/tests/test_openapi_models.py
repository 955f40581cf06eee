"""The hand-written models against the live server's /api/v1/openapi.json:
every model's fields (names, which are required, types, enumerations) must
match its schema in components.schemas, so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import json
import typing
import urllib.request
from typing import Any, Dict, List, Union

import pytest

from liftoff import _codec
from liftoff.models import ENUMS, JOB_SOURCE_VARIANTS, MODELS, JobSource

from conftest import Env

Schema = Dict[str, Any]


@pytest.fixture(scope="module")
def document(env: Env) -> Schema:
    with urllib.request.urlopen(f"{env.server.base_url}/api/v1/openapi.json", timeout=30) as r:
        doc: Schema = json.load(r)
    return doc


def _ref_name(s: Schema) -> str:
    return str(s["$ref"]).rsplit("/", 1)[-1]


def _without_null(tp: Any) -> Any:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return Union[tuple(args)]
    return tp


def _alternatives(s: Schema) -> List[Schema]:
    """A property's schema as its non-null alternatives."""
    if "oneOf" in s:
        return [a for a in s["oneOf"] if a.get("type") != "null"]
    return [s]


def _types(s: Schema) -> List[str]:
    t = s.get("type")
    if t is None:
        return []
    ts = [t] if isinstance(t, str) else list(t)
    return [x for x in ts if x != "null"]


def check_type(tp: Any, s: Schema, schemas: Dict[str, Schema], where: str) -> None:
    """That Python type `tp` is what schema `s` describes (enough to catch drift)."""
    tp = _without_null(tp)
    alts = _alternatives(s)
    if len(alts) > 1:
        errors = []
        for alt in alts:
            try:
                check_type(tp, alt, schemas, where)
                return
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{where}: matches none of the alternatives: {errors}")
    s = alts[0]
    if "$ref" in s:
        name = _ref_name(s)
        target = schemas[name]
        if "enum" in target:
            assert typing.get_origin(tp) is typing.Literal, f"{where}: {name} is an enumeration, the model has {tp}"
            assert set(typing.get_args(tp)) == set(target["enum"]), f"{where}: {name} values differ"
        elif name == "JobSource":
            assert tp == JobSource, f"{where}: JobSource expected, the model has {tp}"
        else:
            assert getattr(tp, "SCHEMA", None) == name, f"{where}: {name} expected, the model has {tp}"
        return
    types = _types(s)
    if not types:
        return  # any JSON value
    origin = typing.get_origin(tp)
    if tp is Any:
        return
    if "enum" in s:
        assert origin is typing.Literal and set(typing.get_args(tp)) == set(s["enum"]), where
        return
    (t,) = types
    if t == "string":
        assert tp is str or origin is typing.Literal, f"{where}: string expected, the model has {tp}"
    elif t == "integer":
        assert tp is int, f"{where}: integer expected, the model has {tp}"
    elif t == "number":
        assert tp is float, f"{where}: number expected, the model has {tp}"
    elif t == "boolean":
        assert tp is bool, f"{where}: boolean expected, the model has {tp}"
    elif t == "array":
        assert origin in (list, List), f"{where}: array expected, the model has {tp}"
        (item,) = typing.get_args(tp)
        check_type(item, s.get("items", {}), schemas, f"{where}[]")
    elif t == "object":
        assert origin in (dict, Dict) or dataclasses.is_dataclass(tp), f"{where}: object expected, the model has {tp}"
    else:
        raise AssertionError(f"{where}: unknown schema type {t}")


def check_model(cls: Any, schema: Schema, schemas: Dict[str, Schema], extra_required: Any = ()) -> None:
    name = cls.__name__
    assert schema.get("type") == "object", f"{name}: schema is not an object"
    props: Dict[str, Schema] = dict(schema.get("properties", {}))
    required = set(schema.get("required", [])) - set(extra_required)
    for tag in extra_required:
        props.pop(tag, None)
    hints = _codec.type_hints(cls)
    fields = {_codec.json_name(f): f for f in dataclasses.fields(cls)}
    assert set(fields) == set(props), (
        f"{name}: fields differ from schema {cls.SCHEMA}: "
        f"only in the model {sorted(set(fields) - set(props))}, only in the schema {sorted(set(props) - set(fields))}"
    )
    model_required = {
        k
        for k, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert model_required == required, (
        f"{name}: required fields differ: model {sorted(model_required)}, schema {sorted(required)}"
    )
    for key, f in fields.items():
        check_type(hints[f.name], props[key], schemas, f"{name}.{key}")


def test_every_model_matches_its_schema(document: Schema) -> None:
    schemas: Dict[str, Schema] = document["components"]["schemas"]
    for cls in MODELS:
        assert cls.SCHEMA in schemas, f"{cls.__name__}: no schema {cls.SCHEMA} in the document"
        check_model(cls, schemas[cls.SCHEMA], schemas)


def test_job_source_variants_match(document: Schema) -> None:
    schemas: Dict[str, Schema] = document["components"]["schemas"]
    variants = schemas["JobSource"]["oneOf"]
    assert len(variants) == len(JOB_SOURCE_VARIANTS)
    for cls, variant in zip(JOB_SOURCE_VARIANTS, variants):
        assert variant["properties"]["type"]["enum"] == [cls.TAG]
        check_model(cls, variant, schemas, extra_required=("type",))
    assert set(typing.get_args(JobSource)) == set(JOB_SOURCE_VARIANTS)


def test_every_enumeration_matches(document: Schema) -> None:
    schemas: Dict[str, Schema] = document["components"]["schemas"]
    for name, literal in ENUMS.items():
        assert name in schemas, name
        assert list(typing.get_args(literal)) == schemas[name]["enum"], name


def test_every_schema_the_client_speaks_is_modelled(document: Schema) -> None:
    """The schemas of the operations the client calls all have a model."""
    schemas: Dict[str, Schema] = document["components"]["schemas"]
    modelled = {cls.SCHEMA for cls in MODELS} | set(ENUMS) | {"JobSource"}
    used = {
        ("get", "/whoami"): ["WhoAmI"],
        ("post", "/entities/{entity}/queues"): ["CreateQueue", "Queue"],
        ("get", "/entities/{entity}/queues"): ["Queue"],
        ("get", "/entities/{entity}/queues/{queue}"): ["Queue"],
        ("put", "/entities/{entity}/blobs/{digest}"): ["BlobRef"],
        ("post", "/entities/{entity}/jobs"): ["CreateJob", "JobView"],
        ("get", "/entities/{entity}/jobs"): ["JobView"],
        ("get", "/entities/{entity}/jobs/{project}/{name}"): ["JobView"],
        ("post", "/entities/{entity}/queues/{queue}/items"): ["LaunchRequest", "LaunchResponse"],
        ("get", "/entities/{entity}/items"): ["ItemView"],
        ("get", "/entities/{entity}/items/{id}"): ["ItemView"],
        ("post", "/entities/{entity}/items/{id}/stop"): ["ItemView"],
        ("post", "/entities/{entity}/items/{id}/priority"): ["SetPriority", "ItemView"],
        ("get", "/entities/{entity}/items/{id}/logs"): ["LogPage"],
        ("get", "/entities/{entity}/items/{id}/events"): ["ItemTransition"],
        ("get", "/entities/{entity}/items/{id}/stream"): [],
        ("get", "/entities/{entity}/agents"): ["AgentView"],
    }
    for (method, path), names in used.items():
        assert path in document["paths"] and method in document["paths"][path], (method, path)
        op = json.dumps(document["paths"][path][method])
        for n in names:
            assert f"#/components/schemas/{n}" in op, (method, path, n)

    def refs(s: Any) -> List[str]:
        if isinstance(s, dict):
            out = [_ref_name(s)] if "$ref" in s else []
            for v in s.values():
                out += refs(v)
            return out
        if isinstance(s, list):
            return [r for v in s for r in refs(v)]
        return []

    # everything the modelled schemas refer to is modelled too
    for name in sorted(modelled):
        for r in refs(schemas[name]):
            assert r in modelled, f"{name} refers to {r}, which has no model"
    assert "ErrorBody" in modelled
