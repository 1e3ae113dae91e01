"""``quorate bench crypto``: every advertised measure is present and the JSON parses."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import quorate.cli.bench_crypto  # noqa: F401  (registers the command)
from quorate.bench.crypto import AGGREGATE_SIZES, fitted_costs, measure
from quorate.cli.main import app
from quorate.crypto.costmodel import CryptoCosts


def test_measure_reports_every_primitive() -> None:
    medians = measure(iterations=1)
    for key in (
        "ed25519_sign_us",
        "ed25519_verify_us",
        "bls_sign_us",
        "bls_verify_us",
        *(f"bls_aggregate_{n}_us" for n in AGGREGATE_SIZES),
        *(f"bls_aggregate_verify_{n}_us" for n in AGGREGATE_SIZES),
        "threshold_combine_t5_n7_us",
        "threshold_combine_t21_n31_us",
        "mac_authenticator_create_4_us",
        "mac_authenticator_verify_16_us",
        "costmodel_verify_us",
    ):
        assert medians[key] > 0, key
    costs = fitted_costs(medians)
    assert isinstance(costs, CryptoCosts)
    assert costs.bls_verify_s == medians["bls_verify_us"] * 1e-6


def test_cli_json_is_one_object() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--json", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmark"] == "crypto"
    assert set(report["crypto_costs_s"]) == set(CryptoCosts.__dataclass_fields__)


def test_cli_refuses_zero_iterations() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--iterations", "0"])
    assert result.exit_code == 2
