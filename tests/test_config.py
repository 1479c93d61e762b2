"""The config schema: every key documented, the shipped configs valid, bad values named."""

from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from featlab.schema import config_error

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
