"""The paper cells' HotStuff and Casper FFG settings (fair at large n)."""

from __future__ import annotations

import pytest

pytest.importorskip("hdrh", reason="needs the bench extra: pip install '.[bench]'")

from quorate.bench.paper import RUNNERS, SimRampRunner
from quorate.casper import CasperConfig
from quorate.hotstuff import HotStuffConfig


def test_hotstuff_cells_batch_votes_and_do_not_forward_commands() -> None:
    hotstuff = RUNNERS["hotstuff"]
    assert isinstance(hotstuff, SimRampRunner)
    for n in (16, 256, 1000):
        options = hotstuff.options_for(n)
        assert options["batch_verify_votes"] is True and options["quorum_certificates"] == "aggregate"
        assert options["forward_commands"] is False and options["batch_max"] >= 800
        fields = {k: v for k, v in options.items() if k != "scheme"}
        HotStuffConfig(**fields).validate()


def test_casper_epochs_grow_with_n_and_commands_are_not_forwarded() -> None:
    casper = RUNNERS["casper"]
    assert isinstance(casper, SimRampRunner)
    epochs = [casper.options_for(n).get("epoch_blocks", CasperConfig().epoch_blocks) for n in (16, 256, 512, 1000)]
    assert epochs == sorted(epochs) and epochs[0] == CasperConfig().epoch_blocks and epochs[-1] > epochs[0]
    for n in (16, 1000):
        CasperConfig(**casper.options_for(n)).validate()
        assert casper.options_for(n)["forward_commands"] is False
    assert "options_from_n" in casper.settings()
