"""How one pairwise contraction runs as a (batched) matrix product, without copies if it can.

C = A ⊗ B is laid out as batch × left × right, where A is batch × left × contracted
(or batch × contracted × left: a transpose is free) and B is batch × contracted × right
(or transposed). An operand whose index order fits neither is permuted (one copy).
Intermediates are created in the product's natural order, so the next product can read
them as they are; the backward runs the same products transposed, again without copies.
"""
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Recipe:
    batch: Tuple[str, ...]
    left: Tuple[str, ...]
    contracted: Tuple[str, ...]
    right: Tuple[str, ...]
    a_order: Tuple[str, ...]          # A's index order as the product reads it
    b_order: Tuple[str, ...]
    a_perm: Optional[Tuple[int, ...]]  # permutation of A into a_order (None: as it is)
    b_perm: Optional[Tuple[int, ...]]
    a_transposed: bool                # A read as batch × contracted × left
    b_transposed: bool                # B read as batch × right × contracted

    @property
    def natural(self):
        return self.batch + self.left + self.right


def natural_labels(a, b, keep):
    """The order a product of a and b creates its result in (keeping the labels in keep)."""
    batch = tuple(i for i in a if i in b and i in keep)
    left = tuple(i for i in a if i not in b)
    right = tuple(i for i in b if i not in a)
    return batch + left + right


def recipe(a, b, out):
    """A and B (label tuples, unique labels) → C with labels out."""
    a, b, out = tuple(a), tuple(b), tuple(out)
    batch = tuple(i for i in out if i in a and i in b)
    left = tuple(i for i in out if i in a and i not in b)
    right = tuple(i for i in out if i in b and i not in a)
    if out != batch + left + right:  # comes out in natural order, then is permuted
        batch = tuple(i for i in a if i in b and i in out)
        left = tuple(i for i in a if i not in b)
        right = tuple(i for i in b if i not in a)
    contracted = tuple(i for i in a if i in b and i not in out)
    a_trans, a_ok = _fits(a, batch, left, contracted)
    if not a_ok:
        # A must be copied anyway: let B's order decide the contracted indices.
        contracted = tuple(i for i in b if i in contracted)
    b_trans, b_ok = _fits(b, batch, contracted, right)
    a_order = batch + ((contracted + left) if a_trans else (left + contracted))
    b_order = batch + ((right + contracted) if b_trans else (contracted + right))
    return Recipe(batch, left, contracted, right, a_order, b_order,
                  None if a_ok else _perm(a, a_order), None if b_ok else _perm(b, b_order),
                  a_trans, b_trans)


def _fits(labels, batch, first, second):
    """(transposed, fits): labels == batch+first+second, or batch+second+first."""
    if tuple(labels) == batch + first + second:
        return False, True
    if tuple(labels) == batch + second + first:
        return True, True
    return False, False


def _perm(labels, order):
    return tuple(labels.index(i) for i in order)
