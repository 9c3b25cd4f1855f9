"""Account linking measured on split accounts: a user's pins made into two pseudo-accounts, and
the linker asked to find each one's twin among all the other accounts.

Two protocols, over every user with at least ``MIN_PINS`` training pins: *random* halves, and
*board* halves (whole boards to one side or the other, largest first, to the smaller side, each
side with at least ``MIN_SIDE`` pins), so that the twins post about different things as a
person's second account usually does. Users not split stay whole, as accounts to be confused
with. Each protocol fits its own linker on the pseudo-accounts; it never sees which are twins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import normalize

from pinid.features.text import make_text_vectorizer
from pinid.models.final_model import FinalModel
from pinid.models.io import TrainingPins
from pinid.models.linking import AccountLinker, account_pairs, membership, model_linker

MIN_PINS = 8
MIN_SIDE = 3
TOP_PAIRS = 20
PROTOCOLS = ("random", "board")
SEPARATOR = "\x00"  # pseudo-account = user + SEPARATOR + side: no user name holds it


def split_accounts(
    users: Sequence[str], boards: Sequence[str | None], protocol: str, seed: int
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Every pin's (pseudo-)account and the twin pairs made."""
    users = np.asarray(users).astype(str)
    accounts = users.astype(object)
    rng = np.random.default_rng(seed)
    twins = []
    for user in np.unique(users):
        pins = np.flatnonzero(users == user)
        if len(pins) < MIN_PINS:
            continue
        side = _random_sides(pins, rng) if protocol == "random" else _board_sides(pins, boards)
        if side is None:
            continue
        names = (f"{user}{SEPARATOR}0", f"{user}{SEPARATOR}1")
        for pin, s in zip(pins, side, strict=True):
            accounts[pin] = names[s]
        twins.append(names)
    return accounts.astype(str), twins


def _random_sides(pins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = np.zeros(len(pins), np.int64)
    side[rng.permutation(len(pins))[len(pins) // 2 :]] = 1
    return side


def _board_sides(pins: np.ndarray, boards: Sequence[str | None]) -> np.ndarray | None:
    """Whole boards to the side with fewer pins so far, largest board first (ties by name);
    None when the user has one board or a side would have fewer than ``MIN_SIDE`` pins."""
    counts = Counter(boards[p] or "" for p in pins)
    if len(counts) < 2:
        return None
    sizes, side_of = [0, 0], {}
    for board, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        side_of[board] = int(sizes[1] < sizes[0])
        sizes[side_of[board]] += n
    if min(sizes) < MIN_SIDE:
        return None
    return np.array([side_of[boards[p] or ""] for p in pins])


def twin_metrics(scores: np.ndarray, names: np.ndarray, twins: list[tuple[str, str]]) -> dict:
    """Recall@1 and MRR of each pseudo-account's twin among all other accounts, and the ROC
    AUC of twin pairs against pairs of different users. ``scores``: (accounts, accounts)."""
    position = {name: i for i, name in enumerate(names)}
    ranks = []
    for a, b in twins:
        for x, y in ((a, b), (b, a)):
            row = scores[position[x]].astype(np.float64)
            row[position[x]] = -np.inf
            twin = row[position[y]]  # an account scored level with the twin shares its rank
            ranks.append(1 + (row > twin).sum() + ((row == twin).sum() - 1) / 2)
    user = np.array([name.split(SEPARATOR)[0] for name in names])
    i, j = np.triu_indices(len(names), 1)
    same = user[i] == user[j]  # twin pairs; a user left whole has no pair with itself
    ranks = np.array(ranks, float)
    return {
        "recall_at_1": round(float((ranks == 1).mean()), 4),
        "mrr": round(float((1.0 / ranks).mean()), 4),
        "auc": round(float(roc_auc_score(same, scores[i, j])), 4),
        "accounts": len(names),
        "twin_pairs": len(twins),
    }


def _full_scores(linker: AccountLinker) -> np.ndarray:
    scores = linker.scores(np.arange(len(linker.accounts_)))
    return np.where(np.isfinite(scores), scores, np.nan_to_num(scores, neginf=-1e9))


def _mean_words_scores(texts: Sequence[str], accounts: np.ndarray, names: np.ndarray):
    """The plainest linker, as a floor: each account's mean word tf-idf, cosine."""
    words = make_text_vectorizer().fit_transform(list(texts))
    means = normalize(membership(np.searchsorted(names, accounts), len(names)) @ words)
    return (means @ means.T).toarray()


def linking_results(
    texts: Sequence[str],
    image_vectors: np.ndarray,
    users: Sequence[str],
    boards: Sequence[str | None],
    seed: int,
) -> dict:
    """``results.json["linking"]``: each protocol's twin metrics (and the floor's), or why a
    protocol was left out."""
    results: dict = {
        "min_pins": MIN_PINS,
        "method": "account profiles (words, character n-grams, text shape, image), "
        "cosine less hubness (CSLS), averaged",
    }
    for protocol in PROTOCOLS:
        if protocol == "board" and not any(boards):
            results["board_skipped"] = "the data has no boards"
            continue
        accounts, twins = split_accounts(users, boards, protocol, seed)
        if not twins:
            results[f"{protocol}_skipped"] = f"no user with {MIN_PINS}+ training pins to split"
            continue
        linker = AccountLinker(random_state=seed).fit(texts, image_vectors, accounts)
        names = linker.accounts_
        entry = twin_metrics(_full_scores(linker), names, twins)
        entry["floor_mean_words"] = {
            k: v for k, v in twin_metrics(_mean_words_scores(texts, accounts, names), names,
                                          twins).items() if k in ("recall_at_1", "mrr", "auc")
        }  # fmt: skip
        results[protocol] = entry
    return results


def real_pairs(model: FinalModel, pins: TrainingPins, top: int = TOP_PAIRS) -> list[dict]:
    """The ``top`` pairs of the model's users that ``pinid link`` lists, for results.json: each
    evidence pin also by its row among the training pins (the model folder's thumbnail)."""
    row = {pin_id: i for i, pin_id in enumerate(pins.pin_ids)}
    records = []
    for pair in account_pairs(model_linker(model, pins), pins, top):
        record = pair.model_dump(exclude={"evidence"})
        record["evidence"] = [
            {**e.model_dump(exclude={"images", "image_urls"}), "rows": [row[p] for p in e.pins]}
            for e in pair.evidence
        ]
        records.append(record)
    return records
