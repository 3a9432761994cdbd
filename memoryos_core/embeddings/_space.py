"""A LocalEmbedder's vector space (what a store records of its vectors) and which precision it takes
for the space a store recorded: see ``LocalEmbedder.adopt_space``."""

from __future__ import annotations

from memoryos_core._exceptions import DimensionMismatchError

SEPARATOR = "@"
"""Between the model's name and a precision other than fp32 in a vector-space id: ``all-MiniLM-L6-v2@int8``
(fp32 is the bare name, what every store recorded before int8 became the default)."""


def space_id(name: str, precision: str) -> str:
    """The vector space of ``name``'s vectors at ``precision``."""
    return name if precision == "fp32" else f"{name}{SEPARATOR}{precision}"


def adopted_precision(
    recorded: str,
    *,
    name: str,
    precision: str,
    precisions: tuple[str, ...],
    is_fixed: bool,
    is_explicit: bool,
) -> str:
    """The precision an embedder of model ``name``, making ``precision`` now, uses for a store that
    recorded ``recorded``: the store's, unless its precision is fixed (``is_explicit``: given by the
    caller; else taken from another store). A store that recorded the bare name (fp32, or made before
    int8 was the default, when ``precision="int8"`` was opt-in and recorded it too) also takes an
    explicit int8.

    Raises:
        DimensionMismatchError: another model's space, or another precision than a fixed one.
    """
    model, _, stored = recorded.partition(SEPARATOR)
    stored = stored or "fp32"
    if model == name and stored in precisions:
        if stored == precision or not is_fixed:
            return stored
        if is_explicit and recorded == name:
            return precision
        if is_explicit:
            how, hint = "was given", f"pass precision={stored!r}, or none to take the store's"
        else:
            how = "was taken from another store"
            hint = "give this store a LocalEmbedder of its own (with no precision it takes the store's)"
        reason = f" (its precision {precision!r} {how})"
    else:
        reason, hint = "", "use the embedder the store was made with, another data path or collection prefix"
    raise DimensionMismatchError(
        f"the store holds vectors of {recorded!r}; this embedder makes {space_id(name, precision)!r}"
        f"{reason}: {hint}. Nothing was written.",
        backend="local",
    )
