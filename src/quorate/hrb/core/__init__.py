"""HRB's tier 1: the core (docs/hrb.md sections 3–6). Re-exports only.

``CoreState`` is the replicated state machine, ``CoreReplica`` one member of
an epoch's core group (a BFT core plus the state, certification and epoch
changes), ``CoreKeyChain`` what a shard keeps to check core certificates,
``genesis`` the deployment's starting point. The BLS suite lives in
``quorate.hrb.core.threshold_bls`` (it imports blspy)."""

from quorate.hrb.core.certify import Certifier, CoreKeyChain
from quorate.hrb.core.commands import (
    CertificateRequest,
    CoreHandover,
    DecisionPartial,
    DkgOutcome,
    DkgRelay,
    DkgSubmission,
    DkgTimeout,
    JoinRequest,
    ReputationReport,
    Tick,
)
from quorate.hrb.core.config import CoreConfig, CoreRules
from quorate.hrb.core.evidence import NoSignedMessageChecker, SignedMessageChecker, Verdict
from quorate.hrb.core.genesis import CoreGenesis, deal_shards, genesis
from quorate.hrb.core.replica import CoreReplica, GroupMessage, ReplicaPhase
from quorate.hrb.core.snapshot import CoreSnapshot, CoreStart
from quorate.hrb.core.state import CoreState, bft_threshold
from quorate.hrb.core.threshold import (
    CostModelSuite,
    EpochKey,
    KeyGeneration,
    PartialSigner,
    ThresholdSuite,
)

__all__ = [
    "CertificateRequest",
    "Certifier",
    "CoreConfig",
    "CoreGenesis",
    "CoreHandover",
    "CoreKeyChain",
    "CoreReplica",
    "CoreRules",
    "CoreSnapshot",
    "CoreStart",
    "CoreState",
    "CostModelSuite",
    "DecisionPartial",
    "DkgOutcome",
    "DkgRelay",
    "DkgSubmission",
    "DkgTimeout",
    "EpochKey",
    "GroupMessage",
    "JoinRequest",
    "KeyGeneration",
    "NoSignedMessageChecker",
    "PartialSigner",
    "ReplicaPhase",
    "ReputationReport",
    "SignedMessageChecker",
    "ThresholdSuite",
    "Tick",
    "Verdict",
    "bft_threshold",
    "deal_shards",
    "genesis",
]
