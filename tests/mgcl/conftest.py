"""Fixtures of the MGCL tests (the tiny sentence-transformers model is built once per session)."""
import pytest

from tests.mgcl.fixtures import make_tiny_sentence_transformer


@pytest.fixture(scope="session")
def tiny_st(tmp_path_factory):
    return make_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny_st"))
