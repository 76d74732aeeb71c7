"""A plugin's own tests: it is listed (which catches a missing entry point) and it passes the zoo's conformance check."""

from click.testing import CliRunner

from cmnist_zoo.cli import cli
from cmnist_zoo.testing import check_variant


def test_zoo_lists_the_variant():
    result = CliRunner().invoke(cli, ["list", "tiny-mlp"])
    assert result.exit_code == 0
    assert "tiny-mlp" in result.output and "zoo-example-plugin" in result.output


def test_variant_conforms():
    check_variant("tiny-mlp")
