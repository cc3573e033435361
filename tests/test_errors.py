"""Tests for smtplab.errors: one root for exceptions, one for warnings, all importable from smtplab."""

from __future__ import annotations

import inspect

import pytest

import smtplab
from smtplab import errors


def public_classes() -> list[type]:
    return [getattr(errors, name) for name in errors.__all__]


def test_every_exception_and_warning_has_a_smtplab_root_and_a_stdlib_category():
    for cls in public_classes():
        if issubclass(cls, Warning):
            assert issubclass(cls, smtplab.SmtpLabWarning) and issubclass(cls, UserWarning), cls
        else:
            assert issubclass(cls, smtplab.SmtpLabError), cls
            if cls is not smtplab.SmtpLabError:
                stdlib = [base for base in inspect.getmro(cls)[1:] if base.__module__ in ("builtins", "ssl")]
                assert stdlib and stdlib[0] is not Exception, f"{cls.__name__} has no stdlib category"


def test_every_public_exception_is_importable_from_smtplab():
    for cls in public_classes():
        assert getattr(smtplab, cls.__name__) is cls and cls.__name__ in smtplab.__all__


def test_no_other_module_defines_an_exception_or_warning():
    import importlib
    import pkgutil

    for module_info in pkgutil.walk_packages(smtplab.__path__, "smtplab."):
        if module_info.name == "smtplab.__main__":
            continue  # running it is the command line
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                assert module is errors, f"{value.__name__} is defined in {module.__name__}"


def test_mailbox_wait_for_raises_a_smtplab_timeout():
    box = smtplab.Mailbox()
    with pytest.raises(smtplab.MailboxTimeoutError, match="waited 0 s for 1 message") as caught:
        box.wait_for(1, timeout=0)
    assert isinstance(caught.value, TimeoutError)
