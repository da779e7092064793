"""Fuzzing the .vqz reader: every mutated file loads and decodes to its declared shapes,
or raises FormatError, quickly and in bounded memory (see tests/vqz_mutations.py)."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vqz_mutations as mut


@pytest.fixture(scope="module")
def bases():
    return mut.base_files()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz") / "case.vqz")


def test_base_files_are_valid(bases, scratch):
    assert all(mut.check(b, scratch) == "ok" for b in bases)


@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(0, 9), st.integers(0, 2**32 - 1))
def test_mutated_files_load_or_raise_format_error(bases, scratch, which, seed):
    data = mut.mutate(bases[which], random.Random(seed))
    mut.check(data, scratch)


@pytest.mark.parametrize("which, seed", [(6, 4027312056), (6, 744828966)])
def test_campaign_findings_stay_fixed(bases, scratch, which, seed):
    """Cases the 50,000-file campaign found (a record with group_size 0 divided by zero)."""
    assert mut.check(mut.mutate(bases[which], random.Random(seed)), scratch) == "rejected"


def test_stored_parameters_pass_the_fit_checks(bases, scratch):
    head, body = mut.split(bases[6])  # uniform, per channel
    records = mut.get_records(head)
    records["w"]["params"]["group_size"] = 0
    mut.set_records(head, records)
    import vqcompress as vq
    from vqcompress import FormatError
    with open(scratch, "wb") as f:
        f.write(mut.join(head, body))
    with pytest.raises(FormatError, match="group_size"):
        vq.load(scratch)
