import re

from desy import schema
from tests.conftest import SHARED


def test_41_unique_features_in_dataset_order():
    assert len(schema.FEATURE_NAMES) == 41
    assert len(set(schema.FEATURE_NAMES)) == 41
    assert schema.FEATURE_NAMES[:4] == ("duration", "protocol_type", "service", "flag")
    assert schema.FEATURE_NAMES[-1] == "dst_host_srv_rerror_rate"
    assert schema.RAW_COLUMNS == schema.FEATURE_NAMES + ("label", "difficulty")


def test_every_feature_is_named_in_the_shared_spec():
    spec = (SHARED / "docs" / "kdd-features.md").read_text()
    missing = [name for name in schema.FEATURE_NAMES if not re.search(rf"\b{name}\b", spec)]
    assert missing == []


def test_kinds_partition_the_features():
    kinds = set(schema.FEATURE_KINDS.values())
    assert kinds == {"cat", "int", "bool", "rate"}
    assert set(schema.CATEGORICAL_FEATURES) | set(schema.NUMERIC_FEATURES) == set(
        schema.FEATURE_NAMES
    )
    assert len(schema.RATE_FEATURES) == 15


def test_vocabularies():
    assert schema.PROTOCOLS == ("icmp", "tcp", "udp")
    assert len(schema.SERVICES) == 70 and "http" in schema.SERVICES and "private" in schema.SERVICES
    assert len(schema.FLAGS) == 13 and {"SF", "S0", "REJ", "RSTOS0", "SH"} <= set(schema.FLAGS)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", s) for s in schema.SERVICES)


def test_label_categories():
    assert set(schema.LABEL_CATEGORY.values()) == set(schema.CATEGORIES)
    assert schema.category_of("neptune") == "dos"
    assert schema.category_of("nmap") == "probe"
    assert schema.category_of("guess_passwd") == "r2l"
    assert schema.category_of("buffer_overflow") == "u2r"
    assert schema.category_of("normal") == "normal"


def test_unknown_label_is_named():
    try:
        schema.category_of("martian")
    except KeyError as err:
        assert "martian" in str(err)
    else:
        raise AssertionError("no KeyError")
