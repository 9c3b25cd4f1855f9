"""Fusion, refinement and top-k on small hand-made inputs whose answers are known."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import softmax
from sklearn.utils.estimator_checks import check_no_attributes_set_in_init

from pinid.models.fusion import cascade, given_or_ones, late
from pinid.models.ranking import top_k
from pinid.models.refinement import SimilarityRefiner
from pinid.models.similarity import cosine, make_space


def test_cascade_is_the_elementwise_product_renormalised():
    r_text = np.array([[0.6, 0.3, 0.1]])
    r_image = np.array([[0.2, 0.5, 0.3]])
    fused = cascade(r_text, r_image)
    expected = np.array([[0.12, 0.15, 0.03]]) / 0.30
    np.testing.assert_allclose(fused, expected)
    assert fused.argmax() == 1  # text alone would pick user 0


def test_a_weighted_cascade_raises_each_view_to_its_weight_and_zero_leaves_it_out():
    rng = np.random.default_rng(3)
    text, char, image = (softmax(rng.normal(size=(4, 6)), axis=1) for _ in range(3))
    np.testing.assert_array_equal(cascade(text, char, image, weights=(1.0, 1.0, 1.0)),
                                  cascade(text, char, image))  # fmt: skip
    np.testing.assert_allclose(cascade(text, char, image, weights=(1.0, 0.0, 1.0)),
                               cascade(text, image))  # fmt: skip
    halved = cascade(text, char, image, weights=(0.5, 0.5, 1.0))
    np.testing.assert_allclose(halved, cascade(np.sqrt(text * char), image))


def test_the_cascade_leaves_its_views_as_they_were():
    rng = np.random.default_rng(4)
    views = [softmax(rng.normal(size=(5, 7)), axis=1) for _ in range(3)]
    before = [v.copy() for v in views]
    for weights in [(1.0, 1.0, 1.0), (0.0, 0.5, 1.0), (1.0, 0.0, 0.5)]:
        fused = cascade(*views, weights=weights)
        assert not any(np.shares_memory(fused, v) for v in views)
        for view, kept in zip(views, before, strict=True):
            np.testing.assert_array_equal(view, kept)


def test_a_view_a_pin_lacks_contributes_ones_and_is_not_asked_when_no_pin_has_it():
    asked = []

    def proba() -> np.ndarray:
        asked.append(1)
        return np.full((2, 3), 0.25)

    some = given_or_ones(proba, np.array([True, False, True]), 3)
    np.testing.assert_array_equal(some, [[0.25] * 3, [1.0] * 3, [0.25] * 3])
    np.testing.assert_array_equal(given_or_ones(proba, np.array([True, True]), 3), proba())
    asked.clear()
    np.testing.assert_array_equal(given_or_ones(proba, np.array([False, False]), 3),
                                  np.ones((2, 3)))  # fmt: skip
    assert not asked


def test_late_fusion_weights_image_by_lambda():
    r_text, r_image = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    np.testing.assert_allclose(late(r_text, r_image, 0.3), [[0.7, 0.3]])


def test_top_k_is_sorted_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.5, 0.5, 0.0, 0.9]])
    assert top_k(scores, 3).tolist() == [[4, 1, 2]]
    assert top_k(scores, 10).tolist() == [[4, 1, 2, 0, 3]]


def _toy_refiner(chunk_size=256):
    # users 0, 1, 2 with two training pins each, in a 2-d image space
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [1, 1], [0.7, 0.7]], dtype=float)
    y = np.array([0, 0, 1, 1, 2, 2])
    blocks = make_space("image", sp.csr_matrix((6, 1)), train)
    return SimilarityRefiner(top_k=2, chunk_size=chunk_size).fit(blocks, y)


def test_refinement_reweights_only_the_top_k_by_best_similarity():
    refiner = _toy_refiner()
    scores = np.array([[0.40, 0.35, 0.25]])  # user 2 is outside the top 2
    query = make_space("image", sp.csr_matrix((1, 1)), np.array([[0.0, 1.0]]))
    refined = refiner.refine(scores, query)
    assert refined.users.tolist() == [[1, 0]]  # user 1's pin (0, 1) matches exactly
    np.testing.assert_allclose(refined.similarity[0, 0], 1.0)
    np.testing.assert_allclose(refined.scores[0, 0], 0.35 * 1.0)
    expected_l0 = 0.1 / np.hypot(0.9, 0.1)  # best of user 0's pins against (0, 1)
    np.testing.assert_allclose(refined.similarity[0, 1], expected_l0, rtol=1e-6)
    assert refined.evidence[0].tolist() == [2, 1]  # the training pins that gave those maxima


def test_refinement_is_the_same_in_chunks_of_one():
    rng = np.random.default_rng(0)
    scores = rng.random((7, 3))
    query = make_space("image", sp.csr_matrix((7, 1)), rng.random((7, 2)))
    whole = _toy_refiner(256).refine(scores, query)
    pieces = _toy_refiner(1).refine(scores, query)
    np.testing.assert_array_equal(whole.users, pieces.users)
    np.testing.assert_array_equal(whole.evidence, pieces.evidence)
    np.testing.assert_allclose(whole.similarity, pieces.similarity, rtol=1e-6)  # float32 BLAS


def test_joint_space_is_unit_norm_and_falls_back_to_the_present_modality():
    text = sp.csr_matrix(np.array([[3.0, 4.0], [0.0, 0.0]]))
    image = np.array([[1.0, 0.0], [2.0, 0.0]])
    blocks = make_space("joint", text, image)
    sims = cosine(blocks, blocks)
    np.testing.assert_allclose(np.diag(sims), [1.0, 1.0], rtol=1e-6)
    # pin 1 has no text: its similarity to pin 0 is image-only cosine scaled by pin 0's share
    np.testing.assert_allclose(sims[0, 1], 1 / np.sqrt(2), rtol=1e-6)


def test_estimators_follow_scikit_learn_conventions():
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_set_params,
    )

    from pinid.models.paper_model import PaperModel

    for estimator in (PaperModel(C_text=10.0, similarity="text"), SimilarityRefiner(top_k=5)):
        name = type(estimator).__name__
        check_no_attributes_set_in_init(name, estimator)
        check_get_params_invariance(name, estimator)
        check_set_params(name, estimator)
        check_parameters_default_constructible(name, estimator)
        assert clone(estimator).get_params() == estimator.get_params()


def test_style_blocks_weigh_pooled_and_style_features_alike_and_pass_pooled_alone():
    from pinid.models.modality import StyleBlocks

    rng = np.random.default_rng(0)
    pooled, style = rng.uniform(0, 6, (50, 8)), rng.normal(0, 0.01, (50, 4))  # unlike scales
    blocks = StyleBlocks(pooled=8).fit(np.hstack([pooled, style]))
    Z = blocks.transform(np.hstack([pooled, style]))
    np.testing.assert_allclose(np.linalg.norm(Z[:, :8], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(Z[:, 8:], axis=1), 1.0, rtol=1e-5)
    alone = StyleBlocks(pooled=8).fit(pooled)
    assert np.array_equal(alone.transform(pooled), pooled.astype(np.float32))
    check_no_attributes_set_in_init("StyleBlocks", StyleBlocks())


def test_refinement_matches_a_brute_force_over_every_training_pin():
    rng = np.random.default_rng(1)
    n_train, n_users, dim = 300, 25, 16
    y = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n_train - n_users)])
    train = rng.random((n_train, dim))
    train[5] = train[7] = train[9]  # identical pins: the evidence is the first of them
    y[[7, 9]] = y[5]
    blocks = make_space("image", sp.csr_matrix((n_train, 1)), train)
    queries = np.vstack([rng.random((40, dim)), train[9:10]])
    query = make_space("image", sp.csr_matrix((len(queries), 1)), queries)
    scores = rng.random((len(queries), n_users))
    scores[-1, y[5]] = 2.0  # the copy of pin 9 is asked about its user
    refined = SimilarityRefiner(top_k=10, chunk_size=16).fit(blocks, y).refine(scores, query)

    sims = cosine(query, blocks)
    for i in range(len(queries)):
        for user, pin, similarity in zip(
            refined.users[i], refined.evidence[i], refined.similarity[i], strict=True
        ):
            mine = np.flatnonzero(y == user)
            assert pin == mine[np.argmax(sims[i, mine])]
            np.testing.assert_allclose(similarity, sims[i, mine].max(), rtol=1e-5)
        assert set(refined.users[i]) == set(top_k(scores[i : i + 1], 10)[0])
    assert refined.evidence[-1, refined.users[-1].tolist().index(y[5])] == 5


def _counting_pairs(refiner: SimilarityRefiner) -> list[int]:
    """The number of (pin, user) pairs of each similarity search the refiner runs."""
    counts, search = [], refiner.users_.nearest_pairs

    def counted(query_blocks, rows, users, m):
        counts.append(len(users))
        return search(query_blocks, rows, users, m)

    refiner.users_.nearest_pairs = counted
    return counts


@pytest.mark.parametrize("space", ["image", "joint"])
def test_best_is_the_refined_top_user_from_fewer_similarities(space):
    rng = np.random.default_rng(5)
    n_train, n_users, n = 300, 25, 200
    y = np.concatenate([np.arange(n_users), rng.integers(0, n_users, n_train - n_users)])
    text = sp.random(n_train + n, 40, 0.15, random_state=6, format="csr")
    image = rng.random((n_train + n, 16))
    twins = np.flatnonzero((y == 3) | (y == 4))  # users 3 and 4: the same pin, so equal l
    image[twins] = image[twins[0]]
    text = sp.diags(np.isin(np.arange(n_train + n), twins, invert=True).astype(float)) @ text
    blocks = make_space(space, text[:n_train], image[:n_train])
    query = make_space(space, text[n_train:], image[n_train:])
    peaked = softmax(rng.normal(scale=4.0, size=(n // 2, n_users)), axis=1)
    flat = rng.random((n - n // 2, n_users))
    scores = np.vstack([peaked, flat])
    scores[:20, 3] = scores[:20, 4] = 2.0  # equal fused and refined scores
    refiner = SimilarityRefiner(top_k=10, chunk_size=64).fit(blocks, y)
    ranked = refiner.refine(scores, query).users[:, 0]
    searched = _counting_pairs(refiner)
    best = refiner.best(scores, query)
    # an exact tie may go either way: a float32 product's last bit depends on its other rows
    assert set(best[:20]) <= {3, 4} and set(ranked[:20]) <= {3, 4}
    np.testing.assert_array_equal(best[20:], ranked[20:])
    assert 0 < sum(searched) < 0.6 * n * 10  # peaked rows need their leader alone, mostly
    assert (ranked != top_k(scores, 1)[:, 0]).any()  # refinement changed some answers
    with pytest.raises(ValueError, match="non-negative"):
        refiner.best(scores - 1.0, query)


def test_best_lets_a_runner_up_with_a_closer_pin_overtake_the_leader():
    refiner = _toy_refiner()
    query = make_space("image", sp.csr_matrix((2, 1)), np.array([[0.0, 1.0], [0.0, 1.0]]))
    # row 0: user 0 leads but its pins are far (l = 0.11); user 1 has the pin itself (l = 1).
    # row 1: user 1's fused score is below user 0's refined one, so it cannot overtake.
    scores = np.array([[0.50, 0.45, 0.05], [0.99, 0.10, 0.0]])
    searched = _counting_pairs(refiner)
    assert refiner.best(scores, query).tolist() == [1, 0]
    assert sum(searched) == 3  # both leaders, and only row 0's runner-up


def _search_corpus(dim: int):
    """Training pins of 4 users (user 3 with one pin, some pins without text or image) and
    queries, with word, character and image vectors of ``dim`` dimensions."""
    rng = np.random.default_rng(3)
    y = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3])
    words = sp.random(len(y), 30, 0.2, random_state=4).toarray()
    chars = sp.random(len(y), 50, 0.3, random_state=6, format="csr")
    images = rng.random((len(y), dim)).astype(np.float32)
    words[1] = 0  # a training pin without text
    images[4] = 0  # and one without image
    query_words = sp.random(6, 30, 0.3, random_state=5).toarray()
    query_words[2] = 0  # a query without text
    queries = (sp.csr_matrix(query_words),
               sp.random(6, 50, 0.3, random_state=7, format="csr"),
               rng.random((6, dim)).astype(np.float32))  # fmt: skip
    queries[2][3] = 0  # and one without image
    return sp.csr_matrix(words), chars, images, y, queries


def _unit(block):
    return make_space("text", block, None)[0] if sp.issparse(block) else make_space(
        "image", None, block)[0]  # fmt: skip


@pytest.mark.parametrize("common", [None, 3])
@pytest.mark.parametrize("space", ["joint", "text", "image"])
def test_candidate_search_matches_a_brute_force(space, common, monkeypatch):
    from pinid.models import candidates
    from pinid.models.candidates import CandidateSearch

    if common is not None:  # most terms rare: compared through their postings, not densely
        monkeypatch.setattr(candidates, "MAX_COMMON", common)
    words, chars, images, y, queries = _search_corpus(dim=8)  # exact: narrower than projected
    candidates = np.array([[3, 0, 1], [1, 2, 3], [0, 1, 2]] * 2)
    search = CandidateSearch(words, chars, images, y, 4, evidence_space=space)
    assert all(t.n_common == (common or t.n_common) for t in search.terms)
    found = search.search(*queries, candidates, evidence=True, chunk=4)
    cosines = [cosine([_unit(q)], [_unit(t)]) for q, t in zip(queries, (words, chars, images),
                                                             strict=True)]  # fmt: skip
    has_text = abs(queries[0]).sum(axis=1).A1 > 0
    has_image = np.abs(queries[2]).sum(axis=1) > 0
    for i, row in enumerate(candidates):
        for j, user in enumerate(row):
            for s, sims in enumerate(cosines):
                mine = np.sort(sims[i, y == user])[::-1]
                np.testing.assert_allclose(found.stats[i, j, s],
                                           [mine[0], mine[:3].mean(), mine.mean()],
                                           rtol=1e-5, atol=1e-6)  # fmt: skip
            # the evidence: the pin most similar in the evidence space, as make_space has it
            name = space
            if space == "joint" and not (has_text[i] and has_image[i]):
                name = "text" if has_text[i] else "image"
            q = make_space(name, queries[0][i], queries[2][i : i + 1])
            t = make_space(name, words, images)
            expected = cosine(q, t)[0]
            pins = np.flatnonzero(y == user)
            assert found.evidence[i, j] == pins[np.argmax(expected[pins])]
            assert found.similarity[i, j] == pytest.approx(expected[pins].max(), abs=1e-6)


@pytest.mark.parametrize("m", [1, 3, 4, 50])
def test_similarity_statistics_are_best_mean_of_best_three_and_mean_leaving_their_input(m):
    from pinid.models.candidates import _statistics

    rng = np.random.default_rng(m)
    similarity = rng.integers(-3, 4, (2, 5, m)).astype(np.float32) / 4  # many ties
    before = similarity.copy()
    stats = _statistics(similarity)
    ordered = -np.sort(-similarity, axis=-1)
    np.testing.assert_allclose(stats[..., 0], ordered[..., 0])
    np.testing.assert_allclose(stats[..., 1], ordered[..., :3].mean(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(stats[..., 2], similarity.mean(axis=-1), rtol=1e-6)
    np.testing.assert_array_equal(similarity, before)


def test_candidate_search_in_projected_images_keeps_the_evidence_similarity_exact():
    from pinid.models.candidates import PROJECTED_DIM, CandidateSearch

    words, chars, images, y, queries = _search_corpus(dim=2 * PROJECTED_DIM)
    copies = 30  # more training pins than dimensions: a projection that loses some
    words, chars = sp.vstack([words] * copies, format="csr"), sp.vstack([chars] * copies)
    y = np.tile(y, copies)
    images = np.random.default_rng(8).random((len(y), images.shape[1]), dtype=np.float32)
    images[4] = 0  # still a pin without image
    candidates = np.array([[3, 0, 1], [1, 2, 3], [0, 1, 2]] * 2)
    search = CandidateSearch(words, chars, images, y, 4, evidence_space="image")
    assert search.basis.shape == (2 * PROJECTED_DIM, PROJECTED_DIM)
    found = search.search(*queries, candidates, evidence=True)
    exact = cosine([_unit(queries[2])], [_unit(images)])
    chosen = np.take_along_axis(exact, found.evidence, axis=1)
    np.testing.assert_allclose(found.similarity, chosen, rtol=1e-5, atol=1e-6)
    for i, row in enumerate(candidates):  # the statistics: within the projection's error
        for j, user in enumerate(row):
            mine = np.sort(exact[i, y == user])[::-1]
            assert abs(found.stats[i, j, 2, 0] - mine[0]) < 0.1


def test_candidate_search_with_fewer_pins_than_image_dimensions_compares_them_exactly():
    """Their span is found from the pins' Gram matrix: fewer axes than PROJECTED_DIM, and the
    image statistics equal the full comparison's."""
    from pinid.models.candidates import PROJECTED_DIM, CandidateSearch

    words, chars, images, y, queries = _search_corpus(dim=20 * PROJECTED_DIM)
    candidates = np.array([[3, 0, 1], [1, 2, 3], [0, 1, 2]] * 2)
    search = CandidateSearch(words, chars, images, y, 4, evidence_space="image")
    assert search.basis.shape == (20 * PROJECTED_DIM, len(y) - 1)  # one pin has no image
    found = search.search(*queries, candidates)
    exact = cosine([_unit(queries[2])], [_unit(images)])
    for i, row in enumerate(candidates):
        for j, user in enumerate(row):
            mine = np.sort(exact[i, y == user])[::-1]
            np.testing.assert_allclose(found.stats[i, j, 2], [mine[0], mine[:3].mean(),
                                       mine.mean()], rtol=1e-5, atol=1e-6)  # fmt: skip


