"""BFCL's own checker for the memory category, imported from the bfcl-eval install.

BFCL scores every memory (and web-search) question with
``bfcl_eval.eval_checker.agentic_eval.agentic_checker.agentic_checker(
model_response, possible_answer_list) -> {"valid": bool, ...}``: the answer is
right when one of the ground-truth strings occurs in the model's final
message as whole words, after both are lower-cased and stripped of
whitespace-insensitive punctuation (``, . / - _ * ^ ( )``). That module
imports only ``re`` and the package ``__init__`` files on its way are empty,
so it is imported in this process, with the install folder on ``sys.path``
only for the import. Nothing is re-implemented here: a missing or changed
checker is an error, never a silent stand-in.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentmem.errors import DataError
from agentmem_environments.bfcl.install import BFCL_VERSION, ENV_DIR, PACKAGE

__all__ = ["CHECKER_MODULE", "Checker", "load_checker", "bfcl_correct"]

CHECKER_MODULE = "bfcl_eval.eval_checker.agentic_eval.agentic_checker"
Checker = Callable[[Any, list[str]], dict[str, Any]]
_LOCK = threading.Lock()


def load_checker(root: Path) -> Checker:
    """``agentic_checker`` from the ``bfcl_eval`` package under ``root``.

    ``root`` goes on ``sys.path`` only while the module is imported. If a
    ``bfcl_eval`` is already imported (from another folder, or installed in
    this Python), that one is used: Python keeps one module per name.
    """
    root = Path(root)
    with _LOCK:
        added = str(root) not in sys.path
        if added:
            sys.path.insert(0, str(root))
        try:
            module = importlib.import_module(CHECKER_MODULE)
        except Exception as exc:
            raise DataError(
                f"bfcl-memory: cannot import BFCL's checker {CHECKER_MODULE} from {root} "
                f"({type(exc).__name__}: {exc}); "
                f"reinstall with 'uv pip install --no-deps --target {root} {PACKAGE}=={BFCL_VERSION}' "
                f'or point {ENV_DIR} / --data "bfcl_dir=..." at a working install'
            ) from None
        finally:
            if added:
                try:
                    sys.path.remove(str(root))
                except ValueError:
                    pass
    checker = getattr(module, "agentic_checker", None)
    if not callable(checker):
        raise DataError(
            f"bfcl-memory: {getattr(module, '__file__', CHECKER_MODULE)} has no agentic_checker function; "
            f"install {PACKAGE}=={BFCL_VERSION}, the release this environment reads"
        )
    return checker


def bfcl_correct(checker: Checker, response: str, ground_truth: list[str]) -> float:
    """1.0 when BFCL's checker accepts ``response`` for ``ground_truth``, else 0.0."""
    if not ground_truth:
        return 0.0
    result = checker(response or "", list(ground_truth))
    return 1.0 if isinstance(result, dict) and result.get("valid") is True else 0.0
