"""The config schema: every key documented, the shipped configs valid, bad values named."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from featlab.manipulate.editors import EditSettings
from featlab.mapping.fit import BASELINES, CLOSED_FORM
from featlab.mapping.models import AFFINE, TRAINED
from featlab.schema import config_error
from featlab.study.settings import (
    PLANNING_KEYS,
    PLANNING_SECTIONS,
    SETTINGS,
    default_of,
    fields_of,
)
from featlab.tables import MAPPINGS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


def _properties(node: dict, path: str = ""):
    """Every (path, schema, required) of a `properties` entry, anywhere in the schema."""
    if not isinstance(node, dict):
        return
    required = set(node.get("required", []))
    for name, child in (node.get("properties") or {}).items():
        if child:  # `kind: {}` inside if/then only repeats a property described elsewhere
            yield f"{path}.{name}", child, name in required
    for key, child in node.items():
        if key == "if":  # a condition on a value, not a key of the config
            continue
        if isinstance(child, dict):
            yield from _properties(child, f"{path}.{key}")
        elif isinstance(child, list):
            for i, item in enumerate(child):
                yield from _properties(item, f"{path}.{key}[{i}]")


# Keys whose presence is the choice (listing a mapping runs it): a default would switch them on.
SELECTED_BY_PRESENCE = (".properties.mappings",)


def test_every_key_has_a_description_and_a_default_unless_required():
    schema = yaml.safe_load(SCHEMA.read_text())
    for path, child, required in _properties(schema):
        assert "description" in child or "$ref" in child, f"{path} has no description"
        if path.rsplit(".", 1)[0] in SELECTED_BY_PRESENCE:
            continue
        assert required or "default" in child or "$ref" in child or "properties" in child, (
            f"{path} is optional but has no default"
        )


@pytest.mark.parametrize("config", ["config.yaml", "tests/data/tiny.yaml"])
def test_shipped_configs_are_valid(config):
    validate(yaml.safe_load((REPO / config).read_text()), str(SCHEMA))


def test_defaults_are_filled_in():
    config = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())
    validate(config, str(SCHEMA))
    assert config["change_mask"] == {"blur_sigma": 1.0, "threshold": 12.0}
    assert config["backbones"]["cnn"]["train"]["lr"] == 0.002
    assert config["extraction"]["dtype"] == "float16"


def test_a_wrong_value_is_reported_with_its_key():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["extraction"]["batch_size"] = 0
    with pytest.raises(WorkflowError, match=r"extraction.*batch_size|batch_size"):
        validate(config, str(SCHEMA))


@pytest.mark.parametrize(
    ("written", "spelling"),
    [("1e-3", "1.0e-3"), ("5e4", "5.0e+4"), ("2.5e3", "2.5e+3"), ("-1E-5", "-1.0E-5")],
)
def test_a_number_yaml_reads_as_a_string_is_named_with_a_spelling_it_reads(written, spelling):
    config = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())
    text = yaml.safe_dump(config).replace("lr: 0.001", f"lr: {written}")
    config = yaml.safe_load(text)
    assert config["featinv"]["train"]["lr"] == written  # PyYAML's YAML 1.1: a string
    with pytest.raises(WorkflowError) as raised:
        validate(config, str(SCHEMA))
    message = config_error(raised.value)
    assert message.startswith(
        f"Error validating config file: config['featinv']['train']['lr']: '{written}' is not of"
    )
    assert message.endswith(f"write {spelling}")
    assert "\n" not in message  # the key, the value and the expectation: not the schema
    assert yaml.safe_load(f"lr: {spelling}")["lr"] == float(written)


def _resolve(node: dict, schema: dict) -> dict:
    """A schema node with its $ref followed (local references only)."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _filled_default(node: dict, schema: dict):
    """The value validation fills in for a key: its default, with its properties' defaults."""
    node = _resolve(node, schema)
    if "properties" not in node:
        return node.get("default", dataclasses.MISSING)
    filled = dict(node.get("default", {}))
    for name, child in node["properties"].items():
        value = _filled_default(child, schema)
        if value is not dataclasses.MISSING:
            filled.setdefault(name, value)
    return filled


def _sections(node: dict, schema: dict, path: str = ""):
    """Every (dotted path, node) of the config sections with properties: `*` for a name the
    study chooses, `[]` for a list's items."""
    node = _resolve(node, schema)
    if "properties" in node:
        yield path, node
        for name, child in node["properties"].items():
            yield from _sections(child, schema, f"{path}.{name}".lstrip("."))
    for key, suffix in (("additionalProperties", ".*"), ("items", "[]")):
        if isinstance(node.get(key), dict):
            yield from _sections(node[key], schema, path + suffix)


def test_every_schema_default_is_its_settings_dataclass_default():
    """One place for each default: a section a dataclass reads has its defaults, and the keys it
    does not read are the study's planning keys (featlab.study.settings)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    checked = set()
    for path, node in _sections(schema, schema):
        if path in PLANNING_SECTIONS or not path:
            continue
        assert path in SETTINGS, f"{path}: add its dataclass to featlab.study.settings.SETTINGS"
        fields, checked = fields_of(SETTINGS[path]), checked | {path}
        for name, child in node["properties"].items():
            if name not in fields:
                assert name in PLANNING_KEYS.get(path, ()), f"{path}.{name} is read by no stage"
                continue
            expected = default_of(fields[name])
            assert _filled_default(child, schema) == expected, f"{path}.{name}: schema != code"
    assert {"lens", "lens.warp", "extraction", "featinv.sample", "backbones.*.train"} <= checked


def test_the_semantic_edit_defaults_are_the_editors():
    schema = yaml.safe_load(SCHEMA.read_text())
    branches = schema["$defs"]["manipulation"]["allOf"]
    semantic = next(
        b["then"] for b in branches if b["if"]["properties"]["kind"]["const"] == "semantic"
    )
    fields = fields_of(EditSettings)
    for name, child in semantic["properties"].items():
        if name in fields and "default" in child:
            assert child["default"] == default_of(fields[name]), f"semantic {name}"


def test_the_mapping_names_are_the_librarys():
    """The schema's mappings, the table's words and the mapping kinds are one set of names."""
    schema = yaml.safe_load(SCHEMA.read_text())
    configurable = set(schema["properties"]["mappings"]["properties"])
    kinds = [*BASELINES, *CLOSED_FORM, *TRAINED]
    assert len(kinds) == len(set(kinds))
    assert configurable == set(kinds) == set(MAPPINGS)
    # the edits stage magnifies the affine maps (a trained additive map is one too)
    edited = schema["properties"]["edits"]["properties"]["mappings"]["items"]["enum"]
    assert set(edited) == {*AFFINE, "additive"}
