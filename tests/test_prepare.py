import pandas as pd

from desy import schema
from pipelines.dataset import read_raw
from pipelines.prepare import labelled, split_train
from tests.conftest import DATA


def test_labelled_types_and_labels():
    frame = labelled(read_raw(DATA / "KDDTest-21.txt"))
    assert list(frame.columns) == [
        *schema.FEATURE_NAMES,
        "label",
        "category",
        "is_attack",
        "difficulty",
    ]
    assert pd.api.types.is_string_dtype(frame["service"]) and frame["src_bytes"].dtype == "int64"
    assert frame["serror_rate"].dtype == "float64"
    assert set(frame["category"]) == set(schema.CATEGORIES)
    assert (frame["is_attack"] == (frame["category"] != "normal")).all()


def test_split_is_deterministic_stratified_and_disjoint():
    frame = labelled(read_raw(DATA / "KDDTrain+_20Percent.txt"))
    frame["row"] = range(len(frame))
    train, validation = split_train(frame, 0.2, 42)
    again, _ = split_train(frame, 0.2, 42)
    assert train["row"].tolist() == again["row"].tolist()
    assert set(train["row"]).isdisjoint(validation["row"])
    assert len(train) + len(validation) == len(frame)
    share = validation["category"].value_counts(normalize=True)
    overall = frame["category"].value_counts(normalize=True)
    assert (share - overall).abs().max() < 0.005
