"""The command line's `viewer demo --noise` offers exactly the demo's noise profiles, with the
demo's default (the parser names them itself, so building it never imports the demo's numpy)."""

from __future__ import annotations

from viewer.cli import build_parser
from viewer.core.demo import DEFAULT_NOISE, NOISE_PROFILES


def _noise_action():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    demo = commands.choices["demo"]
    return next(a for a in demo._actions if a.dest == "noise")


def test_the_noise_choices_are_the_demos_profiles_and_its_default():
    action = _noise_action()
    assert sorted(action.choices) == sorted(NOISE_PROFILES)
    assert action.default == DEFAULT_NOISE
