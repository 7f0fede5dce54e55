from pathlib import Path

import pytest
import torch

from scouter.metrics import (
    cosine_similarity_matrix,
    least_similar_classes,
    select_explained_class,
    wordnet_similarity_matrix,
)
from scouter.metrics.explained_class import _find_wordnet_dir

try:
    WORDNET = _find_wordnet_dir(None)
except FileNotFoundError:
    WORDNET = None

try:
    import nltk  # noqa: F401

    HAVE_NLTK = True
except ImportError:
    HAVE_NLTK = False


def test_least_similar_excludes_self_and_takes_first_on_ties():
    sim = torch.tensor([[1.0, 0.2, 0.2], [0.2, 1.0, 0.9], [-5.0, 0.9, -9.0]])
    # row 2: its own -9 on the diagonal is ignored
    assert least_similar_classes(sim).tolist() == [1, 0, 0]


def test_model_similarity_from_class_vectors():
    weights = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.1]])
    sim = cosine_similarity_matrix(weights)
    torch.testing.assert_close(sim.diagonal(), torch.ones(3))
    # class 1 is orthogonal to 0 (cos 0) but slightly aligned with 2 (cos > 0)
    assert least_similar_classes(sim).tolist() == [2, 0, 0]


def test_select_explained_class_modes():
    target = torch.tensor([0, 2, 1])
    logits = torch.tensor([[0.0, 1.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    table = torch.tensor([2, 0, 1])
    assert select_explained_class(target).tolist() == [0, 2, 1]
    assert select_explained_class(target, "predicted", logits=logits).tolist() == [1, 0, 2]
    assert select_explained_class(target, "least_similar", least_similar=table).tolist() == [
        2,
        1,
        0,
    ]
    assert select_explained_class(target, "explicit", explicit=1).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="least_similar"):
        select_explained_class(target, "least_similar")


def test_missing_wordnet_database_names_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        wordnet_similarity_matrix(["n01440764"], wordnet_dir=tmp_path)


def _independent_wup(root: Path, offset_a: int, offset_b: int) -> float:
    """Wu–Palmer read straight from data.noun hypernym pointers, with nltk's conventions.

    LCS = the common hypernym farthest from the root by its *shortest* path (nltk
    ``use_min_depth=True``); ``depth = longest path from LCS to root + 1``; ``len_x`` = shortest
    path between x and the LCS through a common ancestor; ``wup = 2·depth / (len_a + len_b +
    2·depth)``.
    """
    data = (root / "data.noun").open("rb")

    def hypernyms(offset):
        data.seek(offset)
        fields = data.readline().decode().split()
        i = 4 + 2 * int(fields[3], 16)
        out = []
        for p in range(int(fields[i])):
            symbol, target, pos = fields[i + 1 + 4 * p : i + 4 + 4 * p]
            if symbol in ("@", "@i") and pos == "n":
                out.append(int(target))
        return out

    def distances(offset):  # shortest upward distance to every ancestor (including itself)
        dist, frontier = {offset: 0}, [offset]
        while frontier:
            nxt = []
            for o in frontier:
                for h in hypernyms(o):
                    if h not in dist:
                        dist[h] = dist[o] + 1
                        nxt.append(h)
            frontier = nxt
        return dist

    def min_depth(offset):
        return _root_distance(offset, min)

    def max_depth(offset):
        return _root_distance(offset, max)

    def _root_distance(offset, pick):
        parents = hypernyms(offset)
        return 0 if not parents else 1 + pick(_root_distance(p, pick) for p in parents)

    def path(a, b):
        da, db = distances(a), distances(b)
        return min(da[x] + db[x] for x in set(da) & set(db))

    da, db = distances(offset_a), distances(offset_b)
    common = set(da) & set(db)
    deepest = max(min_depth(c) for c in common)
    candidates = [c for c in common if min_depth(c) == deepest]
    assert len(candidates) == 1  # nltk breaks ties by name; these pairs have none
    lcs = candidates[0]
    depth = max_depth(lcs) + 1
    return 2 * depth / (path(offset_a, lcs) + path(offset_b, lcs) + 2 * depth)


@pytest.mark.skipif(WORDNET is None, reason="no local WordNet 3.0 (apt-get install wordnet-base)")
@pytest.mark.skipif(not HAVE_NLTK, reason="nltk not installed (pip install nltk)")
def test_wordnet_wu_palmer_on_imagenet_wnids():
    # tench, goldfish, English springer, chain saw
    wnids = ["n01440764", "n01443537", "n02102040", "n03000684"]
    sim = wordnet_similarity_matrix(wnids)
    assert sim.shape == (4, 4) and torch.equal(sim, sim.T)
    torch.testing.assert_close(sim.diagonal(), torch.ones(4, dtype=torch.float64))
    for i, j in [(0, 1), (0, 2), (1, 3), (2, 3)]:
        expected = _independent_wup(WORDNET, int(wnids[i][1:]), int(wnids[j][1:]))
        assert sim[i, j].item() == pytest.approx(expected), (wnids[i], wnids[j])
    # the two fish are closest; every animal's least similar class is the chain saw
    assert least_similar_classes(sim).tolist() == [3, 3, 3, 0]
    with pytest.raises(ValueError, match="noun synset"):
        wordnet_similarity_matrix(["n00000001"])
