"""``quorate bench crypto``: every advertised measure is present and the JSON parses."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import quorate.cli.bench_crypto  # noqa: F401  (registers the command)
from quorate.bench.crypto import (
    AGGREGATE_SIZES,
    DKG_SETTINGS,
    RISTRETTO_MEASURES,
    TALLY_BALLOTS,
    fitted_costs,
    measure,
    measure_dkg,
    measure_ristretto_backends,
)
from quorate.cli.main import app
from quorate.crypto import ristretto255
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


def test_every_ristretto_backend_is_timed_side_by_side() -> None:
    report = measure_ristretto_backends(iterations=1)
    assert report["backend"] == ristretto255.backend_name()
    assert report["available"] == list(ristretto255.available_backends())
    assert set(report["medians_us"]) == set(report["available"])
    for figures in report["medians_us"].values():
        assert set(figures) == set(RISTRETTO_MEASURES)
        assert all(value > 0 for value in figures.values())
    if "libsodium" in report["available"]:
        others = set(report["available"]) - {"libsodium"}
        assert set(report["ratio_to_libsodium"]) == others
        for name in others:
            ratio = report["ratio_to_libsodium"][name]["ballot_verify_us"]
            assert ratio == round(
                report["medians_us"][name]["ballot_verify_us"]
                / report["medians_us"]["libsodium"]["ballot_verify_us"],
                2,
            )
    else:
        assert "ratio_to_libsodium" not in report


def test_cli_json_is_one_object() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--json", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmark"] == "crypto"
    assert set(report["crypto_costs_s"]) == set(CryptoCosts.__dataclass_fields__)
    assert [row["n"] for row in report["dkg"]] == [n for _, n in DKG_SETTINGS]
    assert report["ristretto255"]["backend"] in report["ristretto255"]["available"]


def test_cli_tables_include_the_dkg() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--iterations", "1"])
    assert result.exit_code == 0, result.output
    assert "distributed key generation" in result.output and "zk_tally_verify_100" in result.output
    assert "Ristretto255 backends" in result.output and "python" in result.output


def test_cli_refuses_zero_iterations() -> None:
    result = CliRunner().invoke(app, ["bench", "crypto", "--iterations", "0"])
    assert result.exit_code == 2
