"""``quorate bench crypto``: every advertised measure is present and the JSON parses."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import quorate.cli.bench_crypto  # noqa: F401  (registers the command)
from quorate.bench.crypto import (
    AGGREGATE_SIZES,
    DKG_SETTINGS,
    TALLY_BALLOTS,
    fitted_costs,
    measure,
    measure_dkg,
)
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
        "zk_ballot_cast_us",
        "zk_ballot_verify_us",
        "zk_bit_prove_us",
        "zk_bit_verify_us",
        f"zk_tally_verify_{TALLY_BALLOTS}_us",
        f"zk_tally_open_{TALLY_BALLOTS}_us",
        "ed25519_key_proof_verify_us",
    ):
        assert medians[key] > 0, key
    costs = fitted_costs(medians)
    assert isinstance(costs, CryptoCosts)
    assert costs.bls_verify_s == medians["bls_verify_us"] * 1e-6


def test_dkg_rows_cover_every_size() -> None:
    rows = measure_dkg(iterations=1)
    assert [(r["t"], r["n"]) for r in rows] == list(DKG_SETTINGS)
    for row in rows:
        assert row["runs"] == 1
        assert row["group_cpu_ms"] > 0 and row["reshare_group_cpu_ms"] > 0
        assert abs(row["per_participant_cpu_ms"] - row["group_cpu_ms"] / row["n"]) <= 0.01


def test_cli_json_is_one_object() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--json", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmark"] == "crypto"
    assert set(report["crypto_costs_s"]) == set(CryptoCosts.__dataclass_fields__)
    assert [row["n"] for row in report["dkg"]] == [n for _, n in DKG_SETTINGS]


def test_cli_tables_include_the_dkg() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert "distributed key generation" in result.output and "zk_tally_verify_100" in result.output


def test_cli_refuses_zero_iterations() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--iterations", "0"])
    assert result.exit_code == 2
