"""The README is the user's manual: its settings table must be the one the code has."""

from pathlib import Path

from app.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_section_is_generated_from_the_settings_table():
    text = README.read_text()
    section = text.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert section == markdown_table()


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.startswith("make run")
    assert "\nmake test" in first_block