def test_principal_directions_of_fewer_pins_than_features_are_the_top_eigenvectors():
    """Between PROJECTED_DIM and the features' width: the top directions from the Gram matrix,
    the same subspace as from the features' second moment."""
    from pinid.models.candidates import PROJECTED_DIM, principal_directions

    rng = np.random.default_rng(5)
    rows = rng.normal(size=(300, 600)) * np.geomspace(10.0, 0.01, 600)  # a decaying spectrum
    basis = principal_directions(rows.astype(np.float32), PROJECTED_DIM)
    _, vectors = np.linalg.eigh(rows.T @ rows)
    top = vectors[:, ::-1][:, :PROJECTED_DIM]
    assert basis.shape == (600, PROJECTED_DIM)
    np.testing.assert_allclose(basis @ basis.T, top @ top.T, atol=1e-4)


def test_the_second_moment_sums_every_block_of_rows():
    from pinid.models.candidates import _second_moment

    rows = np.random.default_rng(6).random((50, 9), dtype=np.float32)
    np.testing.assert_allclose(_second_moment(rows, block=7), rows.T.astype(np.float64) @ rows,
                               rtol=1e-5)  # fmt: skip


def test_select_C_stops_after_the_first_drop_and_keeps_the_exhaustive_choice():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from pinid.models.selection import select_C

    rng = np.random.default_rng(9)  # 40 features for 60 pins: large C overfits

    def pins(n):
        y = rng.integers(0, 3, n)
        X = rng.normal(size=(n, 40))
        X[:, 0] += y
        X[:, 1] -= y * 0.5
        return X, y

    (X_train, y_train), (X_val, y_val) = pins(60), pins(300)
    grid = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    model = Pipeline([("logistic", LogisticRegression(max_iter=1000))])
    every = {
        C: float(
            np.mean(model.set_params(logistic__C=C).fit(X_train, y_train).predict(X_val) == y_val)
        )
        for C in grid
    }
    peak = max(grid, key=lambda C: (every[C], -C))
    assert grid.index(peak) < len(grid) - 2  # the data does rise and then fall
    best, scores = select_C(model, X_train, y_train, X_val, y_val, grid[::-1])
    assert best == peak
    fitted = list(scores)
    assert fitted == list(grid[: len(fitted)])  # smallest C first
    assert scores == {C: every[C] for C in fitted}
    assert scores[fitted[-1]] < every[peak] and len(fitted) < len(grid)  # stopped at the drop
    assert all(scores[C] <= scores[later] for C, later in pairwise(fitted[:-1]))  # then rising


