"""What the causal trainer says when dataset.json's domain records cannot name a style."""
from nnunet_causal.training.causal.domains import domain_fallback


def test_no_records_one_domain_and_several():
    none = domain_fallback({"channel_names": {"0": "CT"}})
    assert none.startswith("no domain records in dataset.json") and "recipe applies unchanged" in none
    assert domain_fallback({"domains": {}}) == none
    one = domain_fallback({"domains": {"a": {"domain": "siteA"}, "b": {"domain": "siteA", "style": "x"}}})
    assert "one domain only ('siteA')" in one and "leave-one-domain-out" in one
    assert domain_fallback({"domains": {"a": {"domain": "siteA"}, "b": {"domain": "siteB"}}}) is None
