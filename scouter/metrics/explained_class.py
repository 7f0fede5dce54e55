"""Which class each explanation is for (docs/metrics.md#explained-class).

SCOUTER+ and post-hoc baselines explain the ground-truth class (or the predicted one); SCOUTER−
explains the *least similar class* to the ground truth, chosen from a ``(K, K)`` similarity matrix:
either the model's own (e.g. cosine between class slots / weights, :func:`cosine_similarity_matrix`)
or WordNet Wu–Palmer similarity of the classes' synsets (:func:`wordnet_similarity_matrix`, as the
paper's evaluation did; docs/metrics.md#explained-class).
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_WORDNET_DIRS",
    "cosine_similarity_matrix",
    "least_similar_classes",
    "select_explained_class",
    "wordnet_similarity_matrix",
]

#: Folders searched for a WordNet 3.0 database (``data.noun``, ``index.noun`` …) when none is given:
#: ``$WORDNET_DIR``, then Debian/Ubuntu's ``wordnet-base`` package, then nltk's data folders.
DEFAULT_WORDNET_DIRS = (
    "/usr/share/wordnet",
    "~/nltk_data/corpora/wordnet",
    "/usr/share/nltk_data/corpora/wordnet",
)

# The 45 lexicographer file names of WordNet 3.0 (lexnames(5WN)). nltk's reader requires a
# `lexnames` file, which Debian's wordnet-base does not ship; Wu–Palmer does not use it.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEXNAME_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def cosine_similarity_matrix(weights: Tensor) -> Tensor:
    """Cosine similarity between class vectors.

    Args:
        weights: ``(K, D)`` one vector per class (e.g. a class's slots flattened, or FC rows).

    Returns:
        ``(K, K)`` similarities in ``[−1, 1]``.
    """
    unit = F.normalize(weights.flatten(1), dim=1)
    return unit @ unit.T


def least_similar_classes(similarity: Tensor) -> Tensor:
    """For every class, the other class with the lowest similarity (first one on ties).

    Args:
        similarity: ``(K, K)`` similarity matrix, ``K >= 2``.

    Returns:
        ``(K,)`` long tensor ``lsc`` with ``lsc[c] != c``.
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or len(similarity) < 2:
        raise ValueError(f"similarity must be (K, K) with K >= 2, got {tuple(similarity.shape)}")
    masked = similarity.clone()
    masked.fill_diagonal_(float("inf"))  # a class is never its own least similar class
    return masked.argmin(dim=1)


def select_explained_class(
    target: Tensor,
    mode: Literal["target", "predicted", "least_similar", "explicit"] = "target",
    *,
    logits: Tensor | None = None,
    least_similar: Tensor | None = None,
    explicit: int | Tensor | None = None,
) -> Tensor:
    """Choose the class each image is explained for.

    Args:
        target: ``(B,)`` ground-truth labels.
        mode: ``"target"`` (SCOUTER+, baselines), ``"predicted"`` (argmax of ``logits``),
            ``"least_similar"`` (SCOUTER−: ``least_similar[target]``) or ``"explicit"``.
        logits: ``(B, K)`` for ``"predicted"``.
        least_similar: ``(K,)`` table from :func:`least_similar_classes` for ``"least_similar"``.
        explicit: one class index or ``(B,)`` indices for ``"explicit"``.

    Returns:
        ``(B,)`` long tensor on ``target``'s device.
    """
    if mode == "target":
        return target.long()
    if mode == "predicted":
        if logits is None:
            raise ValueError("mode='predicted' needs logits (B, K)")
        return logits.argmax(dim=-1).to(target.device)
    if mode == "least_similar":
        if least_similar is None:
            raise ValueError(
                "mode='least_similar' needs least_similar (K,): "
                "least_similar_classes(cosine_similarity_matrix(...) or wordnet_similarity_matrix(...))"
            )
        return least_similar.to(target.device)[target.long()]
    if mode == "explicit":
        if explicit is None:
            raise ValueError("mode='explicit' needs explicit (a class index or (B,) indices)")
        return torch.as_tensor(explicit, device=target.device).long().expand(target.shape)
    raise ValueError(
        f"mode must be 'target', 'predicted', 'least_similar' or 'explicit', got {mode!r}"
    )


def _find_wordnet_dir(wordnet_dir: str | os.PathLike | None) -> Path:
    candidates = (
        [wordnet_dir]
        if wordnet_dir is not None
        else [os.environ.get("WORDNET_DIR"), *DEFAULT_WORDNET_DIRS]
    )
    for candidate in candidates:
        if candidate and (Path(candidate).expanduser() / "data.noun").is_file():
            return Path(candidate).expanduser().resolve()
    searched = ", ".join(str(c) for c in candidates if c)
    raise FileNotFoundError(
        f"no WordNet 3.0 database (data.noun, index.noun, ...) found in: {searched}. "
        "Install it locally — on Debian/Ubuntu `apt-get install wordnet-base` (→ /usr/share/wordnet) — "
        "or put the WordNet 3.0 `dict` folder somewhere and pass wordnet_dir= or set WORDNET_DIR. "
        "It is never downloaded."
    )


@functools.lru_cache(maxsize=2)
def _wordnet_reader(root: Path):
    # Cached: building nltk's lemma index of the whole database takes seconds.
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as err:
        raise ImportError(
            "least_similar='wordnet' needs nltk (`pip install nltk`) and a local WordNet 3.0 "
            "database (e.g. `apt-get install wordnet-base`)"
        ) from err

    class _LocalWordNetReader(WordNetCorpusReader):
        """nltk's reader on a plain WordNet folder, supplying `lexnames` when it is absent."""

        def open(self, file):  # noqa: A003 - nltk's API name
            if file == "lexnames" and not (root / "lexnames").is_file():
                lines = (
                    f"{i:02d}\t{name}\t{_LEXNAME_CATEGORY[name.split('.')[0]]}"
                    for i, name in enumerate(_LEXNAMES)
                )
                return io.StringIO("\n".join(lines) + "\n")
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # The cross-version mapping serves only multilingual (OMW) lookups and would load
            # nltk's own downloaded `wordnet` corpus; we read WordNet 3.0 directly.
            return None

    # nltk (>= 3.9) only reads corpora below its data roots; declaring the folder as one is the
    # sanctioned way to read a local database. Nothing is downloaded.
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*multilingual functions.*")
        reader = _LocalWordNetReader(str(root), None)
    if reader.get_version() != "3.0":
        raise ValueError(
            f"WordNet database in {root} is version {reader.get_version()}; ImageNet wnids are "
            "WordNet 3.0 offsets — point wordnet_dir at a WordNet 3.0 `dict` folder"
        )
    return reader


def wordnet_similarity_matrix(
    wnids: Sequence[str], wordnet_dir: str | os.PathLike | None = None
) -> Tensor:
    """Wu–Palmer similarity between the WordNet noun synsets of ImageNet-style wnids.

    ImageNet wnids are WordNet 3.0 noun offsets: ``n01440764`` is the noun synset at offset
    ``01440764``. Similarity is nltk's ``Synset.wup_similarity``.

    Args:
        wnids: ``K`` ids like ``"n01440764"``.
        wordnet_dir: a local WordNet 3.0 ``dict`` folder; default searches ``$WORDNET_DIR`` and
            :data:`DEFAULT_WORDNET_DIRS`. Never downloads.

    Returns:
        ``(K, K)`` float64 similarities in ``(0, 1]``.

    Raises:
        FileNotFoundError: no database found (the message says where to put one).
        ValueError: a wnid is malformed or not a noun synset of the database.
    """
    reader = _wordnet_reader(_find_wordnet_dir(wordnet_dir))
    synsets = []
    for wnid in wnids:
        if len(wnid) != 9 or wnid[0] != "n" or not wnid[1:].isdigit():
            raise ValueError(f"wnid {wnid!r} is not of the form 'n' + 8 digits (e.g. n01440764)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nltk warns and returns None for bad offsets
                synset = reader.synset_from_pos_and_offset("n", int(wnid[1:]))
        except Exception as err:  # some nltk versions raise WordNetError instead
            raise ValueError(f"wnid {wnid!r} is not a noun synset in the WordNet database") from err
        if synset is None:
            raise ValueError(f"wnid {wnid!r} is not a noun synset in the WordNet database")
        synsets.append(synset)
    k = len(synsets)
    sim = torch.ones(k, k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            sim[i, j] = sim[j, i] = synsets[i].wup_similarity(synsets[j])
    return sim
