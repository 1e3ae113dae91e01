"""A partition during a split and a merge (``quorate bench partition``'s
``reshard-cut``, ``quorate.hrb.partition`` with ``quorate.hrb.reshard``):

- the scenario is what it says (the split's and merge's shards cut off
  from the core, the changes requested just before the cut);
- one seed of the combined run on a small deployment: nothing lost,
  half-applied or left undecided, the history linearizable, both changes
  settled and every shard on the core's map (default suite); and the same
  for an agent move requested just before the cut;
- a shard cut off when a map change's certificates were sent fetches them
  when the core comes back (on fakes), and the core answers for them;
- bad input: settings the scenario cannot run with, and a split of a shard
  that does not exist, refused by the core with partition handling on;
- slow: 50 seeds of the scenario on the bench's deployment; a cut longer
  than the hand-off deadline, so the change aborts during the cut and every
  shard must learn it and unfreeze after the heal; and 30 seeds of the
  dynamic-sharding chaos sweep with partition handling on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from quorate.bench.partition import PartitionBenchSettings, build_scenario, run_scenario
from quorate.errors import ConfigError
from quorate.hrb.core.commands import CertificateRequest
from quorate.hrb.messages import CORE_GROUP_BASE
from quorate.hrb.partition import PartitionConfig, PartitionMember, ShardView, shard_side
from quorate.hrb.reshard import MergeShards, SplitShard, reshard_certificate_key
from quorate.ids import NodeId
from quorate.runtime.sim.faults import parse_spec

SHARDS = {1: (1, 5, 9, 13), 2: (2, 6, 10, 14), 3: (3, 7, 11, 15), 4: (4, 8, 12, 16), 5: (17, 18, 19, 20)}
CORE = (2, 3, 4, 17)
SMALL = PartitionBenchSettings(
    seeds=1, scenarios=("reshard-cut",), nodes=12, cut_at_s=1.5, heal_at_s=3.5, duration_s=4.0, drain_s=2.5,
    settle_s=0.5, reshard_lead_s=(0.2,),
)
"""Three shards of four (two on the ring, one empty), a 2 s cut."""
SETTLED = {"committed", "aborted"}


def _clean(run: dict[str, Any]) -> None:
    assert (run["lost"], run["half_applied"], run["stuck_undecided"]) == (0, 0, 0), run["lost_detail"]
    assert run["safety_violations"] == [] and run["linearizable"] is True, run["check_verdict"]
    assert run["reshard"]["unsettled"] == [], run["reshard"]["unsettled"]


def test_the_scenario_cuts_the_split_and_merge_shards_off_from_the_core() -> None:
    s = PartitionBenchSettings()
    scenario = build_scenario("reshard-cut", s, SHARDS, CORE, seed=1)
    # Shard 1 has no core member: it is split into the empty shard 5, which is merged back.
    assert [change for _, change in scenario.plan] == [SplitShard(1, 5), MergeShards(5, 1)]
    split_at, merge_at = (at for at, _ in scenario.plan)
    assert split_at == pytest.approx(s.cut_at_s - s.reshard_lead(1)) and merge_at > split_at
    assert scenario.sides[0] == frozenset({1, 5, 9, 13, 18, 19, 20})  # 17 is a core member
    assert scenario.probed == frozenset({1, 2, 3, 4})
    [cut, heal] = parse_spec(scenario.spec)
    assert (cut.kind, cut.at_s, heal.kind, heal.at_s) == ("partition", s.cut_at_s, "heal", s.heal_at_s)
    # Both shards keep their quorum on the cut-off side; the core keeps its on the other.
    assert shard_side(scenario.sides[0], SHARDS[1], "byzantine").has_quorum
    assert shard_side(scenario.sides[1], CORE, "byzantine").has_quorum
    leads = {s.reshard_lead(seed) for seed in range(5)}
    assert leads == set(s.reshard_lead_s)  # the seeds land the cut at different steps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nodes": 8}, "scenario 'reshard-cut' needs 3 shards or more"),
        ({"reshard_lead_s": (0.5, 5.0)}, "a reshard lead must be within 0..4 s"),
        ({"reshard_lead_s": ()}, "a reshard lead must be within"),
    ],
)
def test_settings_refuse_a_reshard_cut_that_cannot_run(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        dataclasses.replace(PartitionBenchSettings(scenarios=("reshard-cut",)), **changes).validate()


def test_one_seed_of_a_cut_during_a_split_and_a_merge() -> None:
    run = run_scenario("reshard-cut", 2, SMALL.validate())
    _clean(run)
    split, merge = run["reshard"]["requested"]
    assert split["change"] == "split 2 -> 3" and split["outcome"] == "committed"
    assert merge["change"] == "merge 3 into 2" and merge["outcome"] == "committed"
    # The split was begun before the cut and could only settle after the heal.
    assert split["begun_at_s"] < SMALL.cut_at_s < SMALL.heal_at_s <= split["settled_at_s"]
    assert split["took_s"] > 0 and split["settled"] == "after the heal"
    assert merge["begun_at_s"] >= split["settled_at_s"]
    assert run["reshard"]["map_version"] == 2 and run["reshard"]["keys_installed"] == run["reshard"]["keys_dropped"]
    serving = [p for p in run["shards"] if p["probed"] and p["majority_side"] is not None]
    assert serving and all(p["available"] for p in serving), run["shards"]
    assert [p["probed"] for p in run["shards"]] == [True, True, False]


# ---------------------------------------------------------------- fetching missed certificates, on fakes
@dataclass
class FakeWatch:
    reach: frozenset[int]
    informed: bool = True
    now: float = 0.0

    def reachable(self, now: float) -> frozenset[int]:
        return self.reach


@dataclass
class FakeBegin:
    seq: int


@dataclass
class FakeHandoff:
    map_version: int = 0
    settled: int = 0
    begin: FakeBegin | None = None
    held: dict[int, Any] = field(default_factory=dict)
    newest_seen: int = 0

    @property
    def map(self) -> Any:
        return type("Map", (), {"version": self.map_version})()


@dataclass
class FakeStore:
    handoff: FakeHandoff
    prepared: dict[bytes, Any] = field(default_factory=dict)
    epoch: int = 0
    evicted: set[int] = field(default_factory=set)

    def epoch_members(self) -> tuple[int, ...]:
        return (9, 10, 11, 12)


class FakeReplica:
    def take_core_messages(self) -> list[Any]:
        return []


def _member() -> tuple[PartitionMember, FakeWatch, FakeHandoff]:
    watch = FakeWatch(frozenset(range(1, 13)))
    view = ShardView(1, {1: (1, 2, 3, 4)}, "byzantine", lambda: watch, lambda: (9, 10, 11, 12), PartitionConfig())  # type: ignore[arg-type,return-value]
    handoff = FakeHandoff()
    return PartitionMember(FakeReplica(), FakeStore(handoff), view), watch, handoff


def _asked(member: PartitionMember, watch: FakeWatch, now: float) -> list[int]:
    watch.now = now
    sent = member.take_outbound()
    assert all(to in (9, 10, 11, 12) and group == CORE_GROUP_BASE for to, group, _ in sent)
    keys = sorted({m.txn_id for _, _, m in sent if isinstance(m, CertificateRequest)})
    return [int.from_bytes(k[-8:], "big") for k in keys]


def test_a_shard_back_from_a_cut_fetches_the_map_changes_it_missed() -> None:
    member, watch, handoff = _member()
    assert _asked(member, watch, 1.0) == []  # nothing in flight, the core reachable: nothing to ask
    watch.reach = frozenset({1, 2, 3, 4})  # the core (9..12) is cut off
    assert _asked(member, watch, 2.0) == []
    watch.reach = frozenset(range(1, 13))
    assert _asked(member, watch, 5.0) == [1]  # back: the change after the last settled here
    handoff.map_version = handoff.settled = 1  # the answer brought change 1's commit
    assert _asked(member, watch, 5.2) == [2]  # so ask for the next at once
    assert _asked(member, watch, 5.4) == []
    assert _asked(member, watch, 8.3) == []  # nothing came for a whole wait: the core had no change 2
    assert _asked(member, watch, 20.0) == []


def test_a_shard_with_a_change_in_flight_asks_for_its_outcome_every_wait() -> None:
    member, watch, handoff = _member()
    handoff.begin = FakeBegin(3)
    handoff.settled = 1  # change 2 aborted, unseen here
    assert _asked(member, watch, 1.0) == []  # the first ask after one wait
    assert _asked(member, watch, 3.9) == []
    assert _asked(member, watch, 4.0) == [2, 3]
    assert _asked(member, watch, 5.0) == []
    assert _asked(member, watch, 7.1) == [2, 3]
    handoff.begin, handoff.settled, handoff.map_version = None, 3, 1
    assert _asked(member, watch, 20.0) == []
    handoff.newest_seen = 2  # a transaction was begun on map 2, newer than this shard's
    assert _asked(member, watch, 20.2) == []
    assert _asked(member, watch, 23.3) == [4]


def test_the_core_answers_for_a_map_changes_certificates() -> None:
    pytest.importorskip("blspy")
    from quorate.hrb.core.certify import Certifier
    from quorate.hrb.core.config import CoreConfig
    from quorate.hrb.core.threshold_bls import BlsSuite
    from quorate.hrb.messages import TxnDecision, encode_decision
    from quorate.hrb.reshard import ReshardAbort, ReshardBegin

    suite = BlsSuite()
    members = tuple(NodeId(m) for m in (2, 5, 7, 11))
    commitments, shares = suite.deal(3, members, b"epoch 0")
    key = suite.epoch_key(3, len(members), commitments)
    config = CoreConfig(certificate_timeout_s=1.0, max_certificate_timeout_s=4.0)
    certifiers = {m: Certifier(m, 0, members, key, suite.partial_signer(key, *shares[m]), config, frozenset) for m in members}
    decisions = [
        encode_decision(ReshardBegin(1, 1, SplitShard(1, 5), ((1, 5),), 40)),
        encode_decision(TxnDecision(b"t" * 16, True, "")),
        encode_decision(ReshardAbort(1, 1, "timeout")),
    ]
    for index, decision in enumerate(decisions, 1):
        for certifier in certifiers.values():
            certifier.decided(index, decision, None, 0.0, replay=False)
        while True:
            queued = [(n, to, m) for n, c in certifiers.items() for to, m in c.take().messages]
            if not queued:
                break
            for sender, to, message in queued:
                if to not in certifiers:
                    continue
                if type(message).__name__ == "DecisionPartial":
                    certifiers[to].on_partial(sender, message, 0.0)
                else:
                    certifiers[to].on_certificate(sender, message)
    found = certifiers[members[1]].certificates_for(reshard_certificate_key(1))
    assert [c.index for c in found] == [1, 3]
    assert certifiers[members[1]].certificates_for(reshard_certificate_key(2)) == []
    assert len(reshard_certificate_key(1)) != 16  # never a transaction id


# ---------------------------------------------------------------- slow: many seeds, an abort during the cut
@pytest.mark.slow
def test_fifty_seeds_of_a_cut_during_a_split_and_a_merge() -> None:
    """Seeds 1-50 of the bench's scenario (every lead of the split before the
    cut, so the cut meets each step of the split or the merge)."""
    settings = PartitionBenchSettings(scenarios=("reshard-cut",)).validate()
    outcomes: dict[str, int] = {}
    for seed in range(1, 51):
        run = run_scenario("reshard-cut", seed, settings)
        _clean(run)
        for change in run["reshard"]["requested"]:
            assert change["outcome"] in SETTLED | {"refused"}, (seed, change)
            outcomes[change["outcome"]] = outcomes.get(change["outcome"], 0) + 1
    assert outcomes.get("committed", 0) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_change_that_times_out_during_the_cut_aborts_and_every_shard_unfreezes(seed: int) -> None:
    """The cut (10 s) outlasts the hand-off deadline (8 s of core log time):
    the core aborts the change while the shards are cut off; after the heal
    they fetch the abort and unfreeze."""
    settings = PartitionBenchSettings(
        scenarios=("reshard-cut",), heal_at_s=14.0, duration_s=18.0, drain_s=6.0, reshard_lead_s=(0.2,)
    ).validate()
    run = run_scenario("reshard-cut", seed, settings)
    _clean(run)
    split = run["reshard"]["requested"][0]
    assert split["outcome"] == "aborted" and split["settled_at_s"] < settings.heal_at_s, split


def test_a_split_of_a_shard_that_does_not_exist_is_refused_with_partition_handling_on() -> None:
    """Bad input on the combined run: the core refuses it in one counted line,
    the map stays, nothing is frozen, the run goes on."""
    from quorate.bench.hrb_sim import HrbRunConfig
    from quorate.hrb.simulation import HrbSystem
    from quorate.runtime.sim.composed import SystemSimulation

    config = HrbRunConfig(
        nodes=12, shard_size=4, core=4, duration_s=2.5, drain_s=1.0, dynamic_sharding=True, reshard="split:7:3@0.5", seed=2
    )
    model = HrbSystem(dataclasses.replace(config.settings(), partition=PartitionConfig()))
    run = SystemSimulation(config.sim_config(), model, drain_s=config.drain_s, name="hrb").run()
    report = run.to_json()
    d = report["dynamic_sharding"]
    assert d["scripted_refused"] == ["unknown shard: 7 is not a shard of the deployment"]
    assert d["core_refusals"] == {"unknown shard": 1} and d["map_version"] == 0 and d["changes"] == []
    assert all(m.store.handoff.begin is None and m.store.handoff.map.version == 0 for m in model.members.values())
    assert report["committed_ops"] > 0 and report["safety_violations"] == []


@pytest.mark.parametrize("seed", [1, 2])
def test_an_agent_move_during_a_cut(seed: int) -> None:
    """The third kind of change: an agent of the cut-off shard moves to the
    empty one (also cut off) just before the cut; it settles after the heal
    and nothing is lost, half-applied or left behind."""
    from quorate.bench.hrb_sim import HrbRunConfig, linearizable
    from quorate.bench.partition import _model_class
    from quorate.hrb.reshard import MoveAgents
    from quorate.runtime.sim.composed import SystemSimulation
    from quorate.sharding import AgentMove

    s = SMALL

    def scenario_of(model: Any) -> Any:
        scenario = build_scenario("reshard-cut", s, model.shards, model.members_of[0], seed)
        (at, split), _ = scenario.plan
        agent = next(a for a, home in model.dynamic.initial.homes if home == split.shard)
        return dataclasses.replace(scenario, plan=((at, MoveAgents((AgentMove(agent, 0, split.new_shard),))),))

    config = HrbRunConfig(
        nodes=s.nodes, shard_size=s.shard_size, core=s.core, duration_s=s.duration_s, drain_s=s.drain_s, seed=seed,
        heal_at_s=s.heal_at_s, dynamic_sharding=True, partitioner=False,
    )
    model = _model_class()(dataclasses.replace(config.settings(), partition=PartitionConfig()), scenario_of, s)
    sim_config = dataclasses.replace(config.sim_config(), faults=model.scenario.spec)
    run = SystemSimulation(sim_config, model, drain_s=s.drain_s, name="hrb").run()
    report = run.to_json()
    alive = [True] * s.nodes
    final = model.final_checks(alive)
    assert final == {"stuck_prepared": [], "acked_not_committed": 0}
    assert report["atomicity_violations"] == report["atomicity_unsettled_txns"] == 0
    assert report["safety_violations"] == [] and model.reshard_unsettled(alive) == []
    [change] = report["dynamic_sharding"]["changes"]
    assert change["change"] == "move 1 agents" and change["outcome"] in SETTLED
    assert change["settled_at_s"] >= s.cut_at_s
    assert linearizable(run.history + model.final_reads(alive, report["sim_seconds"] + 1.0))[0] is True


@pytest.mark.slow
def test_dynamic_sharding_with_partition_handling_under_chaos() -> None:
    """The chaos sweep of ``tests/sim/test_sim_hrb_reshard.py`` (crashes,
    restarts, partitions, slow links until 9 s; the partitioner, or on even
    seeds a scripted split, move and merge) with partition handling on too:
    no safety, atomicity or linearizability violation, a transaction
    completes after the heal, and every change that began settled."""
    from quorate.bench.hrb_sim import HrbRunConfig, linearizable
    from quorate.hrb.simulation import HrbSystem
    from quorate.runtime.sim.composed import SystemSimulation

    for seed in range(1, 31):
        config = HrbRunConfig(
            nodes=16, shard_size=4, core=4, duration_s=14.0, drain_s=6.0, faults="chaos", heal_at_s=9.0,
            liveness_bound_s=8.0, dynamic_sharding=True, seed=seed,
            reshard="split:1:4@2,move:a1:4@5,merge:4:2@8" if seed % 2 == 0 else "",
        )
        model = HrbSystem(dataclasses.replace(config.settings(), partition=PartitionConfig()))
        run = SystemSimulation(config.sim_config(), model, drain_s=config.drain_s, name="hrb").run()
        report = run.to_json()
        assert report["safety_violations"] == [] and report["atomicity_violations"] == 0, seed
        assert linearizable(run.history)[0] is True, seed
        assert report["liveness_ok"] is True, seed
        changes = report["dynamic_sharding"]["changes"]
        assert all(c["outcome"] in SETTLED for c in changes), (seed, changes)
