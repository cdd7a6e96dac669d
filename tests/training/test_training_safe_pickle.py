"""The refs pickle is read with an unpickler that refuses to run code."""

import pickle

import pytest

from rrsis_geo.errors import InputError
from training.datasets.safe_pickle import UnsafePickleError, safe_load, safe_loads


class _TouchFile:
    """Unpickling this would create a file (via pathlib) if the unpickler allowed the call."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


class _System:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload", [_TouchFile, _System])
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_that_would_call_a_function_is_refused(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps([{"ref_id": 1, "evil": payload(str(marker))}], protocol=protocol)
    # the same bytes really do create the file with the standard unpickler ...
    pickle.loads(data)
    assert marker.exists()
    marker.unlink()
    # ... and are refused, running nothing, by ours
    with pytest.raises(UnsafePickleError, match="would run code"):
        safe_loads(data)
    assert not marker.exists()


def test_refs_file_with_code_is_refused_with_its_name(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(_TouchFile(str(marker)), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p"):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips(protocol):
    refs = [
        {
            "ref_id": 7, "ann_id": 70, "image_id": 3, "split": "train", "category_id": 2,
            "sentences": [{"raw": "the storage tank on the left", "sent_id": 1, "tokens": ["the", "tank"]}],
            "score": 0.5, "flag": True, "none": None, "blob": b"\x00\xffbytes", "ids": {1, 2}, "pair": (1, "a"),
            "frozen": frozenset({3}),
        }
    ]
    assert safe_loads(pickle.dumps(refs, protocol=protocol)) == refs


def test_garbage_is_a_clear_error():
    with pytest.raises(InputError, match="not a readable pickle"):
        safe_loads(b"not a pickle at all")
