"""The gait twin is informative but not trivial: the affective features carry the emotion, a random
forest on all of them beats every single feature by a wide margin, and the majority class by more."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from runner.data.skeleton.datamodule import batched_affective_features, stratified_split
from runner.data.skeleton.layouts import EGAIT16
from runner.data.skeleton.twin import CLASS_NAMES, generate_gaits


def test_no_single_affective_feature_reaches_the_forest():
    gaits = generate_gaits(800, 30, min_frames=32, max_frames=48, seed=7)
    features = batched_affective_features(gaits.sequences, EGAIT16).numpy()
    labels = gaits.labels
    assert set(labels.tolist()) == set(range(len(CLASS_NAMES)))
    split = stratified_split(labels, 0.0, 0.25, seed=0)
    train, test = split["train"], split["test"]
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1)
    forest_acc = forest.fit(features[train], labels[train]).score(features[test], labels[test])
    single = [
        DecisionTreeClassifier(max_depth=4, random_state=0)
        .fit(features[train][:, [j]], labels[train])
        .score(features[test][:, [j]], labels[test])
        for j in range(features.shape[1])
    ]
    majority = np.bincount(labels[test]).max() / len(test)
    assert forest_acc > majority + 0.3, (forest_acc, majority)
    assert max(single) < forest_acc - 0.15, (max(single), forest_acc)
    assert forest_acc < 0.97, "the twin must not be trivially separable"