def test_past_the_peak_needs_a_rise_before_the_fall():
    from pinid.models.selection import past_the_peak

    assert past_the_peak([0.61, 0.76, 0.78, 0.77])
    assert past_the_peak([0.27, 0.33, 0.32])
    assert not past_the_peak([0.61, 0.76, 0.78])  # still rising
    assert not past_the_peak([0.004, 0.003])  # underfit noise: keep going
    assert not past_the_peak([0.004, 0.003, 0.05])
    assert not past_the_peak([0.30, 0.29, 0.28])  # falling from the start: every C is tried
    assert not past_the_peak([0.5, 0.6, 0.6])  # a tie is not a fall


def test_many_users_still_get_fitted_views():
    """With 1,500 users the mean gradient starts below scikit-learn's 1e-4: plain lbfgs stops
    at zeros (chance accuracy); the views' solver caps the tolerance and iterates, on dense
    and on sparse features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, Normalizer

    from pinid.models.modality import make_image_model

    rng = np.random.default_rng(0)
    users, dim = 1500, 32
    centres = rng.gamma(1.0, 1.0, dim) + rng.gamma(1.0, 0.15, (users, dim))

    def pins(k):
        X = np.repeat(centres, k, axis=0) + rng.gamma(1.0, 0.15, (users * k, dim))
        return X, np.repeat(np.arange(users), k)

    (X, y), (X_test, y_test) = pins(4), pins(1)
    plain = Pipeline([("l2", Normalizer()), ("logistic", LogisticRegression(C=100.0))])
    plain.fit(X, y)
    assert plain[-1].n_iter_[0] == 0 and np.mean(plain.predict(X_test) == y_test) < 0.01
    dense = make_image_model(100.0).fit(X, y)
    sparse = make_image_model(100.0)
    sparse.steps.insert(1, ("sparse", FunctionTransformer(sp.csr_matrix, accept_sparse=True)))
    sparse.fit(X, y)
    for fitted in (dense, sparse):
        assert fitted[-1].n_iter_[0] > 5
        # 0.43 for the dense fit; without the cap it stops after 1 iteration at 0.30
        assert np.mean(fitted.predict(X_test) == y_test) > 0.4


@pytest.mark.parametrize("n_users", [1, 8, 25])
def test_ranks_of_candidates_are_their_places_in_a_stable_sort_of_the_row(n_users):
    from pinid.models.candidates import ranks_of

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (40, n_users)).astype(float)  # many ties: the first user first
    scores[::5] = 1.0  # a view a pin lacks: every user tied
    users = np.argsort(rng.random((40, n_users)), axis=1)[:, :6]
    order = np.argsort(-scores, axis=1, kind="stable")
    places = np.argsort(order, axis=1)  # each user's place in its row's order
    expected = np.take_along_axis(places, users, axis=1)
    np.testing.assert_array_equal(ranks_of(scores, users), expected)
    np.testing.assert_array_equal(ranks_of(scores, users, block=60), expected)  # 2 rows a block


class _Fixed:
    """A fitted view's probabilities, given: row i of ``proba`` for pin i."""

    def __init__(self, proba: np.ndarray) -> None:
        self.proba, self.classes_ = proba, np.arange(proba.shape[1])

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.proba[rows]


