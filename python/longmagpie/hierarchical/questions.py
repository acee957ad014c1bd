"""The per-document QA plan: which questions of which kind, about which material, in which order.

A plan is drawn from the run seed and the document id only, so a rerun plans the same questions. Order in the
conversation (coarse to fine): the hierarchical chain (global, then medium / small drill-downs), local-specific,
multi-hop, then the diverse pool. Revisit QAs are a chain of their own, kept for later turns.

Chains: item 0 asks about the global summary; then medium and small alternate, each medium item about a medium
chunk's summary (a follow-up of the global question), each small item about a small chunk inside that medium
chunk (a follow-up of the medium question). Questions are generated in three rounds (global and parentless
kinds, then medium, then small), each round one batched ``generate`` across documents.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("hierarchical", "local", "multihop", "diverse", "revisit")
_ROUND = {"global": 0, "medium": 1, "small": 2, "local": 0, "multihop": 0, "diverse": 0}


@dataclass
class QAItem:
    """One planned QA: ``level`` says what ``sources`` index (small chunks, medium chunks, or nothing for global).

    ``parent`` is the index (in the same plan) of the question this one follows up, ``style`` a diverse style.
    """

    kind: str
    level: str
    sources: list[int]
    parent: int | None = None
    style: str | None = None
    question: str | None = None
    answer: str | None = None

    @property
    def round(self) -> int:
        """The question round this item is generated in (0, 1 or 2)."""
        return _ROUND[self.level]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form for the document's state file."""
        return asdict(self)


def _rng(seed: int, doc_id: str, what: str) -> random.Random:
    h = hashlib.blake2b(f"{seed}\x1f{doc_id}\x1f{what}".encode(), digest_size=8)
    return random.Random(int.from_bytes(h.digest(), "little"))


def _chain(kind: str, n: int, medium: list[list[int]], rng: random.Random, base: int) -> list[QAItem]:
    items: list[QAItem] = []
    glob = medium_at = None
    for i in range(n):
        if i == 0:
            items.append(QAItem(kind, "global", []))
            glob = base
        elif i % 2 == 1:
            m = rng.randrange(len(medium))
            items.append(QAItem(kind, "medium", [m], parent=glob))
            medium_at = base + i
        else:
            m = items[-1].sources[0]
            items.append(QAItem(kind, "small", [rng.choice(medium[m])], parent=medium_at))
    return items


def plan_document(
    doc_id: str,
    n_small: int,
    medium: list[list[int]],
    *,
    seed: int,
    hierarchical: int,
    local: int,
    multihop: int,
    multihop_chunks: int,
    diverse: int,
    revisit: int,
    styles: tuple[str, ...],
) -> tuple[list[QAItem], list[QAItem]]:
    """Plan the document's QAs (in conversation order) and its revisit QAs.

    Multi-hop items link ``min(multihop_chunks, n_small)`` distinct small chunks (with one small chunk a
    multi-hop question is about that chunk). Diverse items draw a style and a material: a small chunk or a
    medium chunk's summary.
    """
    rng = _rng(seed, doc_id, "plan")
    qas = _chain("hierarchical", hierarchical, medium, rng, 0)
    qas += [QAItem("local", "local", [rng.randrange(n_small)]) for _ in range(local)]
    k = min(multihop_chunks, n_small)
    qas += [QAItem("multihop", "multihop", sorted(rng.sample(range(n_small), k))) for _ in range(multihop)]
    for _ in range(diverse):
        style = rng.choice(styles)
        if rng.random() < 0.5:
            qas.append(QAItem("diverse", "diverse", [rng.randrange(n_small)], style=style))
        else:  # a medium summary: sources holds -1 - medium index
            qas.append(QAItem("diverse", "diverse", [-1 - rng.randrange(len(medium))], style=style))
    revisits = _chain("revisit", revisit, medium, _rng(seed, doc_id, "revisit"), 0)
    return qas, revisits
