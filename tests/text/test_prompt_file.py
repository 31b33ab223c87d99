"""Prompt-file grammar and its errors (file and line named)."""
import pytest

from nnunet_causal.errors import PromptError
from nnunet_causal.text.label_text import label_to_text, prompts_for_labels
from nnunet_causal.text.prompt_file import parse_prompts, read_prompt_file
from nnunet_causal.errors import DatasetError


def test_grammar(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# header\n\nliver\nrenal organs | kidneys|both kidneys  # merged\n  spleen  \n")
    specs = read_prompt_file(f)
    assert [s.text for s in specs] == ["liver", "renal organs", "spleen"]
    assert specs[1].synonyms == ["kidneys", "both kidneys"] and specs[1].line == 4


@pytest.mark.parametrize("content,line", [("liver\nkidney ||x\n", 2), ("liver\n| spleen\n", 2),
                                          ("liver\nspleen |\n", 2), ("liver\n\nLiver\n", 3)])
def test_syntax_errors_name_file_and_line(tmp_path, content, line):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(PromptError, match=rf"bad.txt, line {line}"):
        read_prompt_file(f)


def test_empty_missing_and_binary_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    with pytest.raises(PromptError, match="no prompts"):
        read_prompt_file(empty)
    with pytest.raises(PromptError, match="does not exist"):
        read_prompt_file(tmp_path / "nope.txt")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00liver")
    with pytest.raises(PromptError, match="UTF-8"):
        read_prompt_file(binary)


def test_command_line_prompts():
    assert [s.text for s in parse_prompts(["liver", "kidneys|renal organs"])] == ["liver", "kidneys"]
    with pytest.raises(PromptError, match="prompt 2 is empty"):
        parse_prompts(["liver", "  "])


def test_label_text_and_dataset_prompts():
    assert label_to_text("kidney_left") == "left kidney"
    assert label_to_text("adrenal_gland_right") == "right adrenal gland"
    assert label_to_text("vertebrae_L5") == "L5 vertebra"
    dj = {"labels": {"background": 0, "liver": 1, "kidney_left": 2, "ignore": 3}, "prompts": {"liver": ["hepar"]}}
    assert prompts_for_labels(dj) == {"liver": ["hepar"], "kidney_left": ["left kidney"]}
    with pytest.raises(DatasetError, match="'spleen', which is not in 'labels'"):
        prompts_for_labels({"labels": {"background": 0, "liver": 1}, "prompts": {"spleen": ["spleen"]}})
    with pytest.raises(DatasetError, match="empty prompt"):
        prompts_for_labels({"labels": {"background": 0, "liver": 1}, "prompts": {"liver": [""]}})
