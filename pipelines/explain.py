"""Why a verdict: each feature's contribution to a category's probability under one model version.

Tree path contributions (treeinterpreter's method), computed from the forest's own arrays: in
each tree, the class proportions move from the root's to the leaf's along the connection's path,
and each step's change is credited to the feature its split tests; averaged over the trees. The
forest's average root proportions (the base) plus the 41 features' contributions equal its
predicted probability exactly (up to float rounding). The one-hot columns of protocol_type,
service and flag are summed back into their feature.

Computed on demand, never on /classify's path: a version's sklearn pipeline is loaded once from
the MLflow registry (load_explainer caches a few), and a connection's explanation is cached by
its features (explain).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from desy import schema
from desy.inference import decide
from desy.registry import META_FILE, MODEL_NAME, model_uri, tracking_uri

#: How many features an explanation names, the most contributing first (the rest are summed).
SHOWN = 10


@dataclass(frozen=True)
class Contribution:
    """One feature's value, its typical value in normal training traffic (None if the version
    did not record it) and its contribution to the explained probability."""

    feature: str
    value: Any
    typical: Any
    contribution: float

    def line(self) -> str:
        """In words: `serror_rate 1.00 — typical normal 0.00 — +0.31`."""
        typical = "?" if self.typical is None else shown_value(self.feature, self.typical)
        return (
            f"{self.feature} {shown_value(self.feature, self.value)} — typical normal {typical}"
            f" — {self.contribution:+.2f}"
        )


@dataclass(frozen=True)
class Explanation:
    """A connection's explanation: the category explained, its probability, the base (the
    forest's average over its training data) and every feature's contribution, largest first."""

    model_version: str
    verdict: str
    category: str
    probability: float
    attack_probability: float
    base: float
    contributions: tuple[Contribution, ...]

    def headline(self) -> str:
        return (
            f"P({self.category}) {self.probability:.2f} under {MODEL_NAME} v{self.model_version}"
            f" (attack probability {self.attack_probability:.2f}, verdict {self.verdict})"
            f" = base {self.base:.2f}"
            " + the features' contributions:"
        )

    def lines(self, shown: int = SHOWN) -> list[str]:
        """The headline, the `shown` largest contributions, then the rest summed."""
        rest = self.contributions[shown:]
        tail = [f"{len(rest)} other features together: {sum(c.contribution for c in rest):+.2f}"]
        return [self.headline(), *(c.line() for c in self.contributions[:shown]), *tail]


def shown_value(feature: str, value: Any) -> str:
    """A feature value as an analyst reads it: rates with two decimals, counts as integers."""
    if feature in schema.CATEGORICAL:
        return str(value)
    number = float(value)
    if schema.FEATURE_KINDS[feature] == "rate":
        return f"{number:.2f}"
    return str(int(number)) if number.is_integer() else f"{number:g}"


def source_features(pipeline: Pipeline) -> np.ndarray:
    """For each column the pipeline's encoder outputs, the index (in schema.FEATURE_NAMES) of
    the feature it comes from: a one-hot column its categorical feature's."""
    sources: list[int] = []
    for name, transformer, columns in pipeline[-2].transformers_:
        if name == "remainder":
            continue
        widths = (
            [len(c) for c in transformer.categories_]
            if hasattr(transformer, "categories_")
            else [1] * len(columns)
        )
        for column, width in zip(columns, widths, strict=True):
            sources += [schema.FEATURE_NAMES.index(column)] * width
    return np.asarray(sources)


