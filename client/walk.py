"""The delegation walk for one target path, as ngclient does it (TUF 5.6.7).

Pre-order, depth first: a role that lists the path signs it; otherwise its
delegations for the path are visited in order, and a terminating one ends
the search after its subtree. Pure: ``load(name, delegator)`` returns the
role's verified content (or raises), so the same walk serves the cache
after a refresh (discovery) and the offline evidence of a slot (boot).
"""

from __future__ import annotations

from collections.abc import Callable

from tuf.api.metadata import Root, TargetFile, Targets

#: A bound on roles visited: a delegation graph cannot make the walk endless.
MAX_DELEGATIONS = 32

Loader = Callable[[str, Root | Targets], Targets]


def walk_to_target(path: str, root: Root, load: Loader) -> tuple[list[str], TargetFile] | None:
    """Roles visited (the last one signs ``path``) and its target, or None."""
    stack: list[tuple[str, Root | Targets]] = [(Targets.type, root)]
    visited: list[str] = []
    while stack and len(visited) <= MAX_DELEGATIONS:
        name, delegator = stack.pop()
        if name in visited:
            continue
        signed = load(name, delegator)
        visited.append(name)
        target = signed.targets.get(path)
        if target is not None:
            return visited, target
        if signed.delegations is None:
            continue
        children: list[tuple[str, Root | Targets]] = []
        for child, terminating in signed.delegations.get_roles_for_target(path):
            children.append((child, signed))
            if terminating:
                stack = []
                break
        stack.extend(reversed(children))
    return None
