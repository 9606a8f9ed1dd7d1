"""The dependency base a run image's environment layer is built on (remote/depbase): chosen from
requirements.txt's text and the base of the newest image on the engine (canned text)."""

from mm4watch.remote import depbase

WHERE = "me@mini"


def test_no_earlier_image_bases_on_requirements_as_they_are():
    base = depbase.choose("numpy\npandas>=2  # frames\n\n# a comment\n", None, WHERE)
    assert base.text == "numpy\npandas>=2"
    assert "requirements.txt as it is now (no image of the project on me@mini has a base)" in base.note


def test_a_few_changed_lines_keep_the_base():
    base = depbase.choose("numpy\npandas>=2\nsix\n", "numpy\npandas>=2", WHERE)
    assert base.text == "numpy\npandas>=2"
    assert "(2 lines); 1 line(s) changed since are installed on top" in base.note
    same = depbase.choose("numpy\npandas>=2\n", "numpy\npandas>=2", WHERE)
    assert same.text == "numpy\npandas>=2" and "as requirements.txt (2 lines)" in same.note


def test_many_changed_lines_make_a_new_base():
    now = "\n".join(f"pkg{n}" for n in range(depbase.REBASE_AFTER + 1))
    base = depbase.choose(now, "numpy", WHERE)
    assert base.text == now
    assert f"{depbase.REBASE_AFTER + 2} lines changed since the base of the newest image on me@mini" in base.note
    kept = depbase.choose("\n".join(f"pkg{n}" for n in range(depbase.REBASE_AFTER)), "", WHERE)
    assert kept.text == ""  # exactly REBASE_AFTER added: still on top


def test_a_line_that_is_not_a_plain_requirement_has_no_base():
    for line in ("-r base.txt", "-e ./lib", "pkg @ https://example.com/pkg.whl", "./wheels/pkg.whl"):
        base = depbase.choose(f"numpy\n{line}\n", "numpy", WHERE)
        assert base.text == "" and "not a plain requirement" in base.note, line


def test_only_a_dockerfile_that_declares_the_argument_gets_it():
    assert depbase.declared('FROM x\nARG MM4_BASE_REQUIREMENTS=""\nRUN true\n')
    assert depbase.declared("FROM x\n  arg MM4_BASE_REQUIREMENTS\n")
    assert not depbase.declared("FROM x\n# ARG MM4_BASE_REQUIREMENTS\nARG MM4_BASE_REQUIREMENTS_OTHER\n")
