"""The conftest fixture gives every test the session's torch thread count back."""

from __future__ import annotations

import torch

_SEEN: list[int] = []


def test_a_test_that_changes_threads() -> None:
    _SEEN.append(torch.get_num_threads())
    torch.set_num_threads(1)


def test_the_next_test_starts_where_the_session_did() -> None:
    assert _SEEN, "runs after the test above (file order)"
    assert torch.get_num_threads() == _SEEN[0]