class ForestExplainer:
    """Path contributions of a fitted pipeline (encoder, then a RandomForestClassifier), its
    trees' nodes laid end to end."""

    def __init__(self, pipeline: Pipeline, meta: Mapping[str, Any], version: str = "") -> None:
        self.encode = pipeline[:-1]
        self.forest: RandomForestClassifier = copy.copy(pipeline[-1])  # the same trees
        self.forest.n_jobs = 1  # one connection at a time: threads cost more than they save
        self.classes = [str(c) for c in self.forest.classes_]
        self.threshold = meta["threshold"]
        self.typical: dict[str, Any] = dict(meta.get("normal_typical") or {})
        self.version = version
        trees = [tree.tree_ for tree in self.forest.estimators_]
        offsets = np.cumsum([0] + [tree.node_count for tree in trees])
        value = np.concatenate([tree.value[:, 0, :] for tree in trees])
        self.proportions = value / value.sum(axis=1, keepdims=True)
        self.parent = np.concatenate(
            [parents(tree, offset) for tree, offset in zip(trees, offsets, strict=False)]
        )
        split = np.concatenate([tree.feature for tree in trees])  # negative at a leaf
        self.split_source = np.where(split >= 0, source_features(pipeline)[split.clip(0)], -1)
        self.roots = offsets[:-1]

    @property
    def base(self) -> np.ndarray:
        """The forest's average root proportions per class: the probability before any split."""
        return self.proportions[self.roots].mean(axis=0)

    def contributions(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(contributions [rows, 41 features, classes], probabilities [rows, classes]) of the
        rows of frame (the 41 features by name): base + contributions = probabilities."""
        path = self.forest.decision_path(self.encode.transform(frame[list(schema.FEATURE_NAMES)]))
        rows, nodes = path[0].nonzero()
        parent = self.parent[nodes]
        step = parent >= 0
        rows, nodes, parent = rows[step], nodes[step], parent[step]
        out = np.zeros((len(frame), len(schema.FEATURE_NAMES), len(self.classes)))
        delta = self.proportions[nodes] - self.proportions[parent]
        np.add.at(out, (rows, self.split_source[parent]), delta / len(self.roots))
        return out, np.clip(self.base + out.sum(axis=1), 0.0, 1.0)  # float rounding

    def explain(self, features: Mapping[str, Any], category: str | None = None) -> Explanation:
        """The explanation of one connection's features for its verdict's category (the one
        given, a stored alert's; else this model's), or for a normal verdict its most probable
        attack category."""
        frame = pd.DataFrame([{name: features[name] for name in schema.FEATURE_NAMES}])
        contributions, probabilities = self.contributions(frame)
        found = decide(probabilities, self.classes, self.threshold)
        verdict = category or str(found.category[0])
        if verdict == "normal":  # its most probable attack category: every one is at threshold 0
            category = str(decide(probabilities, self.classes, 0.0).category[0])
        else:
            category = verdict
        k = self.classes.index(category)
        ordered = sorted(
            (
                Contribution(name, features[name], self.typical.get(name), float(share))
                for name, share in zip(schema.FEATURE_NAMES, contributions[0, :, k], strict=True)
            ),
            key=lambda c: -abs(c.contribution),
        )
        return Explanation(
            model_version=self.version,
            verdict=verdict,
            category=category,
            probability=float(probabilities[0, k]),
            attack_probability=float(found.attack_probability[0]),
            base=float(self.base[k]),
            contributions=tuple(ordered),
        )


def parents(tree: Any, offset: int) -> np.ndarray:
    """Each node's parent in one tree, numbered from offset (-1 for the root)."""
    parent = np.full(tree.node_count, -1)
    for children in (tree.children_left, tree.children_right):
        inner = np.flatnonzero(children >= 0)
        parent[children[inner]] = inner + offset
    return parent


@lru_cache(maxsize=4)
def load_explainer(version: str) -> ForestExplainer:
    """The explainer of a registered version of desy-nids (its sklearn pipeline and metadata,
    from the MLflow registry at desy.registry.tracking_uri()); a few versions stay loaded."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    uri = model_uri(version)
    directory = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    meta = json.loads((directory / META_FILE).read_text())
    return ForestExplainer(mlflow.sklearn.load_model(uri), meta, version)


@lru_cache(maxsize=1024)
def _explained(version: str, features: tuple[Any, ...], category: str | None) -> Explanation:
    return load_explainer(version).explain(dict(zip(schema.FEATURE_NAMES, features)), category)


def explain(version: str, features: Mapping[str, Any], category: str | None = None) -> Explanation:
    """The explanation of a connection's features under a registered version (cached: a
    stored connection's features and version do not change)."""
    return _explained(version, tuple(features[name] for name in schema.FEATURE_NAMES), category)
