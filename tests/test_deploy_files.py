"""deploy/ and docs/deploy.md stay true to the code: the example configuration loads as
``burrow serve --config`` reads it, the unit runs it, the metrics table is the metrics."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

from burrow.cli import settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
GUIDE = (ROOT / "docs" / "deploy.md").read_text()


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "burrow.service").read_text())
    return parser


def test_the_example_configuration_loads_and_the_unit_runs_it() -> None:
    values = settings.load(DEPLOY / "burrow.toml")  # refuses unknown keys and wrong types
    assert values["domain"] == "tunnels.example.com"
    assert values["agent_name"] == "connect.tunnels.example.com"
    service = unit()["Service"]
    assert service["ExecStart"] == "/opt/burrow/bin/burrow serve --config /etc/burrow/burrow.toml"
    # The data directory is the unit's StateDirectory, private to the service's user.
    assert values["data_dir"] == Path("/var/lib") / service["StateDirectory"]
    assert service["StateDirectoryMode"] == "0700" and service["User"] == "burrow"
    assert "/opt/burrow/bin/pip install" in GUIDE and "deploy/burrow.toml" in GUIDE


def defined_metrics() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "burrow" / "metrics.py", ROOT / "src" / "burrow" / "api" / "metrics.py"):
        names |= set(re.findall(r'"(burrow_[a-z_]+)"', path.read_text()))
    return names


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(burrow_[a-z_]+)` \|", GUIDE, re.MULTILINE))


def test_the_guide_lists_every_metric() -> None:
    defined = defined_metrics()
    assert len(defined) >= 19
    assert documented_metrics() == defined


def test_the_tests_the_guide_names_exist() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", GUIDE)
    assert len(named) >= 6
    for path, test in named:
        source = (ROOT / path).read_text()
        assert not test or f"def {test}(" in source, f"{path}::{test}"


def test_the_example_alerts_parse_and_name_real_metrics() -> None:
    """The guide's Prometheus rules: valid YAML, and every metric an expression names exists
    (counters with their _total, histograms with their _bucket)."""
    (block,) = re.findall(r"^```yaml\n(.*?)^```$", GUIDE, re.MULTILINE | re.DOTALL)
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    assert len(rules) >= 5
    defined = defined_metrics()
    for rule in rules:
        for name in re.findall(r"\bburrow_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert name in defined or base in defined, (rule["alert"], name)
