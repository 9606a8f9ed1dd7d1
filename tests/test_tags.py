import json

import pytest
from conftest import code, markdown, notebook_json

from mm4watch.core.errors import NotebookError
from mm4watch.core.tags import code_hash, read_tag


def tag_of(*cells):
    return read_tag(notebook_json(*cells).encode(), "nb.ipynb")[1]


@pytest.mark.parametrize(
    "line",
    ["# mm4: remote", "#mm4:remote", "# MM4 : Remote", "   #  mm4  :  REMOTE  ", "# mm4: remote   "],
)
def test_tag_spellings_count(line):
    tag = tag_of(code("import os\n" + line + "\nx = 1"))
    assert tag is not None and tag.cell == 0 and tag.line == 2


@pytest.mark.parametrize(
    "line",
    ["# mm4: remoteish", "# mm4: local", "# mm4 remote", "# mm5: remote", "x = 1  # mm4: remote", "# not mm4: remote"],
)
def test_near_misses_do_not_count(line):
    assert tag_of(code(line)) is None


def test_markdown_raw_and_outputs_do_not_count():
    raw = {"cell_type": "raw", "metadata": {}, "source": "# mm4: remote"}
    with_output = code("print('hi')")
    with_output["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "# mm4: remote\n"}]
    assert tag_of(markdown("# mm4: remote"), raw, with_output) is None


def test_inside_a_string_does_not_count():
    assert tag_of(code('s = """\n# mm4: remote\n"""\n')) is None
    assert tag_of(code("s = '# mm4: remote'")) is None


def test_source_as_list_of_lines_and_cell_index():
    cell = code("")
    cell["source"] = ["x = 1\n", "# mm4: remote executor=mini\n"]
    tag = tag_of(markdown("intro"), code("y = 2"), cell)
    assert (tag.cell, tag.line, tag.executor) == (2, 2, "mini")


def test_options():
    tag = tag_of(code("# mm4: remote executor=mini timeout=30m"))
    assert tag.executor == "mini"
    assert tag.timeout_s == 1800
    assert dict(tag.options) == {"executor": "mini", "timeout": "30m"}


def test_tag_in_cell_with_magics_and_shell():
    tag = tag_of(code("%matplotlib inline\n!ls -la\n# mm4: remote\nimport os"))
    assert tag is not None and tag.line == 3


def test_tag_in_cell_that_does_not_parse_falls_back_to_lines():
    tag = tag_of(code("%%bash\n# mm4: remote\necho 'unterminated"))
    assert tag is not None


@pytest.mark.parametrize(
    "line, message",
    [
        ("# mm4: remote executor", "not key=value"),
        ("# mm4: remote colour=red", "unknown tag option 'colour'"),
        ("# mm4: remote timeout=soon", "timeout"),
    ],
)
def test_bad_options_are_clear_errors(line, message):
    with pytest.raises(NotebookError) as err:
        tag_of(code("x = 1"), code(line))
    text = str(err.value)
    assert message in text and "nb.ipynb: cell 1, line 1" in text


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"cells": [', "not valid notebook JSON"),
        ("", "not valid notebook JSON"),
        ("[]", "no 'cells' list"),
        ('{"worksheets": []}', "nbformat 3"),
        ('{"cells": [{"source": "x"}]}', "cell 0 is not a notebook cell"),
        ('{"cells": [{"cell_type": "code", "source": 5}]}', "neither text nor a list"),
    ],
)
def test_malformed_notebooks_are_clear_errors(text, message):
    with pytest.raises(NotebookError) as err:
        read_tag(text.encode(), "bad.ipynb")
    assert message in str(err.value) and str(err.value).startswith("bad.ipynb")


def test_json_error_names_line_and_column():
    with pytest.raises(NotebookError, match=r"line 3, column"):
        read_tag(b'{\n "cells": [\n  oops\n ]\n}', "x.ipynb")


def test_bytes_that_are_not_utf8_are_a_clear_error():
    with pytest.raises(NotebookError, match=r"^x.ipynb: not UTF-8 text; a notebook is JSON in UTF-8$"):
        read_tag(b'{"cells": [], "x": "\xff"}', "x.ipynb")


def test_code_hash_ignores_outputs_metadata_and_markdown():
    base = json.loads(notebook_json(markdown("a"), code("x = 1")))
    changed = json.loads(notebook_json(markdown("b"), code("x = 1")))
    changed["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    changed["cells"][1]["execution_count"] = 7
    changed["metadata"]["extra"] = True
    assert code_hash(base) == code_hash(changed)
    edited = json.loads(notebook_json(markdown("a"), code("x = 2")))
    assert code_hash(base) != code_hash(edited)
