"""The settings model reports every problem in one pass: checks across fields, repeats, missing values."""

from __future__ import annotations

from typing import Annotated

import pytest

from sidecar.core.settings_model import (
    Model,
    Unique,
    ValidationError,
    ValidationInfo,
    check_each,
    field,
    field_validator,
    model_validator,
)


class Item(Model):
    name: str
    size: int = 1


class Pair(Model):
    low: int = 0
    high: int = 10
    items: Annotated[list[Item], Unique("name", "item")] = []
    label: str | None = None

    @field_validator("high")
    @classmethod
    def _above_low(cls, value: int, info: ValidationInfo) -> int:
        if "low" in info.data and value <= info.data["low"]:
            raise ValueError(f"high ({value}) must be above low ({info.data['low']})")
        return value

    @field_validator("label", always=True)
    @classmethod
    def _label_when_items(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("items") and not value:
            raise ValueError("items need a label")
        return value


def problems(**data: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Pair.model_validate(data)
    return [(".".join(str(p) for p in loc), message) for loc, message in info.value.problems]


def test_a_validator_reads_the_valid_fields_before_it_defaults_included() -> None:
    assert problems(low=5, high=3) == [("high", "high (3) must be above low (5)")]
    assert problems(high=-1) == [("high", "high (-1) must be above low (0)")]  # low's default
    found = problems(low="x", high=-1)
    assert [where for where, _ in found] == ["low"], "an invalid field is not compared with"


def test_repeats_are_reported_with_the_items_own_problems_in_one_pass() -> None:
    found = problems(items=[{"name": "a"}, {"name": "b", "size": "big"}, {"name": "a", "colour": 1}])
    assert found == [
        ("items.1.size", "expected an integer, got a string"),
        ("items.2.name", "'a' is also the name of items[0]: item names must be unique"),
        ("items.2.colour", "unknown setting: remove it or fix its spelling"),
    ]


def test_an_always_validator_runs_on_a_missing_field_after_what_is_given() -> None:
    assert problems(items=[{"name": "a"}], high=0, low=1) == [
        ("high", "high (0) must be above low (1)"),
        ("label", "items need a label"),
    ]
    assert Pair.model_validate({"items": [{"name": "a"}], "label": "x"}).label == "x"


def test_problems_follow_the_order_of_the_input() -> None:
    found = problems(zeta=1, high="x", alpha=2, low="y")
    assert [where for where, _ in found] == ["zeta", "high", "alpha", "low"]


class Window(Model):
    """A section whose check across fields is a ``fields`` model validator."""

    items: list[Item] = []
    low: int = 0
    high: int = 10
    colour: str = "red"

    @model_validator(mode="fields")
    @classmethod
    def _across(cls, info: ValidationInfo) -> None:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if "low" in info.data and "high" in info.data and info.data["high"] <= info.data["low"]:
            found.append((("high",), "high must be above low"))
        for index, item in info.items.get("items", []):
            if item.size > info.data.get("high", 10**9):
                found.append((("items", index, "size"), "larger than high"))
        if found:
            raise ValidationError(found)


def window_problems(**data: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Window.model_validate(data)
    return [(".".join(str(p) for p in loc), message) for loc, message in info.value.problems]


def test_a_fields_validator_runs_on_the_valid_fields_whatever_else_is_wrong() -> None:
    found = window_problems(colour=1, high=1, low=5)
    assert found == [
        ("colour", "expected a string, got an integer"),
        ("high", "high must be above low"),
    ]
    assert window_problems(low="x", high=1, colour=2) == [
        ("low", "expected an integer, got a string"),
        ("colour", "expected a string, got an integer"),
    ], "an invalid input is not compared with"


def test_valid_items_are_checked_next_to_an_invalid_one_in_item_order() -> None:
    found = window_problems(
        items=[{"name": "a", "size": 50}, {"name": "b", "size": "big"}, {"name": "c", "size": 60}], high=20
    )
    assert found == [
        ("items.0.size", "larger than high"),
        ("items.1.size", "expected an integer, got a string"),
        ("items.2.size", "larger than high"),
    ]


class Door(Model):
    """A nested section with a mapping: its parts reach the checks of the model around it."""

    port: int = 80
    width: int = 1
    signs: dict[str, Item] = {}


class House(Model):
    port: int = 80
    door: Door = field(default_factory=Door)

    @model_validator(mode="fields")
    @classmethod
    def _across(cls, info: ValidationInfo) -> None:
        door = info.sections["door"]
        found: list[tuple[tuple[str | int, ...], str]] = []
        if "port" in info.data and door.data.get("port") == info.data["port"]:
            found.append((("door", "port"), "the door uses the house's port"))
        for name in door.keys.get("signs", []):
            if name.startswith("_"):
                found.append((("door", "signs", name), "a sign name starts with a letter"))
        for name, sign in door.entries.get("signs", {}).items():
            if sign.size > 5:
                found.append((("door", "signs", name, "size"), "too big a sign"))
        if found:
            raise ValidationError(found)


def house_problems(**data: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        House.model_validate(data)
    return [(".".join(str(p) for p in loc), message) for loc, message in info.value.problems]


def test_an_invalid_section_gives_its_valid_fields_to_the_checks_across_sections() -> None:
    found = house_problems(port=8080, door={"width": "wide", "port": 8080, "colour": "red"})
    assert found == [
        ("door.width", "expected an integer, got a string"),
        ("door.port", "the door uses the house's port"),  # in the order of the input
        ("door.colour", "unknown setting: remove it or fix its spelling"),
    ]
    assert house_problems(port=8080, door={"port": "x"}) == [
        ("door.port", "expected an integer, got a string")
    ], "an invalid input is not compared with"


def test_entries_of_a_mapping_are_valid_one_by_one_and_their_names_whatever_their_values() -> None:
    signs = {"_hidden": {"name": "h", "size": "big"}, "big": {"name": "b", "size": 9}, "ok": {"name": "o"}}
    assert house_problems(port=8080, door={"signs": signs}) == [
        ("door.signs._hidden", "a sign name starts with a letter"),  # a name before what it holds
        ("door.signs._hidden.size", "expected an integer, got a string"),
        ("door.signs.big.size", "too big a sign"),
    ]


def test_check_each_reports_every_bad_item_at_its_place() -> None:
    def even(n: int) -> int:
        if n % 2:
            raise ValueError(f"{n} is odd")
        return n

    assert check_each(enumerate([2, 4]), even) == [2, 4]
    with pytest.raises(ValidationError) as info:
        check_each(enumerate([1, 2, 3]), even)
    assert info.value.problems == [((0,), "1 is odd"), ((2,), "3 is odd")]