@pytest.mark.parametrize("chunk", [2_000_000, 7 * 50])  # one chunk; chunks of 7 pins
def test_the_cascade_leaves_out_a_confident_view_that_pushes_many_authors_out_of_the_top_k(
    chunk, monkeypatch
):
    from pinid.models import selection
    from pinid.models.selection import CASCADE_GRID, choose_cascade

    monkeypatch.setattr(selection, "CASCADE_CHUNK", chunk)
    rng = np.random.default_rng(4)
    n, users, k = 400, 50, 3
    y = rng.integers(0, users, n)
    author = np.eye(users)[y]

    def view(signal: float, wrong: float = 0.0) -> np.ndarray:
        """Weakly right (``signal``), and confidently wrong on half the pins (``wrong``)."""
        logits = rng.normal(size=(n, users)) + signal * author
        logits[: n // 2] -= wrong * author[: n // 2]
        return softmax(logits, axis=1)

    text, misleading, image = view(1.5), view(0.5, wrong=12.0), view(2.0)
    for proba in (text, misleading, image):
        proba[-10:] = 1.0 / users  # every user tied: ranked by index, as the model ranks them
    pins, everyone = np.arange(n), np.ones(n, bool)

    def choose(views, text_given: np.ndarray = everyone, y=y):
        views = [_Fixed(p) for p in views]
        return choose_cascade(views, [pins] * 3, [text_given, text_given, everyone], y, k=k)

    weights, scores = choose([view(8.0) for _ in range(3)])  # every cascade right: the first
    assert weights == (1.0, 1.0, 1.0) == CASCADE_GRID[0] and len(scores) == len(CASCADE_GRID)
    assert set(scores.values()) == {(1.0, 1.0)}
    weights, scores = choose([text, misleading, image])
    assert weights[1] == 0.0 and weights[2] == 1.0
    assert scores[weights][0] > scores[CASCADE_GRID[0]][0] + 0.2
    for w, (recall, accuracy) in scores.items():  # the model's cascade with those weights
        ranked = top_k(cascade(text, misleading, image, weights=w), k)
        assert recall == np.mean((ranked == y[:, None]).any(axis=1))
        assert accuracy == np.mean(ranked[:, 0] == y)
    ranked = top_k(cascade(text, misleading, image, weights=weights), k)
    hit = int(np.flatnonzero((ranked == y[:, None]).any(axis=1))[0])
    stranger = y.copy()
    stranger[hit] = users  # an author the views do not know: a miss for every cascade
    _, with_stranger = choose([text, misleading, image], y=stranger)
    assert with_stranger[weights][0] == pytest.approx(scores[weights][0] - 1 / n)
    # one pin gained is noise: the plain product stays
    strong = [view(8.0) for _ in range(3)]
    strong[1][0] = softmax(-20.0 * author[0])  # the characters' view buries pin 0's author
    weights, scores = choose(strong)
    assert weights == CASCADE_GRID[0]
    assert scores[(1.0, 0.0, 1.0)][0] == 1.0 > scores[weights][0] == 1.0 - 1 / n
    # pins without text: the text views say nothing of them, the misleading one included
    _, scores = choose([text, misleading, image], text_given=np.zeros(n, bool))
    image_only = top_k(image, k)
    assert scores[CASCADE_GRID[0]][0] == np.mean((image_only == y[:, None]).any(axis=1))
